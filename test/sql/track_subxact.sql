-- Savepoints rolled back in a transaction that changes tracked rows (1.5,
-- src/track.c and src/track_write.c):
--  * the tenant learnt from a call row written in a savepoint that is rolled
--    back is not given to the changes after it: the call row is gone, as
--    after a whole transaction rolled back (track.sql), so the change is made
--    outside any visible call and has no tenant;
--  * a CREATE INDEX of data_changes in a savepoint rolled back after a change
--    row (data_changes kept open, opened again with the new index) leaves no
--    reference to the index that never was: no relcache warning, and the
--    changes before and after it are stored.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
CREATE TABLE public.sx_accounts (id integer PRIMARY KEY, plan text);
INSERT INTO public.sx_accounts VALUES (1, 'free'), (2, 'free');
GRANT SELECT, INSERT, UPDATE ON public.sx_accounts TO regress_writer;
SET ROLE regress_admin;
SELECT (tool_audit.track('public.sx_accounts'))->'table' AS tracked;
RESET ROLE;

-- the call of a rolled back savepoint gives no tenant
SET ROLE regress_writer;
BEGIN;
SAVEPOINT s;
SELECT tool_name FROM tool_audit.log_call('set_plan', '{}', '{}', 1,
  '{"event_id": "5a5a5a5a-5a5a-4a5a-8a5a-5a5a5a5a5a5a", "tenant_id": "hooli"}');
SET LOCAL tool_audit.call = '5a5a5a5a-5a5a-4a5a-8a5a-5a5a5a5a5a5a';
UPDATE public.sx_accounts SET plan = 'basic' WHERE id = 1;
ROLLBACK TO s;
SET LOCAL tool_audit.call = '5a5a5a5a-5a5a-4a5a-8a5a-5a5a5a5a5a5a';
UPDATE public.sx_accounts SET plan = 'team' WHERE id = 1;
COMMIT;
RESET ROLE;
SELECT count(*) AS call_rows FROM tool_audit.tool_calls
 WHERE event_id = '5a5a5a5a-5a5a-4a5a-8a5a-5a5a5a5a5a5a';
SELECT operation, new_values, call_event_id, tenant_id FROM tool_audit.data_changes
 WHERE id > :mark AND table_name = 'public.sx_accounts' ORDER BY id;

-- an index of data_changes created in a rolled back savepoint
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
BEGIN;
UPDATE public.sx_accounts SET plan = 'p1' WHERE id = 2;
SAVEPOINT s;
CREATE INDEX sx_data_changes_op ON tool_audit.data_changes (operation);
UPDATE public.sx_accounts SET plan = 'p2' WHERE id = 2;
ROLLBACK TO s;
UPDATE public.sx_accounts SET plan = 'p3' WHERE id = 2;
COMMIT;
SELECT count(*) AS index_left FROM pg_class WHERE relname = 'sx_data_changes_op';
SELECT operation, old_values, new_values FROM tool_audit.data_changes
 WHERE id > :mark AND table_name = 'public.sx_accounts' ORDER BY id;
-- and once more, the index committed this time
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
BEGIN;
UPDATE public.sx_accounts SET plan = 'q1' WHERE id = 2;
SAVEPOINT s;
CREATE INDEX sx_data_changes_op ON tool_audit.data_changes (operation);
UPDATE public.sx_accounts SET plan = 'q2' WHERE id = 2;
RELEASE s;
SAVEPOINT t;
UPDATE public.sx_accounts SET plan = 'q3' WHERE id = 2;
ROLLBACK TO t;
UPDATE public.sx_accounts SET plan = 'q4' WHERE id = 2;
COMMIT;
SELECT operation, old_values, new_values FROM tool_audit.data_changes
 WHERE id > :mark AND table_name = 'public.sx_accounts' ORDER BY id;
DROP INDEX tool_audit.sx_data_changes_op;

-- the rows of this file are chained without a problem
SELECT count(*) AS problems FROM tool_audit.verify() v
 WHERE v.table_name = 'data_changes' AND v.row_id IN
       (SELECT id FROM tool_audit.data_changes WHERE table_name = 'public.sx_accounts');

SET ROLE regress_admin;
SELECT tool_audit.untrack('public.sx_accounts');
RESET ROLE;
DROP TABLE public.sx_accounts;
