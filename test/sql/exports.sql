-- Exports for auditors and warehouses: JSON lines with each row's hash and
-- place in its chain, CSV through COPY of a view, FHIR R4 AuditEvent, and
-- OpenTelemetry GenAI spans.  In a UTF-8 database of its own, on rows
-- restored with fixed times and ids, so every byte is deterministic.
-- (test/t/009_reports.pl validates export_fhir() against the R4 schema.)
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_exports;
CREATE DATABASE regress_tool_audit_exports TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_exports
SET client_encoding = 'UTF8';
-- the test roles and regress_try(), before CREATE EXTENSION: the key stays the install key
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;

SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls
    (id, event_id, recorded_at, recorded_by, tenant_id, conversation_id, turn_number, user_id,
     user_role, model, tool_name, tool_call_id, call_trigger, purpose, subject_id, arguments,
     result_summary, success, error, duration_ms, client_ip, user_agent, session_metadata)
VALUES
 (1, '00000000-0000-4000-8000-000000000001', '2025-03-01 10:00:00.123456+00', 'app', 'exp_acme', 'conv_1', 1, 'dr_lee',
  'physician', 'gpt-4.1', 'get_patient_record', 'call_1', 'user_request', 'treatment', 'pat_1',
  '{"patient_id": "pat_1", "fields": ["allergies", "meds"]}', '{"success": true, "patient_id": "pat_1"}', true, NULL,
  33.333333333333336, '2001:db8::7', 'agent/1.0', '{"channel": "chat"}'),
 (2, '00000000-0000-4000-8000-000000000002', '2025-03-01 10:05:00+00', 'app', 'exp_acme', 'conv_1', 2, 'dr_lee',
  'physician', 'gpt-4.1', 'update_patient_record', 'call_2', 'follow_up', 'treatment', 'pat_1',
  '{"patient_id": "pat_1", "note": "line one\nline \"two\""}', '{"success": false, "error": "record locked"}', false,
  E'record "locked",\nretry later', 0.1, NULL, NULL, '{}'),
 (3, '00000000-0000-4000-8000-000000000003', '2025-03-01 11:00:00+00', 'app', 'exp_acme', NULL, NULL, NULL,
  '', NULL, '  odd   tool ', NULL, 'system', NULL, NULL, '{}', '{}', true, NULL, NULL, NULL, NULL, '{}'),
 (4, '00000000-0000-4000-8000-000000000004', '2025-03-01 12:00:00+00', 'app', 'exp_globex', 'conv_g', 1, 'usr_g',
  'analyst', 'gpt-4.1', 'delete_note', NULL, 'retry', 'research', 'pat_1', '{}', '{"success": true}', true, NULL,
  7, '192.0.2.1', NULL, '{"break_glass": true}'),
 (5, '00000000-0000-4000-8000-000000000005', '2025-03-02 00:00:00+00', 'app', 'exp_acme', 'conv_1', 3, 'dr_lee',
  'physician', 'gpt-4.1', 'list_visits', NULL, 'user_request', 'treatment', 'pat_1', '{}', '{"success": true}', true,
  NULL, 5, '10.0.0.0/8', NULL, '{}');
INSERT INTO tool_audit.admin_events (id, event_id, occurred_at, recorded_by, event_type, actor, actor_type, tenant_id,
                                     payload, reason, source_ip, metadata)
VALUES (101, '00000000-0000-4000-8000-000000000011', '2025-03-01 10:00:00.123456+00', 'app', 'prompt.update', 'admin_1',
        'user', 'exp_acme', '{"before": "a1", "after": "b2"}', 'tone', '198.51.100.4', '{}'),
       (102, '00000000-0000-4000-8000-000000000012', '2025-03-01 13:00:00+00', 'app', 'killswitch.enable', 'ops_bot',
        'service', 'exp_globex', '{"scope": "tenant"}', NULL, NULL, '{}');
RESET tool_audit.restoring;
-- as a dump's sequence data does (verify() reports a sequence whose next id is taken)
SELECT setval('tool_audit.tool_calls_id_seq', (SELECT max(id) FROM tool_audit.tool_calls)) > 0 AS sequence_set;
-- (after the fixed rows: its admin event, recorded now, comes last in its chain)
SELECT tool_audit.bind_tenant('regress_reader_acme', 'exp_acme');
SELECT count(*) AS problems FROM tool_audit.verify();

