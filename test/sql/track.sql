-- tool_audit.track() (1.5): row changes of an application table recorded in
-- data_changes, linked to the tool call in progress; the reports on them.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- change rows already there (data_changes.sql, in the same database in the
-- schedule) are left out of what this file reads: ids after this one
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
CREATE TABLE public.customers (
    id integer PRIMARY KEY,
    name text,
    plan text,
    ssn text,
    tenant text,
    notes text,
    updated_at timestamptz DEFAULT '2026-01-01 00:00:00+00'
);
CREATE TABLE public.order_lines (
    order_id integer, line_no integer, sku text, qty integer,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE public.no_key (a integer, b text);
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.customers, public.order_lines TO regress_writer;

-- track() and untrack() are for admins only
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.track('public.customers')$$);
RESET ROLE;
SET ROLE regress_reader;
SELECT regress_try($$SELECT tool_audit.untrack('public.customers')$$);
RESET ROLE;

-- what track() refuses, naming the field and never a value
SET ROLE regress_admin;
SELECT regress_try($$SELECT tool_audit.track('public.no_key')$$);
SELECT regress_try($$SELECT tool_audit.track('public.customers', '{"columns": ["name", "nope"]}')$$);
SELECT regress_try($$SELECT tool_audit.track('public.customers', '{"tenant_column": "nope"}')$$);
SELECT regress_try($$SELECT tool_audit.track('public.customers', '{"columns": ["name"], "exclude": ["ssn"]}')$$);
SELECT regress_try($$SELECT tool_audit.track('public.customers', '{"colums": ["name"]}')$$);
SELECT regress_try($$SELECT tool_audit.track('public.customers', '{"truncate": "ignore"}')$$);
SELECT regress_try($$SELECT tool_audit.track('public.customers', '[]')$$);
SELECT regress_try($$SELECT tool_audit.track('tool_audit.tool_calls')$$);
SELECT regress_try($$SELECT tool_audit.track('pg_catalog.pg_class')$$);
SELECT regress_try($$SELECT tool_audit.track(NULL)$$);

-- customers: every column but notes, the tenant from its tenant column
SELECT tool_audit.track('public.customers', '{"exclude": ["notes"], "tenant_column": "tenant"}');
SELECT tool_audit.track('public.order_lines', '{"truncate": "record"}');
SELECT table_name, options, tracked_by, status FROM tool_audit.tracking_status();
RESET ROLE;
SELECT event_type, actor, payload FROM tool_audit.admin_events
 WHERE event_type IN ('tool_audit.track', 'tool_audit.untrack') ORDER BY id;

-- a call changing two rows: SET LOCAL tool_audit.call, the tool's
-- statements, then log_call() with the same event_id
SET ROLE regress_writer;
SET application_name = 'agent-runtime';
INSERT INTO public.customers (id, name, plan, ssn, tenant, notes)
  VALUES (1, 'Ada', 'basic', '078-05-1120', 'acme', 'vip'),
         (2, 'Bob', 'basic', '219-09-9999', 'acme', NULL),
         (3, 'Cy', 'pro', NULL, 'globex', NULL);
BEGIN;
SET LOCAL tool_audit.call = '11111111-1111-4111-8111-111111111111';
UPDATE public.customers SET plan = 'pro' WHERE id = 1;
UPDATE public.customers SET plan = 'pro', notes = 'upgraded' WHERE id = 2;
UPDATE public.customers SET notes = 'only an excluded column' WHERE id = 3;
SELECT tool_name FROM tool_audit.log_call('upgrade_plan', '{"ids": [1, 2]}', '{"ok": true}', 12,
  '{"event_id": "11111111-1111-4111-8111-111111111111", "conversation_id": "conv_track", "turn_number": 1,
    "user_id": "usr_1", "user_role": "support_agent", "model": "gpt-4.1", "tenant_id": "acme"}');
