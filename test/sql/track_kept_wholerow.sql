-- data_changes' CHECK expressions are made ready once per backend and
-- evaluated in every later transaction when track_write.c's reusable()
-- allows it.  A whole-row reference (data_changes as a record) keeps, at
-- its first evaluation, a row descriptor in the executor state's memory,
-- which goes with the transaction: a later transaction's evaluation reads
-- freed memory.  The DDL guard refuses such a CHECK to the table's owner;
-- a superuser can add one with the guard's event trigger disabled (not
-- preloaded; preloaded, the guard refuses it and the file checks nothing),
-- as an upgrade script could.  Every transaction's change row must still
-- be stored.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

CREATE TABLE public.kw_accounts (id integer PRIMARY KEY, balance integer);
INSERT INTO public.kw_accounts SELECT i, 0 FROM generate_series(1, 3) i;
SET ROLE regress_admin;
SELECT (tool_audit.track('public.kw_accounts'))->'table' AS tracked;
RESET ROLE;
-- (preloaded, the guard's hook refuses it: the test then checks nothing)
DO $$
BEGIN
    ALTER EVENT TRIGGER tool_audit_ddl_start DISABLE;
    ALTER TABLE tool_audit.data_changes ADD CONSTRAINT regress_kw_wholerow
        CHECK (row_to_json(data_changes) IS NOT NULL) NOT VALID;
    ALTER EVENT TRIGGER tool_audit_ddl_start ENABLE ALWAYS;
EXCEPTION WHEN OTHERS THEN
    NULL;
END $$;

SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
-- one change row a transaction, with other work in between
UPDATE public.kw_accounts SET balance = 1 WHERE id = 1;
SELECT count(*) > 0 AS busy FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid;
UPDATE public.kw_accounts SET balance = 2 WHERE id = 2;
SELECT count(*) > 0 AS busy FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid;
UPDATE public.kw_accounts SET balance = 3 WHERE id = 3;
BEGIN;
UPDATE public.kw_accounts SET balance = 4 WHERE id = 1;
UPDATE public.kw_accounts SET balance = 5 WHERE id = 2;
COMMIT;
UPDATE public.kw_accounts SET balance = 6 WHERE id = 3;
SELECT row_key, new_values FROM tool_audit.data_changes WHERE id > :mark ORDER BY id;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_constraint WHERE conname = 'regress_kw_wholerow') THEN
        ALTER EVENT TRIGGER tool_audit_ddl_start DISABLE;
        ALTER EVENT TRIGGER tool_audit_sql_drop DISABLE;
        ALTER TABLE tool_audit.data_changes DROP CONSTRAINT regress_kw_wholerow;
        ALTER EVENT TRIGGER tool_audit_sql_drop ENABLE ALWAYS;
        ALTER EVENT TRIGGER tool_audit_ddl_start ENABLE ALWAYS;
    END IF;
END $$;
SELECT count(*) AS constraint_left FROM pg_constraint WHERE conname = 'regress_kw_wholerow';
SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname LIKE 'tool_audit%' ORDER BY 1;
SET ROLE regress_admin;
SELECT tool_audit.untrack('public.kw_accounts');
RESET ROLE;
DROP TABLE public.kw_accounts;
