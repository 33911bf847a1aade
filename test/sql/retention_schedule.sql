-- schedule_retention() and unschedule_retention() on a server without pg_cron
-- (the pg_regress instances do not load it): who may call them, the schedule
-- checked without being quoted, the job's role checked, and the refusal
-- (55000) whose hint says what to run.  test/t/018_retention_cron.pl runs the
-- job for real under pg_cron.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- SQLSTATE, message, detail and hint of the error the statement raises, the
-- database's name replaced by <db>, and whether any part quotes `secret`
CREATE FUNCTION schedule_error(sql text, secret text DEFAULT NULL)
RETURNS TABLE (error text, detail text, hint text, quotes_secret boolean)
LANGUAGE plpgsql AS $$
DECLARE
    msg text; det text; hnt text;
BEGIN
    EXECUTE sql;
    RETURN QUERY SELECT 'no error', NULL::text, NULL::text, false;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN QUERY SELECT SQLSTATE || ': ' || replace(msg, current_database(), '<db>'),
        replace(det, current_database(), '<db>'), replace(hnt, current_database(), '<db>'),
        strpos(concat_ws(' ', msg, det, hnt), coalesce(secret, E'\x01')) > 0;
END $$;
GRANT EXECUTE ON FUNCTION schedule_error(text, text) TO PUBLIC;
SELECT count(*) AS events FROM tool_audit.admin_events \gset

-- admins only
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.schedule_retention()$$);
SELECT regress_try($$SELECT tool_audit.unschedule_retention()$$);
RESET ROLE;
SET ROLE regress_nobody;
SELECT regress_try($$SELECT tool_audit.schedule_retention('0 3 * * *')$$);
RESET ROLE;
SELECT regress_try($$SELECT tool_audit.require_pg_cron('x')$$) AS not_for_admins
  FROM (SELECT set_config('role', 'regress_admin', false)) s;
RESET ROLE;

-- a schedule is checked before anything else, and never quoted
\x on
SELECT * FROM schedule_error($$SELECT tool_audit.schedule_retention('sk-ant-FAKE01-schedule')$$, 'FAKE01');
\x off
SELECT s AS bad_schedule, (schedule_error(format('SELECT tool_audit.schedule_retention(%L)', s))).error
  FROM unnest(ARRAY['', '0 3 * *', '0 3 * * * *', '0 3 * * * ; DROP TABLE x', '@reboot',
                    '0 3 * * *' || repeat(' ', 100) || 'x', 'every night']) s;
SELECT (schedule_error('SELECT tool_audit.schedule_retention(NULL)')).error AS null_schedule;

-- the job runs as the role that schedules it: an admin role without LOGIN
-- cannot run it (the fixtures' roles cannot log in)
SET ROLE regress_admin;
SELECT error, hint FROM schedule_error($$SELECT tool_audit.schedule_retention('0 3 * * *')$$);
RESET ROLE;
-- a login admin (purge_expired() is granted to tool_audit_admin: a role
-- without it cannot call schedule_retention() either)
CREATE ROLE regress_cron_admin LOGIN;
GRANT tool_audit_admin TO regress_cron_admin;
-- on a server without pg_cron: what to do
SET ROLE regress_cron_admin;
\x on
SELECT * FROM schedule_error($$SELECT tool_audit.schedule_retention('0 3 * * *')$$);
-- with pg_cron's database set to another one: the exact command to run there
-- (cron.database_name is pg_cron's setting; here a placeholder, as pg_cron is not loaded)
SET cron.database_name = 'cron_home';
SELECT * FROM schedule_error($$SELECT tool_audit.schedule_retention('30 2 * * 0')$$);
SELECT * FROM schedule_error($$SELECT tool_audit.schedule_retention(' @daily ')$$);
SELECT * FROM schedule_error($$SELECT tool_audit.unschedule_retention()$$);
-- pg_cron's database is this one, but the extension is not created
SELECT set_config('cron.database_name', current_database(), false) IS NOT NULL AS set;
SELECT * FROM schedule_error($$SELECT tool_audit.schedule_retention()$$);
\x off
RESET cron.database_name;
RESET ROLE;

-- no refusal wrote an event
SELECT count(*) - :events AS new_events FROM tool_audit.admin_events;
DROP ROLE regress_cron_admin;
DROP FUNCTION schedule_error(text, text);
