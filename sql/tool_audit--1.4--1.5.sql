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

-- idempotent retries and the client's time (issue 15)
ALTER TABLE tool_audit.tool_calls
    ADD COLUMN started_at timestamptz;
COMMENT ON COLUMN tool_audit.tool_calls.started_at IS 'When the call began, as the client said (its clock; recorded_at is the server''s); hashed, not a chain or report period key';

-- a retry of a stored call (same tenant_id, conversation_id, tool_call_id and
-- call_phase) is found through this index and not stored again (the insert
-- trigger and log_call(), src/idempotency.c); not unique: databases created
-- before 1.5 may hold rows sharing a tool_call_id
CREATE INDEX tool_calls_tool_call_id
    ON tool_audit.tool_calls (tool_call_id) WHERE tool_call_id IS NOT NULL;

-- started_at in the reports and exports where a call's time is shown (the
-- other keys, lines and columns are unchanged for rows without one)
CREATE OR REPLACE FUNCTION tool_audit.conversation_timeline(conversation_id text) RETURNS SETOF text
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
           -- the client's time, when it sent one (1.5)
           || CASE WHEN t.started_at IS NOT NULL
                   THEN format(' [started %s]', tool_audit.iso8601_utc(t.started_at)) ELSE '' END
      FROM tool_audit.tool_calls t
     WHERE t.conversation_id = tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id
$$;

CREATE OR REPLACE FUNCTION tool_audit.access_report(subject_id text, start_time timestamptz, end_time timestamptz)
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
                -- the client's time, when it sent one (1.5)
                || CASE WHEN (c.t).started_at IS NOT NULL
                        THEN jsonb_build_object('started_at', tool_audit.iso8601_utc((c.t).started_at))
                        ELSE '{}' END
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

CREATE OR REPLACE FUNCTION tool_audit.export_jsonl(start_time timestamptz, end_time timestamptz)
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
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex'))
            -- the client's time, when it sent one (1.5)
            || CASE WHEN t.started_at IS NOT NULL
                    THEN jsonb_build_object('started_at', tool_audit.iso8601_utc(t.started_at))
                    ELSE '{}' END AS doc
          FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
        UNION ALL
        SELECT e.occurred_at, 0, e.id, jsonb_build_object(
            'table', 'admin_events',
            'id', e.id, 'event_id', e.event_id, 'occurred_at', tool_audit.iso8601_utc(e.occurred_at),
            'event_type', e.event_type, 'actor', e.actor, 'actor_type', e.actor_type,
            'tenant_id', e.tenant_id, 'payload', e.payload, 'reason', e.reason,
            'source_ip', abbrev(e.source_ip), 'metadata', e.metadata, 'recorded_by', e.recorded_by,
            'row_hash', encode(e.row_hash, 'hex'), 'chain_id', e.chain_id::text,
            'chain_lane', e.chain_lane, 'chain_seq', e.chain_seq,
            'chain_hash', encode(e.chain_hash, 'hex'))
          FROM tool_audit.admin_events e
         WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
    ) x
    ORDER BY x.at, x.tab, x.id;
END
$$;

CREATE OR REPLACE VIEW tool_audit.tool_calls_csv WITH (security_invoker = true) AS
SELECT t.id, t.event_id, t.recorded_at, t.tenant_id, t.conversation_id, t.turn_number,
       t.user_id, t.user_role, t.model, t.tool_name, t.tool_call_id, t.call_trigger,
       t.purpose, t.subject_id, t.arguments::text AS arguments,
       t.result_summary::text AS result_summary, t.success, t.error, t.duration_ms,
       abbrev(t.client_ip) AS client_ip, t.user_agent, t.session_metadata::text AS session_metadata,
       t.recorded_by, encode(t.row_hash, 'hex') AS row_hash, t.chain_id, t.chain_lane,
       t.chain_seq, encode(t.chain_hash, 'hex') AS chain_hash, t.started_at
  FROM tool_audit.tool_calls t;

CREATE OR REPLACE VIEW tool_audit.otel_tool_spans WITH (security_invoker = true) AS
SELECT 'execute_tool ' || t.tool_name AS "span.name",
       -- from the client's started_at when it sent one (1.5), else back from recorded_at
       coalesce(t.started_at, t.recorded_at - make_interval(secs => coalesce(t.duration_ms, 0) / 1000)) AS start_time,
       CASE WHEN t.started_at IS NULL THEN t.recorded_at
            ELSE t.started_at + make_interval(secs => coalesce(t.duration_ms, 0) / 1000) END AS end_time,
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