-- ---- export_jsonl: whatever the session's settings, the same bytes ----
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'German';
SET extra_float_digits = 0;
SELECT doc FROM tool_audit.export_jsonl('2025-03-01 00:00+00', '2025-03-02 00:00+00') doc;
-- the end is exclusive (windows can follow each other), the start inclusive
SELECT count(*) FROM tool_audit.export_jsonl('2025-03-01 10:00:00.123456+00', '2025-03-01 10:05:00+00');
SELECT count(*) FROM tool_audit.export_jsonl('2025-03-02 00:00+00', '2025-03-02 00:00+00');
SELECT count(*) FROM tool_audit.export_jsonl('2030-01-01 00:00+00', 'infinity');
-- numbers and times survive exactly
SELECT bool_and((d->>'duration_ms')::float8 IS NOT DISTINCT FROM t.duration_ms) AS durations_exact,
       bool_and((d->>'recorded_at')::timestamptz = t.recorded_at) AS times_exact
  FROM tool_audit.export_jsonl('-infinity', 'infinity') d
  JOIN tool_audit.tool_calls t ON d->>'table' = 'tool_calls' AND (d->>'id')::bigint = t.id;
-- chain_id is a JSON string (a number above 2^53 loses precision in
-- JavaScript), holding the column's exact value, in both tables
SELECT d->>'table' AS tab, bool_and(jsonb_typeof(d->'chain_id') = 'string') AS chain_id_strings,
       bool_and((d->>'chain_id')::bigint = coalesce(t.chain_id, e.chain_id)) AS chain_id_exact
  FROM tool_audit.export_jsonl('-infinity', 'infinity') d
  LEFT JOIN tool_audit.tool_calls t ON d->>'table' = 'tool_calls' AND (d->>'id')::bigint = t.id
  LEFT JOIN tool_audit.admin_events e ON d->>'table' = 'admin_events' AND (d->>'id')::bigint = e.id
 GROUP BY 1 ORDER BY 1;
RESET TimeZone;
RESET DateStyle;
RESET extra_float_digits;
-- the export can be checked on its own: every link recomputed from the
-- exported fields with plain SHA-256 (doc/canonical-encoding.md section 4)
WITH d AS (
    SELECT doc, doc->>'table' AS tab, (doc->>'chain_id')::bigint AS cid, (doc->>'chain_lane')::int AS lane,
           (doc->>'chain_seq')::bigint AS seq
      FROM tool_audit.export_jsonl('-infinity', 'infinity') doc
), linked AS (
    SELECT tab, seq, decode(doc->>'chain_hash', 'hex') AS stored,
           sha256('tool_audit link 1'::bytea || '\x00'::bytea || int8send(cid) || int4send(lane) || int8send(seq)
                  || coalesce(decode(lag(doc->>'chain_hash') OVER w, 'hex'), decode(repeat('00', 32), 'hex'))
                  || decode(doc->>'row_hash', 'hex')) AS recomputed,
           seq - lag(seq, 1, 0::bigint) OVER w AS step
      FROM d WINDOW w AS (PARTITION BY tab, cid, lane ORDER BY seq)
)
SELECT tab, count(*) AS rows, bool_and(stored = recomputed) AS links_ok, bool_and(step = 1) AS no_gap
  FROM linked GROUP BY tab ORDER BY tab;
-- bad arguments
SELECT regress_try($$SELECT tool_audit.export_jsonl('2025-03-02', '2025-03-01')$$);
SELECT regress_try($$SELECT tool_audit.export_jsonl(NULL, '2025-03-01')$$);
SELECT regress_try($$SELECT tool_audit.export_jsonl('2025-03-01', NULL)$$);

-- ---- CSV through COPY of the documented views ----
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
COPY (SELECT * FROM tool_audit.tool_calls_csv WHERE recorded_at >= '2025-03-01' AND recorded_at < '2025-03-02' ORDER BY id)
  TO STDOUT WITH (FORMAT csv, HEADER);
