-- Upgrading from 1.0: rows recorded before chains existed are hashed and
-- chained (in id order) by ALTER EXTENSION UPDATE, and verify clean.  Also
-- restoring rows with tool_audit.restoring.  In a database of its own.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_tool_audit_upgrade;
\c regress_tool_audit_upgrade
SET client_min_messages = warning;
CREATE EXTENSION tool_audit VERSION '1.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'tool_audit';
-- the library is already 1.1: rows are recorded as 1.0 did, unchained
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, arguments)
  SELECT 'old_' || g, CASE WHEN g % 2 = 0 THEN 'up_a' END, g % 3 <> 0, jsonb_build_object('n', g, 'password', 'p')
    FROM generate_series(1, 25) g;
INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('prompt.change', 'old_admin', 'up_a');
-- more tenants than the shared lock table has room for locks: the upgrade
-- takes no lock per chain
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
  SELECT 'many_' || g, 'many_' || g, true FROM generate_series(1, 8000) g;
ALTER EXTENSION tool_audit UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'tool_audit';
-- the helper that chained them is gone again
SELECT count(*) AS helper_left FROM pg_proc WHERE proname = 'chain_existing_rows';
SELECT tenant_id, count(*) AS rows, min(chain_seq), max(chain_seq), count(DISTINCT chain_lane) AS lanes,
       bool_and(row_hash IS NOT NULL AND chain_hash IS NOT NULL) AS all_hashed
  FROM tool_audit.tool_calls WHERE tenant_id NOT LIKE 'many\_%' OR tenant_id IS NULL GROUP BY 1 ORDER BY 1;
SELECT count(*) AS many_rows, count(DISTINCT chain_id) AS many_chains, max(chain_seq) AS max_position
  FROM tool_audit.tool_calls WHERE tenant_id LIKE 'many\_%';
-- in id order
SELECT bool_and(ordered) AS id_order FROM (
  SELECT chain_seq > lag(chain_seq, 1, 0::bigint) OVER (PARTITION BY chain_id ORDER BY id) AS ordered
    FROM tool_audit.tool_calls) s;
SELECT * FROM tool_audit.verify();
-- a bulk insert in one transaction holds no lock per row, even with the
-- rows' own event_ids (a 1.0 dump being restored has them)
INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)
  SELECT gen_random_uuid(), 'bulk', 'up_bulk', true FROM generate_series(1, 20000);
SELECT count(*) AS bulk_rows, max(chain_seq) AS bulk_head FROM tool_audit.tool_calls WHERE tenant_id = 'up_bulk';
-- and new rows continue the chains
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('new_1', 'up_a', true);
SELECT chain_seq FROM tool_audit.tool_calls WHERE tool_name = 'new_1';
SELECT * FROM tool_audit.verify();
-- every row has its place
SELECT count(*) AS unchained FROM tool_audit.tool_calls
 WHERE row_hash IS NULL OR chain_id IS NULL OR chain_lane IS NULL OR chain_seq IS NULL OR chain_hash IS NULL;
-- the upgrade helper cannot be put back to be called outside the script
CREATE FUNCTION tool_audit.chain_existing_rows(regclass) RETURNS bigint
    AS '$libdir/tool_audit', 'chain_existing_rows' LANGUAGE C STRICT;

-- Restoring (tool_audit.restoring, superuser): a row that brings no hash
-- (from a 1.0 dump) is hashed and chained; the hash depends on the values
-- only (test/vectors/rows.tsv holds this row, hashed by the spec's reference
-- implementation), not on the session's TimeZone or DateStyle
SET tool_audit.restoring = on;
SET TimeZone = 'America/St_Johns';
SET DateStyle = 'SQL, DMY';
INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, tenant_id, conversation_id, turn_number,
                                   user_id, user_role, model, tool_name, tool_call_id, call_trigger,
                                   purpose, subject_id, arguments, result_summary, success, error,
                                   duration_ms, client_ip, user_agent, session_metadata, recorded_by)
  VALUES (1000000000, '00000000-0000-4000-8000-000000000001', '2026-01-02 03:04:05.678901+00', 'up_b',
          'conv_1', 3, 'usr_1', 'support_agent', 'gpt-4.1', 'update_order_status', 'call_9', 'follow_up',
          'refund', 'patient_7', '{"order_id": 1.50, "note": "naïve \"quote\"", "items": [1, 2e2, {"z": null, "a": true}]}',
          '{"status": "ok"}', false, 'timeout', 38.25, '2001:db8::1/64', 'agent/1.0', '{}', 'someone');
RESET TimeZone;
RESET DateStyle;
SELECT chain_seq, encode(row_hash, 'hex') AS row_hash FROM tool_audit.tool_calls WHERE id = 1000000000;
-- a restored row that brings its hashes is kept as the dump has it only if
-- they fit it: a row whose stored hashes do not fit its content is refused
-- (before 1.4 it was stored, and named by verify())
INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, tool_name, tenant_id, success, recorded_by,
                                   row_hash, chain_id, chain_lane, chain_seq, chain_hash)
  SELECT 1000000002, '00000000-0000-4000-8000-000000000002', recorded_at, 'tampered_in_dump', tenant_id, true, 'someone',
         row_hash, chain_id, chain_lane, chain_seq + 1, chain_hash
    FROM tool_audit.tool_calls WHERE id = 1000000000;
