-- Calls that survive the caller's rollback: begin_call(), end_call() and
-- log_call() with "autonomous": true, written by a background worker that
-- commits before the function returns (doc/recording.md).
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
-- errors name the call's uuid: masked here
CREATE FUNCTION try_call(sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT regexp_replace(regress_try(sql), '[0-9a-f]{8}-[0-9a-f-]{27}', '<call>') $$;

-- the agent framework's pattern: begin, run the tool's SQL, fail, roll back, end
CREATE TABLE orders (id int PRIMARY KEY, status text);
INSERT INTO orders VALUES (1, 'paid');
GRANT SELECT, UPDATE ON orders TO regress_writer;
SET ROLE regress_writer;
BEGIN;
SELECT tool_audit.begin_call('refund_order', '{"order_id": 1, "card": "4111 1111 1111 1111"}',
                             '{"tenant_id": "acme", "conversation_id": "conv_calls", "turn_number": 1,
                               "user_id": "u1", "model": "m1", "subject_id": "cust_1"}') AS call \gset
SELECT current_setting('tool_audit.call') = :'call' AS call_in_progress;
UPDATE orders SET status = 'refunded' WHERE id = 1;
SELECT 1 / 0;   -- the tool fails
ROLLBACK;
SELECT current_setting('tool_audit.call') AS call_after_rollback;
SELECT success, result_summary, error, call_phase, call_event_id = :'call' AS names_call
  FROM tool_audit.end_call(:'call', '{"error": "division by zero"}', 12.5);
RESET ROLE;
SELECT status FROM orders;   -- the change rolled back
SELECT call_phase, tool_name, tenant_id, user_id, subject_id, arguments, success, duration_ms,
       recorded_by, caller_txid IS NOT NULL AS autonomous
  FROM tool_audit.tool_calls WHERE event_id = :'call' OR call_event_id = :'call' ORDER BY id;
SELECT state, tool_name, success, result_summary, duration_ms, caller_committed, recorded_at <= ended_at AS ordered
  FROM tool_audit.calls WHERE call_id = :'call';

-- begin and end in one transaction that commits; end_call clears tool_audit.call
SET ROLE regress_writer;
BEGIN;
SELECT tool_audit.begin_call('lookup_order', '{"order_id": 1}', '{"tenant_id": "acme", "conversation_id": "conv_calls", "turn_number": 2}') AS call2 \gset
SELECT (tool_audit.end_call(:'call2', '{"status": "paid"}', 3)).success;
SELECT current_setting('tool_audit.call') AS call_after_end;
COMMIT;
RESET ROLE;
SELECT state, success, duration_ms, caller_committed
  FROM tool_audit.calls WHERE call_id = :'call2';

-- a call begun and never ended shows as such
SET ROLE regress_writer;
BEGIN;
SELECT tool_audit.begin_call('send_email', '{}', '{"tenant_id": "acme", "conversation_id": "conv_calls", "turn_number": 3}') AS call3 \gset
RESET ROLE;
SELECT state, caller_committed FROM tool_audit.calls WHERE call_id = :'call3';
ROLLBACK;
RESET ROLE;
SELECT state, caller_committed, success, ended_at FROM tool_audit.calls WHERE call_id = :'call3';

-- log_call with "autonomous": true survives the rollback; without it, it does not
SET ROLE regress_writer;
BEGIN;
SELECT call_phase, success, caller_txid = txid_current() AS caller_txid_is_mine, session_metadata
  FROM tool_audit.log_call('delete_customer', '{}', '{"error": "permission denied"}', 1,
                           '{"tenant_id": "acme", "conversation_id": "conv_calls", "turn_number": 4,
                             "autonomous": true, "note": "denied"}');
SELECT (tool_audit.log_call('delete_customer', '{}', '{"error": "permission denied"}', 1,
                            '{"tenant_id": "acme", "conversation_id": "conv_calls", "autonomous": false}')).caller_txid;
ROLLBACK;
RESET ROLE;
SELECT c.tool_name, c.success, c.state, c.caller_committed, t.session_metadata
  FROM tool_audit.calls c JOIN tool_audit.tool_calls t ON t.event_id = c.call_id
 WHERE c.tool_name = 'delete_customer';

-- the timeline shows the pair as one entry; the access report counts it once
SELECT * FROM tool_audit.conversation_timeline('conv_calls');
SELECT r->'total_accesses' AS total, r->'integrity_verified' AS verified,
       jsonb_path_query_array(r, '$.accesses[*].call_state') AS states,
       jsonb_path_query_array(r, '$.accesses[*].success') AS successes
  FROM tool_audit.access_report('cust_1', '-infinity', 'infinity') r;
SELECT count(*) FILTER (WHERE d ? 'call_phase') AS halves, count(*) FILTER (WHERE d ? 'caller_txid') AS autonomous
  FROM tool_audit.export_jsonl('-infinity', 'infinity') d WHERE d->>'conversation_id' = 'conv_calls';
-- a started row has no outcome yet: none in FHIR, UNSET in OpenTelemetry
SELECT f ? 'outcome' AS fhir_outcome FROM tool_audit.export_fhir('-infinity', 'infinity', 'cust_1') f ORDER BY f->>'recorded';
SELECT "status.code" FROM tool_audit.otel_tool_spans WHERE "tool_audit.event_id" = :'call3';

-- refusals
SET ROLE regress_writer;
SELECT try_call($$SELECT tool_audit.end_call('00000000-0000-0000-0000-000000000001', '{}')$$);
SELECT try_call(format($$SELECT tool_audit.end_call(%L, '{}')$$, :'call'));   -- ended already
SELECT try_call($$SELECT tool_audit.end_call(NULL, '{}')$$);
SELECT try_call($$SELECT tool_audit.begin_call('', '{}', '{}')$$);
SELECT try_call($$SELECT tool_audit.begin_call('t', '[]', '{}')$$);
SELECT try_call($$SELECT tool_audit.begin_call('t', '{}', '{"autonomous": "yes"}')$$);
SELECT try_call($$SELECT tool_audit.begin_call('t', '{}', '{"turn_number": "x"}')$$);
SELECT try_call(format($$SELECT tool_audit.end_call(%L, '{}', -1)$$, :'call3'));
-- a one-row call cannot be ended
SELECT event_id AS one_row FROM tool_audit.log_call('x', '{}', '{}', 1) \gset
SELECT try_call(format($$SELECT tool_audit.end_call(%L, '{}')$$, :'one_row'));
-- plain INSERTs of halves are checked by the insert trigger
SELECT try_call($$INSERT INTO tool_audit.tool_calls (tool_name, call_phase) VALUES ('t', 'ended')$$);
SELECT try_call(format($$INSERT INTO tool_audit.tool_calls (tool_name, call_phase, call_event_id) VALUES ('t', 'started', %L)$$, :'call3'));
SELECT try_call($$INSERT INTO tool_audit.tool_calls (tool_name, call_phase, success) VALUES ('t', 'started', true)$$);
SELECT try_call($$INSERT INTO tool_audit.tool_calls (tool_name, caller_txid) VALUES ('t', 1)$$);
SELECT try_call(format($$INSERT INTO tool_audit.tool_calls (tool_name, call_event_id) VALUES ('t', %L)$$, :'call3'));
SELECT try_call(format($$INSERT INTO tool_audit.tool_calls (tool_name, call_phase, call_event_id, tenant_id) VALUES ('t', 'ended', %L, 'globex')$$, :'call3'));
RESET ROLE;
-- another role cannot end a writer's call
SELECT try_call(format($$SELECT tool_audit.end_call(%L, '{}')$$, :'call3'));
-- a plain INSERT of a started row (not autonomous) and its end, by the writer
SET ROLE regress_writer;
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, call_phase, tenant_id) VALUES ('plain', 'started', 'acme')
RETURNING event_id AS plain \gset
INSERT INTO tool_audit.tool_calls (tool_name, call_phase, call_event_id, tenant_id, result_summary)
VALUES ('plain', 'ended', :'plain', 'acme', '{"status": "ok"}');
COMMIT;
RESET ROLE;
SELECT state, success, caller_committed FROM tool_audit.calls WHERE call_id = :'plain';

