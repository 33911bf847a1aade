
-- Everything here reads through row-level security as the caller: the
-- functions are SECURITY INVOKER and the views security_invoker (PostgreSQL
-- 15), so a reader bound to tenant A never sees tenant B in any report or
-- export.  doc/reports.md documents every function, view and JSON key.

-- ---------------------------------------------------------------------------
-- Indexes: each report is an index range scan, not a scan of the table
-- ---------------------------------------------------------------------------
CREATE INDEX tool_calls_conversation
    ON tool_audit.tool_calls (conversation_id, turn_number, recorded_at, id)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX tool_calls_user
    ON tool_audit.tool_calls (user_id, recorded_at, id) WHERE user_id IS NOT NULL;
CREATE INDEX tool_calls_subject
    ON tool_audit.tool_calls (subject_id, recorded_at, id) WHERE subject_id IS NOT NULL;
CREATE INDEX tool_calls_tool
    ON tool_audit.tool_calls (tool_name, recorded_at);
CREATE INDEX tool_calls_recorded_at
    ON tool_audit.tool_calls (recorded_at, id);
CREATE INDEX tool_calls_failures
    ON tool_audit.tool_calls (recorded_at, id) WHERE NOT success;
CREATE INDEX admin_events_occurred_at
    ON tool_audit.admin_events (occurred_at, id);

-- ---------------------------------------------------------------------------
-- Small helpers the reports share
-- ---------------------------------------------------------------------------

-- required_arg(value, name): value, or an error naming the argument if it is
-- NULL.  IMMUTABLE so that a constant argument is checked once, at planning,
-- and the SQL functions that use it can still be inlined into the caller's
-- query (and so use its indexes, LIMIT and WHERE).
CREATE FUNCTION tool_audit.required_arg(value anyelement, name text) RETURNS anyelement
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', name USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION tool_audit.required_arg(anyelement, text) IS
    'The value, or an error naming the argument if it is NULL (a helper of the reports)';

-- check_period(start_time, end_time): both given, start not after end
CREATE FUNCTION tool_audit.check_period(start_time timestamptz, end_time timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF start_time IS NULL OR end_time IS NULL THEN
        RAISE EXCEPTION 'start_time and end_time must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Use ''-infinity'' or ''infinity'' for an open end.';
    END IF;
    IF start_time > end_time THEN
        RAISE EXCEPTION 'start_time is after end_time'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The period given runs from %s to %s.',
                                  tool_audit.iso8601_utc(start_time), tool_audit.iso8601_utc(end_time));
    END IF;
END
$$;
COMMENT ON FUNCTION tool_audit.check_period(timestamptz, timestamptz) IS
    'Raises an error unless both ends of a report period are given and the start is not after the end';