COPY (SELECT * FROM tool_audit.admin_events_csv WHERE id > 100 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);
RESET TimeZone;
RESET DateStyle;
-- the time column follows the session's settings (here pg_regress's)
COPY (SELECT id, recorded_at, client_ip FROM tool_audit.tool_calls_csv WHERE id IN (1, 5) ORDER BY id) TO STDOUT WITH (FORMAT csv);

-- ---- FHIR R4 AuditEvent ----
SELECT jsonb_pretty(r) FROM tool_audit.export_fhir('2025-03-01 00:00+00', '2025-03-02 00:00+00') r LIMIT 1;
SELECT r->>'id' AS id, r->>'action' AS action, r->>'outcome' AS outcome, r->>'outcomeDesc' AS outcome_desc,
       r->'type'->>'code' AS type, r->'subtype'->0->>'code' AS subtype, r->'source'->>'site' AS site,
       r->'agent'->0->'who' AS requestor, r->'agent'->0->'role' AS role, r->'agent'->0->'network' AS network
  FROM tool_audit.export_fhir('-infinity', 'infinity') r;
-- fhir_audit_event() maps one row: what export_fhir() returns for it
SELECT bool_and(tool_audit.fhir_audit_event(t) = r) AS same
  FROM tool_audit.export_fhir('-infinity', 'infinity') r
  JOIN tool_audit.tool_calls t ON t.event_id::text = r->>'id';
SELECT count(*) FROM tool_audit.export_fhir('-infinity', 'infinity', 'pat_1');
SELECT count(*) FROM tool_audit.export_fhir('-infinity', 'infinity', 'no_such_subject');
SELECT count(*) FROM tool_audit.export_fhir('2025-03-01 11:00:00+00', '2025-03-01 11:00:00+00');
SELECT regress_try($$SELECT tool_audit.export_fhir('2025-03-02', '2025-03-01')$$);
SELECT regress_try($$SELECT tool_audit.export_fhir(NULL, NULL, 'pat_1')$$);
SELECT regress_try($$SELECT tool_audit.export_fhir('2025-03-01', NULL)$$);
SELECT regress_try($$SELECT tool_audit.export_fhir('2025-03-02', '2025-03-01', 'pat_1')$$);
-- strings FHIR's schema would refuse (no-break spaces, vertical tabs, an
-- empty role) are mended, and a code has no stray whitespace
SELECT tool_audit.fhir_string(E'a\u00a0b\u2028c\x0bd') AS string, tool_audit.fhir_string('') IS NULL AS empty_is_null,
       tool_audit.fhir_code(E'\u3000 odd \t  tool\n') AS code;
SELECT tool_audit.fhir_action(n) AS action, n
  FROM unnest(ARRAY['get_order', 'searchPatients', 'create_refund', 'update_order_status', 'delete_note',
                    'send_email', '', 'Remove.item', 'GET_ORDER', 'HTTPGetThing', 'add-note']) n;

-- ---- OpenTelemetry GenAI spans ----
\x on
SELECT * FROM tool_audit.otel_tool_spans WHERE "tool_audit.call_id" IN (1, 2) ORDER BY "tool_audit.call_id";
\x off
SELECT "gen_ai.tool.name", "status.code", "error.type", end_time - start_time AS duration
  FROM tool_audit.otel_tool_spans ORDER BY "tool_audit.call_id";

-- ---- a reader bound to exp_acme exports exp_acme only ----
SET ROLE regress_reader_acme;
SELECT d->>'table' AS tab, d->>'id' AS id, d->>'tenant_id' AS tenant FROM tool_audit.export_jsonl('-infinity', 'infinity') d
 WHERE d->>'table' = 'tool_calls' OR (d->>'id')::bigint > 100;
SELECT count(*) FILTER (WHERE d->>'tenant_id' IS DISTINCT FROM 'exp_acme') AS other_tenants, count(*) > 0 AS some
  FROM tool_audit.export_jsonl('-infinity', 'infinity') d;