-- identity: the worker records what a write in the caller's transaction would
CREATE FUNCTION regress_definer_begin() RETURNS uuid LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT tool_audit.begin_call('definer', '{}', '{}') $$;
GRANT EXECUTE ON FUNCTION regress_definer_begin() TO regress_writer;
SET ROLE regress_writer;
SET application_name = 'agent-x';
SELECT recorded_by, session_metadata FROM tool_audit.log_call('who', '{}', '{}', 1, '{"autonomous": true}');
SELECT regress_definer_begin() AS definer_call \gset
RESET application_name;
RESET ROLE;
SELECT recorded_by FROM tool_audit.tool_calls WHERE event_id = :'definer_call';
SELECT recorded_by FROM tool_audit.tool_calls WHERE tool_name = 'who';
-- end_call without a duration: from the start to now
SET ROLE regress_writer;
SELECT duration_ms >= 0 AS duration_from_start, tool_name FROM tool_audit.end_call(:'definer_call', '{}');
RESET ROLE;
-- the caller's settings apply in the worker (here: which result keys are kept)
SET tool_audit.summary_keys = 'status';
SELECT result_summary FROM tool_audit.log_call('keys', '{}', '{"status": "ok", "id": 7}', 1, '{"autonomous": true}');
RESET tool_audit.summary_keys;