COMMIT;
RESET application_name;
RESET ROLE;
-- the writer cannot read or write the change rows
CREATE TABLE public.writer_own (id integer PRIMARY KEY);
ALTER TABLE public.writer_own OWNER TO regress_writer;
SET ROLE regress_writer;
SELECT regress_try($$SELECT count(*) FROM tool_audit.data_changes$$);
SELECT regress_try($$INSERT INTO tool_audit.data_changes (table_name, operation, call_event_id) VALUES ('public.customers', 'DELETE', '11111111-1111-4111-8111-111111111111')$$);
-- nor create the trigger on a table of its own to forge some
SELECT regress_try($$CREATE TRIGGER forge AFTER INSERT ON public.writer_own FOR EACH ROW EXECUTE FUNCTION tool_audit.track_change('all', '', 'refuse')$$);
SELECT regress_try($$SELECT tool_audit.track_change()$$);
RESET ROLE;

-- three inserts outside any call, two updates of the call (the excluded
-- notes column is not recorded; the update of notes alone left nothing);
-- the ssn is pseudonymized; recorded_by is the writer, not the owner
SELECT operation, row_key, old_values, new_values - 'ssn' - 'updated_at' AS new_values,
       new_values->>'ssn' LIKE 'hmac:%' AS ssn_pseudonymized,
       call_event_id, tenant_id, recorded_by, application_name, txid IS NOT NULL AS has_txid
  FROM tool_audit.data_changes WHERE table_name = 'public.customers' AND id > :mark ORDER BY id;
SELECT count(*) AS clear_ssn_anywhere FROM tool_audit.data_changes
 WHERE (row_key || old_values || new_values)::text ~ '078-05-1120|219-09-9999';

-- changes_by_call and the timeline
SELECT table_name, operation, row_key, old_values, new_values, recorded_by
  FROM tool_audit.changes_by_call('11111111-1111-4111-8111-111111111111');
SELECT * FROM tool_audit.conversation_timeline('conv_track');

-- a call that fails and rolls back leaves no change row
BEGIN;
SET LOCAL tool_audit.call = '22222222-2222-4222-8222-222222222222';
UPDATE public.customers SET plan = 'enterprise' WHERE id = 1;
DELETE FROM public.customers WHERE id = 2;
ROLLBACK;
SELECT count(*) AS rolled_back_changes FROM tool_audit.data_changes
 WHERE call_event_id = '22222222-2222-4222-8222-222222222222';

-- savepoints: a rolled-back savepoint takes its change rows with it
BEGIN;
SET LOCAL tool_audit.call = '33333333-3333-4333-8333-333333333333';
UPDATE public.customers SET name = 'Ada L.' WHERE id = 1;
SAVEPOINT s1;
UPDATE public.customers SET name = 'Ada X' WHERE id = 1;
DELETE FROM public.customers WHERE id = 3;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
UPDATE public.customers SET plan = 'team' WHERE id = 2;
RELEASE SAVEPOINT s2;
COMMIT;
SELECT operation, row_key, old_values, new_values FROM tool_audit.changes_by_call('33333333-3333-4333-8333-333333333333');

-- a composite key; TRUNCATE recorded as one row
BEGIN;
SET LOCAL tool_audit.call = '44444444-4444-4444-8444-444444444444';
INSERT INTO public.order_lines VALUES (7, 1, 'A-1', 2), (7, 2, 'B-2', 1);
UPDATE public.order_lines SET qty = 3 WHERE order_id = 7 AND line_no = 2;
DELETE FROM public.order_lines WHERE order_id = 7 AND line_no = 1;
COMMIT;
SELECT operation, row_key, old_values, new_values FROM tool_audit.changes_by_call('44444444-4444-4444-8444-444444444444');
TRUNCATE public.order_lines;
SELECT operation, row_key, call_event_id FROM tool_audit.data_changes
 WHERE table_name = 'public.order_lines' AND operation = 'TRUNCATE';
-- TRUNCATE of customers is refused (the default)
SELECT regress_try($$TRUNCATE public.customers$$);
SELECT count(*) AS customers_left FROM public.customers;

