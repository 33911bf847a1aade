
-- ---------------------------------------------------------------------------
-- Tracked tables (1.5): track() installs tool_audit.track_change() (C,
-- src/track.c) on an application table, which records each row change into
-- data_changes linked to the tool call in progress; untrack() removes it.
-- Both are audited admin events.  doc/changes.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.track_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'track_change' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.track_change() IS
    'Trigger that tool_audit.track() installs on an application table: records each INSERT, UPDATE and DELETE (and refuses or records TRUNCATE) into data_changes';

CREATE TABLE tool_audit.tracked_tables (
    table_oid   regclass PRIMARY KEY,
    table_name  text NOT NULL,
    options     jsonb NOT NULL,
    tracked_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tracked_by  text NOT NULL
);
COMMENT ON TABLE tool_audit.tracked_tables IS 'The application tables track() installed its trigger on, with their options; written by track() and untrack() only';

-- track(): checks the options, then (re)creates the two triggers, always
-- enabled (session_replication_role = replica does not skip them).  The
-- trigger's arguments carry the options (src/track.c reads them).
CREATE FUNCTION tool_audit.track(table_name regclass, options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opts jsonb := coalesce(track.options, '{}');
    rel regclass := track.table_name;
    kind "char";
    nsp text;
    qualified text;
    mode text := 'all';
    cols text[] := '{}';
    tenant text := '';
    trunc text := 'refuse';
    col text;
    before_opts jsonb;
    args text;
    normalized jsonb;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'argument "table_name" must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(opts) <> 'object' THEN
        RAISE EXCEPTION 'invalid value for argument "options": expected a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM jsonb_object_keys(opts) k
                WHERE k NOT IN ('columns', 'exclude', 'tenant_column', 'truncate')) THEN
        RAISE EXCEPTION 'invalid value for argument "options": its keys are columns, exclude, tenant_column and truncate'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF opts ? 'columns' AND opts ? 'exclude' THEN
        RAISE EXCEPTION 'invalid value for argument "options": columns and exclude cannot both be given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF opts ? 'columns' OR opts ? 'exclude' THEN
        mode := CASE WHEN opts ? 'columns' THEN 'include' ELSE 'exclude' END;
        IF jsonb_typeof(opts -> (CASE mode WHEN 'include' THEN 'columns' ELSE 'exclude' END)) <> 'array'
           OR EXISTS (SELECT FROM jsonb_array_elements(opts -> (CASE mode WHEN 'include' THEN 'columns' ELSE 'exclude' END)) e
                       WHERE jsonb_typeof(e) <> 'string') THEN
            RAISE EXCEPTION 'invalid value for argument "options": columns and exclude are arrays of column names'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT coalesce(array_agg(DISTINCT e ORDER BY e), '{}') INTO cols
          FROM jsonb_array_elements_text(opts -> (CASE mode WHEN 'include' THEN 'columns' ELSE 'exclude' END)) e;
    END IF;
    IF opts ? 'tenant_column' THEN
        IF jsonb_typeof(opts -> 'tenant_column') <> 'string' THEN
            RAISE EXCEPTION 'invalid value for argument "options": tenant_column is a column name'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        tenant := opts ->> 'tenant_column';
    END IF;
    IF opts ? 'truncate' THEN
        IF (opts ->> 'truncate') IS NULL OR (opts ->> 'truncate') NOT IN ('refuse', 'record') THEN
            RAISE EXCEPTION 'invalid value for argument "options": truncate is refuse or record'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        trunc := opts ->> 'truncate';
    END IF;

    SELECT c.relkind, n.nspname, format('%I.%I', n.nspname, c.relname)
      INTO kind, nsp, qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = rel;
    IF nsp IN ('tool_audit', 'pg_catalog', 'information_schema') OR nsp LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION 'table % cannot be tracked: it belongs to tool_audit or to the system', qualified
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', qualified USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = rel AND contype = 'p') THEN
        RAISE EXCEPTION 'table % has no primary key', qualified
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A change row names the row it changed by its primary key.';
    END IF;
    FOREACH col IN ARRAY cols || CASE WHEN tenant = '' THEN '{}'::text[] ELSE ARRAY[tenant] END LOOP
        IF NOT EXISTS (SELECT FROM pg_attribute
                        WHERE attrelid = rel AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'column "%" of table % does not exist', col, qualified
                USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;

    normalized := jsonb_build_object('truncate', trunc)
        || CASE mode WHEN 'include' THEN jsonb_build_object('columns', to_jsonb(cols))
                     WHEN 'exclude' THEN jsonb_build_object('exclude', to_jsonb(cols))
                     ELSE '{}' END
        || CASE WHEN tenant = '' THEN '{}' ELSE jsonb_build_object('tenant_column', tenant) END;
    SELECT t.options INTO before_opts FROM tool_audit.tracked_tables t WHERE t.table_oid = rel;
    SELECT string_agg(quote_literal(a), ', ') INTO args
      FROM unnest(ARRAY[mode, tenant, trunc] || cols) a;
    FOR col IN SELECT tgname FROM pg_trigger
                WHERE tgrelid = rel AND tgname IN ('tool_audit_track', 'tool_audit_track_truncate') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', col, qualified);
    END LOOP;
    EXECUTE format('CREATE TRIGGER tool_audit_track AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION tool_audit.track_change(%s)', qualified, args);
    EXECUTE format('CREATE TRIGGER tool_audit_track_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.track_change(%s)', qualified, args);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER tool_audit_track, '
                   'ENABLE ALWAYS TRIGGER tool_audit_track_truncate', qualified);
    INSERT INTO tool_audit.tracked_tables AS t (table_oid, table_name, options, tracked_by)
    VALUES (rel, qualified, normalized, tool_audit.acting_role())
    ON CONFLICT (table_oid) DO UPDATE
       SET table_name = excluded.table_name, options = excluded.options,
           tracked_at = excluded.tracked_at, tracked_by = excluded.tracked_by;
    PERFORM tool_audit.record_own_event('track',
        jsonb_build_object('table', qualified, 'before', before_opts, 'after', normalized));
    RETURN jsonb_build_object('table', qualified, 'options', normalized);
