-- The FHIR export's per-row helpers (1.5): fhir_string() and fhir_code() in
-- C (src/fhir_text.c), fhir_action(), fhir_purpose(), fhir_subject_entity()
-- and is_break_glass() SQL with no SET clause, so that the planner inlines
-- them.  Each gives what its earlier definition (below, in schema fhir_ref,
-- as the reference) gave: fhir_string() and fhir_code() on 20,000 random
-- strings over an alphabet of every whitespace character they map, their
-- neighbours in UTF-8 (same lead byte, next code point) and ordinary text, in
-- a UTF-8 database and in a LATIN1 one, where only vertical tab and form feed
-- are mapped; the others over every combination of their inputs' cases.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fhir_reference.sql

SELECT setseed(0.25);
SELECT * FROM fhir_ref.compare(ARRAY[
    -- mapped to a space
    E'\u000b', E'\u000c', E'\u00a0', E'\u1680', E'\u2000', E'\u2005', E'\u200a', E'\u2028',
    E'\u2029', E'\u202f', E'\u205f', E'\u3000', E'\ufeff',
    -- trimmed and collapsed in a code
    ' ', E'\t', E'\r', E'\n',
    -- their neighbours, kept
    E'\u0085', E'\u00a1', E'\u1681', E'\u200b', E'\u2027', E'\u202a', E'\u2030', E'\u205e',
    E'\u2060', E'\u3001', E'\ufefe', E'\uff00', E'\U0001F600',
    'a', 'Z', E'\u00e9', '"', '\', '0']);
-- NULL stays NULL, the empty string becomes NULL
SELECT tool_audit.fhir_string(NULL) IS NULL AS null_string, tool_audit.fhir_code(NULL) IS NULL AS null_code,
       tool_audit.fhir_string('') IS NULL AS empty_string, tool_audit.fhir_code(E' \t\u3000\n') IS NULL AS blank_code,
       tool_audit.fhir_string(E' \t ') AS blank_string_kept;
-- a long value (an arguments document of 1 MB) in one piece
SELECT length(tool_audit.fhir_string(repeat(E'ab\u00a0', 350000))) AS long_string,
       position(E'\u00a0' IN tool_audit.fhir_string(repeat(E'ab\u00a0', 350000))) AS nbsp_left,
       length(tool_audit.fhir_code(repeat(E'a \t\n', 250000))) AS long_code;

-- the SQL helpers, against their 1.4 and early 1.5 definitions
CREATE FUNCTION fhir_ref.fhir_action(tool_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE lower(coalesce(substring(tool_name FROM '^[A-Z]+(?![a-z])'),
                               substring(tool_name FROM '^[A-Za-z][a-z]*')))
        WHEN 'get' THEN 'R' WHEN 'read' THEN 'R' WHEN 'list' THEN 'R' WHEN 'search' THEN 'R'
        WHEN 'find' THEN 'R' WHEN 'lookup' THEN 'R' WHEN 'fetch' THEN 'R' WHEN 'query' THEN 'R'
        WHEN 'view' THEN 'R' WHEN 'show' THEN 'R' WHEN 'check' THEN 'R'
        WHEN 'create' THEN 'C' WHEN 'add' THEN 'C' WHEN 'insert' THEN 'C' WHEN 'new' THEN 'C'
        WHEN 'update' THEN 'U' WHEN 'set' THEN 'U' WHEN 'modify' THEN 'U' WHEN 'edit' THEN 'U'
        WHEN 'change' THEN 'U' WHEN 'patch' THEN 'U'
        WHEN 'delete' THEN 'D' WHEN 'remove' THEN 'D' WHEN 'purge' THEN 'D' WHEN 'erase' THEN 'D'
        ELSE 'E'
    END
$$;
CREATE FUNCTION fhir_ref.fhir_subject_entity(subject_id text, subject_type text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN fhir_ref.fhir_code(subject_id) IS NOT NULL THEN jsonb_strip_nulls(jsonb_build_object(
        'what', jsonb_build_object('identifier', jsonb_build_object('value', fhir_ref.fhir_string(subject_id))),
        'type', jsonb_build_object('system', 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
                                   'code', k.type_code, 'display', k.type_display),
        'role', CASE WHEN k.role_code IS NOT NULL
                     THEN jsonb_build_object('system', 'http://terminology.hl7.org/CodeSystem/object-role',
                                             'code', k.role_code, 'display', k.role_display) END,
        'detail', CASE WHEN k.kind IS NOT NULL
                       THEN jsonb_build_array(jsonb_build_object('type', 'subject_type',
                                                                 'valueString', fhir_ref.fhir_code(subject_type))) END))
    END
      FROM (SELECT lower(fhir_ref.fhir_code(subject_type)) AS kind) s,
           LATERAL (SELECT s.kind,
                CASE WHEN s.kind IS NULL OR s.kind IN ('patient', 'customer', 'user', 'employee', 'doctor',
                                                       'practitioner', 'provider', 'subscriber', 'guarantor')
                          THEN '1' WHEN s.kind = 'organization' THEN '3' ELSE '4' END AS type_code,
                CASE WHEN s.kind IS NULL OR s.kind IN ('patient', 'customer', 'user', 'employee', 'doctor',
                                                       'practitioner', 'provider', 'subscriber', 'guarantor')
                          THEN 'Person' WHEN s.kind = 'organization' THEN 'Organization' ELSE 'Other' END AS type_display,
                CASE s.kind WHEN 'patient' THEN '1' WHEN 'customer' THEN '19' WHEN 'user' THEN '6'
                            WHEN 'employee' THEN '6' WHEN 'doctor' THEN '8' WHEN 'practitioner' THEN '15'
                            WHEN 'provider' THEN '15' WHEN 'subscriber' THEN '9' WHEN 'guarantor' THEN '10'
                END AS role_code,
                CASE s.kind WHEN 'patient' THEN 'Patient' WHEN 'customer' THEN 'Customer' WHEN 'user' THEN 'User'
                            WHEN 'employee' THEN 'User' WHEN 'doctor' THEN 'Doctor' WHEN 'practitioner' THEN 'Provider'
                            WHEN 'provider' THEN 'Provider' WHEN 'subscriber' THEN 'Subscriber'
                            WHEN 'guarantor' THEN 'Guarantor'
                END AS role_display) k
$$;
CREATE FUNCTION fhir_ref.fhir_purpose(purpose text, break_glass boolean) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN fhir_ref.fhir_string(purpose) IS NOT NULL OR break_glass THEN
        jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'coding', CASE WHEN break_glass THEN
                '[{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]'::jsonb END,
            'text', fhir_ref.fhir_string(purpose))))
    END
$$;
CREATE FUNCTION fhir_ref.is_break_glass(r tool_audit.tool_calls) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(r.break_glass, false)
        OR r.session_metadata @> '{"break_glass": true}'
        OR coalesce(lower(btrim(r.purpose)) IN ('break_glass', 'break-glass', 'emergency'), false)
$$;
-- fhir_action(): names built from verbs in three cases and what may follow them
WITH piece(p) AS (SELECT unnest(ARRAY['get', 'GET', 'Get', 'read', 'list', 'Search', 'find', 'LOOKUP', 'fetch',
                                      'query', 'view', 'show', 'check', 'create', 'ADD', 'insert', 'new',
                                      'update', 'set', 'Modify', 'edit', 'change', 'patch', 'delete', 'REMOVE',
                                      'purge', 'erase', 'refund', 'x', 'X', '_', 'Order', 'ORDER', '1', ' ', 'é', '']))
SELECT count(*) AS names,
       count(DISTINCT fhir_ref.fhir_action(n)) AS actions_seen,
       count(*) FILTER (WHERE tool_audit.fhir_action(n) IS DISTINCT FROM fhir_ref.fhir_action(n)) AS action_differs
  FROM (SELECT a.p || b.p || c.p AS n FROM piece a, piece b, piece c
        UNION ALL SELECT NULL) names;
-- fhir_purpose(): purposes with and without text, with a break-glass flag true, false or unknown
WITH purpose(p) AS (SELECT unnest(ARRAY[NULL, '', ' ', E'\u3000', 'treatment', E'care\u00a0plan', E'\t', 'emergency'])),
     flag(b) AS (SELECT unnest(ARRAY[true, false, NULL]))
SELECT count(*) AS cases,
       count(*) FILTER (WHERE tool_audit.fhir_purpose(p, b) IS DISTINCT FROM fhir_ref.fhir_purpose(p, b)) AS purpose_differs
  FROM purpose, flag;
-- fhir_subject_entity(): subjects with and without an id, of every kind named, in any case and spacing
WITH id(i) AS (SELECT unnest(ARRAY[NULL, '', ' ', E'\u3000', 'P-1', E' P\u00a02 '])),
     kind(k) AS (SELECT unnest(ARRAY[NULL, '', ' ', 'patient', 'Patient', ' PATIENT ', 'customer', 'user', 'employee',
                                     'doctor', 'practitioner', 'provider', 'subscriber', 'guarantor', 'organization',
                                     E'Organization\t', 'robot', 'device', E'pat\u00a0ient', 'patients']))
SELECT count(*) AS cases,
       count(*) FILTER (WHERE tool_audit.fhir_subject_entity(i, k) IS DISTINCT FROM fhir_ref.fhir_subject_entity(i, k)) AS entity_differs
  FROM id, kind;
-- is_break_glass(): rows flagged or not, with a context that says so or not, and purposes
WITH flag(b) AS (SELECT unnest(ARRAY[true, false, NULL])),
     ctx(m) AS (SELECT unnest(ARRAY[NULL, '{}', '{"break_glass": true}', '{"break_glass": false}', '{"break_glass": "true"}',
                                    '{"x": 1, "break_glass": true}'])::jsonb),
     purpose(p) AS (SELECT unnest(ARRAY[NULL, '', 'break_glass', ' Break-Glass ', 'EMERGENCY', 'emergency care', 'treatment'])),
     r AS (SELECT jsonb_populate_record(NULL::tool_audit.tool_calls,
                                        jsonb_build_object('break_glass', b, 'session_metadata', m, 'purpose', p)) AS t
             FROM flag, ctx, purpose)
SELECT count(*) AS cases, count(*) FILTER (WHERE fhir_ref.is_break_glass(t)) AS break_glass,
       count(*) FILTER (WHERE tool_audit.is_break_glass(t) IS DISTINCT FROM fhir_ref.is_break_glass(t)) AS break_glass_differs
  FROM r;
-- fhir_audit_event() (PL/pgSQL since 1.5) against its SQL definition, on
-- 5,000 rows mixing every field's cases: missing, blank, with whitespace
-- FHIR refuses, a float that needs 17 digits, with and without hashes
CREATE FUNCTION fhir_ref.fhir_audit_event(r tool_audit.tool_calls) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'resourceType', 'AuditEvent',
        'id', r.event_id::text,
        'type', CASE WHEN tool_audit.fhir_code(r.subject_id) IS NOT NULL
                      AND lower(tool_audit.fhir_code(r.session_metadata->>'subject_type')) = 'patient'
                     THEN '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record"}'::jsonb
                     ELSE '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100", "display": "Application Activity"}'::jsonb END,
        'subtype', jsonb_build_array(jsonb_build_object(
            'system', 'urn:tool_audit:tool',
            'code', coalesce(tool_audit.fhir_code(r.tool_name), 'unnamed'),
            'display', tool_audit.fhir_string(r.tool_name))),
        'action', tool_audit.fhir_action(r.tool_name),
        'recorded', tool_audit.iso8601_utc(r.recorded_at),
        'outcome', CASE WHEN r.success THEN '0' WHEN NOT r.success THEN '4' END,
        'outcomeDesc', tool_audit.fhir_string(r.error),
        'purposeOfEvent', tool_audit.fhir_purpose(r.purpose,
                                                  coalesce(r.break_glass, false) OR tool_audit.is_break_glass(r)),
        'agent', jsonb_build_array(
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb,
                'who', CASE WHEN tool_audit.fhir_string(r.user_id) IS NOT NULL
                            THEN jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.user_id)))
                            ELSE '{"display": "unknown"}'::jsonb END,
                'role', CASE WHEN tool_audit.fhir_string(r.user_role) IS NOT NULL
                             THEN jsonb_build_array(jsonb_build_object('text', tool_audit.fhir_string(r.user_role))) END,
                'requestor', tool_audit.fhir_string(r.impersonated_by) IS NULL,
                'network', CASE WHEN r.client_ip IS NOT NULL
                                THEN jsonb_build_object('address', host(r.client_ip), 'type', '2') END),
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "dataprocessor", "display": "data processor"}]}'::jsonb,
                'who', jsonb_build_object('display', coalesce(tool_audit.fhir_string(r.model), 'unknown model')),
                'requestor', false))
            || CASE WHEN tool_audit.fhir_string(r.impersonated_by) IS NOT NULL THEN jsonb_build_array(jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb,
                'who', jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.impersonated_by))),
                'role', '[{"text": "impersonator"}]'::jsonb,
                'requestor', true)) ELSE '[]'::jsonb END,
        'source', jsonb_build_object(
            'site', tool_audit.fhir_string(r.tenant_id),
            'observer', jsonb_build_object('display', tool_audit.fhir_string('tool_audit@' || current_database())),
            'type', '[{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]'::jsonb),
        'entity', (SELECT jsonb_agg(e ORDER BY n) FROM (VALUES
            (1, tool_audit.fhir_subject_entity(r.subject_id, r.session_metadata->>'subject_type')),
            (2, jsonb_build_object(
                'what', jsonb_build_object('identifier', CASE WHEN tool_audit.fhir_string(r.tool_call_id) IS NOT NULL
                    THEN jsonb_build_object('system', 'urn:tool_audit:tool_call_id', 'value', tool_audit.fhir_string(r.tool_call_id))
                    ELSE jsonb_build_object('system', 'urn:tool_audit:event_id', 'value', r.event_id::text) END),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}'::jsonb,
                'name', tool_audit.fhir_string(r.tool_name),
                'detail', (SELECT jsonb_agg(jsonb_build_object('type', d.k, 'valueString', d.v) ORDER BY d.n)
                             FROM (VALUES (1, 'arguments', tool_audit.fhir_string(r.arguments::text)),
                                          (2, 'result_summary', tool_audit.fhir_string(r.result_summary::text)),
                                          (3, 'conversation_id', tool_audit.fhir_string(r.conversation_id)),
                                          (4, 'turn_number', r.turn_number::text),
                                          (5, 'call_trigger', r.call_trigger::text),
                                          (6, 'duration_ms', r.duration_ms::text),
                                          (7, 'row_hash', encode(r.row_hash, 'hex')),
                                          (8, 'chain', r.chain_id || '/' || r.chain_lane || '/' || r.chain_seq))
                                  AS d(n, k, v)
                            WHERE d.v IS NOT NULL)))
            ) AS x(n, e) WHERE e IS NOT NULL)))
