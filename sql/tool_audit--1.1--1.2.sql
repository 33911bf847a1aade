/* tool_audit--1.1--1.2.sql: compliance queries, access reports and exports */

\echo Use "ALTER EXTENSION tool_audit UPDATE TO '1.2'" to load this file. \quit

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
-- Checking rows: the primitives of section 2 and 4 of doc/canonical-encoding.md
-- ---------------------------------------------------------------------------

-- compute_row_hash(row): the row hash recomputed from the row's columns
CREATE FUNCTION tool_audit.compute_row_hash(tool_audit.tool_calls) RETURNS bytea
    AS 'MODULE_PATHNAME', 'compute_row_hash' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE FUNCTION tool_audit.compute_row_hash(tool_audit.admin_events) RETURNS bytea
    AS 'MODULE_PATHNAME', 'compute_row_hash' LANGUAGE C STRICT STABLE PARALLEL SAFE;

-- chain_link(...): the chain_hash a row at this position must store
CREATE FUNCTION tool_audit.chain_link(chain_id bigint, chain_lane integer, chain_seq bigint,
                                      previous bytea, row_hash bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'chain_link' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

-- verify_protections(): verify()'s checks of triggers, logging, rules and
-- index, without the walk over the rows
CREATE FUNCTION tool_audit.verify_protections()
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify_protections' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- chain_problem(...): what is wrong with a row's place in its chain, from
-- the row's chain columns, its recomputed row hash and its two neighbours'
-- (prev_*: the row before it in its lane, next_*: the row after it, NULL
-- when absent; later_exists: a row further on in the lane exists); NULL if
-- nothing is.  check_row() feeds it for either table.
CREATE FUNCTION tool_audit.chain_problem(
    chain_id bigint, chain_lane integer, chain_seq bigint, row_hash bytea, chain_hash bytea,
    computed_hash bytea, prev_hash bytea, next_seq bigint, next_row_hash bytea,
    next_chain_hash bytea, later_exists boolean)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN chain_id IS NULL OR chain_lane IS NULL OR chain_seq IS NULL OR chain_hash IS NULL
            THEN 'row not in a chain'
        WHEN chain_seq < 1 OR chain_seq = 9223372036854775807
            THEN 'invalid chain position'
        WHEN row_hash IS DISTINCT FROM computed_hash
            THEN 'row altered: its content does not match its row hash'
        WHEN chain_seq > 1 AND prev_hash IS NULL
            THEN 'the row before this one in its lane is missing'
        WHEN chain_seq > 1 AND octet_length(prev_hash) <> 32
            THEN 'chain link broken: the previous row''s link is malformed'
        WHEN chain_hash IS DISTINCT FROM
             tool_audit.chain_link(chain_id, chain_lane, chain_seq,
                                   CASE WHEN chain_seq = 1 THEN decode(repeat('00', 32), 'hex')
                                        ELSE prev_hash END, row_hash)
            THEN 'chain link broken: row reordered, inserted or its link edited'
        WHEN next_seq IS NOT NULL AND (octet_length(next_row_hash) IS DISTINCT FROM 32 OR
             next_chain_hash IS DISTINCT FROM
             tool_audit.chain_link(chain_id, chain_lane, chain_seq + 1, chain_hash, next_row_hash))
            THEN 'chain link broken: the next row does not link to this one'
        WHEN next_seq IS NULL AND later_exists
            THEN 'the row after this one in its lane is missing'
    END
$$;

-- check_row(row): NULL when the row matches its row hash and links to the
-- rows before and after it in its lane (and no row after it is missing),
-- else what is wrong.  It reads the neighbours as the caller, through
-- row-level security: they are in the same chain, so of the same tenant, as
-- the row.  (The later-row probe runs only when the next row is missing.)
CREATE FUNCTION tool_audit.check_row(r tool_audit.tool_calls) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.compute_row_hash(r),
        p.chain_hash, n.chain_seq, n.row_hash, n.chain_hash,
        n.chain_seq IS NULL AND EXISTS (
            SELECT FROM tool_audit.tool_calls x
             WHERE x.chain_id = r.chain_id AND x.chain_lane = r.chain_lane
               AND x.chain_seq > r.chain_seq AND x.chain_seq <> r.chain_seq + 1))
    FROM (SELECT) AS one
    LEFT JOIN tool_audit.tool_calls p
           ON r.chain_seq > 1 AND r.chain_seq < 9223372036854775807
              AND p.chain_id = r.chain_id AND p.chain_lane = r.chain_lane AND p.chain_seq = r.chain_seq - 1
    LEFT JOIN tool_audit.tool_calls n
           ON r.chain_seq >= 1 AND r.chain_seq < 9223372036854775807
              AND n.chain_id = r.chain_id AND n.chain_lane = r.chain_lane AND n.chain_seq = r.chain_seq + 1
