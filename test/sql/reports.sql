-- Compliance queries and the access report, on a fixed data set (times and
-- ids restored as a dump would bring them), in a UTF-8 database of its own:
-- the seed's AuditQueryEngine, tenants, empty ranges, unknown ids, bad
-- arguments, and integrity_verified really computed.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_reports;
CREATE DATABASE regress_tool_audit_reports TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_reports
SET client_encoding = 'UTF8';
-- the test roles and regress_try(), before CREATE EXTENSION: the key stays the install key
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'rep_acme');

-- the seed's conversation, a medical one, and another tenant's access to
-- the same subject id
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls
    (id, event_id, recorded_at, recorded_by, tenant_id, conversation_id, turn_number, user_id,
     user_role, model, tool_name, tool_call_id, call_trigger, purpose, subject_id, arguments,
     result_summary, success, error, duration_ms, client_ip, session_metadata)
VALUES
 (101, '00000000-0000-4000-8000-000000000101', '2025-03-01 10:00:00+00', 'app', 'rep_acme', 'conv_1', 1, 'usr_1',
  'support_agent', 'gpt-4.1', 'get_customer', 'call_a', 'user_request', NULL, NULL, '{"customer_id": "C-123"}',
  '{"success": true, "customer_id": "C-123"}', true, NULL, 45, '10.0.0.1', '{}'),
 (102, '00000000-0000-4000-8000-000000000102', '2025-03-01 10:01:00+00', 'app', 'rep_acme', 'conv_1', 2, 'usr_1',
  'support_agent', 'gpt-4.1', 'get_order', 'call_b', 'follow_up', NULL, NULL, '{"order_id": "ORD-456"}',
  '{"success": true, "order_id": "ORD-456", "status": "shipped"}', true, NULL, 62, NULL, '{}'),
 -- turn 3 twice: the later call first in id order, ordered by time
 (104, '00000000-0000-4000-8000-000000000104', '2025-03-01 10:02:30+00', 'app', 'rep_acme', 'conv_1', 3, 'usr_1',
  'support_agent', 'gpt-4.1', 'initiate_return', 'call_d', 'follow_up', NULL, NULL, '{"order_id": "ORD-456"}',
  '{"success": true, "return_id": "RET-789"}', true, NULL, 156, NULL, '{}'),
 (103, '00000000-0000-4000-8000-000000000103', '2025-03-01 10:02:00+00', 'app', 'rep_acme', 'conv_1', 3, 'usr_1',
  'support_agent', 'gpt-4.1', 'update_order_status', 'call_c', 'user_request', NULL, NULL,
  '{"order_id": "ORD-456", "status": "cancelled"}', '{"success": false, "error": "Cannot cancel shipped order"}',
  false, 'Cannot cancel shipped order', 38, NULL, '{}'),
 (201, '00000000-0000-4000-8000-000000000201', '2025-03-05 08:00:00+00', 'app', 'rep_acme', 'conv_med', 1, 'dr_lee',
  'physician', 'gpt-4.1', 'get_patient_record', NULL, 'user_request', 'treatment', 'pat_1', '{"patient_id": "pat_1"}',
  '{"success": true, "patient_id": "pat_1"}', true, NULL, 30.5, '2001:db8::7', '{}'),
 (202, '00000000-0000-4000-8000-000000000202', '2025-03-05 08:05:00+00', 'app', 'rep_acme', 'conv_med', 2, 'dr_lee',
  'physician', 'gpt-4.1', 'update_patient_record', NULL, 'user_request', 'treatment', 'pat_1',
  '{"patient_id": "pat_1", "note": "bp 120/80"}', '{"success": true}', true, NULL, 80, NULL, '{}'),
 (204, '00000000-0000-4000-8000-000000000204', '2025-03-06 09:00:00+00', 'app', 'rep_acme', 'conv_bill', 1, 'clerk_1',
  'billing', 'gpt-4.1-mini', 'get_invoice', NULL, 'proactive', 'billing', 'pat_2', '{"patient_id": "pat_2"}',
  '{"success": true}', true, NULL, 20, NULL, '{}'),
 -- the same conversation and user ids in another tenant (and, below, in no tenant)
 (303, '00000000-0000-4000-8000-000000000303', '2025-03-01 10:00:30+00', 'app', 'rep_globex', 'conv_1', 2, 'usr_1',
  'intruder', 'gpt-4.1', 'export_customers', NULL, 'proactive', NULL, NULL, '{}', '{"success": true}', true, NULL, 5,
  NULL, '{}'),
 (301, '00000000-0000-4000-8000-000000000301', '2025-03-07 12:00:00+00', 'app', 'rep_globex', 'conv_g', 1, 'usr_g',
  'analyst', 'gpt-4.1', 'get_patient_record', NULL, 'system', 'research', 'pat_1', '{"patient_id": "pat_1"}',
  '{"success": true}', true, NULL, 33.333333333333336, NULL, '{}'),
 (302, '00000000-0000-4000-8000-000000000302', '2025-03-07 12:01:00+00', 'app', 'rep_globex', 'conv_g', 2, 'usr_g',
  NULL, NULL, 'delete_note', NULL, 'retry', NULL, NULL, '{}', '{"success": false}', false, NULL, NULL, NULL, '{}'),
 (305, '00000000-0000-4000-8000-000000000305', '2025-03-08 00:00:00+00', 'app', NULL, 'conv_1', NULL, 'usr_1',
  'operator', NULL, 'system_probe', NULL, 'system', 'break_glass', 'pat_1', '{}', '{"success": true}', true, NULL, 1,
  NULL, '{}'),
 -- break-glass by the context flag alone
 (206, '00000000-0000-4000-8000-000000000206', '2025-03-10 03:00:00+00', 'app', 'rep_acme', 'conv_night', 1, 'dr_ray',
  'physician', 'gpt-4.1', 'get_patient_record', NULL, 'user_request', 'treatment', 'pat_1', '{"patient_id": "pat_1"}',
  '{"success": true}', true, NULL, 9, NULL, '{"break_glass": true}'),
 -- (in time order along the lane, as rows are recorded)
 (203, '00000000-0000-4000-8000-000000000203', '2025-03-20 23:59:59+00', 'app', 'rep_acme', 'conv_er', 1, 'nurse_kim',
  'nurse', 'claude-sonnet-4', 'get_patient_record', NULL, 'user_request', 'emergency', 'pat_1', '{"patient_id": "pat_1"}',
  '{"success": false, "error": "record locked"}', false, 'record locked', 12, NULL, '{"break_glass": true}');