-- a caller in a read-only serializable transaction, or a read-only session, still records
SET ROLE regress_writer;
BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY;
SELECT count(*) FROM orders;
SELECT tool_audit.begin_call('read_only', '{}', '{"conversation_id": "conv_calls_ro"}') IS NOT NULL AS begun;
COMMIT;
SET default_transaction_read_only = on;
SELECT (tool_audit.log_call('read_only', '{}', '{}', 1, '{"conversation_id": "conv_calls_ro", "autonomous": true}')).success;
RESET default_transaction_read_only;
RESET ROLE;
SELECT tool_name, state FROM tool_audit.calls WHERE conversation_id = 'conv_calls_ro' ORDER BY id;

-- a bound reader sees its tenant's calls only
SELECT tool_audit.begin_call('globex_tool', '{}', '{"tenant_id": "globex", "conversation_id": "conv_calls_g"}') IS NOT NULL;
SET ROLE regress_admin;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'acme') IS NOT NULL AS bound;
RESET ROLE;
SET ROLE regress_reader_acme;
SELECT DISTINCT tenant_id FROM tool_audit.calls WHERE tenant_id IN ('acme', 'globex') ORDER BY 1;
SELECT count(*) FROM tool_audit.calls WHERE tool_name = 'globex_tool';
RESET ROLE;
SET ROLE regress_reader;
SET tool_audit.tenant = 'globex';
SELECT tool_name, state FROM tool_audit.calls WHERE conversation_id LIKE 'conv_calls%';
RESET tool_audit.tenant;
RESET ROLE;
SET ROLE regress_nobody;
SELECT try_call('SELECT * FROM tool_audit.calls');
SELECT try_call($$SELECT tool_audit.begin_call('t', '{}', '{}')$$);
RESET ROLE;
SET ROLE regress_admin;
SELECT tool_audit.unbind_tenant('regress_reader_acme', 'acme');
RESET ROLE;