SELECT r->>'id' AS id, r->'source'->>'site' AS site FROM tool_audit.export_fhir('-infinity', 'infinity', 'pat_1') r;
SELECT id, tenant_id FROM tool_audit.tool_calls_csv ORDER BY id;
SELECT id, tenant_id FROM tool_audit.admin_events_csv WHERE id > 100 ORDER BY id;
SELECT "tool_audit.call_id", "tool_audit.tenant_id" FROM tool_audit.otel_tool_spans ORDER BY 1;
RESET ROLE;

-- ---- privileges: the verifier role exports (it reads every tenant) ----
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_exp_verifier;
RESET client_min_messages;
CREATE ROLE regress_exp_verifier IN ROLE tool_audit_verifier;
SET ROLE regress_exp_verifier;
SELECT count(*) FROM tool_audit.export_jsonl('-infinity', 'infinity');
SELECT count(*) FROM tool_audit.export_fhir('-infinity', 'infinity');
SELECT count(*) FROM tool_audit.tool_calls_csv;
SELECT count(*) FROM tool_audit.otel_tool_spans;
SELECT regress_try($$SELECT tool_audit.access_report('pat_1', '-infinity', 'infinity')$$);
RESET ROLE;
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.export_jsonl('-infinity', 'infinity')$$);
SELECT regress_try($$SELECT * FROM tool_audit.tool_calls_csv$$);
SELECT regress_try($$SELECT tool_audit.export_fhir('-infinity', 'infinity')$$);
RESET ROLE;
DROP ROLE regress_exp_verifier;

-- ---- FHIR (1.5): the subject typed by its kind, break-the-glass, the identifier ----
-- rows built in memory (nothing inserted: the counts above stay); the kind of
-- subject is the context key subject_type, kept in session_metadata
SELECT k.label, r->'type'->>'code' AS type, r->'entity'->0->'type'->>'display' AS entity_type,
       r->'entity'->0->'role' AS role, r->'entity'->0->'detail' AS detail,
       (SELECT count(*) FROM jsonb_array_elements(r->'entity')) AS entities
  FROM (VALUES (1, 'patient', '{"subject_type": "patient"}'),
               (2, 'customer', '{"subject_type": " Customer "}'),
               (3, 'employee', '{"subject_type": "employee"}'),
               (4, 'organization', '{"subject_type": "organization"}'),
               (5, 'an order', '{"subject_type": "order"}'),
               (6, 'no kind', '{}'),
               (7, 'no subject', '{"subject_type": "patient"}')) AS k(n, label, meta),
       LATERAL (SELECT tool_audit.fhir_audit_event(jsonb_populate_record(NULL::tool_audit.tool_calls, jsonb_build_object(
           'event_id', '00000000-0000-4000-8000-0000000000a' || k.n, 'recorded_at', '2025-03-03 09:00:00+00',
           'tool_name', 'get_account', 'subject_id', CASE WHEN k.n < 7 THEN 'sub_1' END,
           'success', true, 'session_metadata', k.meta::jsonb))) AS r) x
 ORDER BY k.n;
-- break-the-glass: the column, the context's flag, an emergency purpose; not
-- a plain purpose, nor break_glass false
SELECT k.label, r->'purposeOfEvent' AS purpose_of_event
  FROM (VALUES (1, 'column', '{"break_glass": true}', NULL),
               (2, 'context', '{"session_metadata": {"break_glass": true}}', 'treatment'),
               (3, 'purpose', '{}', 'emergency'),
               (4, 'plain', '{}', 'billing'),
               (5, 'column false', '{"break_glass": false}', NULL),
               (6, 'none', '{}', NULL)) AS k(n, label, cols, purpose),
       LATERAL (SELECT tool_audit.fhir_audit_event(jsonb_populate_record(NULL::tool_audit.tool_calls,
           k.cols::jsonb || jsonb_build_object('event_id', '00000000-0000-4000-8000-0000000000b' || k.n,
               'recorded_at', '2025-03-03 09:00:00+00', 'tool_name', 'get_chart', 'subject_id', 'pat_9',
               'purpose', k.purpose, 'success', true))) AS r) x
 ORDER BY k.n;
