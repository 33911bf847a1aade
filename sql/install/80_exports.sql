
-- ---------------------------------------------------------------------------
-- Exports
-- ---------------------------------------------------------------------------

-- one JSON document per row of both audit tables, with the row's hash and
-- place in its chain, so that the export can be checked without the database;
-- chain_id is a 64-bit integer, written as a JSON string (a JSON number above
-- 2^53 loses precision in JavaScript, jq and many other readers)
CREATE FUNCTION tool_audit.export_jsonl(start_time timestamptz, end_time timestamptz)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    RETURN QUERY
    SELECT x.doc FROM (
        SELECT t.recorded_at AS at, 1 AS tab, t.id, jsonb_build_object(
            'table', 'tool_calls',
            'id', t.id, 'event_id', t.event_id, 'recorded_at', tool_audit.iso8601_utc(t.recorded_at),
            'tenant_id', t.tenant_id, 'conversation_id', t.conversation_id,
            'turn_number', t.turn_number, 'user_id', t.user_id, 'user_role', t.user_role,
            'model', t.model, 'tool_name', t.tool_name, 'tool_call_id', t.tool_call_id,
            'call_trigger', t.call_trigger, 'purpose', t.purpose, 'subject_id', t.subject_id,
            'arguments', t.arguments, 'result_summary', t.result_summary, 'success', t.success,
            'error', t.error, 'duration_ms', t.duration_ms, 'client_ip', abbrev(t.client_ip),
            'user_agent', t.user_agent, 'session_metadata', t.session_metadata,
            'recorded_by', t.recorded_by,
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex'))
            -- 1.5: the halves of a call begun and ended (absent otherwise)
            || jsonb_strip_nulls(jsonb_build_object('call_phase', t.call_phase,
                   'call_event_id', t.call_event_id, 'caller_txid', t.caller_txid))
            -- the client's time, when it sent one (1.5)
            || CASE WHEN t.started_at IS NOT NULL
                    THEN jsonb_build_object('started_at', tool_audit.iso8601_utc(t.started_at))
                    ELSE '{}' END AS doc
          FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
        UNION ALL
        SELECT e.occurred_at, 0, e.id, jsonb_build_object(
            'table', 'admin_events',
            'id', e.id, 'event_id', e.event_id, 'occurred_at', tool_audit.iso8601_utc(e.occurred_at),
            'event_type', e.event_type, 'actor', e.actor, 'actor_type', e.actor_type,
            'tenant_id', e.tenant_id, 'payload', e.payload, 'reason', e.reason,
            'source_ip', abbrev(e.source_ip), 'metadata', e.metadata, 'recorded_by', e.recorded_by,
            'row_hash', encode(e.row_hash, 'hex'), 'chain_id', e.chain_id::text,
            'chain_lane', e.chain_lane, 'chain_seq', e.chain_seq,
            'chain_hash', encode(e.chain_hash, 'hex'))
          FROM tool_audit.admin_events e
         WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
        UNION ALL
        SELECT d.recorded_at, 2, d.id, jsonb_build_object(
            'table', 'data_changes',
            'id', d.id, 'event_id', d.event_id, 'recorded_at', tool_audit.iso8601_utc(d.recorded_at),
            'tenant_id', d.tenant_id, 'table_name', d.table_name, 'operation', d.operation,
            'row_key', d.row_key, 'old_values', d.old_values, 'new_values', d.new_values,
            'call_event_id', d.call_event_id, 'txid', d.txid::text,
            'application_name', d.application_name, 'recorded_by', d.recorded_by,
            'retention_policy', d.retention_policy, 'expires_at', tool_audit.iso8601_utc(d.expires_at),
            'row_hash', encode(d.row_hash, 'hex'), 'chain_id', d.chain_id::text,
            'chain_lane', d.chain_lane, 'chain_seq', d.chain_seq,
            'chain_hash', encode(d.chain_hash, 'hex'))
          FROM tool_audit.data_changes d
         WHERE d.recorded_at >= start_time AND d.recorded_at < end_time
    ) x
    ORDER BY x.at, x.tab, x.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_jsonl',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_jsonl(timestamptz, timestamptz) IS
    'Both audit tables'' rows in a period as JSON documents with their hashes and chain positions, to check outside the database';

-- CSV: COPY (SELECT * FROM tool_audit.tool_calls_csv WHERE ...) TO STDOUT (FORMAT csv, HEADER)
CREATE VIEW tool_audit.tool_calls_csv WITH (security_invoker = true) AS
SELECT t.id, t.event_id, t.recorded_at, t.tenant_id, t.conversation_id, t.turn_number,
       t.user_id, t.user_role, t.model, t.tool_name, t.tool_call_id, t.call_trigger,
       t.purpose, t.subject_id, t.arguments::text AS arguments,
       t.result_summary::text AS result_summary, t.success, t.error, t.duration_ms,
       abbrev(t.client_ip) AS client_ip, t.user_agent, t.session_metadata::text AS session_metadata,
       t.recorded_by, encode(t.row_hash, 'hex') AS row_hash, t.chain_id, t.chain_lane,
       t.chain_seq, encode(t.chain_hash, 'hex') AS chain_hash, t.started_at
  FROM tool_audit.tool_calls t;
COMMENT ON VIEW tool_audit.tool_calls_csv IS 'tool_calls with JSON as text and hashes as hex, for COPY ... (FORMAT csv, HEADER)';

CREATE VIEW tool_audit.admin_events_csv WITH (security_invoker = true) AS
SELECT e.id, e.event_id, e.occurred_at, e.event_type, e.actor, e.actor_type, e.tenant_id,
       e.payload::text AS payload, e.reason, abbrev(e.source_ip) AS source_ip,
       e.metadata::text AS metadata, e.recorded_by, encode(e.row_hash, 'hex') AS row_hash,
       e.chain_id, e.chain_lane, e.chain_seq, encode(e.chain_hash, 'hex') AS chain_hash
  FROM tool_audit.admin_events e;
COMMENT ON VIEW tool_audit.admin_events_csv IS 'admin_events with JSON as text and hashes as hex, for COPY ... (FORMAT csv, HEADER)';

-- fhir_action(tool_name): the AuditEvent action a tool's leading verb
-- implies (get_order, searchPatients, DELETE_NOTE: the first word)
-- No SET clause (1.5), so that the planner inlines it into the queries that
-- call it per row (a function with SET is not inlined, and one called from
-- inside another SQL function is parsed and planned again at every call).
-- Instead every function, operator and type it names is schema-qualified,
-- so that no caller's search_path reaches it (test fhir_helpers shadows them)
CREATE FUNCTION tool_audit.fhir_action(tool_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce('{"get": "R", "read": "R", "list": "R", "search": "R", "find": "R", "lookup": "R",
                      "fetch": "R", "query": "R", "view": "R", "show": "R", "check": "R",
                      "create": "C", "add": "C", "insert": "C", "new": "C",
                      "update": "U", "set": "U", "modify": "U", "edit": "U", "change": "U", "patch": "U",
                      "delete": "D", "remove": "D", "purge": "D", "erase": "D"}'::pg_catalog.jsonb
                    OPERATOR(pg_catalog.->>) pg_catalog.lower(coalesce(substring(tool_name FROM '^[A-Z]+(?![a-z])'),
                                                                       substring(tool_name FROM '^[A-Za-z][a-z]*'))),
                    'E')
$$;
COMMENT ON FUNCTION tool_audit.fhir_action(text) IS
    'The FHIR AuditEvent action code (C, R, U, D or E) that a tool name''s leading verb implies';

-- fhir_string(value): a FHIR string: the R4 schema's string pattern
-- (^[ \r\n\t\S]+$, in JavaScript) admits no whitespace but space, tab, CR
-- and LF, so the others (vertical tab, form feed, no-break and other Unicode
-- spaces) become spaces; an empty string becomes NULL (FHIR has none).
-- In C since 1.5 (src/fhir_text.c): a dozen calls a row of export_fhir()
CREATE FUNCTION tool_audit.fhir_string(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'ta_fhir_string' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.fhir_string(text) IS
    'The text as a valid FHIR string: whitespace the R4 schema refuses becomes a space, an empty string NULL';

-- fhir_code(value): a FHIR code: a FHIR string with no leading, trailing or
-- repeated whitespace (C since 1.5, src/fhir_text.c)
CREATE FUNCTION tool_audit.fhir_code(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'ta_fhir_code' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.fhir_code(text) IS
    'The text as a valid FHIR code: trimmed, inner whitespace collapsed, an empty string NULL';

-- fhir_subject_entity(subject_id, subject_type): the AuditEvent entity for
-- the data subject a row is about, typed by the kind of subject its context
-- named (the context key subject_type, kept in session_metadata; for an
-- admin event, its payload's subject_type): FHIR R4's audit-entity-type
-- (http://hl7.org/fhir/ValueSet/audit-entity-type) and object-role
-- (http://hl7.org/fhir/ValueSet/object-role) codes.  A patient is a Person in
-- the Patient role, a customer a Person in the Customer role, and so on; a
-- subject of no stated kind is a Person (a data subject is one) in no role;
-- an organization is an Organization; any other stated kind is Other.  NULL
-- without a subject.
-- No SET clause (1.5): inlined per row, as fhir_action() above
CREATE FUNCTION tool_audit.fhir_subject_entity(subject_id text, subject_type text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN tool_audit.fhir_code(subject_id) IS NOT NULL THEN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'what', pg_catalog.jsonb_build_object('identifier', pg_catalog.jsonb_build_object('value', tool_audit.fhir_string(subject_id))),
        -- audit-entity-type 1 (Person): no kind stated, or a person's; 3: an organization; 4 (Other): any other
        'type', '{"1": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
                  "3": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "3", "display": "Organization"},
                  "4": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "4", "display": "Other"}}'::pg_catalog.jsonb
                OPERATOR(pg_catalog.->) (CASE WHEN tool_audit.fhir_code(subject_type) IS NULL THEN '1'
                    ELSE coalesce('{"patient": "1", "customer": "1", "user": "1", "employee": "1", "doctor": "1",
                                    "practitioner": "1", "provider": "1", "subscriber": "1", "guarantor": "1",
                                    "organization": "3"}'::pg_catalog.jsonb
                                  OPERATOR(pg_catalog.->>) pg_catalog.lower(tool_audit.fhir_code(subject_type)), '4') END),
        'role', '{"patient": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
                  "customer": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "19", "display": "Customer"},
                  "user": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "6", "display": "User"},
                  "employee": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "6", "display": "User"},
                  "doctor": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "8", "display": "Doctor"},
                  "practitioner": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "15", "display": "Provider"},
                  "provider": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "15", "display": "Provider"},
                  "subscriber": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "9", "display": "Subscriber"},
                  "guarantor": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "10", "display": "Guarantor"}}'::pg_catalog.jsonb
                OPERATOR(pg_catalog.->) pg_catalog.lower(tool_audit.fhir_code(subject_type)),
        'detail', CASE WHEN tool_audit.fhir_code(subject_type) IS NOT NULL
                       THEN pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('type', 'subject_type',
                                                                                       'valueString', tool_audit.fhir_code(subject_type))) END))
    END