-- a partitioned table: the partitions' changes are recorded under its name
CREATE TABLE public.events (region text, id integer, what text, PRIMARY KEY (region, id))
    PARTITION BY LIST (region);
CREATE TABLE public.events_eu PARTITION OF public.events FOR VALUES IN ('eu');
CREATE TABLE public.events_us PARTITION OF public.events FOR VALUES IN ('us');
SELECT (tool_audit.track('public.events'))->'table' AS tracked;
CREATE TABLE public.events_ap PARTITION OF public.events FOR VALUES IN ('ap');  -- a later partition too
INSERT INTO public.events VALUES ('eu', 1, 'a'), ('us', 1, 'b'), ('ap', 1, 'c');
UPDATE public.events SET what = 'z' WHERE id = 1 AND region = 'us';
SELECT table_name, operation, row_key, new_values FROM tool_audit.data_changes
 WHERE table_name LIKE 'public.events%' ORDER BY id;
SELECT version, operation, row_after FROM tool_audit.row_history('public.events', '{"region": "us", "id": 1}');
SELECT tool_audit.untrack('public.events');
DROP TABLE public.events;

-- row_history and row_as_of on a row changed five times by three calls
-- (and once outside any call), after a call logged first, so that its
-- changes take its tenant
SELECT tool_name FROM tool_audit.log_call('change_email', '{}', '{}', 3,
  '{"event_id": "55555555-5555-4555-8555-555555555555", "conversation_id": "conv_hist", "turn_number": 2,
    "user_id": "usr_2", "user_role": "agent", "model": "claude", "tenant_id": "acme"}');
BEGIN;
SET LOCAL tool_audit.call = '55555555-5555-4555-8555-555555555555';
UPDATE public.customers SET name = 'Bob B.' WHERE id = 2;
UPDATE public.customers SET plan = 'pro' WHERE id = 2;
COMMIT;
UPDATE public.customers SET name = 'Bob C.' WHERE id = 2;
BEGIN;
SET LOCAL tool_audit.call = '66666666-6666-4666-8666-666666666666';
DELETE FROM public.customers WHERE id = 2;
SELECT tool_name FROM tool_audit.log_call('close_account', '{}', '{}', 4,
  '{"event_id": "66666666-6666-4666-8666-666666666666", "conversation_id": "conv_hist", "turn_number": 3,
    "user_id": "usr_2", "model": "claude", "tenant_id": "acme", "call_trigger": "proactive"}');
COMMIT;
SELECT version, operation, changed_by, conversation_id, turn_number,
       old_values - 'ssn' - 'updated_at' AS old_values, new_values - 'ssn' - 'updated_at' AS new_values,
       row_after - 'ssn' - 'updated_at' AS row_after
  FROM tool_audit.row_history('public.customers', '{"id": 2}');
-- as of each version's time, and before the first
SELECT h.version, tool_audit.row_as_of('public.customers', '{"id": 2}', h.recorded_at) - 'ssn' - 'updated_at' AS as_of
  FROM tool_audit.row_history('public.customers', '{"id": 2}') h ORDER BY h.version;
SELECT tool_audit.row_as_of('public.customers', '{"id": 2}', '2000-01-01') AS before_any;
SELECT (tool_audit.row_as_of('public.customers', '{"id": 2}', now()))->>'ssn' LIKE 'hmac:%' AS ssn_stays_pseudonymized;
SELECT regress_try($$SELECT tool_audit.row_as_of('public.customers', '{"id": 2}', NULL)$$);
SELECT regress_try($$SELECT * FROM tool_audit.changes_by_call(NULL)$$);

-- tenants: the change rows' tenant comes from the tenant column here
SELECT tenant_id, count(*) FROM tool_audit.data_changes WHERE table_name = 'public.customers' AND id > :mark
 GROUP BY 1 ORDER BY 1;