END
$$;
COMMENT ON FUNCTION tool_audit.track(regclass, jsonb) IS
    'Records every row change of the table into data_changes, linked to the tool call in progress; options: columns or exclude, tenant_column, truncate (refuse or record); an audited admin event';

CREATE FUNCTION tool_audit.untrack(table_name regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass := untrack.table_name;
    qualified text;
    before_opts jsonb;
    had boolean;
    trg name;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'argument "table_name" must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT format('%I.%I', n.nspname, c.relname) INTO qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    DELETE FROM tool_audit.tracked_tables t WHERE t.table_oid = rel RETURNING t.options INTO before_opts;
    had := FOUND OR EXISTS (SELECT FROM pg_trigger
                             WHERE tgrelid = rel AND tgname IN ('tool_audit_track', 'tool_audit_track_truncate')
                               AND tgfoid = 'tool_audit.track_change()'::regprocedure);
    IF had THEN
        -- a second admin's approval when tool_audit.require_dual_approval is on
        PERFORM tool_audit.approval_gate('tool_audit.untrack', jsonb_build_object('table', qualified));
        FOR trg IN SELECT tgname FROM pg_trigger
                    WHERE tgrelid = rel AND tgname IN ('tool_audit_track', 'tool_audit_track_truncate')
                      AND tgfoid = 'tool_audit.track_change()'::regprocedure LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', trg, qualified);
        END LOOP;
        PERFORM tool_audit.record_own_event('untrack',
            jsonb_build_object('table', qualified, 'before', before_opts, 'after', NULL));
    END IF;
    RETURN had;
END
$$;
COMMENT ON FUNCTION tool_audit.untrack(regclass) IS
    'Stops recording the table''s row changes (removes track()''s triggers); true if it was tracked; an audited admin event; needs dual approval when it is required';

-- tracking_status(): what became of each tracked table's triggers.  A table
-- owner cannot drop or disable them (the DDL guard, src/track.c), a
-- superuser can: this shows it, as verify() shows a broken chain, and
-- run_alert_checks() raises an alert for it.  Each partition of a tracked
-- partitioned table has a row of its own (options with "partition_of"): its
-- clone of the row trigger must be there and always enabled too.
CREATE FUNCTION tool_audit.tracking_status()
RETURNS TABLE (table_name text, options jsonb, tracked_at timestamptz, tracked_by text, status text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.table_name, t.options, t.tracked_at, t.tracked_by,
           CASE
               WHEN c.oid IS NULL THEN 'table dropped'
               WHEN format('%I.%I', n.nspname, c.relname) <> t.table_name THEN 'table renamed'
               WHEN count(g.oid) < 2 THEN 'trigger dropped'
               WHEN bool_or(g.tgenabled <> 'A') THEN 'trigger disabled'
               ELSE 'ok'
           END
      FROM tool_audit.tracked_tables t
      LEFT JOIN pg_class c ON c.oid = t.table_oid
      LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_trigger g ON g.tgrelid = t.table_oid
                            AND g.tgname IN ('tool_audit_track', 'tool_audit_track_truncate')
                            AND g.tgfoid = 'tool_audit.track_change()'::regprocedure
     GROUP BY t.table_oid, t.table_name, t.options, t.tracked_at, t.tracked_by, c.oid, n.nspname, c.relname
    UNION ALL
    SELECT format('%I.%I', pn.nspname, pc.relname),
           t.options || jsonb_build_object('partition_of', t.table_name), t.tracked_at, t.tracked_by,
           CASE
               WHEN count(g.oid) < 1 THEN 'trigger dropped'
               WHEN bool_or(g.tgenabled <> 'A') THEN 'trigger disabled'
               ELSE 'ok'
           END
      FROM tool_audit.tracked_tables t
      JOIN pg_class c ON c.oid = t.table_oid AND c.relkind = 'p'
      CROSS JOIN LATERAL pg_partition_tree(c.oid) p
      JOIN pg_class pc ON pc.oid = p.relid
      JOIN pg_namespace pn ON pn.oid = pc.relnamespace
      LEFT JOIN pg_trigger g ON g.tgrelid = p.relid AND g.tgname = 'tool_audit_track'
                            AND g.tgfoid = 'tool_audit.track_change()'::regprocedure
     WHERE p.level > 0
     GROUP BY t.table_oid, t.table_name, t.options, t.tracked_at, t.tracked_by, pn.nspname, pc.relname
     ORDER BY 1
$$;
COMMENT ON FUNCTION tool_audit.tracking_status() IS
    'Each tracked table, and each partition of a tracked partitioned table, with its options and whether its triggers are still there and always enabled (ok, trigger disabled, trigger dropped, table renamed, table dropped)';