$$;
SELECT setseed(0.75);
CREATE TEMP TABLE fhir_rows AS
SELECT jsonb_populate_record(NULL::tool_audit.tool_calls, jsonb_strip_nulls(jsonb_build_object(
           'event_id', gen_random_uuid(),
           'recorded_at', '2025-03-03 09:00:00+00'::timestamptz + i * interval '1 second',
           'tool_name', (ARRAY[NULL, '', 'get_account', E'refund\u00a0order', 'DELETE_NOTE', ' x '])[1 + i % 6],
           'tool_call_id', (ARRAY[NULL, '', ' ', 'call_1', E'call\u20282'])[1 + i % 5],
           'subject_id', (ARRAY[NULL, '', 'sub_1', E'\u3000', ' p 2 '])[1 + i % 7 % 5],
           'session_metadata', (ARRAY['{}', '{"subject_type": "patient"}', '{"subject_type": " Customer "}',
                                      '{"subject_type": "order", "break_glass": true}', '{"subject_type": ""}'])[1 + i % 11 % 5]::jsonb,
           'purpose', (ARRAY[NULL, 'treatment', 'emergency', '', E'care\u000bplan'])[1 + i % 13 % 5],
           'break_glass', (ARRAY[NULL, true, false])[1 + i % 3],
           'success', (ARRAY[NULL, true, false])[1 + i % 17 % 3],
           'error', (ARRAY[NULL, 'timeout', ''])[1 + i % 19 % 3],
           'user_id', (ARRAY[NULL, 'usr_1', E' \ufeff'])[1 + i % 23 % 3],
           'user_role', (ARRAY[NULL, 'nurse', ''])[1 + i % 29 % 3],
           'impersonated_by', (ARRAY[NULL, 'admin_1', ''])[1 + i % 31 % 3],
           'model', (ARRAY[NULL, 'gpt-4.1', ''])[1 + i % 37 % 3],
           'client_ip', (ARRAY[NULL, '10.1.2.3', '2001:db8::1'])[1 + i % 41 % 3],
           'tenant_id', (ARRAY[NULL, 'tenant_a', ''])[1 + i % 43 % 3],
           'conversation_id', (ARRAY[NULL, 'conv_1', E'\u2000'])[1 + i % 47 % 3],
           'turn_number', (ARRAY[NULL, 3])[1 + i % 2],
           'call_trigger', (ARRAY[NULL, 'user_request', 'retry'])[1 + i % 53 % 3],
           'duration_ms', (ARRAY[NULL, 145.2, 0.30000000000000004, 1e-7])[1 + i % 59 % 4],
           'arguments', (ARRAY[NULL, '{}', '{"a": "x\u000by"}', '[1, 2.5]'])[1 + i % 61 % 4]::jsonb,
           'result_summary', (ARRAY[NULL, '"ok"', '{"n": 1}'])[1 + i % 67 % 3]::jsonb,
           'row_hash', CASE WHEN i % 71 % 2 = 0 THEN sha256(i::text::bytea) END,
           'chain_id', CASE WHEN i % 73 % 2 = 0 THEN -9223372036854775807 + i END,
           'chain_lane', CASE WHEN i % 73 % 2 = 0 THEN i % 4 END,
           'chain_seq', CASE WHEN i % 79 % 2 = 0 THEN i END))) AS t
  FROM generate_series(1, 5000) i;