$$;
COMMENT ON FUNCTION tool_audit.fhir_subject_entity(text, text) IS
    'The FHIR AuditEvent entity for a data subject, typed and given its role (audit-entity-type, object-role) by the kind of subject; NULL without a subject';

-- fhir_purpose(purpose, break_glass): AuditEvent.purposeOfEvent: the
-- purpose as text and, for a break-the-glass access, the v3 ActReason code
-- BTG ("break the glass")
-- No SET clause (1.5): inlined per row, as fhir_action() above
CREATE FUNCTION tool_audit.fhir_purpose(purpose text, break_glass boolean) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN break_glass THEN
                pg_catalog.jsonb_build_array(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                    'coding', '[{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]'::pg_catalog.jsonb,
                    'text', tool_audit.fhir_string(purpose))))
                WHEN tool_audit.fhir_string(purpose) IS NOT NULL THEN
                pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('text', tool_audit.fhir_string(purpose)))
    END
$$;
COMMENT ON FUNCTION tool_audit.fhir_purpose(text, boolean) IS
    'FHIR AuditEvent.purposeOfEvent: the purpose as text and, for a break-the-glass access, the v3 ActReason code BTG';

-- fhir_audit_event(row): one FHIR R4 AuditEvent resource for a tool call.
-- PL/pgSQL returning one expression (1.5): PL/pgSQL prepares it once a
-- transaction, where an SQL function (not inlined: it pins two settings) was
-- set up again for every row; the entity and detail lists drop their empty
-- members with a JSON path filter instead of subqueries, which would make it
-- a query to plan and start for every row (no detail at all: no list)
CREATE FUNCTION tool_audit.fhir_audit_event(r tool_audit.tool_calls) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
BEGIN
    RETURN jsonb_strip_nulls(jsonb_build_object(
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
        -- the subject (when there is one) and the call; each detail with a value
        'entity', jsonb_path_query_array(jsonb_build_array(
            tool_audit.fhir_subject_entity(r.subject_id, r.session_metadata->>'subject_type'),
            jsonb_build_object(
                'what', jsonb_build_object('identifier', CASE WHEN tool_audit.fhir_string(r.tool_call_id) IS NOT NULL
                    THEN jsonb_build_object('system', 'urn:tool_audit:tool_call_id', 'value', tool_audit.fhir_string(r.tool_call_id))
                    ELSE jsonb_build_object('system', 'urn:tool_audit:event_id', 'value', r.event_id::text) END),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}'::jsonb,
                'name', tool_audit.fhir_string(r.tool_name),
                'detail', nullif(jsonb_path_query_array(jsonb_build_array(
                    jsonb_build_object('type', 'arguments', 'valueString', tool_audit.fhir_string(r.arguments::text)),
                    jsonb_build_object('type', 'result_summary', 'valueString', tool_audit.fhir_string(r.result_summary::text)),
                    jsonb_build_object('type', 'conversation_id', 'valueString', tool_audit.fhir_string(r.conversation_id)),
                    jsonb_build_object('type', 'turn_number', 'valueString', r.turn_number::text),
                    jsonb_build_object('type', 'call_trigger', 'valueString', r.call_trigger::text),
                    jsonb_build_object('type', 'duration_ms', 'valueString', r.duration_ms::text),
                    jsonb_build_object('type', 'row_hash', 'valueString', encode(r.row_hash, 'hex')),
                    jsonb_build_object('type', 'chain', 'valueString', r.chain_id || '/' || r.chain_lane || '/' || r.chain_seq)),
                    '$[*] ? (@.valueString.type() != "null")'), '[]'))),
            '$[*] ? (@.type() != "null")')));