-- (a reader of its own, bound in a transaction rolled back after: no
-- binding event or role left for the other test files, and no binding
-- another file left on a shared reader role)
BEGIN;
CREATE ROLE regress_track_globex IN ROLE tool_audit_reader;
SET LOCAL ROLE regress_admin;
SELECT tool_audit.bind_tenant('regress_track_globex', 'globex');
RESET ROLE;
SET LOCAL ROLE regress_track_globex;
SELECT DISTINCT tenant_id FROM tool_audit.data_changes WHERE id > :mark;
SELECT count(*) AS acme_history_seen_by_globex FROM tool_audit.row_history('public.customers', '{"id": 2}');
SELECT version, operation, changed_by FROM tool_audit.row_history('public.customers', '{"id": 3}');
SELECT count(*) AS acme_changes_seen_by_globex FROM tool_audit.changes_by_call('11111111-1111-4111-8111-111111111111');
RESET ROLE;
ROLLBACK;

-- include: only the listed columns; tenant from the call (none visible: NULL)
SET ROLE regress_admin;
SELECT tool_audit.track('public.customers', '{"columns": ["plan"]}');
RESET ROLE;
BEGIN;
SET LOCAL tool_audit.call = '77777777-7777-4777-8777-777777777777';
UPDATE public.customers SET name = 'not tracked' WHERE id = 1;
UPDATE public.customers SET plan = 'basic', name = 'Ada' WHERE id = 1;
INSERT INTO public.customers (id, name, plan, ssn) VALUES (9, 'Dee', 'pro', '078-05-1120');
COMMIT;
SELECT operation, row_key, old_values, new_values, tenant_id
  FROM tool_audit.data_changes WHERE call_event_id = '77777777-7777-4777-8777-777777777777' ORDER BY id;

-- a call logged before its changes gives them its tenant
SELECT tool_name FROM tool_audit.log_call('set_plan', '{}', '{}', 1,
  '{"event_id": "88888888-8888-4888-8888-888888888888", "tenant_id": "initech"}');
BEGIN;
SET LOCAL tool_audit.call = '88888888-8888-4888-8888-888888888888';
UPDATE public.customers SET plan = 'pro' WHERE id IN (1, 9);
COMMIT;
SELECT row_key, tenant_id FROM tool_audit.data_changes
 WHERE call_event_id = '88888888-8888-4888-8888-888888888888' ORDER BY id;
-- a tenant learnt from a call row this transaction wrote goes with its
-- rollback (the next transaction looks again)
BEGIN;
SELECT tool_name FROM tool_audit.log_call('set_plan', '{}', '{}', 1,
  '{"event_id": "99999999-9999-4999-8999-999999999999", "tenant_id": "hooli"}');
SET LOCAL tool_audit.call = '99999999-9999-4999-8999-999999999999';
UPDATE public.customers SET plan = 'basic' WHERE id = 1;
SELECT tenant_id FROM tool_audit.data_changes WHERE call_event_id = '99999999-9999-4999-8999-999999999999';
ROLLBACK;
SELECT tool_name FROM tool_audit.log_call('set_plan', '{}', '{}', 1,
  '{"event_id": "99999999-9999-4999-8999-999999999999", "tenant_id": "initech"}');
BEGIN;
SET LOCAL tool_audit.call = '99999999-9999-4999-8999-999999999999';
UPDATE public.customers SET plan = 'team' WHERE id = 1;
COMMIT;
SELECT new_values, tenant_id FROM tool_audit.data_changes WHERE call_event_id = '99999999-9999-4999-8999-999999999999';