-- the tool call's identifier says what it holds: the model's tool_call_id,
-- else the event id; an impersonated call names both people, the
-- impersonator as the requestor
SELECT r->>'id' AS id, r->'entity'->-1->'what'->'identifier' AS identifier
  FROM tool_audit.export_fhir('2025-03-01 00:00+00', '2025-03-01 12:00:00+00') r;
SELECT jsonb_pretty(tool_audit.fhir_audit_event(jsonb_populate_record(NULL::tool_audit.tool_calls, jsonb_build_object(
           'event_id', '00000000-0000-4000-8000-0000000000c1', 'recorded_at', '2025-03-03 09:00:00+00',
           'tool_name', 'refund_order', 'user_id', 'usr_1', 'user_role', 'customer', 'impersonated_by', 'adm_7',
           'success', true)))->'agent') AS agents;

-- ---- FHIR (1.5): admin events as AuditEvents ----
SELECT jsonb_pretty(r) FROM tool_audit.export_fhir_admin_events('2025-03-01 00:00+00', '2025-03-02 00:00+00') r LIMIT 1;
SELECT r->>'id' AS id, r->'type'->>'code' AS type, r->'subtype'->0->>'code' AS subtype, r->>'action' AS action,
       r->'agent'->0->'type'->'coding'->0->>'code' AS agent_type, r->'agent'->0->'who' AS who,
       r->'purposeOfEvent' AS purpose, r->'source'->>'site' AS site
  FROM tool_audit.export_fhir_admin_events('2025-03-01 00:00+00', '2025-03-02 00:00+00') r;
-- fhir_admin_event() maps one row: what the export returns for it
SELECT bool_and(tool_audit.fhir_admin_event(e) = r) AS same, count(*) > 0 AS some
  FROM tool_audit.export_fhir_admin_events('-infinity', 'infinity') r
  JOIN tool_audit.admin_events e ON e.event_id::text = r->>'id';
-- the subject an admin event is about is its payload's subject_id (typed
-- by the payload's subject_type); an impersonated admin names its impersonator
SELECT jsonb_pretty(tool_audit.fhir_admin_event(jsonb_populate_record(NULL::tool_audit.admin_events, jsonb_build_object(
           'event_id', '00000000-0000-4000-8000-0000000000d1', 'occurred_at', '2025-03-03 09:00:00+00',
           'event_type', 'impersonation.start', 'actor', 'usr_1', 'actor_type', 'user', 'impersonated_by', 'adm_7',
           'payload', '{"subject_id": "cus_42", "subject_type": "customer"}'::jsonb, 'reason', 'ticket 991',
           'metadata', '{}'::jsonb))) - 'entity' - 'source') AS impersonation;
SELECT tool_audit.fhir_admin_event(jsonb_populate_record(NULL::tool_audit.admin_events, jsonb_build_object(
           'event_id', '00000000-0000-4000-8000-0000000000d2', 'occurred_at', '2025-03-03 09:00:00+00',
           'event_type', 'impersonation.start', 'actor', 'usr_1', 'actor_type', 'user',
           'payload', '{"subject_id": "cus_42", "subject_type": "customer"}'::jsonb,
           'metadata', '{}'::jsonb)))->'entity'->0 AS subject;
SELECT count(*) FROM tool_audit.export_fhir_admin_events('-infinity', 'infinity', 'no_such_subject');
SELECT count(*) FROM tool_audit.export_fhir_admin_events('2025-03-01 13:00:00+00', '2025-03-01 13:00:00+00');
SELECT regress_try($$SELECT tool_audit.export_fhir_admin_events('2025-03-02', '2025-03-01')$$);
SELECT regress_try($$SELECT tool_audit.export_fhir_admin_events(NULL, 'infinity')$$);
-- a reader bound to exp_acme exports exp_acme's admin events only; a writer none
SET ROLE regress_reader_acme;
SELECT r->>'id' AS id, r->'source'->>'site' AS site
  FROM tool_audit.export_fhir_admin_events('2025-03-01', '2025-03-02') r;
RESET ROLE;
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.export_fhir_admin_events('-infinity', 'infinity')$$);
SELECT regress_try($$SELECT tool_audit.fhir_subject_entity('x', 'patient')$$);
RESET ROLE;

\c :regress_db
DROP DATABASE regress_tool_audit_exports;