INSERT INTO tool_audit.admin_events (id, event_id, occurred_at, recorded_by, event_type, actor, tenant_id, payload, reason)
VALUES (401, '00000000-0000-4000-8000-000000000401', '2025-03-01 10:00:00+00', 'app', 'prompt.update', 'admin_1',
        'rep_acme', '{"before": "a1", "after": "b2"}', 'tone');
RESET tool_audit.restoring;
SELECT count(*) AS problems FROM tool_audit.verify();

-- ---- calls_by_conversation: by turn, then time ----
SELECT id, turn_number, tool_name, success FROM tool_audit.calls_by_conversation('conv_1');
SELECT count(*) FROM tool_audit.calls_by_conversation('no_such_conversation');
SELECT regress_try($$SELECT * FROM tool_audit.calls_by_conversation(NULL)$$);
-- (1.5: the reports record their reads, so they are no longer inlined into
-- the caller's query) their own queries use the indexes, with custom and
-- generic plans: the index scans this transaction made
CREATE FUNCTION pg_temp.index_scans(q text, index_name text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    before bigint := pg_stat_get_xact_numscans(('tool_audit.' || index_name)::regclass);
BEGIN
    EXECUTE q;
    RETURN pg_stat_get_xact_numscans(('tool_audit.' || index_name)::regclass) > before;
END $$;
SET enable_seqscan = off;
SELECT pg_temp.index_scans($$SELECT id FROM tool_audit.calls_by_conversation('conv_1') LIMIT 2$$, 'tool_calls_conversation') AS conversation,
       pg_temp.index_scans($$SELECT id FROM tool_audit.calls_by_user('usr_1', '2025-03-01 00:00+00')$$, 'tool_calls_user') AS "user",
       pg_temp.index_scans($$SELECT id FROM tool_audit.failures('2025-03-01 00:00+00')$$, 'tool_calls_failures') AS failures;
SET plan_cache_mode = force_generic_plan;
SELECT pg_temp.index_scans($$SELECT id FROM tool_audit.calls_by_conversation('conv_1')$$, 'tool_calls_conversation') AS conversation_generic,
       pg_temp.index_scans($$SELECT id FROM tool_audit.calls_by_user('usr_1', NULL)$$, 'tool_calls_user') AS user_generic;
RESET plan_cache_mode;
RESET enable_seqscan;

-- ---- calls_by_user ----
SELECT id, tool_name FROM tool_audit.calls_by_user('usr_1');
SELECT id, tool_name FROM tool_audit.calls_by_user('usr_1', '2025-03-01 10:02:00+00');
SELECT id FROM tool_audit.calls_by_user('usr_1', '2025-04-01 00:00+00');
SELECT count(*) FROM tool_audit.calls_by_user('nobody');
SELECT regress_try($$SELECT * FROM tool_audit.calls_by_user(NULL)$$);
SELECT regress_try($$SELECT * FROM tool_audit.calls_by_user(NULL, now())$$);
SELECT count(*) FROM tool_audit.calls_by_user('usr_1', NULL);

-- ---- failures ----
SELECT id, tool_name, error FROM tool_audit.failures();
SELECT count(*) FROM tool_audit.failures(NULL);
SELECT id, tool_name FROM tool_audit.failures('2025-03-06 00:00+00');
SELECT count(*) FROM tool_audit.failures('2030-01-01 00:00+00');

-- ---- tool_stats and tool_usage ----
SELECT tool_audit.tool_stats('get_patient_record');
SELECT tool_audit.tool_stats('delete_note');
SELECT tool_audit.tool_stats('no_such_tool');
SELECT regress_try($$SELECT tool_audit.tool_stats(NULL)$$);
SELECT * FROM tool_audit.tool_usage ORDER BY all_tenants, tenant_id, tool_name;

-- ---- conversation_timeline and attribution ----
SELECT * FROM tool_audit.conversation_timeline('conv_1');
SELECT * FROM tool_audit.conversation_timeline('conv_g');
SELECT count(*) FROM tool_audit.conversation_timeline('no_such_conversation');
SELECT regress_try($$SELECT tool_audit.conversation_timeline(NULL)$$);
SELECT id, tool_audit.attribution(id) FROM tool_audit.tool_calls ORDER BY id;
SELECT tool_audit.attribution(999999) IS NULL AS unknown_call;
SELECT regress_try($$SELECT tool_audit.attribution(NULL)$$);

-- ---- access_report ----
SELECT jsonb_pretty(tool_audit.access_report('pat_1', '2025-03-01 00:00+00', '2025-03-31 00:00+00'));
-- both ends are inclusive, as in the seed
SELECT r->'total_accesses' AS total, r->'unique_users' AS users, r->'integrity_verified' AS verified
  FROM tool_audit.access_report('pat_1', '2025-03-05 08:05:00+00', '2025-03-20 23:59:59+00') r;
-- an empty range, an instant, an unknown subject
SELECT tool_audit.access_report('pat_1', '2024-01-01 00:00+00', '2024-12-31 00:00+00');
SELECT r->'total_accesses' AS total FROM tool_audit.access_report('pat_1', '2025-03-05 08:00:00+00', '2025-03-05 08:00:00+00') r;
SELECT r->'total_accesses' AS total, r->'integrity_verified' AS verified
  FROM tool_audit.access_report('no_such_subject', '-infinity', 'infinity') r;
-- bad arguments
SELECT regress_try($$SELECT tool_audit.access_report('pat_1', '2025-03-31 00:00+00', '2025-03-01 00:00+00')$$);
SELECT regress_try($$SELECT tool_audit.access_report(NULL, '2025-03-01 00:00+00', '2025-03-31 00:00+00')$$);
SELECT regress_try($$SELECT tool_audit.access_report('pat_1', NULL, '2025-03-31 00:00+00')$$);
SELECT regress_try($$SELECT tool_audit.access_report('pat_1', '2025-03-01 00:00+00', NULL)$$);
-- with their details and hints
\set VERBOSITY default
SELECT tool_audit.access_report('pat_1', '2025-03-31 00:00+00', '2025-03-01 00:00+00');
SELECT tool_audit.access_report('pat_1', NULL, 'infinity');
\set VERBOSITY terse
-- the report's times are UTC whatever the session's TimeZone and DateStyle
SET TimeZone = 'America/New_York';
SET DateStyle = 'SQL, DMY';
SELECT r->'report_period' AS period, r->'accesses'->0->'timestamp' AS first
  FROM tool_audit.access_report('pat_1', '2025-03-05 03:00:00', '2025-03-05 04:00:00') r;
RESET TimeZone;
RESET DateStyle;

-- ---- the rows each function reads are the caller's: a reader bound to rep_acme ----
SET ROLE regress_reader_acme;
SELECT r->'total_accesses' AS total, r->'unique_users' AS users, r->'integrity_verified' AS verified,
       jsonb_path_query_array(r, '$.accesses[*].tenant_id') AS tenants
  FROM tool_audit.access_report('pat_1', '2025-03-01 00:00+00', '2025-03-31 00:00+00') r;
SELECT count(*) FROM tool_audit.calls_by_user('usr_g');
SELECT count(*) FROM tool_audit.calls_by_conversation('conv_g');
SELECT count(*) FROM tool_audit.conversation_timeline('conv_g');
-- the ids other tenants share: only rep_acme's rows
SELECT id, tenant_id FROM tool_audit.calls_by_conversation('conv_1');
SELECT id, tenant_id FROM tool_audit.calls_by_user('usr_1');
SELECT * FROM tool_audit.conversation_timeline('conv_1');
SELECT tool_audit.attribution(101);
SELECT id FROM tool_audit.failures();
SELECT tool_audit.tool_stats('get_patient_record');
SELECT tool_audit.tool_stats('delete_note');
SELECT all_tenants, tenant_id, tool_name, total_calls FROM tool_audit.tool_usage
 ORDER BY all_tenants, tenant_id, tool_name;
SELECT tool_audit.attribution(301) IS NULL AS other_tenant_invisible;
-- and with tool_audit.tenant narrowed to a tenant it is not bound to: nothing
SET tool_audit.tenant = 'rep_globex';
SELECT r->'total_accesses' AS total FROM tool_audit.access_report('pat_1', '-infinity', 'infinity') r;
RESET tool_audit.tenant;
RESET ROLE;
-- a member of the bound role is bound too
SET ROLE regress_acme_member;
SELECT jsonb_path_query_array(r, '$.accesses[*].call_id') AS calls
  FROM tool_audit.access_report('pat_1', '-infinity', 'infinity') r;
SELECT id FROM tool_audit.calls_by_conversation('conv_1');
RESET ROLE;
-- an unbound reader sees every tenant and the rows of none (305), and may
-- narrow itself to one tenant
SET ROLE regress_reader;
SELECT jsonb_path_query_array(r, '$.accesses[*].call_id') AS calls
  FROM tool_audit.access_report('pat_1', '-infinity', 'infinity') r;
SET tool_audit.tenant = 'rep_globex';
SELECT jsonb_path_query_array(r, '$.accesses[*].call_id') AS calls
  FROM tool_audit.access_report('pat_1', '-infinity', 'infinity') r;
SELECT id, tenant_id FROM tool_audit.calls_by_conversation('conv_1');
SELECT * FROM tool_audit.conversation_timeline('conv_1');
SELECT tool_name, total_calls FROM tool_audit.tool_usage WHERE all_tenants ORDER BY tool_name;
RESET tool_audit.tenant;
RESET ROLE;

-- ---- privileges: reports are for readers and admins ----
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.access_report('pat_1', '2025-03-01 00:00+00', '2025-03-31 00:00+00')$$);
SELECT regress_try($$SELECT * FROM tool_audit.calls_by_conversation('conv_1')$$);
SELECT regress_try($$SELECT * FROM tool_audit.tool_usage$$);
RESET ROLE;
SET ROLE regress_nobody;
SELECT regress_try($$SELECT tool_audit.tool_stats('get_order')$$);
RESET ROLE;
SET ROLE regress_admin;
SELECT r->'total_accesses' AS total FROM tool_audit.access_report('pat_1', '2025-03-01 00:00+00', '2025-03-31 00:00+00') r;
RESET ROLE;

-- ---- integrity_verified is computed ----
-- a superuser switches the append-only triggers off behind the extension's
-- back: no report is verified while they are off (test/t/009_reports.pl
-- edits and deletes rows and shows the report naming them)
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgrelid = 'tool_audit.tool_calls'::regclass AND tgname LIKE 'tool_calls_append_only%';
SELECT r->'integrity_verified' AS verified, r->'integrity'->'protection_problems' AS protections
  FROM tool_audit.access_report('pat_1', '2025-03-01 00:00+00', '2025-03-31 00:00+00') r;
SELECT r->'integrity_verified' AS verified FROM tool_audit.access_report('no_such_subject', '-infinity', 'infinity') r;
UPDATE pg_trigger SET tgenabled = 'A'
 WHERE tgrelid = 'tool_audit.tool_calls'::regclass AND tgname LIKE 'tool_calls_append_only%';
SELECT r->'integrity_verified' AS verified FROM tool_audit.access_report('pat_1', '2025-03-01 00:00+00', '2025-03-31 00:00+00') r;
-- check_row() on its own: every row intact
SELECT id, tool_audit.check_row(t) FROM tool_audit.tool_calls t ORDER BY id;
SELECT id, tool_audit.check_row(e) FROM tool_audit.admin_events e WHERE e.event_type <> 'audit.read' ORDER BY id;
-- (1.5) and the reads of the reports above, recorded as audit.read events
SELECT count(*) AS reads, count(tool_audit.check_row(e)) AS problems
  FROM tool_audit.admin_events e WHERE e.event_type = 'audit.read';
-- the primitives on their own: recomputed row hashes and links match what
-- the rows store, and the protections are in place
SELECT count(*) AS rows, bool_and(tool_audit.compute_row_hash(t) = t.row_hash) AS row_hashes,
       bool_and(tool_audit.chain_link(t.chain_id, t.chain_lane, t.chain_seq,
                                      coalesce(p.chain_hash, decode(repeat('00', 32), 'hex')), t.row_hash)
                = t.chain_hash) AS links
  FROM tool_audit.tool_calls t
  LEFT JOIN tool_audit.tool_calls p
    ON p.chain_id = t.chain_id AND p.chain_lane = t.chain_lane AND p.chain_seq = t.chain_seq - 1;
SELECT bool_and(tool_audit.compute_row_hash(e) = e.row_hash) AS admin_row_hashes FROM tool_audit.admin_events e;
SELECT count(*) AS protection_problems FROM tool_audit.verify_protections();
SELECT tool_audit.chain_problem(1, 0, 1, '\x01', '\x02', '\x03', NULL, NULL, NULL, NULL, false) AS altered,
       tool_audit.chain_problem(1, 0, 0, '\x01', '\x02', '\x01', NULL, NULL, NULL, NULL, false) AS position_0,
       tool_audit.chain_problem(1, 0, 5, '\x01', '\x02', '\x01', NULL, NULL, NULL, NULL, false) AS no_previous;
-- the reports' helpers on their own
SET TimeZone = 'Asia/Kolkata';
SELECT tool_audit.iso8601_utc('2025-03-01 10:00:00.5+00') AS utc, tool_audit.iso8601_utc('infinity') AS inf,
       tool_audit.iso8601_utc(NULL) IS NULL AS null_in_null_out;
RESET TimeZone;
SELECT tool_audit.required_arg('x'::text, 'name') AS given, tool_audit.required_arg(7, 'n') AS number;
SELECT regress_try($$SELECT tool_audit.required_arg(NULL::text, 'some_id')$$);
SELECT regress_try($$SELECT tool_audit.check_period('2025-01-01 00:00+00', '2025-01-01 00:00+00')$$) AS instant,
       regress_try($$SELECT tool_audit.check_period('infinity', '-infinity')$$) AS reversed;
SELECT tool_audit.report_mark('ok') AS ok, tool_audit.report_mark('failed') AS failed,
       tool_audit.report_mark('arrow') AS arrow;
SELECT id, tool_audit.is_break_glass(t) FROM tool_audit.tool_calls t WHERE id IN (201, 203, 206, 305) ORDER BY id;
-- the primitives reject what is not a hash
SELECT regress_try($$SELECT tool_audit.chain_link(1, 0, 1, '\x00', '\x00')$$);

\c :regress_db
DROP DATABASE regress_tool_audit_reports;
