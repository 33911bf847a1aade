-- A column that track() was told to exclude never reaches data_changes
-- (found by an attack review).  The exclusion is kept by name in the
-- trigger's arguments (src/track.c): renamed by the table's owner, the
-- excluded column would be tracked under its new name.  So the DDL guard
-- refuses RENAME COLUMN from or to a name the tracking names (excluded,
-- included or tenant column) for everyone but the extension's owner; other
-- columns are renamed freely.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

CREATE TABLE public.xr_users (id integer PRIMARY KEY, password_hint text, v integer);
INSERT INTO public.xr_users VALUES (1, 'first-secret', 1);
GRANT SELECT, INSERT, UPDATE ON public.xr_users TO regress_writer;
ALTER TABLE public.xr_users OWNER TO regress_writer;
SET ROLE regress_admin;
SELECT (tool_audit.track('public.xr_users', '{"exclude": ["password_hint"]}'))->'options' AS options;
RESET ROLE;

SET ROLE regress_writer;
ALTER TABLE public.xr_users RENAME COLUMN password_hint TO hint;
-- nor another column to the excluded name (it would drop out of the trail)
ALTER TABLE public.xr_users RENAME COLUMN v TO password_hint;
-- another column: renamed, and tracked under its new name
ALTER TABLE public.xr_users RENAME COLUMN v TO version;
UPDATE public.xr_users SET version = 2, password_hint = 'second-secret' WHERE id = 1;
RESET ROLE;
-- a superuser is refused too (all but the extension's owner, which
-- track() and untrack() run as)
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_xr_super;
RESET client_min_messages;
CREATE ROLE regress_xr_super SUPERUSER;
SET ROLE regress_xr_super;
ALTER TABLE public.xr_users RENAME COLUMN password_hint TO hint;
RESET ROLE;
DROP ROLE regress_xr_super;
SELECT operation, old_values, new_values FROM tool_audit.data_changes
 WHERE table_name = 'public.xr_users' ORDER BY id;

-- the excluded column's values are nowhere in the trail
SELECT count(*) AS secrets_recorded FROM tool_audit.data_changes
 WHERE table_name = 'public.xr_users'
   AND (old_values::text LIKE '%secret%' OR new_values::text LIKE '%secret%');

SET ROLE regress_admin;
SELECT tool_audit.untrack('public.xr_users');
RESET ROLE;
DROP TABLE public.xr_users;
