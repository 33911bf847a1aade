-- ---------------------------------------------------------------------------
-- The nightly purge as a pg_cron job (1.4).  One job per database, named
-- "tool_audit retention in <database>", running
--     SELECT tool_audit.purge_expired()
-- in this database as the role that scheduled it: a role that can log in and
-- execute purge_expired() (an admin), never the owner unless a superuser
-- scheduled it.  Only when pg_cron is installed in this database; elsewhere
-- the error's hint is the command to run in pg_cron's database.
-- ---------------------------------------------------------------------------

-- require_pg_cron(statement): returns when pg_cron's functions can be called
-- here; otherwise raises 55000 with the exact steps to take, `statement`
-- being what to run in pg_cron's database when it is another one.
CREATE FUNCTION tool_audit.require_pg_cron(statement text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    cron_version text;
BEGIN
    SELECT e.extversion INTO cron_version FROM pg_extension e WHERE e.extname = 'pg_cron';
    IF cron_version IS NOT NULL THEN
        IF to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NULL THEN
            RAISE EXCEPTION 'pg_cron % is too old: tool_audit needs cron.schedule_in_database() (pg_cron 1.4)', cron_version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Install pg_cron 1.4 or later, run ALTER EXTENSION pg_cron UPDATE; in this database, and call this function again.';
        END IF;
        RETURN;
    END IF;
    IF cron_db = current_database() THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'pg_cron is loaded, and this is its database (cron.database_name).',
                  HINT = 'Run CREATE EXTENSION pg_cron; in this database, and call this function again.';
    END IF;
    IF coalesce(cron_db, '') = '' THEN
        RAISE EXCEPTION 'pg_cron is not loaded on this server'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'tool_audit runs its scheduled work (the purge, the alert checks) as pg_cron jobs, scheduled from the database where pg_cron is installed (cron.database_name).',
                  HINT = format('Install pg_cron (Debian: postgresql-15-cron), set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L in postgresql.conf, restart, run CREATE EXTENSION pg_cron; in this database, and call this function again.',
                                current_database());
    END IF;
    RAISE EXCEPTION 'pg_cron is installed in database %, not in this one', quote_ident(cron_db)
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = 'pg_cron''s jobs are managed from its own database (cron.database_name); the job itself runs in this one.',
              HINT = format('In database %s, as a superuser, run: %s', quote_ident(cron_db), statement);
END
$$;
COMMENT ON FUNCTION tool_audit.require_pg_cron(text) IS
    'Raises 55000, with the command to run in pg_cron''s database, unless pg_cron is installed in this one';

-- remove_retention_jobs(): removes this database's purge jobs (whoever owns
-- them), under a lock on cron.job that makes concurrent callers take turns,
-- and returns them as a list (NULL if there were none).  Only for the two
-- functions below, which have checked that pg_cron is here.
CREATE FUNCTION tool_audit.remove_retention_jobs()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit retention in ' || current_database();
    removed jsonb;
BEGIN
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    SELECT jsonb_agg(jsonb_build_object('job_id', j.jobid, 'schedule', j.schedule,
                                        'command', j.command, 'username', j.username,
                                        'active', j.active) ORDER BY j.jobid)
      INTO removed
      FROM cron.job j
     WHERE j.jobname = job_name AND j.database = current_database();
    PERFORM cron.unschedule(j.jobid)
       FROM cron.job j
      WHERE j.jobname = job_name AND j.database = current_database();
    RETURN removed;
END
$$;
COMMENT ON FUNCTION tool_audit.remove_retention_jobs() IS
    'Removes this database''s pg_cron purge jobs and returns them (NULL if none); for schedule_retention() and unschedule_retention()';

CREATE FUNCTION tool_audit.schedule_retention(schedule text DEFAULT '0 3 * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit retention in ' || current_database();
    command constant text := 'SELECT tool_audit.purge_expired()';
    job_role constant text := tool_audit.acting_role();
    spec constant text := btrim(schedule);
    replaced jsonb;
    job_id bigint;
BEGIN
    -- not quoted: a value that is not a schedule may be a secret put in the wrong place
    IF spec IS NULL OR length(spec) > 100
       OR spec !~ '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9]{1,2} seconds?|[0-9A-Za-z*,/$-]+( +[0-9A-Za-z*,/$-]+){4})$' THEN
        RAISE EXCEPTION 'invalid value for argument "schedule": expected a cron schedule'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'Five fields, minute hour day-of-month month day-of-week, as in ''0 3 * * *'' (03:00 every day); or @daily, @hourly; pg_cron 1.5 and later also take ''N seconds''.';
    END IF;
    -- the job runs as the role scheduling it: it must be able to log in and to purge
    IF NOT coalesce((SELECT r.rolcanlogin FROM pg_roles r WHERE r.rolname = job_role), false) THEN
        RAISE EXCEPTION 'the retention job runs as the role that schedules it, and role % cannot log in', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Call schedule_retention() as a login role that is a member of tool_audit_admin (not after SET ROLE to a role without LOGIN).';
    END IF;
    IF to_regprocedure('tool_audit.purge_expired(boolean)') IS NULL
       OR NOT has_function_privilege(job_role, 'tool_audit.purge_expired(boolean)', 'EXECUTE') THEN
        RAISE EXCEPTION 'the retention job runs as the role that schedules it, and role % may not execute tool_audit.purge_expired()', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Grant tool_audit_admin to that role, or schedule as one that has it.';
    END IF;
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.schedule_in_database(%L, %L, %L, %L, %L);',
               job_name, spec, command, current_database(), job_role));

    -- one purge job per database: replace whatever job has the name, whoever owns it
    replaced := coalesce(tool_audit.remove_retention_jobs(), '[]');
    BEGIN
        job_id := cron.schedule_in_database(job_name, spec, command, current_database(), job_role);
    EXCEPTION WHEN invalid_parameter_value THEN
        -- pg_cron's message quotes the schedule: say the same without it
        RAISE EXCEPTION 'invalid value for argument "schedule": pg_cron % does not accept it',
                        (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_cron')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'Five fields, minute hour day-of-month month day-of-week, as in ''0 3 * * *'' (03:00 every day); or @daily, @hourly; pg_cron 1.5 and later also take ''N seconds''.';
    END;

    PERFORM tool_audit.record_own_event('retention.schedule', jsonb_build_object(
        'before', replaced,
        'after', jsonb_build_object('job_id', job_id, 'job_name', job_name, 'schedule', spec,
                                    'command', command, 'database', current_database(),
                                    'username', job_role)));
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION tool_audit.schedule_retention(text) IS
    'Schedules purge_expired() as this database''s pg_cron job, run as the calling role, replacing any earlier one; returns the job id';

CREATE FUNCTION tool_audit.unschedule_retention()
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit retention in ' || current_database();
    removed jsonb;
BEGIN
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L AND j.database = %L;',
               job_name, current_database()));
    -- (1.5) removing a job stops the purge: dual approval when it is required
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT FROM cron.job j WHERE j.jobname = job_name AND j.database = current_database()) THEN
        RETURN false;
    END IF;
    PERFORM tool_audit.approval_gate('tool_audit.retention.unschedule', '{}');
    removed := tool_audit.remove_retention_jobs();
    IF removed IS NULL THEN
        RETURN false;
    END IF;
    PERFORM tool_audit.record_own_event('retention.schedule',
                                        jsonb_build_object('before', removed, 'after', NULL));
    RETURN true;
END
$$;
COMMENT ON FUNCTION tool_audit.unschedule_retention() IS
    'Removes this database''s pg_cron purge job; true if there was one; needs dual approval when it is required';