END
$$;
COMMENT ON FUNCTION tool_audit.fhir_audit_event(tool_audit.tool_calls) IS
    'One tool call as a FHIR R4 AuditEvent resource';

CREATE FUNCTION tool_audit.export_fhir(start_time timestamptz, end_time timestamptz,
                                       subject_id text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    IF export_fhir.subject_id IS NULL THEN
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    ELSE
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.subject_id = export_fhir.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_fhir',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time),
                                                      'subject_id', export_fhir.subject_id), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_fhir(timestamptz, timestamptz, text) IS
    'The tool calls in a period, of one subject if given, as FHIR R4 AuditEvent resources';

-- fhir_admin_event(row): one FHIR R4 AuditEvent resource for an admin
-- event: the actor as the requesting agent (a person or, for a service, an
-- application), the event type as subtype, the action its last word implies
-- (prompt.update: U), the reason as purpose, the data subject of its payload
-- (payload subject_id, typed by payload subject_type) and the event itself
-- with its payload and hashes as entities
CREATE FUNCTION tool_audit.fhir_admin_event(r tool_audit.admin_events) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'resourceType', 'AuditEvent',
        'id', r.event_id::text,
        'type', '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100", "display": "Application Activity"}'::jsonb,
        'subtype', jsonb_build_array(jsonb_build_object(
            'system', 'urn:tool_audit:event_type',
            'code', r.event_type,
            'display', r.event_type)),
        'action', tool_audit.fhir_action(substring(r.event_type FROM '[^.]+$')),
        'recorded', tool_audit.iso8601_utc(r.occurred_at),
        'outcome', '0',
        'purposeOfEvent', tool_audit.fhir_purpose(r.reason, false),
        'agent', jsonb_build_array(jsonb_build_object(
                'type', CASE WHEN r.actor_type = 'service'
                    THEN '{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]}'::jsonb
                    ELSE '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb END,
                'who', CASE WHEN tool_audit.fhir_string(r.actor) IS NOT NULL
                            THEN jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.actor)))
                            ELSE '{"display": "unknown"}'::jsonb END,
                'requestor', tool_audit.fhir_string(r.impersonated_by) IS NULL,
                'network', CASE WHEN r.source_ip IS NOT NULL
                                THEN jsonb_build_object('address', host(r.source_ip), 'type', '2') END))
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
            (1, tool_audit.fhir_subject_entity(CASE WHEN jsonb_typeof(r.payload) = 'object' THEN r.payload->>'subject_id' END,
                                               CASE WHEN jsonb_typeof(r.payload) = 'object' THEN r.payload->>'subject_type' END)),
            (2, jsonb_build_object(
                'what', jsonb_build_object('identifier', jsonb_build_object(
                    'system', 'urn:tool_audit:event_id', 'value', r.event_id::text)),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}'::jsonb,
                'name', r.event_type,
                'detail', (SELECT jsonb_agg(jsonb_build_object('type', d.k, 'valueString', d.v) ORDER BY d.n)
                             FROM (VALUES (1, 'payload', tool_audit.fhir_string(r.payload::text)),
                                          (2, 'metadata', tool_audit.fhir_string(nullif(r.metadata, '{}')::text)),
                                          (3, 'row_hash', encode(r.row_hash, 'hex')),
                                          (4, 'chain', r.chain_id || '/' || r.chain_lane || '/' || r.chain_seq))
                                  AS d(n, k, v)
                            WHERE d.v IS NOT NULL)))
            ) AS x(n, e) WHERE e IS NOT NULL)))
