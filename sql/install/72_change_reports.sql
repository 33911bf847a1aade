-- ---------------------------------------------------------------------------
-- Reports on row changes (1.5).  SECURITY INVOKER, like every report: a
-- reader sees the changes of its tenants only.  Each records its read as
-- an audit.read event (record_read(), 58_read_audit.sql), so they are
-- VOLATILE PL/pgSQL like the reports of 70_reports.sql.  doc/changes.md.
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
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT c.id, c.recorded_at, c.table_name, c.operation, c.row_key, c.old_values, c.new_values,
           c.recorded_by
      FROM tool_audit.data_changes c
     WHERE c.call_event_id = tool_audit.required_arg($1, 'call'::pg_catalog.text)
     ORDER BY c.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('changes_by_call', jsonb_build_object('call', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.changes_by_call(uuid) IS
    'The row changes a tool call made (its event_id): table, operation, key, changed columns before and after';

-- the change rows of one application row, oldest first, with the table's
-- TRUNCATE rows (which end every row): the query of row_changes(),
-- row_history() and row_as_of(), each of which records its own read
-- (58_read_audit.sql), once.  Unrecorded itself, as a SELECT on data_changes
-- is: it returns nothing the caller could not select.
CREATE FUNCTION tool_audit.row_change_rows(tbl regclass, key jsonb) RETURNS SETOF tool_audit.data_changes
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
COMMENT ON FUNCTION tool_audit.row_change_rows(regclass, jsonb) IS
    'The change rows of one row of a tracked table and the table''s TRUNCATE rows, oldest first, unrecorded: the query of row_changes(), row_history() and row_as_of(), which record the read';

CREATE FUNCTION tool_audit.row_changes(tbl regclass, key jsonb) RETURNS SETOF tool_audit.data_changes
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY SELECT * FROM tool_audit.row_change_rows($1, $2);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('row_changes', jsonb_build_object('table', tool_audit.tracked_table_name($1), 'key', $2), n);
END
$$;
COMMENT ON FUNCTION tool_audit.row_changes(regclass, jsonb) IS
    'The change rows of one row of a tracked table (by its primary key as recorded) and the table''s TRUNCATE rows, oldest first';

CREATE FUNCTION tool_audit.row_history(table_name regclass, key jsonb)
RETURNS TABLE (version integer, recorded_at timestamptz, operation text, changed_by text,
               conversation_id text, turn_number integer, call_event_id uuid,
               old_values jsonb, new_values jsonb, row_after jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c tool_audit.data_changes;
    state jsonb;
BEGIN
    version := 0;
    FOR c IN SELECT * FROM tool_audit.row_change_rows(row_history.table_name, row_history.key) LOOP
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
    PERFORM tool_audit.record_read('row_history',
                                   jsonb_build_object('table', tool_audit.tracked_table_name(row_history.table_name),
                                                      'key', row_history.key),
                                   version);
END
$$;
COMMENT ON FUNCTION tool_audit.row_history(regclass, jsonb) IS
    'Every recorded version of one row of a tracked table: when, what changed, who (user, model, tool, turn, conversation, or outside any tool call) and the tracked columns after';

CREATE FUNCTION tool_audit.row_as_of(table_name regclass, key jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c tool_audit.data_changes;
    state jsonb;
BEGIN
    PERFORM tool_audit.required_arg(row_as_of.at, 'at');
    FOR c IN SELECT * FROM tool_audit.row_change_rows(row_as_of.table_name, row_as_of.key) LOOP
        EXIT WHEN c.recorded_at > row_as_of.at;
        state := CASE c.operation WHEN 'INSERT' THEN c.new_values
                                  WHEN 'UPDATE' THEN coalesce(state, '{}') || c.new_values
                                  ELSE NULL END;
    END LOOP;
    PERFORM tool_audit.record_read('row_as_of',
                                   jsonb_build_object('table', tool_audit.tracked_table_name(row_as_of.table_name),
                                                      'key', row_as_of.key,
                                                      'at', tool_audit.iso8601_utc(row_as_of.at)),
                                   CASE WHEN state IS NULL THEN 0 ELSE 1 END);
    RETURN state;
END
$$;
COMMENT ON FUNCTION tool_audit.row_as_of(regclass, jsonb, timestamptz) IS
    'The tracked columns of one row as they were at a time, rebuilt from its change rows (sanitized values stay sanitized); NULL if the row did not exist then or nothing was recorded';
