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