$$;
COMMENT ON FUNCTION tool_audit.fhir_admin_event(tool_audit.admin_events) IS
    'One admin event as a FHIR R4 AuditEvent resource';

-- export_fhir_admin_events(start, end, subject_id): the admin events in
-- [start, end) as AuditEvents; given a subject, those whose payload names it
-- (payload subject_id, as legal holds read it)
CREATE FUNCTION tool_audit.export_fhir_admin_events(start_time timestamptz, end_time timestamptz,
                                                    subject_id text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    RETURN QUERY
    SELECT tool_audit.fhir_admin_event(e) FROM tool_audit.admin_events e
     WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
       AND (export_fhir_admin_events.subject_id IS NULL
            OR e.payload ->> 'subject_id' = export_fhir_admin_events.subject_id)
     ORDER BY e.occurred_at, e.id;
    -- recorded as every export is (record_read(): an audit.read event)
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_fhir_admin_events',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time),
                                                      'subject_id', export_fhir_admin_events.subject_id), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_fhir_admin_events(timestamptz, timestamptz, text) IS
    'The admin events in a period, of one subject (payload subject_id) if given, as FHIR R4 AuditEvent resources';

-- OpenTelemetry GenAI semantic conventions: one span per tool call
CREATE VIEW tool_audit.otel_tool_spans WITH (security_invoker = true) AS
SELECT 'execute_tool ' || t.tool_name AS "span.name",
       -- from the client's started_at when it sent one (1.5), else back from recorded_at
       coalesce(t.started_at, t.recorded_at - make_interval(secs => coalesce(t.duration_ms, 0) / 1000)) AS start_time,
       CASE WHEN t.started_at IS NULL THEN t.recorded_at
            ELSE t.started_at + make_interval(secs => coalesce(t.duration_ms, 0) / 1000) END AS end_time,
       CASE WHEN t.success THEN 'OK' WHEN NOT t.success THEN 'ERROR' ELSE 'UNSET' END AS "status.code",
       t.error AS "status.message",
       'execute_tool'::text AS "gen_ai.operation.name",
       t.tool_name AS "gen_ai.tool.name",
       t.tool_call_id AS "gen_ai.tool.call.id",
       'function'::text AS "gen_ai.tool.type",
       t.conversation_id AS "gen_ai.conversation.id",
       t.model AS "gen_ai.request.model",
       t.user_id AS "user.id",
       CASE WHEN t.user_role IS NOT NULL THEN ARRAY[t.user_role] END AS "user.roles",
       CASE WHEN NOT t.success THEN '_OTHER'::text END AS "error.type",
       t.client_ip AS "client.address",
       t.user_agent AS "user_agent.original",
       t.tenant_id AS "tool_audit.tenant_id",
       t.turn_number AS "tool_audit.turn_number",
       t.call_trigger::text AS "tool_audit.call_trigger",
       t.purpose AS "tool_audit.purpose",
       t.subject_id AS "tool_audit.subject_id",
       t.arguments AS "tool_audit.arguments",
       t.result_summary AS "tool_audit.result_summary",
       t.duration_ms AS "tool_audit.duration_ms",
       t.id AS "tool_audit.call_id",
       t.event_id AS "tool_audit.event_id",
       encode(t.row_hash, 'hex') AS "tool_audit.row_hash"
  FROM tool_audit.tool_calls t;