-- tool_audit.max_autonomous_workers: a cluster-wide bound on the workers
-- running at once (the wait for a busy slot: test/t/023_autonomous_slots.pl)
SHOW tool_audit.max_autonomous_workers;
SET ROLE regress_writer;
SELECT try_call('SET tool_audit.max_autonomous_workers = 100');
RESET ROLE;
SET tool_audit.max_autonomous_workers = 0;
SELECT try_call($$SELECT tool_audit.begin_call('t_capped', '{}', '{"conversation_id": "conv_calls_cap"}')$$);
SELECT try_call($$SELECT tool_audit.log_call('t_capped', '{}', '{}', 1, '{"conversation_id": "conv_calls_cap", "autonomous": true}')$$);
SELECT try_call($$SELECT tool_audit.end_call(gen_random_uuid(), '{}')$$);
SELECT (tool_audit.log_call('t_capped', '{}', '{}', 1, '{"conversation_id": "conv_calls_cap"}')).success AS in_transaction_still_works;
-- one slot: a slot is given back after an error (here in a subtransaction) and after a write
SET tool_audit.max_autonomous_workers = 1;
BEGIN;
SELECT try_call($$SELECT tool_audit.end_call(gen_random_uuid(), '{}')$$);
SELECT tool_audit.begin_call('t_one_slot', '{}', '{"conversation_id": "conv_calls_cap"}') AS call_cap \gset
SELECT (tool_audit.end_call(:'call_cap', '{"ok": true}', 1)).call_phase;
SELECT count(*) AS slots_held FROM pg_locks WHERE locktype = 'advisory' AND database = 0 AND objsubid = 21591;
COMMIT;
RESET tool_audit.max_autonomous_workers;
SELECT tool_name, state FROM tool_audit.calls WHERE conversation_id = 'conv_calls_cap' ORDER BY id;

-- a caller holding a lock on tool_calls that the worker's insert would wait
-- for is refused at once (55P03), not after the worker's lock_timeout
BEGIN;
LOCK TABLE tool_audit.tool_calls IN SHARE MODE;
SELECT try_call($$SELECT tool_audit.begin_call('t_self_lock', '{}', '{"conversation_id": "conv_calls_lock"}')$$);
ROLLBACK;
BEGIN;
LOCK TABLE tool_audit.tool_calls IN ACCESS EXCLUSIVE MODE;
SELECT try_call($$SELECT tool_audit.log_call('t_self_lock', '{}', '{}', 1, '{"conversation_id": "conv_calls_lock", "autonomous": true}')$$);
ROLLBACK;
-- a lock that does not conflict with an insert is no obstacle
BEGIN;
LOCK TABLE tool_audit.tool_calls IN SHARE UPDATE EXCLUSIVE MODE;
SELECT tool_audit.begin_call('t_self_lock', '{}', '{"conversation_id": "conv_calls_lock"}') IS NOT NULL AS begun;
ROLLBACK;
-- nor is the lane the caller holds in the same chain (the worker takes another)
SET ROLE regress_writer;
BEGIN;
SELECT (tool_audit.log_call('t_lane', '{}', '{}', 1, '{"tenant_id": "acme", "conversation_id": "conv_calls_lock"}')).success;
SELECT (tool_audit.log_call('t_lane', '{}', '{}', 1, '{"tenant_id": "acme", "conversation_id": "conv_calls_lock", "autonomous": true}')).success;
ROLLBACK;
RESET ROLE;
SELECT tool_name, state FROM tool_audit.calls WHERE conversation_id = 'conv_calls_lock' ORDER BY id;

-- everything verifies
SELECT * FROM tool_audit.verify();

-- a call begun and ended counts once in the tool statistics, with its outcome
SELECT tool_audit.begin_call('stats_tool', '{}', '{"tenant_id": "acme"}') AS stats_call \gset
SELECT (tool_audit.end_call(:'stats_call', '{"status": "ok"}', 10)).success;
SELECT tool_audit.begin_call('stats_tool', '{}', '{"tenant_id": "acme"}') IS NOT NULL AS never_ended;
SELECT (tool_audit.log_call('stats_tool', '{}', '{"error": "no"}', 5, '{"tenant_id": "acme"}')).success;
SELECT tool_audit.tool_stats('stats_tool') - 'avg_duration_ms' - 'max_duration_ms' AS stats;
SELECT total_calls, success_rate, avg_duration_ms FROM tool_audit.tool_usage WHERE all_tenants AND tool_name = 'stats_tool';