$$;

CREATE FUNCTION tool_audit.check_row(r tool_audit.admin_events) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.compute_row_hash(r),
        p.chain_hash, n.chain_seq, n.row_hash, n.chain_hash,
        n.chain_seq IS NULL AND EXISTS (
            SELECT FROM tool_audit.admin_events x
             WHERE x.chain_id = r.chain_id AND x.chain_lane = r.chain_lane
               AND x.chain_seq > r.chain_seq AND x.chain_seq <> r.chain_seq + 1))
    FROM (SELECT) AS one
    LEFT JOIN tool_audit.admin_events p
           ON r.chain_seq > 1 AND r.chain_seq < 9223372036854775807
              AND p.chain_id = r.chain_id AND p.chain_lane = r.chain_lane AND p.chain_seq = r.chain_seq - 1
    LEFT JOIN tool_audit.admin_events n
           ON r.chain_seq >= 1 AND r.chain_seq < 9223372036854775807
              AND n.chain_id = r.chain_id AND n.chain_lane = r.chain_lane AND n.chain_seq = r.chain_seq + 1
$$;

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

-- iso8601_utc(ts): 2026-11-22T17:45:55.123456Z whatever TimeZone and DateStyle say
CREATE FUNCTION tool_audit.iso8601_utc(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN isfinite(ts)
                THEN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                ELSE ts::text END
$$;

-- is_break_glass(row): the call was an emergency access: its context said
-- "break_glass": true (kept in session_metadata) or its purpose is
-- "break_glass", "break-glass" or "emergency"
CREATE FUNCTION tool_audit.is_break_glass(r tool_audit.tool_calls) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.session_metadata @> '{"break_glass": true}'
        OR coalesce(lower(btrim(r.purpose)) IN ('break_glass', 'break-glass', 'emergency'), false)
$$;

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

-- ---------------------------------------------------------------------------
-- Queries (the seed's AuditQueryEngine).  Plain SQL functions, inlined into
-- the caller's query: their WHERE, ORDER BY and LIMIT reach the indexes.
-- Inlined bodies are parsed with the caller's search_path: every name in
-- them is schema-qualified.  The since bound is a CASE, not COALESCE: under
-- row-level security only leakproof expressions become index conditions.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.calls_by_conversation(conversation_id text)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE sql STABLE
AS $$
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.conversation_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id
$$;

CREATE FUNCTION tool_audit.calls_by_user(user_id text, since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE sql STABLE
AS $$
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.user_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'user_id'::pg_catalog.text)
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $2 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $2 END
     ORDER BY t.recorded_at, t.id
$$;

CREATE FUNCTION tool_audit.failures(since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE sql STABLE
AS $$
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE NOT t.success
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $1 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $1 END
     ORDER BY t.recorded_at, t.id
$$;

CREATE FUNCTION tool_audit.tool_stats(tool_name text) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(*) = 0
        THEN jsonb_build_object('tool', $1, 'total_calls', 0)
        ELSE jsonb_build_object(
            'tool', $1,
            'total_calls', count(*),
            'success_rate', round(count(*) FILTER (WHERE t.success)::numeric / count(*), 3),
            'avg_duration_ms', round(avg(t.duration_ms)::numeric, 1),
            'max_duration_ms', round(max(t.duration_ms)::numeric, 1),
            'unique_users', count(DISTINCT t.user_id))
        END
      FROM tool_audit.tool_calls t
     WHERE t.tool_name = tool_audit.required_arg($1, 'tool_name'::pg_catalog.text)
$$;

-- the same figures for every tool: one row per tool over every tenant the
-- caller sees (all_tenants), and one per tenant and tool
CREATE VIEW tool_audit.tool_usage WITH (security_invoker = true) AS
SELECT GROUPING(t.tenant_id) = 1 AS all_tenants,
       t.tenant_id,
       t.tool_name,
       count(*) AS total_calls,
       round(count(*) FILTER (WHERE t.success)::numeric / count(*), 3) AS success_rate,
       round(avg(t.duration_ms)::numeric, 1) AS avg_duration_ms,
       round(max(t.duration_ms)::numeric, 1) AS max_duration_ms,
       count(DISTINCT t.user_id) AS unique_users
  FROM tool_audit.tool_calls t
 GROUP BY GROUPING SETS ((t.tool_name), (t.tenant_id, t.tool_name));
COMMENT ON VIEW tool_audit.tool_usage IS 'tool_stats() for every tool: over all visible tenants (all_tenants) and per tenant';

-- [Turn 3] (cross mark) update_order_status({...}) (arrow) {...} [38ms]; marks in UTF-8 databases only
CREATE FUNCTION tool_audit.conversation_timeline(conversation_id text) RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
    SELECT format('[Turn %s] %s %s(%s) %s %s [%sms]',
                  coalesce(t.turn_number::text, '?'),
                  tool_audit.report_mark(CASE WHEN t.success THEN 'ok' ELSE 'failed' END),
                  t.tool_name, t.arguments::text, tool_audit.report_mark('arrow'),
                  t.result_summary::text,
                  coalesce(t.duration_ms::text, '?'))
      FROM tool_audit.tool_calls t
     WHERE t.conversation_id = tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id
$$;

-- User usr_1 (support_agent) (arrow) gpt-4.1 (arrow) update_order_status [user_request]
CREATE FUNCTION tool_audit.attribution(call_id bigint) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('User %s (%s) %s %s %s %s [%s]',
                  coalesce(nullif(t.user_id, ''), 'unknown'), coalesce(nullif(t.user_role, ''), 'unknown'),
                  tool_audit.report_mark('arrow'), coalesce(nullif(t.model, ''), 'unknown'),
                  tool_audit.report_mark('arrow'), t.tool_name, t.call_trigger)
      FROM tool_audit.tool_calls t
     WHERE t.id = tool_audit.required_arg($1, 'call_id'::pg_catalog.text)
$$;

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
        SELECT t, tool_audit.check_row(t) AS problem
          FROM tool_audit.tool_calls t
         WHERE t.subject_id = access_report.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at <= end_time
    )
    SELECT jsonb_build_object(
        'subject_id', access_report.subject_id,
        'report_period', jsonb_build_object('start', tool_audit.iso8601_utc(start_time),
                                            'end', tool_audit.iso8601_utc(end_time)),
        'total_accesses', count(*),
        'unique_users', count(DISTINCT (c.t).user_id),
        'accesses', coalesce(jsonb_agg(jsonb_build_object(
                'timestamp', tool_audit.iso8601_utc((c.t).recorded_at),
                'accessed_by', (c.t).user_id,
                'role', (c.t).user_role,
                'tool', (c.t).tool_name,
                'purpose', (c.t).purpose,
                'success', (c.t).success,
                'break_glass', tool_audit.is_break_glass(c.t),
                'call_id', (c.t).id,
                'model', (c.t).model,
                'conversation_id', (c.t).conversation_id,
                'tenant_id', (c.t).tenant_id)
            ORDER BY (c.t).recorded_at, (c.t).id), '[]'),
        'break_glass_accesses', count(*) FILTER (WHERE tool_audit.is_break_glass(c.t)),
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
    RETURN report;
END
$$;

-- ---------------------------------------------------------------------------
-- Exports
-- ---------------------------------------------------------------------------

-- one JSON document per row of both audit tables, with the row's hash and
-- place in its chain, so that the export can be checked without the database
CREATE FUNCTION tool_audit.export_jsonl(start_time timestamptz, end_time timestamptz)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    RETURN QUERY
    SELECT x.doc FROM (
        SELECT t.recorded_at AS at, 1 AS tab, t.id, jsonb_build_object(
            'table', 'tool_calls',
            'id', t.id, 'event_id', t.event_id, 'recorded_at', tool_audit.iso8601_utc(t.recorded_at),
            'tenant_id', t.tenant_id, 'conversation_id', t.conversation_id,
            'turn_number', t.turn_number, 'user_id', t.user_id, 'user_role', t.user_role,
            'model', t.model, 'tool_name', t.tool_name, 'tool_call_id', t.tool_call_id,
            'call_trigger', t.call_trigger, 'purpose', t.purpose, 'subject_id', t.subject_id,
            'arguments', t.arguments, 'result_summary', t.result_summary, 'success', t.success,
            'error', t.error, 'duration_ms', t.duration_ms, 'client_ip', abbrev(t.client_ip),
            'user_agent', t.user_agent, 'session_metadata', t.session_metadata,
            'recorded_by', t.recorded_by,
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex')) AS doc
          FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
        UNION ALL
        SELECT e.occurred_at, 0, e.id, jsonb_build_object(
            'table', 'admin_events',
            'id', e.id, 'event_id', e.event_id, 'occurred_at', tool_audit.iso8601_utc(e.occurred_at),
            'event_type', e.event_type, 'actor', e.actor, 'actor_type', e.actor_type,
            'tenant_id', e.tenant_id, 'payload', e.payload, 'reason', e.reason,
            'source_ip', abbrev(e.source_ip), 'metadata', e.metadata, 'recorded_by', e.recorded_by,
            'row_hash', encode(e.row_hash, 'hex'), 'chain_id', e.chain_id,
            'chain_lane', e.chain_lane, 'chain_seq', e.chain_seq,
            'chain_hash', encode(e.chain_hash, 'hex'))
          FROM tool_audit.admin_events e
         WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
    ) x
    ORDER BY x.at, x.tab, x.id;
END
$$;

-- CSV: COPY (SELECT * FROM tool_audit.tool_calls_csv WHERE ...) TO STDOUT (FORMAT csv, HEADER)
CREATE VIEW tool_audit.tool_calls_csv WITH (security_invoker = true) AS
SELECT t.id, t.event_id, t.recorded_at, t.tenant_id, t.conversation_id, t.turn_number,
       t.user_id, t.user_role, t.model, t.tool_name, t.tool_call_id, t.call_trigger,
       t.purpose, t.subject_id, t.arguments::text AS arguments,
       t.result_summary::text AS result_summary, t.success, t.error, t.duration_ms,
       abbrev(t.client_ip) AS client_ip, t.user_agent, t.session_metadata::text AS session_metadata,
       t.recorded_by, encode(t.row_hash, 'hex') AS row_hash, t.chain_id, t.chain_lane,
       t.chain_seq, encode(t.chain_hash, 'hex') AS chain_hash
  FROM tool_audit.tool_calls t;
COMMENT ON VIEW tool_audit.tool_calls_csv IS 'tool_calls with JSON as text and hashes as hex, for COPY ... (FORMAT csv, HEADER)';

CREATE VIEW tool_audit.admin_events_csv WITH (security_invoker = true) AS
SELECT e.id, e.event_id, e.occurred_at, e.event_type, e.actor, e.actor_type, e.tenant_id,
       e.payload::text AS payload, e.reason, abbrev(e.source_ip) AS source_ip,
       e.metadata::text AS metadata, e.recorded_by, encode(e.row_hash, 'hex') AS row_hash,
       e.chain_id, e.chain_lane, e.chain_seq, encode(e.chain_hash, 'hex') AS chain_hash
  FROM tool_audit.admin_events e;
COMMENT ON VIEW tool_audit.admin_events_csv IS 'admin_events with JSON as text and hashes as hex, for COPY ... (FORMAT csv, HEADER)';

-- fhir_action(tool_name): the AuditEvent action a tool's leading verb
-- implies (get_order, searchPatients, DELETE_NOTE: the first word)
CREATE FUNCTION tool_audit.fhir_action(tool_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE lower(coalesce(substring(tool_name FROM '^[A-Z]+(?![a-z])'),
                               substring(tool_name FROM '^[A-Za-z][a-z]*')))
        WHEN 'get' THEN 'R' WHEN 'read' THEN 'R' WHEN 'list' THEN 'R' WHEN 'search' THEN 'R'
        WHEN 'find' THEN 'R' WHEN 'lookup' THEN 'R' WHEN 'fetch' THEN 'R' WHEN 'query' THEN 'R'
        WHEN 'view' THEN 'R' WHEN 'show' THEN 'R' WHEN 'check' THEN 'R'
        WHEN 'create' THEN 'C' WHEN 'add' THEN 'C' WHEN 'insert' THEN 'C' WHEN 'new' THEN 'C'
        WHEN 'update' THEN 'U' WHEN 'set' THEN 'U' WHEN 'modify' THEN 'U' WHEN 'edit' THEN 'U'
        WHEN 'change' THEN 'U' WHEN 'patch' THEN 'U'
        WHEN 'delete' THEN 'D' WHEN 'remove' THEN 'D' WHEN 'purge' THEN 'D' WHEN 'erase' THEN 'D'
        ELSE 'E'
    END
$$;

-- fhir_string(value): a FHIR string: the R4 schema's string pattern
-- (^[ \r\n\t\S]+$, in JavaScript) admits no whitespace but space, tab, CR
-- and LF, so the others (vertical tab, form feed, no-break and other Unicode
-- spaces) become spaces; an empty string becomes NULL (FHIR has none)
CREATE FUNCTION tool_audit.fhir_string(value text) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF getdatabaseencoding() = 'UTF8' THEN
        value := regexp_replace(value,
            '[\u000b\u000c\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]', ' ', 'g');
    ELSE
        value := regexp_replace(value, '[\u000b\u000c]', ' ', 'g');
    END IF;
    RETURN nullif(value, '');
END
$$;

-- fhir_code(value): a FHIR code: no leading, trailing or repeated whitespace
CREATE FUNCTION tool_audit.fhir_code(value text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nullif(regexp_replace(btrim(tool_audit.fhir_string(value), E' \t\r\n'), E'[ \t\r\n]+', ' ', 'g'), '')
$$;

-- fhir_audit_event(row): one FHIR R4 AuditEvent resource for a tool call
CREATE FUNCTION tool_audit.fhir_audit_event(r tool_audit.tool_calls) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'resourceType', 'AuditEvent',
        'id', r.event_id::text,
        'type', CASE WHEN tool_audit.fhir_code(r.subject_id) IS NOT NULL
                     THEN '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record"}'::jsonb
                     ELSE '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100", "display": "Application Activity"}'::jsonb END,
        'subtype', jsonb_build_array(jsonb_build_object(
            'system', 'urn:tool_audit:tool',
            'code', coalesce(tool_audit.fhir_code(r.tool_name), 'unnamed'),
            'display', tool_audit.fhir_string(r.tool_name))),
        'action', tool_audit.fhir_action(r.tool_name),
        'recorded', tool_audit.iso8601_utc(r.recorded_at),
        'outcome', CASE WHEN r.success THEN '0' ELSE '4' END,
        'outcomeDesc', tool_audit.fhir_string(r.error),
        'purposeOfEvent', CASE WHEN tool_audit.fhir_string(r.purpose) IS NOT NULL
                               THEN jsonb_build_array(jsonb_build_object('text', tool_audit.fhir_string(r.purpose))) END,
        'agent', jsonb_build_array(
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb,
                'who', CASE WHEN tool_audit.fhir_string(r.user_id) IS NOT NULL
                            THEN jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.user_id)))
                            ELSE '{"display": "unknown"}'::jsonb END,
                'role', CASE WHEN tool_audit.fhir_string(r.user_role) IS NOT NULL
                             THEN jsonb_build_array(jsonb_build_object('text', tool_audit.fhir_string(r.user_role))) END,
                'requestor', true,
                'network', CASE WHEN r.client_ip IS NOT NULL
                                THEN jsonb_build_object('address', host(r.client_ip), 'type', '2') END),
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "dataprocessor", "display": "data processor"}]}'::jsonb,
                'who', jsonb_build_object('display', coalesce(tool_audit.fhir_string(r.model), 'unknown model')),
                'requestor', false)),
        'source', jsonb_build_object(
            'site', tool_audit.fhir_string(r.tenant_id),
            'observer', jsonb_build_object('display', tool_audit.fhir_string('tool_audit@' || current_database())),
            'type', '[{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]'::jsonb),
        'entity', (SELECT jsonb_agg(e ORDER BY n) FROM (VALUES
            (1, CASE WHEN tool_audit.fhir_code(r.subject_id) IS NOT NULL THEN jsonb_build_object(
                'what', jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.subject_id))),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"}'::jsonb)
             END),
            (2, jsonb_build_object(
                'what', jsonb_build_object('identifier', jsonb_build_object(
                    'system', 'urn:tool_audit:tool_call_id',
                    'value', coalesce(tool_audit.fhir_string(r.tool_call_id), r.event_id::text))),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}'::jsonb,
                'name', tool_audit.fhir_string(r.tool_name),
                'detail', (SELECT jsonb_agg(jsonb_build_object('type', d.k, 'valueString', d.v) ORDER BY d.n)
                             FROM (VALUES (1, 'arguments', tool_audit.fhir_string(r.arguments::text)),
                                          (2, 'result_summary', tool_audit.fhir_string(r.result_summary::text)),
                                          (3, 'conversation_id', tool_audit.fhir_string(r.conversation_id)),
                                          (4, 'turn_number', r.turn_number::text),
                                          (5, 'call_trigger', r.call_trigger::text),
                                          (6, 'duration_ms', r.duration_ms::text),
                                          (7, 'row_hash', encode(r.row_hash, 'hex')),
                                          (8, 'chain', r.chain_id || '/' || r.chain_lane || '/' || r.chain_seq))
                                  AS d(n, k, v)
                            WHERE d.v IS NOT NULL)))
            ) AS x(n, e) WHERE e IS NOT NULL)))