SELECT count(*) AS rows_compared,
       count(*) FILTER (WHERE tool_audit.fhir_audit_event(t) IS DISTINCT FROM fhir_ref.fhir_audit_event(t)) AS audit_event_differs,
       count(*) FILTER (WHERE jsonb_array_length(fhir_ref.fhir_audit_event(t) -> 'entity') = 2) AS with_subject,
       count(*) FILTER (WHERE NOT fhir_ref.fhir_audit_event(t) #> '{entity,-1}' ? 'detail') AS without_detail
  FROM fhir_rows;
SET extra_float_digits = -3;   -- the function pins its own
SELECT count(*) FILTER (WHERE tool_audit.fhir_audit_event(t) IS DISTINCT FROM fhir_ref.fhir_audit_event(t)) AS audit_event_differs_efd
  FROM fhir_rows;
RESET extra_float_digits;

-- and the planner inlines them: no call to any of them is left in the plan
CREATE FUNCTION fhir_ref.plan_calls(query text) RETURNS TABLE (helper text, called boolean)
LANGUAGE plpgsql AS $$
DECLARE
    plan text := '';
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN QUERY SELECT h, position(h || '(' IN plan) > 0
                   FROM unnest(ARRAY['fhir_action', 'fhir_purpose', 'fhir_subject_entity', 'is_break_glass']) h;
END
$$;
SELECT * FROM fhir_ref.plan_calls($q$
    SELECT tool_audit.fhir_action(t.tool_name),
           tool_audit.fhir_purpose(t.purpose, coalesce(t.break_glass, false) OR tool_audit.is_break_glass(t)),
           tool_audit.fhir_subject_entity(t.subject_id, t.session_metadata->>'subject_type')
      FROM tool_audit.tool_calls t$q$);
-- (the reference itself is not inlined: the check can tell)
SELECT * FROM fhir_ref.plan_calls($q$
    SELECT fhir_ref.fhir_action(t.tool_name), fhir_ref.is_break_glass(t) FROM tool_audit.tool_calls t$q$)
 WHERE helper IN ('fhir_action', 'is_break_glass');

-- inside the callers too: in one transaction of both exports' builders, the
-- only helpers called are the two in C
SET track_functions = 'all';
BEGIN;
SELECT count(tool_audit.fhir_audit_event(t)) AS audit_events FROM fhir_rows;
SELECT count(tool_audit.fhir_admin_event(jsonb_populate_record(NULL::tool_audit.admin_events, jsonb_build_object(
           'event_id', gen_random_uuid(), 'occurred_at', now(), 'event_type', 'prompt.update', 'actor', 'a',
           'reason', 'emergency', 'payload', jsonb_build_object('subject_id', 's' || i, 'subject_type', 'Patient')))))
       AS admin_events
  FROM generate_series(1, 10) i;
SELECT funcname FROM pg_stat_xact_user_functions WHERE schemaname = 'tool_audit' ORDER BY 1;
COMMIT;
RESET track_functions;
-- and no caller's search_path reaches them: with operators of the same names
-- ahead of pg_catalog's (each says yes, R or {"evil": 1}) and a temporary
-- type named jsonb (searched first for types), each gives what it gives
-- under the usual search_path
CREATE SCHEMA fhir_evil;
CREATE FUNCTION fhir_evil.yes(pg_catalog.jsonb, pg_catalog.jsonb) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR fhir_evil.@> (LEFTARG = pg_catalog.jsonb, RIGHTARG = pg_catalog.jsonb, FUNCTION = fhir_evil.yes);
CREATE FUNCTION fhir_evil.yes(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR fhir_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = fhir_evil.yes);
CREATE FUNCTION fhir_evil.r(pg_catalog.jsonb, text) RETURNS text LANGUAGE sql AS 'SELECT ''R''';
CREATE OPERATOR fhir_evil.->> (LEFTARG = pg_catalog.jsonb, RIGHTARG = text, FUNCTION = fhir_evil.r);
CREATE FUNCTION fhir_evil.obj(pg_catalog.jsonb, text) RETURNS pg_catalog.jsonb LANGUAGE sql AS 'SELECT ''{"evil": 1}''::pg_catalog.jsonb';
CREATE OPERATOR fhir_evil.-> (LEFTARG = pg_catalog.jsonb, RIGHTARG = text, FUNCTION = fhir_evil.obj);
CREATE TEMP TABLE fhir_cases AS
SELECT a.tool, s.kind, p.purpose, p.flag
  FROM unnest(ARRAY['refund_order', 'get_order', 'DELETE_NOTE', 'x']) a(tool),
       unnest(ARRAY[NULL, 'robot', 'Patient', 'organization']) s(kind),
       (VALUES ('treatment', false), ('emergency', NULL), (NULL, true)) p(purpose, flag);
CREATE FUNCTION pg_temp.outputs(c fhir_cases) RETURNS text LANGUAGE sql AS $$
    SELECT concat_ws(' | ', tool_audit.fhir_action(c.tool),
                     tool_audit.fhir_subject_entity('s', c.kind)::text,
                     tool_audit.fhir_purpose(c.purpose, c.flag)::text,
                     tool_audit.is_break_glass(pg_catalog.jsonb_populate_record(NULL::tool_audit.tool_calls,
                         pg_catalog.jsonb_build_object('purpose', c.purpose, 'break_glass', c.flag)))::text)
$$;
CREATE TEMP TABLE fhir_usual AS SELECT c, pg_temp.outputs(c) AS o FROM fhir_cases c;
SET search_path = fhir_evil, pg_catalog, public;
CREATE TEMP TABLE fhir_shadowed_operators AS SELECT c, pg_temp.outputs(c) AS o FROM fhir_cases c;
RESET search_path;
SELECT count(*) AS cases, count(*) FILTER (WHERE u.o IS DISTINCT FROM s.o) AS operators_shadowed_differs
  FROM fhir_usual u JOIN fhir_shadowed_operators s ON s.c = u.c;
CREATE TYPE pg_temp.jsonb AS (a int);
CREATE TEMP TABLE fhir_shadowed_type AS SELECT c, pg_temp.outputs(c) AS o FROM fhir_cases c;
SELECT count(*) AS cases, count(*) FILTER (WHERE u.o IS DISTINCT FROM t.o) AS type_shadowed_differs
  FROM fhir_usual u JOIN fhir_shadowed_type t ON t.c = u.c;
-- (the shadowing works: the same operators, unqualified, are the impostors')
SET search_path = fhir_evil, pg_catalog, public;
SELECT '{}'::pg_catalog.jsonb @> '{"a": 1}'::pg_catalog.jsonb AS shadowed_containment, 'a' = 'b' AS shadowed_equality;
RESET search_path;
DROP SCHEMA fhir_evil CASCADE;

-- a LATIN1 database: only vertical tab and form feed are mapped (0xA0 is a
-- no-break space there, and stays, as the 1.4 definitions left it)
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_fhir_latin1;
CREATE DATABASE regress_tool_audit_fhir_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_fhir_latin1
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fhir_reference.sql
SELECT setseed(0.25);
SELECT * FROM fhir_ref.compare(ARRAY[chr(11), chr(12), chr(160), chr(194), chr(226), chr(227), chr(239),
                                     chr(133), ' ', chr(9), chr(13), chr(10), 'a', chr(233), chr(255)]);
SELECT tool_audit.fhir_string(chr(160) || chr(11)) = chr(160) || ' ' AS nbsp_kept_vt_mapped;
\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_fhir_latin1;
RESET client_min_messages;
DROP SCHEMA fhir_ref CASCADE;
