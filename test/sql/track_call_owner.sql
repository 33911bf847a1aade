-- tool_audit.call names the call a row change belongs to (1.5): a writer
-- cannot name another writer's call, which would give its changes that
-- call's tenant and user -> model -> tool attribution (src/track.c,
-- call_tenant_of()).  Two writer roles, as two applications.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_writer_b') THEN
        CREATE ROLE regress_writer_b IN ROLE tool_audit_writer;
    END IF;
END $$;
RESET client_min_messages;

SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
CREATE TABLE public.co_accounts (id integer PRIMARY KEY, balance integer);
CREATE TABLE public.co_tenanted (id integer PRIMARY KEY, balance integer, tenant text);
GRANT SELECT, INSERT, UPDATE ON public.co_accounts, public.co_tenanted TO regress_writer, regress_writer_b;
SET ROLE regress_admin;
SELECT tool_audit.track('public.co_accounts') IS NOT NULL AS tracked;
SELECT tool_audit.track('public.co_tenanted', '{"tenant_column": "tenant"}') IS NOT NULL AS tracked;
RESET ROLE;

-- writer A records a call of tenant acme, committed
SET ROLE regress_writer;
SELECT tool_name FROM tool_audit.log_call('refund', '{}', '{"ok": true}', 3,
  '{"event_id": "c0c0c0c0-0000-4000-8000-00000000000a", "user_id": "usr_a", "model": "gpt-4.1", "tenant_id": "acme"}');
INSERT INTO public.co_accounts VALUES (1, 10), (2, 20);
INSERT INTO public.co_tenanted VALUES (1, 10, 'globex');
RESET ROLE;

-- writer B names A's call: refused, in the same transaction as the
-- call's insert or in a later one, for a table with a tenant column too
SET ROLE regress_writer_b;
SELECT regress_try($$SET tool_audit.call = 'c0c0c0c0-0000-4000-8000-00000000000a'; UPDATE public.co_accounts SET balance = 0 WHERE id = 1$$);
RESET tool_audit.call;
SELECT regress_try($$SET LOCAL tool_audit.call = 'c0c0c0c0-0000-4000-8000-00000000000a'; UPDATE public.co_tenanted SET balance = 0 WHERE id = 1$$);
BEGIN;
SET LOCAL tool_audit.call = 'c0c0c0c0-0000-4000-8000-00000000000a';
SELECT regress_try($$INSERT INTO public.co_accounts VALUES (3, 30)$$);
COMMIT;
-- B without a call: recorded as outside any call
UPDATE public.co_accounts SET balance = 21 WHERE id = 2;
-- B's own call: linked
BEGIN;
SELECT tool_name FROM tool_audit.log_call('topup', '{}', '{"ok": true}', 3,
  '{"event_id": "c0c0c0c0-0000-4000-8000-00000000000b", "user_id": "usr_b", "tenant_id": "initech"}');
SET LOCAL tool_audit.call = 'c0c0c0c0-0000-4000-8000-00000000000b';
UPDATE public.co_accounts SET balance = 22 WHERE id = 2;
COMMIT;
RESET ROLE;

-- A names its own call (the cached lookup is per role, not per session)
SET ROLE regress_writer;
BEGIN;
SET LOCAL tool_audit.call = 'c0c0c0c0-0000-4000-8000-00000000000a';
UPDATE public.co_accounts SET balance = 9 WHERE id = 1;
SET LOCAL ROLE regress_writer_b;
SELECT regress_try($$UPDATE public.co_accounts SET balance = 8 WHERE id = 1$$);
COMMIT;
RESET ROLE;

-- a call not recorded yet (SET LOCAL, the statements, then log_call) is
-- still accepted
SET ROLE regress_writer_b;
BEGIN;
SET LOCAL tool_audit.call = 'c0c0c0c0-0000-4000-8000-00000000000c';
UPDATE public.co_accounts SET balance = 23 WHERE id = 2;
SELECT tool_name FROM tool_audit.log_call('later', '{}', '{"ok": true}', 3,
  '{"event_id": "c0c0c0c0-0000-4000-8000-00000000000c", "tenant_id": "initech"}');
COMMIT;
RESET ROLE;

SELECT table_name, operation, old_values, new_values, call_event_id, tenant_id, recorded_by
  FROM tool_audit.data_changes WHERE id > :mark ORDER BY id;

SET ROLE regress_admin;
SELECT tool_audit.untrack('public.co_accounts');
SELECT tool_audit.untrack('public.co_tenanted');
RESET ROLE;
DROP TABLE public.co_accounts, public.co_tenanted;