-- such a row stored all the same, past the insert trigger switched off in the
-- catalog (a superuser's tampering, as in test/t/005_tamper.pl), is named by verify()
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert';
\c -
INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, tool_name, tenant_id, success, recorded_by,
                                   row_hash, chain_id, chain_lane, chain_seq, chain_hash)
  SELECT 1000000002, '00000000-0000-4000-8000-000000000002', recorded_at, 'tampered_in_dump', tenant_id, true, 'someone',
         row_hash, chain_id, chain_lane, chain_seq + 1, chain_hash
    FROM tool_audit.tool_calls WHERE id = 1000000000;
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT table_name, "position", row_id, problem FROM tool_audit.verify();
-- and on to 1.2: the reports' indexes and functions, over the upgraded rows
ALTER EXTENSION tool_audit UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'tool_audit';
SELECT indexrelid::regclass AS index FROM pg_index
 WHERE indrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass)
 ORDER BY indexrelid::regclass::text;
-- the report views read as the caller, and the privileges are as after a fresh install
SELECT relname, reloptions FROM pg_class
 WHERE relnamespace = 'tool_audit'::regnamespace AND relkind = 'v' AND relname <> 'pseudonym_key_ids' ORDER BY 1;
SELECT r.rolname, has_function_privilege(r.rolname, 'tool_audit.access_report(text,timestamptz,timestamptz)', 'EXECUTE') AS access_report,
       has_function_privilege(r.rolname, 'tool_audit.export_jsonl(timestamptz,timestamptz)', 'EXECUTE') AS export_jsonl,
       has_table_privilege(r.rolname, 'tool_audit.tool_usage', 'SELECT') AS tool_usage
  FROM pg_roles r WHERE r.rolname LIKE 'tool\_audit\_%' ORDER BY 1;
SELECT count(*) AS rows, count(*) FILTER (WHERE tool_audit.check_row(t) IS NULL) AS intact
  FROM tool_audit.tool_calls t WHERE tool_name LIKE 'old\_%';
SELECT id, tool_audit.check_row(t) FROM tool_audit.tool_calls t WHERE id >= 1000000000 ORDER BY id;
SELECT tool_audit.tool_stats('old_3');
-- and on to 1.3, which adds a comment to every function
ALTER EXTENSION tool_audit UPDATE TO '1.3';
SELECT extversion FROM pg_extension WHERE extname = 'tool_audit';
SELECT count(*) AS functions, count(obj_description(oid, 'pg_proc')) AS commented
  FROM pg_proc WHERE pronamespace = 'tool_audit'::regnamespace;
-- and on to 1.4, which adds retention: old rows keep NULL expiry and verify
ALTER EXTENSION tool_audit UPDATE TO '1.4';
SELECT extversion FROM pg_extension WHERE extname = 'tool_audit';
SELECT policy_name, applies_to, retention_days, matches, is_default
  FROM tool_audit.retention_policies ORDER BY policy_name;
SELECT count(*) AS rows, count(expires_at) AS with_expiry,
       count(*) FILTER (WHERE tool_audit.check_row(t) IS NULL) AS intact
  FROM tool_audit.tool_calls t WHERE tool_name LIKE 'old\_%';
-- and on to 1.5: new nullable columns, NULL (so unhashed) on old rows
ALTER EXTENSION tool_audit UPDATE TO '1.5';
SELECT extversion FROM pg_extension WHERE extname = 'tool_audit';
SELECT count(*) AS rows, count(call_phase) AS with_phase,
       count(*) FILTER (WHERE tool_audit.check_row(t) IS NULL) AS intact
  FROM tool_audit.tool_calls t WHERE tool_name LIKE 'old\_%';
\c :regress_db
DROP DATABASE regress_tool_audit_upgrade;

-- A SQL_ASCII database: text is hashed as its bytes, and verify() agrees
CREATE DATABASE regress_tool_audit_ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C';
\c regress_tool_audit_ascii
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, arguments)
  VALUES ('ascii_call', 'acme', true, '{"b": "x", "a": "yy"}');
SELECT * FROM tool_audit.log_call('ascii_log', '{"k": "v"}', '{}', 1, '{"tenant_id": "acme"}') \gset
SELECT tool_audit.canonical_json('{"b": "x", "a": "yy"}');
SELECT chain_id = -6876700337126302730 AS same_chain_id_as_utf8 FROM tool_audit.tool_calls WHERE tool_name = 'ascii_call';
-- reports in a database that cannot hold the UTF-8 marks use ASCII ones
SELECT tool_audit.attribution(id) FROM tool_audit.tool_calls WHERE tool_name = 'ascii_call';
SELECT (tool_audit.log_call('ascii_fail', '{}', '{"error": "no"}', 2, '{"conversation_id": "ascii_conv", "turn_number": 1}')).id IS NOT NULL AS logged;
SELECT (tool_audit.log_call('ascii_ok', '{}', '{}', 3, '{"conversation_id": "ascii_conv"}')).id IS NOT NULL AS logged;
SELECT * FROM tool_audit.conversation_timeline('ascii_conv');
SELECT tool_audit.check_row(t) IS NULL AS intact FROM tool_audit.tool_calls t WHERE tool_name = 'ascii_call';
SELECT * FROM tool_audit.verify();
\c :regress_db
DROP DATABASE regress_tool_audit_ascii;