COMMENT ON VIEW tool_audit.otel_tool_spans IS 'Tool calls as OpenTelemetry GenAI execute_tool spans';

-- (1.5) export_cursor_lanes(cursor): export_since()'s cursor check, in C
-- (a walk of the jsonb: the SQL check took about 0.4 s of a 0.8 s page at
-- 100,000 lanes); the number of lanes, or 22023 if it is not a cursor
CREATE FUNCTION tool_audit.export_cursor_lanes(cursor jsonb) RETURNS bigint
    AS 'MODULE_PATHNAME', 'export_cursor_lanes' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.export_cursor_lanes(jsonb) IS
    'The number of lanes in an export_since() cursor, after checking its shape (22023 if it is not one)';

-- (1.5) export_since(): the next rows of the three audit tables for a loader
-- that resumes where it stopped (issue 16; doc/export-since.md says why the
-- cursor is a position per lane, not an id: ids commit out of order, a
-- lane's positions commit in order).  The cursor is {table: {"chain_id:lane":
-- last chain_seq handed out}, "first": the table the next page starts with,
-- "after": {table: the lane the last page stopped in}}; '{}' (or NULL)
-- starts from the first row.
-- The page's last row comes with the cursor after the page (the other rows
-- with NULL: a cursor on every row made a page cost rows x lanes, see
-- doc/export-since.md); each line carries its own position, so the cursor
-- after any line is the page's cursor with the positions of the lines up
-- to it: a loader resumes with no row missed or repeated.
CREATE FUNCTION tool_audit.export_since(cursor jsonb, max_rows integer)
RETURNS TABLE (line jsonb, next_cursor jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
-- the plan a page needs (a probe of the chain position index a lane, nested
-- in the skip scan), whatever the caller set: with index scans off a page
-- took 30 to 50 times as long, with nested loops off 0.5 s on a small table.
-- A generic plan keeps the cursor a parameter: a custom plan made it a
-- constant, copied a dozen times in planning (2.8 MB at 100,000 lanes,
-- about 0.1 s a page)
SET enable_indexscan = on
SET enable_indexonlyscan = on
SET enable_nestloop = on
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    cur jsonb := coalesce(export_since.cursor, '{}');
    n bigint := 0;
    lanes bigint;
    tab text;
    doc text;
    r record;
    own text[];
    -- the page's last line so far, held back until the next (or the end):
    -- only the last one gets the cursor
    held jsonb;
    -- the last position handed out in each lane of the table being read
    moved_key text[];
    moved_seq bigint[];
    moved_n integer;
    -- the cursor's positions in the table being read
    tab_pos jsonb;
    -- the tables, taken in turn from the one the cursor names ("first"), so
    -- that no table waits behind another that keeps growing (the loader's
    -- own read records in admin_events did, at one row a page)
    tabs text[] := ARRAY['admin_events', 'tool_calls', 'data_changes'];
    first integer;
    next_first text;
    -- the lanes of a table are taken in turn too: a page that fills up in a
    -- table leaves its last lane in the cursor's "after", and the next page
    -- in that table starts after it and wraps round to it.  So no lane waits
    -- behind another that keeps growing, and a loader's pages do not each
    -- walk again the lanes exported before (which made a whole export cost
    -- pages x lanes index probes)
    after jsonb;
    after_key text;
    after_id bigint;
    after_lane integer;
    lo_id bigint;
    lo_lane integer;
    hi_id bigint;
    hi_lane integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 100000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 100000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a cursor is what this function returned: an object of the three
    -- tables, each an object of "chain_id:lane" keys and non-negative
    -- integer positions, "first", one of the tables' names, and "after", an
    -- object of tables' names and "chain_id:lane" strings; 22023 otherwise,
    -- with a message that never repeats what was given (src/export_cursor.c,
    -- one pass that also counts the lanes)
    lanes := tool_audit.export_cursor_lanes(cur);
    first := coalesce(array_position(tabs, cur ->> 'first'), 1);
    -- the rows this transaction wrote (an earlier page's read record, the
    -- caller's own writes) are visible to it but not committed, and may never
    -- be: handed out, with the cursor past them, they would leave a row the
    -- loader never saw where they were, and the position to the next writer
    -- after a rollback, whose row the cursor would skip.  They are the last
    -- rows of the lanes the transaction holds (chain.c: its lock, field4
    -- TA_LOCKTAG_LANE_XACT = 21592, on each lane it wrote, to its end): such
    -- a lane is left for a page in another transaction.  No transaction id
    -- yet: nothing written.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        own := ARRAY(SELECT l.classid::bigint || ':' || l.objid::bigint FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.objsubid = 21592
                        AND l.pid = pg_backend_pid() AND l.granted);
    END IF;
    after := coalesce(cur -> 'after', '{}');
    cur := jsonb_build_object('admin_events', coalesce(cur->'admin_events', '{}'),
                              'tool_calls', coalesce(cur->'tool_calls', '{}'),
                              'data_changes', coalesce(cur->'data_changes', '{}'),
                              'first', tabs[first]);
    -- table by table from the first, lane by lane (chain_id, chain_lane) in
    -- index order from the one after the table's "after" lane round to it,
    -- found by a skip scan of the chain position index; in each lane the
    -- positions after the cursor's, so that a page costs index probes per
    -- lane visited and per row handed out, not a scan of what was exported
    -- before.  A page that fills up in a table makes the next page start
    -- with the table after it.
    FOR k IN 0 .. 2 LOOP
        tab := tabs[(first - 1 + k) % 3 + 1];
        after_key := after ->> tab;
        doc := CASE tab
            WHEN 'tool_calls' THEN $q$jsonb_build_object(
            'table', 'tool_calls',
            'id', t.id, 'event_id', t.event_id, 'recorded_at', tool_audit.iso8601_utc(t.recorded_at),
            'tenant_id', t.tenant_id, 'conversation_id', t.conversation_id,
            'turn_number', t.turn_number, 'user_id', t.user_id, 'user_role', t.user_role,
            'model', t.model, 'tool_name', t.tool_name, 'tool_call_id', t.tool_call_id,
            'call_trigger', t.call_trigger, 'purpose', t.purpose, 'subject_id', t.subject_id,
            'arguments', t.arguments, 'result_summary', t.result_summary, 'success', t.success,
            'error', t.error, 'duration_ms', t.duration_ms, 'client_ip', abbrev(t.client_ip),
            'user_agent', t.user_agent, 'session_metadata', t.session_metadata,
            'recorded_by', t.recorded_by,
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex'))
            || jsonb_strip_nulls(jsonb_build_object('call_phase', t.call_phase,
                   'call_event_id', t.call_event_id, 'caller_txid', t.caller_txid))
            || CASE WHEN t.started_at IS NOT NULL
                    THEN jsonb_build_object('started_at', tool_audit.iso8601_utc(t.started_at))
                    ELSE '{}' END$q$
            WHEN 'admin_events' THEN $q$jsonb_build_object(
            'table', 'admin_events',
            'id', t.id, 'event_id', t.event_id, 'occurred_at', tool_audit.iso8601_utc(t.occurred_at),
            'event_type', t.event_type, 'actor', t.actor, 'actor_type', t.actor_type,
            'tenant_id', t.tenant_id, 'payload', t.payload, 'reason', t.reason,
            'source_ip', abbrev(t.source_ip), 'metadata', t.metadata, 'recorded_by', t.recorded_by,
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex'))$q$
            ELSE $q$jsonb_build_object(
            'table', 'data_changes',
            'id', t.id, 'event_id', t.event_id, 'recorded_at', tool_audit.iso8601_utc(t.recorded_at),
            'tenant_id', t.tenant_id, 'table_name', t.table_name, 'operation', t.operation,
            'row_key', t.row_key, 'old_values', t.old_values, 'new_values', t.new_values,
            'call_event_id', t.call_event_id, 'txid', t.txid::text,
            'application_name', t.application_name, 'recorded_by', t.recorded_by,
            'retention_policy', t.retention_policy, 'expires_at', tool_audit.iso8601_utc(t.expires_at),
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex'))$q$ END;
        moved_key := '{}';
        moved_seq := '{}';
        moved_n := 0;
        tab_pos := cur -> tab;
        -- a skip scan of the chain position index finds the lanes with rows
        -- after the cursor's position, and in each a range scan reads those
        -- rows (in chain_seq order), lane after lane until the page is full;
        -- the lanes this transaction holds are left out (chain.c's
        -- lane_tag(): the chain id folded to 32 bits, the lane).  Each step
        -- of the skip scan is one descent of the index: from an entry at or
        -- before its lane's position (pos), to the first entry after that
        -- position, which is in the lane (a lane with new rows) or in the
        -- next lane; from an entry after its lane's position, past the lane
        -- (no chain reaches position 2^63 - 1).  So a lane with nothing new
        -- costs one descent, not two (bench/export_since.sh).
        -- One statement for the lanes after the "after" lane, one for those
        -- up to it (wrapping round), or one for all lanes without an "after"
        -- lane: bounds on (chain_id, chain_lane), the low one exclusive, the
        -- high one inclusive (lanes are never negative)
        IF after_key IS NOT NULL THEN
            after_id := split_part(after_key, ':', 1)::bigint;
            after_lane := split_part(after_key, ':', 2)::integer;
        END IF;
        FOR phase IN 1 .. CASE WHEN after_key IS NULL THEN 1 ELSE 2 END LOOP
            IF phase = 1 AND after_key IS NOT NULL THEN
                lo_id := after_id; lo_lane := after_lane;
            ELSE
                lo_id := -9223372036854775808; lo_lane := -1;
            END IF;
            IF phase = 2 THEN
                hi_id := after_id; hi_lane := after_lane;
            ELSE
                hi_id := 9223372036854775807; hi_lane := 2147483647;
            END IF;
            FOR r IN EXECUTE format($q$
                WITH RECURSIVE s AS (
                    (SELECT t.chain_id, t.chain_lane, t.chain_seq,
                            coalesce(($1 ->> (t.chain_id::text || ':' || t.chain_lane))::bigint, 0) AS pos
                       FROM tool_audit.%1$I t
                      WHERE (t.chain_id, t.chain_lane) > ($4, $5) AND t.chain_seq IS NOT NULL
                        AND (t.chain_id, t.chain_lane) <= ($6, $7)
                      ORDER BY t.chain_id, t.chain_lane, t.chain_seq LIMIT 1)
                    UNION ALL
                    SELECT x.chain_id, x.chain_lane, x.chain_seq,
                           CASE WHEN x.chain_id = s.chain_id AND x.chain_lane = s.chain_lane THEN s.pos
                                ELSE coalesce(($1 ->> (x.chain_id::text || ':' || x.chain_lane))::bigint, 0) END
                      FROM s, LATERAL (
                        SELECT t.chain_id, t.chain_lane, t.chain_seq FROM tool_audit.%1$I t
                         WHERE (t.chain_id, t.chain_lane, t.chain_seq)
                               > (s.chain_id, s.chain_lane,
                                  CASE WHEN s.chain_seq > s.pos THEN 9223372036854775807 ELSE s.pos END)
                         ORDER BY t.chain_id, t.chain_lane, t.chain_seq LIMIT 1) x
                     WHERE (x.chain_id, x.chain_lane) <= ($6, $7))
                SELECT s.chain_id::text || ':' || s.chain_lane AS lane_key, x.seq, x.doc
                  FROM s CROSS JOIN LATERAL (
                       SELECT t.chain_seq AS seq, %2$s AS doc FROM tool_audit.%1$I t
                        WHERE t.chain_id = s.chain_id AND t.chain_lane = s.chain_lane
                          AND t.chain_seq > s.pos
                        ORDER BY t.chain_seq LIMIT $2) x
                 WHERE s.chain_seq > s.pos
                   AND NOT (((s.chain_id & 4294967295) # ((s.chain_id >> 32) & 4294967295))
                            || ':' || s.chain_lane) = ANY ($3)
                 LIMIT $2$q$, tab, doc)
                USING tab_pos, max_rows - n, coalesce(own, '{}'), lo_id, lo_lane, hi_id, hi_lane
            LOOP
                IF held IS NOT NULL THEN
                    line := held;
                    next_cursor := NULL;
                    RETURN NEXT;
                END IF;
                held := r.doc;
                n := n + 1;
                -- a lane's rows come together, in order: its last one is its place
                IF moved_n = 0 OR moved_key[moved_n] <> r.lane_key THEN
                    moved_n := moved_n + 1;
                    moved_key[moved_n] := r.lane_key;
                END IF;
                moved_seq[moved_n] := r.seq;
            END LOOP;
            EXIT WHEN n >= max_rows;
        END LOOP;
        -- the cursor's entries of this table and the page's few, merged once
        -- (not a jsonb_set() a row, nor jsonb_object_agg() of the whole
        -- cursor, which took 1.4 s at 100,000 lanes: bench/export_since.sh)
        IF moved_n > 0 THEN
            cur := jsonb_set(cur, ARRAY[tab],
                             tab_pos || (SELECT jsonb_object_agg(u.k, u.s)
                                           FROM unnest(moved_key, moved_seq) u(k, s)));
        END IF;
        -- the lane this table's next page starts after: where this one
        -- stopped if it filled up here, else none (every lane was visited)
        IF n >= max_rows THEN
            after := jsonb_set(after, ARRAY[tab], to_jsonb(moved_key[moved_n]));
            next_first := tabs[(first + k) % 3 + 1];
            EXIT;
        END IF;
        after := after - tab;
    END LOOP;
    -- the cursor after the page, on its last row
    IF held IS NOT NULL THEN
        IF next_first <> tabs[first] THEN
            cur := jsonb_set(cur, '{first}', to_jsonb(next_first));
        END IF;
        IF after <> '{}' THEN
            cur := cur || jsonb_build_object('after', after);
        END IF;
        line := held;
        next_cursor := cur;
        RETURN NEXT;
    END IF;
    PERFORM tool_audit.record_read('export_since',
                                   jsonb_build_object('max_rows', max_rows, 'lanes_in_cursor', lanes), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_since(jsonb, integer) IS
    'The next rows (at most max_rows) of the three audit tables after a cursor, in chain order, as export_jsonl() writes them; the last row with the cursor after the page, the others with NULL: a loader resumes with no row missed or repeated';