-- iso8601_utc(ts): 2026-11-22T17:45:55.123456Z whatever TimeZone and DateStyle say.
-- No SET clause, so that the planner inlines it into the reports and exports
-- that call it for every row (1.5: a call took about 1.9 us, inlined 0.7);
-- its functions are named with their schema instead (AT TIME ZONE is
-- pg_catalog.timezone(), the cast to text is no function lookup)
CREATE FUNCTION tool_audit.iso8601_utc(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.isfinite(ts)
                THEN pg_catalog.to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                ELSE ts::text END
$$;
COMMENT ON FUNCTION tool_audit.iso8601_utc(timestamptz) IS
    'The time as ISO 8601 text in UTC (2026-11-22T17:45:55.123456Z), whatever TimeZone and DateStyle say';

-- is_break_glass(row): the call was an emergency access: the row is flagged
-- (break_glass, 1.5), its context said "break_glass": true (kept in
-- session_metadata) or its purpose is "break_glass", "break-glass" or
-- "emergency"
-- No SET clause (1.5), so that the planner inlines it into the queries that
-- call it per row (a function with SET is not inlined, and one called from
-- inside another SQL function is parsed and planned again at every call).
-- Instead every function, operator and type it names is schema-qualified,
-- so that no caller's search_path reaches it (test fhir_helpers shadows them)
CREATE FUNCTION tool_audit.is_break_glass(r tool_audit.tool_calls) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(r.break_glass, false)
        OR r.session_metadata OPERATOR(pg_catalog.@>) '{"break_glass": true}'::pg_catalog.jsonb
        OR coalesce(pg_catalog.lower(pg_catalog.btrim(r.purpose))
                    OPERATOR(pg_catalog.=) ANY ('{break_glass,break-glass,emergency}'::pg_catalog.text[]), false)
$$;
COMMENT ON FUNCTION tool_audit.is_break_glass(tool_audit.tool_calls) IS
    'True if the tool call was an emergency access: flagged break_glass, "break_glass": true in its context, or a break-glass or emergency purpose';

-- arrow and status marks: UTF-8 when the database can hold them (plpgsql:
-- chr(9989) must not even be planned in a database that cannot)
CREATE FUNCTION tool_audit.report_mark(what text) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF getdatabaseencoding() = 'UTF8' THEN
        RETURN CASE what WHEN 'ok' THEN chr(9989) WHEN 'failed' THEN chr(10060)
                         WHEN 'arrow' THEN chr(8594) END;
    END IF;
    RETURN CASE what WHEN 'ok' THEN '[ok]' WHEN 'failed' THEN '[failed]' WHEN 'arrow' THEN '->' END;
END
$$;
COMMENT ON FUNCTION tool_audit.report_mark(text) IS
    'The ok, failed or arrow mark of the reports: a UTF-8 symbol when the database encoding allows, ASCII otherwise';

-- ---------------------------------------------------------------------------
-- 1.5: calls as one row each, whether recorded in one row (log_call()) or in
-- two halves (begin_call(), end_call())
-- ---------------------------------------------------------------------------

-- xact_status(txid): pg_xact_status() of a caller_txid, or NULL when it
-- cannot be known: too old for the commit log, or not of this cluster (a
-- transaction id past the current one: rows restored from a dump)
CREATE FUNCTION tool_audit.xact_status(txid bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN $1 IS NULL OR $1 < 0 THEN NULL
                WHEN $1::text::xid8 >= pg_snapshot_xmax(pg_current_snapshot()) THEN NULL
                ELSE pg_xact_status($1::text::xid8) END
$$;
COMMENT ON FUNCTION tool_audit.xact_status(bigint) IS
    'committed, aborted or in progress for a caller_txid; NULL when it cannot be known (too old, or from another cluster)';

CREATE VIEW tool_audit.calls WITH (security_invoker = true) AS
SELECT t.event_id AS call_id, t.id, t.tenant_id, t.conversation_id, t.turn_number,
       t.user_id, t.user_role, t.model, t.tool_name, t.tool_call_id, t.call_trigger,
       t.purpose, t.subject_id, t.arguments,
       t.recorded_at, t.started_at,
       CASE WHEN t.call_phase IS NULL THEN t.recorded_at ELSE e.recorded_at END AS ended_at,
       CASE WHEN t.call_phase IS NULL THEN t.success ELSE e.success END AS success,
       CASE WHEN t.call_phase IS NULL THEN t.result_summary ELSE e.result_summary END AS result_summary,
       CASE WHEN t.call_phase IS NULL THEN t.error ELSE e.error END AS error,
       CASE WHEN t.call_phase IS NULL THEN t.duration_ms ELSE e.duration_ms END AS duration_ms,
       CASE WHEN t.call_phase IS NULL THEN 'one_row'
            WHEN e.id IS NOT NULL THEN 'ended'
            WHEN tool_audit.xact_status(t.caller_txid) = 'in progress' THEN 'in_progress'
            ELSE 'never_ended' END AS state,
       CASE WHEN t.caller_txid IS NULL THEN true
            ELSE CASE tool_audit.xact_status(t.caller_txid)
                      WHEN 'committed' THEN true WHEN 'aborted' THEN false END
            END AS caller_committed,
       t.caller_txid, t.recorded_by, e.event_id AS end_event_id
  FROM tool_audit.tool_calls t
  LEFT JOIN tool_audit.tool_calls e
         ON t.call_phase = 'started' AND e.call_phase = 'ended' AND e.call_event_id = t.event_id
 WHERE t.call_phase IS DISTINCT FROM 'ended';
COMMENT ON VIEW tool_audit.calls IS
    'One row per tool call: a call recorded in one row, or the started and ended rows of begin_call() and end_call() paired (state ended, in_progress or never_ended), with whether the caller''s transaction committed when that can be known';

-- ---------------------------------------------------------------------------
-- Queries (the seed's AuditQueryEngine).  Until 1.4 plain SQL functions,
-- inlined into the caller's query; since 1.5 each records its read
-- (record_read(), 58_read_audit.sql) once it has counted its rows, so they
-- are VOLATILE PL/pgSQL: their own query is still an index range scan, but a
-- caller's LIMIT no longer reaches it.  The since bound is a CASE, not
-- COALESCE: under row-level security only leakproof expressions become
-- index conditions.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.calls_by_conversation(conversation_id text)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.conversation_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('calls_by_conversation', jsonb_build_object('conversation_id', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.calls_by_conversation(text) IS
    'The tool calls of a conversation, by turn and then time';

CREATE FUNCTION tool_audit.calls_by_user(user_id text, since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.user_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'user_id'::pg_catalog.text)
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $2 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $2 END
     ORDER BY t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('calls_by_user', jsonb_build_object('user_id', $1, 'since', tool_audit.iso8601_utc($2)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.calls_by_user(text, timestamptz) IS
    'The tool calls of a user since a time (all of them if NULL), by time';

CREATE FUNCTION tool_audit.failures(since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE NOT t.success
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $1 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $1 END
     ORDER BY t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('failures', jsonb_build_object('since', tool_audit.iso8601_utc($1)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.failures(timestamptz) IS
    'The failed tool calls since a time (all of them if NULL), by time';

CREATE FUNCTION tool_audit.tool_stats(tool_name text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stats jsonb;
BEGIN
    -- a call begun and ended is one call: its started row counts it, its
    -- ended row carries the outcome and duration (a started row has none)
    SELECT CASE WHEN count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended') = 0
        THEN jsonb_build_object('tool', $1, 'total_calls', 0)
        ELSE jsonb_build_object(
            'tool', $1,
            'total_calls', count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended'),
            'success_rate', round(count(*) FILTER (WHERE t.success)::numeric
                                  / count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended'), 3),
            'avg_duration_ms', round(avg(t.duration_ms)::numeric, 1),
            'max_duration_ms', round(max(t.duration_ms)::numeric, 1),
            'unique_users', count(DISTINCT t.user_id))
        END
      FROM tool_audit.tool_calls t
     WHERE t.tool_name = tool_audit.required_arg($1, 'tool_name'::pg_catalog.text)
      INTO stats;
    PERFORM tool_audit.record_read('tool_stats', jsonb_build_object('tool_name', $1), 1);
    RETURN stats;
END
$$;
COMMENT ON FUNCTION tool_audit.tool_stats(text) IS
    'One tool''s call count (a call begun and ended counts once), success rate, average and maximum duration and distinct users, as JSON';

-- the same figures for every tool: one row per tool over every tenant the
-- caller sees (all_tenants), and one per tenant and tool
CREATE VIEW tool_audit.tool_usage WITH (security_invoker = true) AS
SELECT GROUPING(t.tenant_id) = 1 AS all_tenants,
       t.tenant_id,
       t.tool_name,
       count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended') AS total_calls,
       round(count(*) FILTER (WHERE t.success)::numeric
             / nullif(count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended'), 0), 3) AS success_rate,
       round(avg(t.duration_ms)::numeric, 1) AS avg_duration_ms,
       round(max(t.duration_ms)::numeric, 1) AS max_duration_ms,
       count(DISTINCT t.user_id) AS unique_users
  FROM tool_audit.tool_calls t
 GROUP BY GROUPING SETS ((t.tool_name), (t.tenant_id, t.tool_name));
COMMENT ON VIEW tool_audit.tool_usage IS 'tool_stats() for every tool: over all visible tenants (all_tenants) and per tenant (a call begun and ended counts once)';

-- [Turn 3] (cross mark) update_order_status({...}) (arrow) {...} [38ms]; marks in UTF-8 databases only
CREATE FUNCTION tool_audit.conversation_timeline(conversation_id text) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT l.line
      FROM tool_audit.calls c
     CROSS JOIN LATERAL (
           SELECT 0::bigint AS k,
                  format('[Turn %s] %s %s(%s) %s %s [%sms]',
                  coalesce(c.turn_number::text, '?'),
                  tool_audit.report_mark(CASE WHEN c.success THEN 'ok' ELSE 'failed' END),
                  c.tool_name, c.arguments::text, tool_audit.report_mark('arrow'),
                  CASE c.state WHEN 'never_ended' THEN '(never ended)'
                               WHEN 'in_progress' THEN '(in progress)'
                               ELSE c.result_summary::text END,
                  coalesce(trim_scale(round(c.duration_ms::numeric, 1))::text, '?'))   -- 0.1 ms for display
                  -- the client's time, when it sent one (1.5)
                  || CASE WHEN c.started_at IS NOT NULL
                          THEN format(' [started %s]', tool_audit.iso8601_utc(c.started_at)) ELSE '' END
                  AS line
           UNION ALL   -- (1.5) the rows the call changed, under it
           SELECT d.id, format('    %s %s %s', d.operation, d.table_name, d.row_key::text)
             FROM tool_audit.data_changes d
            WHERE d.call_event_id = c.call_id) l
     WHERE c.conversation_id = tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY c.turn_number, c.recorded_at, c.id, l.k;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('conversation_timeline', jsonb_build_object('conversation_id', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.conversation_timeline(text) IS
    'A conversation as one line of text per tool call (a call begun and ended: one line): turn, outcome, tool, arguments, result summary and duration; under it, one line per row the call changed (1.5)';

-- User usr_1 (support_agent) (arrow) gpt-4.1 (arrow) update_order_status [user_request];
-- (1.5) User usr_1 (customer) impersonated by adm_7 (arrow) ... under an impersonation
CREATE FUNCTION tool_audit.attribution(call_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    line text;
BEGIN
    SELECT format('User %s (%s)%s %s %s %s %s [%s]',
                  coalesce(nullif(t.user_id, ''), 'unknown'), coalesce(nullif(t.user_role, ''), 'unknown'),
                  CASE WHEN t.impersonated_by IS NOT NULL THEN ' impersonated by ' || t.impersonated_by ELSE '' END,
                  tool_audit.report_mark('arrow'), coalesce(nullif(t.model, ''), 'unknown'),
                  tool_audit.report_mark('arrow'), t.tool_name, t.call_trigger)
      INTO line
      FROM tool_audit.tool_calls t
     WHERE t.id = tool_audit.required_arg($1, 'call_id'::pg_catalog.text);
    PERFORM tool_audit.record_read('attribution', jsonb_build_object('call_id', $1),
                                   CASE WHEN line IS NULL THEN 0 ELSE 1 END);
    RETURN line;
END
$$;
COMMENT ON FUNCTION tool_audit.attribution(bigint) IS
    'Who made a tool call, as one line of text: user, role, model, tool and what prompted it';

-- ---------------------------------------------------------------------------
-- The access report (the seed's generate_access_report)
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.access_report(subject_id text, start_time timestamptz, end_time timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    report jsonb;
    protections jsonb;
BEGIN
    PERFORM tool_audit.required_arg(access_report.subject_id, 'subject_id');
    PERFORM tool_audit.check_period(start_time, end_time);

    SELECT coalesce(jsonb_agg(jsonb_build_object('table', p.table_name, 'problem', p.problem)
                              ORDER BY p.table_name, p.problem), '[]')
      INTO protections
      FROM tool_audit.verify_protections() p;

    WITH covered AS MATERIALIZED (
        -- a call begun and ended is one access (its started row), with the
        -- ended row's outcome; both rows are verified
        SELECT t, tool_audit.check_row(t) AS problem,
               t.call_phase IS DISTINCT FROM 'ended' AS access,
               CASE WHEN t.call_phase = 'started' THEN
                   (SELECT e.success FROM tool_audit.tool_calls e
                     WHERE e.call_event_id = t.event_id AND e.call_phase = 'ended') END AS ended_success
          FROM tool_audit.tool_calls t
         WHERE t.subject_id = access_report.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at <= end_time
    )
    SELECT jsonb_build_object(
        'subject_id', access_report.subject_id,
        'report_period', jsonb_build_object('start', tool_audit.iso8601_utc(start_time),
                                            'end', tool_audit.iso8601_utc(end_time)),
        'total_accesses', count(*) FILTER (WHERE c.access),
        'unique_users', count(DISTINCT (c.t).user_id) FILTER (WHERE c.access),
        'accesses', coalesce(jsonb_agg(jsonb_build_object(
                'timestamp', tool_audit.iso8601_utc((c.t).recorded_at),
                'accessed_by', (c.t).user_id,
                'role', (c.t).user_role,
                'tool', (c.t).tool_name,
                'purpose', (c.t).purpose,
                'success', CASE WHEN (c.t).call_phase IS NULL THEN (c.t).success ELSE c.ended_success END,
                'break_glass', tool_audit.is_break_glass(c.t),
                'call_id', (c.t).id,
                'model', (c.t).model,
                'conversation_id', (c.t).conversation_id,
                'tenant_id', (c.t).tenant_id)
                || CASE WHEN (c.t).impersonated_by IS NOT NULL
                        THEN jsonb_build_object('impersonated_by', (c.t).impersonated_by) ELSE '{}' END
                || CASE WHEN (c.t).call_phase = 'started'
                        THEN jsonb_build_object('call_state', CASE WHEN c.ended_success IS NULL
                                                                   THEN 'not_ended' ELSE 'ended' END)
                        ELSE '{}' END
                -- the client's time, when it sent one (1.5)
                || CASE WHEN (c.t).started_at IS NOT NULL
                        THEN jsonb_build_object('started_at', tool_audit.iso8601_utc((c.t).started_at))
                        ELSE '{}' END
            ORDER BY (c.t).recorded_at, (c.t).id) FILTER (WHERE c.access), '[]'),
        'break_glass_accesses', count(*) FILTER (WHERE c.access AND tool_audit.is_break_glass(c.t)),
        'integrity_verified', count(c.problem) = 0 AND protections = '[]',
        'integrity', jsonb_build_object(
            'rows_checked', count(*),
            'row_problems', coalesce(jsonb_agg(jsonb_build_object('call_id', (c.t).id, 'problem', c.problem)
                                               ORDER BY (c.t).id) FILTER (WHERE c.problem IS NOT NULL), '[]'),
            'protection_problems', protections,
            'method', 'each row''s hash recomputed, its links to the rows before and after it in its chain checked, and the audit tables'' protections checked',
            'scope', 'the rows of this report: a row deleted elsewhere in a chain is found by tool_audit.verify(), rows cut off the newest end by tool_audit.verify_digest()'))
      INTO report
      FROM covered c;
    PERFORM tool_audit.record_read('access_report',
                                   jsonb_build_object('subject_id', access_report.subject_id,
                                                      'start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time)),
                                   (report->>'total_accesses')::bigint);
    RETURN report;
END
$$;
COMMENT ON FUNCTION tool_audit.access_report(text, timestamptz, timestamptz) IS
    'Every access to a subject''s data in a period, with the break-glass accesses and a verification of the rows, as JSON';

-- ---------------------------------------------------------------------------
-- (1.5) The access report as rows, a page at a time: one row per access to a
-- subject in a period, in time order (recorded_at, kind, id): the tool calls
-- of the subject (a call begun and ended is one access, its started row,
-- with the ended row's outcome; both rows checked) and the admin events
-- about it (payload subject_id, as legal holds and export_fhir_admin_events
-- read it, or an impersonation's target_user).  Each row carries its cursor:
-- given as after, the next page starts past it, an index range scan of
-- tool_calls_subject (and of admin_events_occurred_at for the admin events,
-- filtered by payload) however deep the page.  doc/reports.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.access_report_rows(subject_id text, start_time timestamptz, end_time timestamptz,
                                              after text DEFAULT NULL, max_rows integer DEFAULT 1000)
RETURNS TABLE (kind text, recorded_at timestamptz, started_at timestamptz, id bigint, event_id uuid,
               tenant_id text, accessed_by text, role text, what text, purpose text, success boolean,
               break_glass boolean, impersonated_by text, arguments jsonb, row_hash text,
               integrity text, cursor text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    subject text := access_report_rows.subject_id;
    after_at timestamptz := '-infinity';
    after_kind text := '';
    after_id bigint := 0;
    parts text[];
    n bigint;
BEGIN
    PERFORM tool_audit.required_arg(subject, 'subject_id');
    PERFORM tool_audit.check_period(start_time, end_time);
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 10000 THEN
        RAISE EXCEPTION 'invalid value for argument "max_rows": it must be between 1 and 10000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF after IS NOT NULL THEN
        -- the cursor of a row of an earlier page: time|kind|id (not echoed)
        parts := regexp_match(after, '^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)\|(tool_call|admin_event)\|([0-9]{1,18})$');
        BEGIN
            after_at := parts[1]::timestamptz;
        EXCEPTION WHEN others THEN
            parts := NULL;
        END;
        IF parts IS NULL THEN
            RAISE EXCEPTION 'invalid value for argument "after": not a cursor of access_report_rows()'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the cursor column of the last row of the previous page, or NULL for the first page.';
        END IF;
        after_kind := parts[2];
        after_id := parts[3]::bigint;
    END IF;

    RETURN QUERY
    SELECT p.kind, p.at, p.started_at, p.rid, p.event_id, p.tenant_id, p.accessed_by, p.role, p.what,
           p.purpose, p.success, p.break_glass, p.impersonated_by, p.arguments, encode(p.row_hash, 'hex'),
           CASE p.kind
                WHEN 'tool_call' THEN
                    coalesce((SELECT tool_audit.check_row(t) FROM tool_audit.tool_calls t WHERE t.id = p.rid),
                             (SELECT format('ended row %s: %s', e.id, tool_audit.check_row(e))
                                FROM tool_audit.tool_calls e
                               WHERE p.phase = 'started' AND e.call_event_id = p.event_id
                                 AND e.call_phase = 'ended' AND tool_audit.check_row(e) IS NOT NULL
                               LIMIT 1))
                ELSE (SELECT tool_audit.check_row(a) FROM tool_audit.admin_events a WHERE a.id = p.rid) END,
           format('%s|%s|%s', tool_audit.iso8601_utc(p.at), p.kind, p.rid)
      FROM (SELECT u.* FROM (
              (SELECT 'tool_call'::text AS kind, t.recorded_at AS at, t.started_at, t.id AS rid, t.event_id,
                      t.tenant_id, t.user_id AS accessed_by, t.user_role AS role, t.tool_name AS what,
                      t.purpose,
                      CASE WHEN t.call_phase IS NULL THEN t.success
                           ELSE (SELECT e.success FROM tool_audit.tool_calls e
                                  WHERE e.call_event_id = t.event_id AND e.call_phase = 'ended') END AS success,
                      tool_audit.is_break_glass(t) AS break_glass, t.impersonated_by, t.arguments,
                      t.row_hash, t.call_phase AS phase
                 FROM tool_audit.tool_calls t
                WHERE t.subject_id = subject
                  AND t.recorded_at >= start_time AND t.recorded_at <= end_time
                  -- past the cursor: a tool_call sorts after an admin_event of the same time
                  AND (t.recorded_at, t.id) > (after_at, CASE WHEN after_kind = 'tool_call' THEN after_id
                                                              ELSE -9223372036854775808 END)
                  AND t.call_phase IS DISTINCT FROM 'ended'
                ORDER BY t.recorded_at, t.id
                LIMIT max_rows)
              UNION ALL
              (SELECT 'admin_event'::text, a.occurred_at, NULL::timestamptz, a.id, a.event_id,
                      a.tenant_id, a.actor, a.actor_type, a.event_type, a.reason, NULL::boolean, false,
                      a.impersonated_by, a.payload, a.row_hash, NULL::text
                 FROM tool_audit.admin_events a
                WHERE (a.payload ->> 'subject_id' = subject OR a.payload ->> 'target_user' = subject)
                  AND a.occurred_at >= start_time AND a.occurred_at <= end_time
                  AND (a.occurred_at, a.id) > (after_at, CASE WHEN after_kind = 'admin_event' THEN after_id
                                                              WHEN after_kind = 'tool_call' THEN 9223372036854775807
                                                              ELSE -9223372036854775808 END)
                ORDER BY a.occurred_at, a.id
                LIMIT max_rows)) u
             ORDER BY u.at, u.kind, u.rid
             LIMIT max_rows) p
     ORDER BY p.at, p.kind, p.rid;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('access_report_rows',
                                   jsonb_build_object('subject_id', subject,
                                                      'start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time),
                                                      'after', after, 'max_rows', max_rows), n);
END
$$;
COMMENT ON FUNCTION tool_audit.access_report_rows(text, timestamptz, timestamptz, text, integer) IS
    'The accesses to a subject in a period as rows (tool calls, and admin events about the subject), at most max_rows a page in time order, each with its sanitized arguments, row hash, integrity problem (NULL if the row checks out) and the cursor that starts the next page';

-- ---------------------------------------------------------------------------
-- (1.5) The timeline as rows: a conversation's tool calls (a call begun and
-- ended: one row, at its start), under each the rows it changed, and the
-- admin events that name the conversation (payload conversation_id, as the
-- purge reads it), in time order, each with who, what, and its integrity
-- problem (NULL if the row checks out).  The text timeline,
-- conversation_timeline(), stays as it was.  doc/reports.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.conversation_events(conversation_id text)
RETURNS TABLE ("at" timestamptz, kind text, turn_number integer, user_id text, what text, detail jsonb,
               success boolean, duration_ms numeric, integrity text, id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    conversation text := tool_audit.required_arg(conversation_events.conversation_id, 'conversation_id');
    n bigint;
BEGIN
    RETURN QUERY
    SELECT x.at, x.kind, x.turn_number, x.user_id, x.what, x.detail, x.success, x.duration_ms,
           x.integrity, x.id
      FROM (SELECT c.recorded_at AS at, 'tool_call'::text AS kind, 0 AS rank, c.turn_number, c.user_id,
                   c.tool_name AS what,
                   jsonb_build_object('arguments', c.arguments, 'result_summary', c.result_summary,
                                      'state', c.state, 'call_id', c.call_id)
                   || CASE WHEN c.started_at IS NOT NULL
                           THEN jsonb_build_object('started_at', tool_audit.iso8601_utc(c.started_at))
                           ELSE '{}' END AS detail,
                   c.success, round(c.duration_ms::numeric, 1) AS duration_ms,
                   coalesce((SELECT tool_audit.check_row(t) FROM tool_audit.tool_calls t WHERE t.id = c.id),
                            (SELECT 'ended row ' || e.id || ': ' || tool_audit.check_row(e)
                               FROM tool_audit.tool_calls e
                              WHERE e.event_id = c.end_event_id)) AS integrity,
                   c.id
              FROM tool_audit.calls c
             WHERE c.conversation_id = conversation
            UNION ALL
            SELECT d.recorded_at, 'data_change', 1, c.turn_number, c.user_id,
                   d.operation || ' ' || d.table_name,
                   jsonb_build_object('row_key', d.row_key, 'call_id', c.call_id),
                   NULL, NULL, tool_audit.check_row(d), d.id
              FROM tool_audit.calls c
              JOIN tool_audit.data_changes d ON d.call_event_id = c.call_id
             WHERE c.conversation_id = conversation
            UNION ALL
            SELECT a.occurred_at, 'admin_event', 2, NULL, a.actor, a.event_type, a.payload,
                   NULL, NULL, tool_audit.check_row(a), a.id
              FROM tool_audit.admin_events a
             WHERE a.payload ->> 'conversation_id' = conversation) x
     ORDER BY x.at, x.rank, x.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('conversation_events', jsonb_build_object('conversation_id', conversation), n);
END
$$;
COMMENT ON FUNCTION tool_audit.conversation_events(text) IS
    'A conversation as rows in time order: its tool calls (a call begun and ended: one row), the rows each changed and the admin events naming it, each with time, user, what, detail, duration rounded to 0.1 ms and integrity problem (NULL if the row checks out)';