-- the table's owner (not the extension's) cannot switch the tracking off:
-- the DDL guard refuses disabling, dropping, renaming or replacing the
-- triggers; other triggers of the table stay the owner's to manage
CREATE TABLE public.owned_by_writer (id integer PRIMARY KEY, v text);
ALTER TABLE public.owned_by_writer OWNER TO regress_writer;
SELECT (tool_audit.track('public.owned_by_writer'))->'table' AS tracked;
CREATE FUNCTION public.noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER own_trigger AFTER INSERT ON public.owned_by_writer FOR EACH ROW EXECUTE FUNCTION public.noop_trigger();
SET ROLE regress_writer;
SELECT regress_try($$ALTER TABLE public.owned_by_writer DISABLE TRIGGER tool_audit_track$$);
SELECT regress_try($$ALTER TABLE public.owned_by_writer DISABLE TRIGGER ALL$$);
SELECT regress_try($$ALTER TABLE public.owned_by_writer DISABLE TRIGGER USER$$);
SELECT regress_try($$ALTER TABLE public.owned_by_writer ENABLE TRIGGER tool_audit_track$$);
SELECT regress_try($$ALTER TABLE public.owned_by_writer ENABLE REPLICA TRIGGER tool_audit_track_truncate$$);
SELECT regress_try($$DROP TRIGGER tool_audit_track ON public.owned_by_writer$$);
SELECT regress_try($$ALTER TRIGGER tool_audit_track ON public.owned_by_writer RENAME TO x$$);
SELECT regress_try($$CREATE OR REPLACE TRIGGER tool_audit_track AFTER INSERT ON public.owned_by_writer FOR EACH ROW EXECUTE FUNCTION public.noop_trigger()$$);
SELECT regress_try($$ALTER TABLE public.owned_by_writer DISABLE TRIGGER own_trigger$$);
SELECT regress_try($$DROP TRIGGER own_trigger ON public.owned_by_writer$$);
INSERT INTO public.owned_by_writer VALUES (1, 'still tracked');
RESET ROLE;
SELECT operation, new_values, recorded_by FROM tool_audit.data_changes WHERE table_name = 'public.owned_by_writer';
SET ROLE regress_admin;
SELECT table_name, status FROM tool_audit.tracking_status() WHERE table_name = 'public.owned_by_writer';
SELECT tool_audit.untrack('public.owned_by_writer');
RESET ROLE;
DROP TABLE public.owned_by_writer;
DROP FUNCTION public.noop_trigger();

-- nor make a tracking trigger depend on an extension (DROP EXTENSION would
-- then drop it)
CREATE TABLE public.owned_by_writer2 (id integer PRIMARY KEY, v text);
ALTER TABLE public.owned_by_writer2 OWNER TO regress_writer;
SELECT (tool_audit.track('public.owned_by_writer2'))->'table' AS tracked;
SET ROLE regress_writer;
SELECT regress_try($$ALTER TRIGGER tool_audit_track ON public.owned_by_writer2 DEPENDS ON EXTENSION plpgsql$$);
SELECT regress_try($$ALTER TRIGGER tool_audit_track_truncate ON public.owned_by_writer2 NO DEPENDS ON EXTENSION plpgsql$$);
-- session_replication_role is a superuser's (and the triggers are ENABLE ALWAYS)
SELECT regress_try($$SET session_replication_role = replica$$);
RESET ROLE;
SELECT count(*) AS extension_dependencies FROM pg_depend d JOIN pg_trigger g ON g.oid = d.objid
 WHERE d.classid = 'pg_trigger'::regclass AND d.deptype = 'x' AND g.tgrelid = 'public.owned_by_writer2'::regclass;
SELECT tool_audit.untrack('public.owned_by_writer2');
DROP TABLE public.owned_by_writer2;

-- a partitioned table the writer owns: its new and attached partitions get
-- the trigger (the owner needs no EXECUTE of its own on track_change()), each
-- partition is in tracking_status(), and DETACH PARTITION is refused
GRANT CREATE ON SCHEMA public TO regress_writer;
CREATE TABLE public.w_events (region text, id integer, what text, PRIMARY KEY (region, id))
    PARTITION BY LIST (region);
