/* tool_audit--1.4--1.5.sql: calls that survive rollback and row changes
   linked to them (issue 14); alerts, audited reads, impersonation, dual
   approval and break-the-glass (issue 13) */

\echo Use "ALTER EXTENSION tool_audit UPDATE TO '1.5'" to load this file. \quit

-- Every object below is also in sql/install/*.sql, word for word:
-- test/t/010_fresh_vs_upgraded.pl compares a fresh and an upgraded database.
-- The new columns are nullable and NULL on older rows (a NULL column is not
-- hashed, so their row hashes do not change).

ALTER TABLE tool_audit.tool_calls
    ADD COLUMN call_phase text CONSTRAINT call_phase_is_known CHECK (call_phase IN ('started', 'ended')),
    ADD COLUMN call_event_id uuid,
    ADD COLUMN caller_txid bigint,
    ADD COLUMN impersonated_by text,
    ADD COLUMN break_glass boolean;
ALTER TABLE tool_audit.admin_events
    ADD COLUMN impersonated_by text;
COMMENT ON COLUMN tool_audit.tool_calls.call_phase IS 'NULL: a call recorded in one row; started or ended: one half of a call recorded by begin_call() and end_call()';
COMMENT ON COLUMN tool_audit.tool_calls.call_event_id IS 'On an ended row: the event_id of the started row it closes';
COMMENT ON COLUMN tool_audit.tool_calls.caller_txid IS 'On a row written autonomously: the caller''s transaction id, so that whether the caller committed can be known';
COMMENT ON COLUMN tool_audit.tool_calls.impersonated_by IS 'The admin impersonating user_id when the call was made (NULL: no impersonation)';
COMMENT ON COLUMN tool_audit.tool_calls.break_glass IS 'true: an emergency (break-the-glass) access, with its reason in session_metadata';
COMMENT ON COLUMN tool_audit.admin_events.impersonated_by IS 'The admin impersonating the actor when the event was recorded (NULL: no impersonation)';
-- ---------------------------------------------------------------------------
-- data_changes (1.5): what tool calls did to the application's rows.  One row
-- per INSERT, UPDATE or DELETE of a row of a tracked table, linked to the
-- tool call in progress; append-only, sanitized, hashed and chained like the
-- other audit tables by its C insert trigger.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.data_changes_before_insert() RETURNS trigger
    AS 'MODULE_PATHNAME', 'data_changes_before_insert' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.data_changes_before_insert() IS
    'Insert trigger of data_changes: gives the row its id, time, recorder and transaction, then sanitizes, hashes and chains it';

CREATE SEQUENCE tool_audit.data_changes_id_seq;

-- row_key, old_values and new_values are objects keyed by column name, so the
-- sanitizing rules that apply to a tool's arguments (by key) apply to them:
-- a tracked ssn column is pseudonymized like an ssn argument.  An INSERT has
-- no old values ({}), a DELETE no new ones ({}); an UPDATE has the changed
-- columns only.
CREATE TABLE tool_audit.data_changes (
    id               bigint PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    recorded_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tenant_id        text,
    table_name       text NOT NULL CONSTRAINT table_name_not_empty CHECK (table_name <> ''),
    operation        text NOT NULL
                     CONSTRAINT operation_is_known
                     CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
    row_key          jsonb NOT NULL DEFAULT '{}',
    old_values       jsonb NOT NULL DEFAULT '{}',
    new_values       jsonb NOT NULL DEFAULT '{}',
    call_event_id    uuid,
    txid             bigint,
    application_name text,
    recorded_by      text NOT NULL,
    row_hash         bytea,
    chain_id         bigint,
    chain_lane       integer,
    chain_seq        bigint,
    chain_hash       bytea,
    retention_policy text,
    expires_at       timestamptz
);
ALTER SEQUENCE tool_audit.data_changes_id_seq OWNED BY tool_audit.data_changes.id;
COMMENT ON TABLE tool_audit.data_changes IS 'One row per change of a row of a tracked application table, linked to the tool call in progress; append-only, sanitized on insert';
COMMENT ON COLUMN tool_audit.data_changes.table_name IS 'The tracked table, schema-qualified as regclass prints it';
COMMENT ON COLUMN tool_audit.data_changes.row_key IS 'The changed row''s primary key: {column: value}, sanitized';
COMMENT ON COLUMN tool_audit.data_changes.old_values IS 'The changed tracked columns before the change ({} for an INSERT), sanitized';
COMMENT ON COLUMN tool_audit.data_changes.new_values IS 'The changed tracked columns after the change ({} for a DELETE), sanitized';
COMMENT ON COLUMN tool_audit.data_changes.call_event_id IS 'The tool call in progress when the row changed (tool_audit.call); NULL: made outside any tool call';
COMMENT ON COLUMN tool_audit.data_changes.txid IS 'The transaction that made the change, set by the insert trigger';
COMMENT ON COLUMN tool_audit.data_changes.row_hash IS 'SHA-256 of the row''s canonical encoding (doc/canonical-encoding.md)';
COMMENT ON COLUMN tool_audit.data_changes.chain_hash IS 'SHA-256 link over the previous row of the same chain and lane';

CREATE UNIQUE INDEX data_changes_chain_position
    ON tool_audit.data_changes (chain_id, chain_lane, chain_seq);

CREATE TRIGGER data_changes_before_insert
    BEFORE INSERT ON tool_audit.data_changes
    FOR EACH ROW EXECUTE FUNCTION tool_audit.data_changes_before_insert();
CREATE TRIGGER data_changes_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.data_changes
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
CREATE TRIGGER data_changes_append_only_row
    BEFORE UPDATE OR DELETE ON tool_audit.data_changes
    FOR EACH ROW EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.data_changes
    ENABLE ALWAYS TRIGGER data_changes_before_insert,
    ENABLE ALWAYS TRIGGER data_changes_append_only,
    ENABLE ALWAYS TRIGGER data_changes_append_only_row;

-- as sql/install/90_privileges.sql does for every table and function
REVOKE ALL ON TABLE tool_audit.data_changes FROM PUBLIC;
REVOKE ALL ON FUNCTION tool_audit.data_changes_before_insert() FROM PUBLIC;

-- (1.5) the reports' lookups: one row's changes (row_history, row_as_of: a
-- hash index, as a key may be long), one call's (changes_by_call, the
-- timeline), a table's TRUNCATEs
CREATE INDEX data_changes_row_key
    ON tool_audit.data_changes USING hash (row_key);
CREATE INDEX data_changes_call
    ON tool_audit.data_changes (call_event_id, id) WHERE call_event_id IS NOT NULL;
CREATE INDEX data_changes_truncate
    ON tool_audit.data_changes (table_name, id) WHERE operation = 'TRUNCATE';


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
    table_oid   oid PRIMARY KEY,
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
    'Stops recording the table''s row changes (removes track()''s triggers); true if it was tracked; an audited admin event';

-- tracking_status(): what became of each tracked table's triggers.  A table
-- owner can drop or disable them (ALTER TABLE ... DISABLE TRIGGER): this
-- shows it, as verify() shows a broken chain.
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
     ORDER BY t.table_name
$$;
COMMENT ON FUNCTION tool_audit.tracking_status() IS
    'Each tracked table with its options and whether its triggers are still there and always enabled (ok, trigger disabled, trigger dropped, table renamed, table dropped)';

-- (1.5) the conversation timeline shows under each call the rows it changed
CREATE OR REPLACE FUNCTION tool_audit.conversation_timeline(conversation_id text) RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
    SELECT l.line
      FROM tool_audit.tool_calls t
     CROSS JOIN LATERAL (
           SELECT 0::bigint AS k,
                  format('[Turn %s] %s %s(%s) %s %s [%sms]',
                  coalesce(t.turn_number::text, '?'),
                  tool_audit.report_mark(CASE WHEN t.success THEN 'ok' ELSE 'failed' END),
                  t.tool_name, t.arguments::text, tool_audit.report_mark('arrow'),
                  t.result_summary::text,
                  coalesce(t.duration_ms::text, '?')) AS line
           UNION ALL   -- (1.5) the rows the call changed, under it
           SELECT c.id, format('    %s %s %s', c.operation, c.table_name, c.row_key::text)
             FROM tool_audit.data_changes c
            WHERE c.call_event_id = t.event_id) l
     WHERE t.conversation_id = tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id, l.k
$$;
COMMENT ON FUNCTION tool_audit.conversation_timeline(text) IS
    'A conversation as one line of text per tool call: turn, outcome, tool, arguments, result summary and duration; under it, one line per row the call changed (1.5)';

-- Row-level security of data_changes, as for the other audit tables: a
-- reader sees the change rows of its tenants; nobody but the owner (the
-- trigger, through track_change()) writes them.
ALTER TABLE tool_audit.data_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.data_changes
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY reader_tenant ON tool_audit.data_changes
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));
CREATE POLICY verifier_read ON tool_audit.data_changes
    FOR SELECT TO tool_audit_verifier USING (true);

-- ---------------------------------------------------------------------------
-- Reports on row changes (1.5).  SECURITY INVOKER, like every report: a
-- reader sees the changes of its tenants only.  doc/changes.md.
-- ---------------------------------------------------------------------------

-- the name data_changes.table_name holds for a table (what track_change()
-- writes: schema and table, quoted as needed)
CREATE FUNCTION tool_audit.tracked_table_name(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tool_audit.required_arg($1, 'table_name'::pg_catalog.text)
$$;
COMMENT ON FUNCTION tool_audit.tracked_table_name(regclass) IS
    'The name a table has in data_changes.table_name: schema and table, quoted as needed';

-- who made a change, as one line: the call's attribution, or the role and
-- application outside any tool call
CREATE FUNCTION tool_audit.change_author(c tool_audit.data_changes) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN $1.call_event_id IS NULL THEN
            format('outside any tool call: role %s, application %s', $1.recorded_by,
                   coalesce(nullif($1.application_name, ''), 'unknown'))
        ELSE coalesce(
            (SELECT format('User %s (%s) %s %s %s %s [%s]',
                           coalesce(nullif(t.user_id, ''), 'unknown'), coalesce(nullif(t.user_role, ''), 'unknown'),
                           tool_audit.report_mark('arrow'), coalesce(nullif(t.model, ''), 'unknown'),
                           tool_audit.report_mark('arrow'), t.tool_name, t.call_trigger)
               FROM tool_audit.tool_calls t WHERE t.event_id = $1.call_event_id
              ORDER BY t.id LIMIT 1),
            format('call %s (no visible tool_calls row), role %s', $1.call_event_id, $1.recorded_by))
    END
$$;
COMMENT ON FUNCTION tool_audit.change_author(tool_audit.data_changes) IS
    'Who made a row change, as one line: user, role, model, tool and trigger of its call, or the database role and application_name outside any tool call';

CREATE FUNCTION tool_audit.changes_by_call(call uuid)
RETURNS TABLE (change_id bigint, recorded_at timestamptz, table_name text, operation text,
               row_key jsonb, old_values jsonb, new_values jsonb, recorded_by text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, c.recorded_at, c.table_name, c.operation, c.row_key, c.old_values, c.new_values,
           c.recorded_by
      FROM tool_audit.data_changes c
     WHERE c.call_event_id = tool_audit.required_arg($1, 'call'::pg_catalog.text)
     ORDER BY c.id
$$;
COMMENT ON FUNCTION tool_audit.changes_by_call(uuid) IS
    'The row changes a tool call made (its event_id): table, operation, key, changed columns before and after';

-- the change rows of one application row, oldest first, with the table's
-- TRUNCATE rows (which end every row)
CREATE FUNCTION tool_audit.row_changes(tbl regclass, key jsonb) RETURNS SETOF tool_audit.data_changes
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM (
        SELECT * FROM tool_audit.data_changes d
         WHERE d.table_name = tool_audit.tracked_table_name($1)
           AND d.row_key = tool_audit.required_arg($2, 'key'::pg_catalog.text)
        UNION ALL
        SELECT * FROM tool_audit.data_changes d
         WHERE d.table_name = tool_audit.tracked_table_name($1) AND d.operation = 'TRUNCATE') c
     ORDER BY c.id
$$;
COMMENT ON FUNCTION tool_audit.row_changes(regclass, jsonb) IS
    'The change rows of one row of a tracked table (by its primary key as recorded) and the table''s TRUNCATE rows, oldest first';

CREATE FUNCTION tool_audit.row_history(table_name regclass, key jsonb)
RETURNS TABLE (version integer, recorded_at timestamptz, operation text, changed_by text,
               conversation_id text, turn_number integer, call_event_id uuid,
               old_values jsonb, new_values jsonb, row_after jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c tool_audit.data_changes;
    state jsonb;
BEGIN
    version := 0;
    FOR c IN SELECT * FROM tool_audit.row_changes(row_history.table_name, row_history.key) LOOP
        CONTINUE WHEN c.operation = 'TRUNCATE' AND state IS NULL;
        state := CASE c.operation WHEN 'INSERT' THEN c.new_values
                                  WHEN 'UPDATE' THEN coalesce(state, '{}') || c.new_values
                                  ELSE NULL END;
        version := version + 1;
        recorded_at := c.recorded_at;
        operation := c.operation;
        changed_by := tool_audit.change_author(c);
        SELECT t.conversation_id, t.turn_number INTO conversation_id, turn_number
          FROM tool_audit.tool_calls t WHERE t.event_id = c.call_event_id ORDER BY t.id LIMIT 1;
        IF NOT FOUND THEN
            conversation_id := NULL;
            turn_number := NULL;
        END IF;
        call_event_id := c.call_event_id;
        old_values := c.old_values;
        new_values := c.new_values;
        row_after := state;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION tool_audit.row_history(regclass, jsonb) IS
    'Every recorded version of one row of a tracked table: when, what changed, who (user, model, tool, turn, conversation, or outside any tool call) and the tracked columns after';

CREATE FUNCTION tool_audit.row_as_of(table_name regclass, key jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c tool_audit.data_changes;
    state jsonb;
BEGIN
    PERFORM tool_audit.required_arg(row_as_of.at, 'at');
    FOR c IN SELECT * FROM tool_audit.row_changes(row_as_of.table_name, row_as_of.key) LOOP
        EXIT WHEN c.recorded_at > row_as_of.at;
        state := CASE c.operation WHEN 'INSERT' THEN c.new_values
                                  WHEN 'UPDATE' THEN coalesce(state, '{}') || c.new_values
                                  ELSE NULL END;
    END LOOP;
    RETURN state;
END
$$;
COMMENT ON FUNCTION tool_audit.row_as_of(regclass, jsonb, timestamptz) IS
    'The tracked columns of one row as they were at a time, rebuilt from its change rows (sanitized values stay sanitized); NULL if the row did not exist then or nothing was recorded';

-- as sql/install/90_privileges.sql does for every table and function
REVOKE ALL ON TABLE tool_audit.tracked_tables FROM PUBLIC;
REVOKE ALL ON FUNCTION
    tool_audit.track_change(),
    tool_audit.track(regclass, jsonb),
    tool_audit.untrack(regclass),
    tool_audit.tracking_status(),
    tool_audit.tracked_table_name(regclass),
    tool_audit.change_author(tool_audit.data_changes),
    tool_audit.changes_by_call(uuid),
    tool_audit.row_changes(regclass, jsonb),
    tool_audit.row_history(regclass, jsonb),
    tool_audit.row_as_of(regclass, jsonb, timestamptz)
    FROM PUBLIC;

-- (1.5) tracked tables: admins track and untrack (audited) and see what
-- became of the triggers; readers, admins and the verifier read the change
-- rows row-level security lets them see, and readers and admins query them
GRANT SELECT ON tool_audit.tracked_tables TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION
    tool_audit.track(regclass, jsonb),
    tool_audit.untrack(regclass),
    tool_audit.tracking_status()
    TO tool_audit_admin;
GRANT SELECT ON tool_audit.data_changes TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.tracked_table_name(regclass),
    tool_audit.change_author(tool_audit.data_changes),
    tool_audit.changes_by_call(uuid),
    tool_audit.row_changes(regclass, jsonb),
    tool_audit.row_history(regclass, jsonb),
    tool_audit.row_as_of(regclass, jsonb, timestamptz)
    TO tool_audit_reader, tool_audit_admin;