$$;

CREATE FUNCTION tool_audit.export_fhir(start_time timestamptz, end_time timestamptz,
                                       subject_id text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    IF export_fhir.subject_id IS NULL THEN
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    ELSE
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.subject_id = export_fhir.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    END IF;
END
$$;

-- OpenTelemetry GenAI semantic conventions: one span per tool call
CREATE VIEW tool_audit.otel_tool_spans WITH (security_invoker = true) AS
SELECT 'execute_tool ' || t.tool_name AS "span.name",
       t.recorded_at - make_interval(secs => coalesce(t.duration_ms, 0) / 1000) AS start_time,
       t.recorded_at AS end_time,
       CASE WHEN t.success THEN 'OK' ELSE 'ERROR' END AS "status.code",
       t.error AS "status.message",
       'execute_tool'::text AS "gen_ai.operation.name",
       t.tool_name AS "gen_ai.tool.name",
       t.tool_call_id AS "gen_ai.tool.call.id",
       'function'::text AS "gen_ai.tool.type",
       t.conversation_id AS "gen_ai.conversation.id",
       t.model AS "gen_ai.request.model",
       t.user_id AS "user.id",
       CASE WHEN t.user_role IS NOT NULL THEN ARRAY[t.user_role] END AS "user.roles",
       CASE WHEN NOT t.success THEN '_OTHER'::text END AS "error.type",
       t.client_ip AS "client.address",
       t.user_agent AS "user_agent.original",
       t.tenant_id AS "tool_audit.tenant_id",
       t.turn_number AS "tool_audit.turn_number",
       t.call_trigger::text AS "tool_audit.call_trigger",
       t.purpose AS "tool_audit.purpose",
       t.subject_id AS "tool_audit.subject_id",
       t.arguments AS "tool_audit.arguments",
       t.result_summary AS "tool_audit.result_summary",
       t.duration_ms AS "tool_audit.duration_ms",
       t.id AS "tool_audit.call_id",
       t.event_id AS "tool_audit.event_id",
       encode(t.row_hash, 'hex') AS "tool_audit.row_hash"
  FROM tool_audit.tool_calls t;
COMMENT ON VIEW tool_audit.otel_tool_spans IS 'Tool calls as OpenTelemetry GenAI execute_tool spans';

-- ---------------------------------------------------------------------------
-- Privileges: readers and admins query and export what row-level security
-- lets them see; the verifier exports (it reads every tenant)
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    tool_audit.compute_row_hash(tool_audit.tool_calls),
    tool_audit.compute_row_hash(tool_audit.admin_events),
    tool_audit.chain_link(bigint, integer, bigint, bytea, bytea),
    tool_audit.verify_protections(),
    tool_audit.chain_problem(bigint, integer, bigint, bytea, bytea, bytea, bytea, bigint, bytea, bytea, boolean),
    tool_audit.check_row(tool_audit.tool_calls),
    tool_audit.check_row(tool_audit.admin_events),
    tool_audit.required_arg(anyelement, text),
    tool_audit.check_period(timestamptz, timestamptz),
    tool_audit.iso8601_utc(timestamptz),
    tool_audit.is_break_glass(tool_audit.tool_calls),
    tool_audit.report_mark(text),
    tool_audit.calls_by_conversation(text),
    tool_audit.calls_by_user(text, timestamptz),
    tool_audit.failures(timestamptz),
    tool_audit.tool_stats(text),
    tool_audit.conversation_timeline(text),
    tool_audit.attribution(bigint),
    tool_audit.access_report(text, timestamptz, timestamptz),
    tool_audit.export_jsonl(timestamptz, timestamptz),
    tool_audit.fhir_action(text),
    tool_audit.fhir_string(text),
    tool_audit.fhir_code(text),
    tool_audit.fhir_audit_event(tool_audit.tool_calls),
    tool_audit.export_fhir(timestamptz, timestamptz, text)
    FROM PUBLIC;
REVOKE ALL ON tool_audit.tool_usage, tool_audit.tool_calls_csv, tool_audit.admin_events_csv,
    tool_audit.otel_tool_spans FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    tool_audit.compute_row_hash(tool_audit.tool_calls),
    tool_audit.compute_row_hash(tool_audit.admin_events),
    tool_audit.chain_link(bigint, integer, bigint, bytea, bytea),
    tool_audit.verify_protections(),
    tool_audit.chain_problem(bigint, integer, bigint, bytea, bytea, bytea, bytea, bigint, bytea, bytea, boolean),
    tool_audit.check_row(tool_audit.tool_calls),
    tool_audit.check_row(tool_audit.admin_events),
    tool_audit.required_arg(anyelement, text),
    tool_audit.check_period(timestamptz, timestamptz),
    tool_audit.iso8601_utc(timestamptz),
    tool_audit.is_break_glass(tool_audit.tool_calls),
    tool_audit.report_mark(text),
    tool_audit.export_jsonl(timestamptz, timestamptz),
    tool_audit.fhir_action(text),
    tool_audit.fhir_string(text),
    tool_audit.fhir_code(text),
    tool_audit.fhir_audit_event(tool_audit.tool_calls),
    tool_audit.export_fhir(timestamptz, timestamptz, text)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.calls_by_conversation(text),
    tool_audit.calls_by_user(text, timestamptz),
    tool_audit.failures(timestamptz),
    tool_audit.tool_stats(text),
    tool_audit.conversation_timeline(text),
    tool_audit.attribution(bigint),
    tool_audit.access_report(text, timestamptz, timestamptz)
    TO tool_audit_reader, tool_audit_admin;
GRANT SELECT ON tool_audit.tool_usage TO tool_audit_reader, tool_audit_admin;
GRANT SELECT ON tool_audit.tool_calls_csv, tool_audit.admin_events_csv, tool_audit.otel_tool_spans
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