CREATE TABLE public.w_events_eu PARTITION OF public.w_events FOR VALUES IN ('eu');
ALTER TABLE public.w_events OWNER TO regress_writer;
ALTER TABLE public.w_events_eu OWNER TO regress_writer;
SELECT (tool_audit.track('public.w_events'))->'table' AS tracked;
SET ROLE regress_writer;
SELECT regress_try($$CREATE TABLE public.w_events_us PARTITION OF public.w_events FOR VALUES IN ('us')$$);
SELECT regress_try($$CREATE TABLE public.w_events_ap (region text, id integer, what text, PRIMARY KEY (region, id))$$);
SELECT regress_try($$ALTER TABLE public.w_events ATTACH PARTITION public.w_events_ap FOR VALUES IN ('ap')$$);
INSERT INTO public.w_events VALUES ('eu', 1, 'a'), ('us', 1, 'b'), ('ap', 1, 'c');
SELECT regress_try($$ALTER TABLE public.w_events DETACH PARTITION public.w_events_us$$);
SELECT regress_try($$ALTER TABLE public.w_events DETACH PARTITION public.w_events_us CONCURRENTLY$$);
SELECT regress_try($$ALTER TABLE public.w_events_eu DISABLE TRIGGER tool_audit_track$$);
-- and still cannot install track_change() itself, however it names it
SELECT regress_try($$CREATE TRIGGER forge AFTER INSERT ON public.w_events_ap FOR EACH ROW EXECUTE FUNCTION tool_audit.track_change('all', '', 'refuse')$$);
SET search_path = tool_audit, public;
SELECT regress_try($$CREATE TRIGGER forge AFTER INSERT ON public.w_events_ap FOR EACH ROW EXECUTE FUNCTION track_change('all', '', 'refuse')$$);
RESET search_path;
RESET ROLE;
SELECT table_name, operation, row_key FROM tool_audit.data_changes
 WHERE id > :mark AND table_name = 'public.w_events' ORDER BY id;
SET ROLE regress_admin;
SELECT table_name, options->'partition_of' AS partition_of, status FROM tool_audit.tracking_status()
 WHERE table_name LIKE 'public.w\_events%';
RESET ROLE;
-- a superuser can disable a partition's trigger: tracking_status() shows it
-- and run_alert_checks() raises an alert
ALTER TABLE public.w_events_us DISABLE TRIGGER tool_audit_track;
SET ROLE regress_admin;
SELECT table_name, status FROM tool_audit.tracking_status() WHERE status <> 'ok';
SELECT count(*) > 0 AS raised FROM jsonb_array_elements(tool_audit.run_alert_checks()) r
 WHERE r->>'rule' = 'audit_protections';
SELECT p FROM tool_audit.alerts a,
       jsonb_array_elements(CASE WHEN jsonb_typeof(a.detail->'problems') = 'array' THEN a.detail->'problems' END) p
 WHERE a.rule_name = 'audit_protections' AND p->>'problem' LIKE 'tracking:%' ORDER BY 1;
SELECT tool_audit.untrack('public.w_events');
RESET ROLE;
DROP TABLE public.w_events;
REVOKE CREATE ON SCHEMA public FROM regress_writer;

-- a superuser (here also the extension's owner) still can; tracking_status()
-- shows it
-- disabling or dropping the trigger is seen by tracking_status()
ALTER TABLE public.customers DISABLE TRIGGER tool_audit_track;
SET ROLE regress_admin;
SELECT table_name, status FROM tool_audit.tracking_status();
RESET ROLE;
ALTER TABLE public.customers ENABLE ALWAYS TRIGGER tool_audit_track;
DROP TRIGGER tool_audit_track_truncate ON public.order_lines;
SET ROLE regress_admin;
SELECT table_name, status FROM tool_audit.tracking_status();
-- untrack: audited; after it nothing is recorded
SELECT tool_audit.untrack('public.customers');
SELECT tool_audit.untrack('public.customers');
SELECT tool_audit.untrack('public.order_lines');
SELECT table_name, status FROM tool_audit.tracking_status();
RESET ROLE;
UPDATE public.customers SET plan = 'gone' WHERE id = 1;
SELECT count(*) AS after_untrack FROM tool_audit.data_changes WHERE new_values->>'plan' = 'gone';
SELECT event_type, payload FROM tool_audit.admin_events
 WHERE event_type IN ('tool_audit.track', 'tool_audit.untrack') ORDER BY id;

DROP TABLE public.customers, public.order_lines, public.no_key, public.writer_own;
