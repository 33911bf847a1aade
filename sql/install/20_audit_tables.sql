
-- ---------------------------------------------------------------------------
-- The audit tables: append-only, every row sanitized, hashed and chained by
-- the insert triggers (in C) whether it comes from log_call(), log_event()
-- or a plain INSERT
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.tool_calls_before_insert() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tool_calls_before_insert' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.tool_calls_before_insert() IS
    'Insert trigger of tool_calls: gives the row its id, time and recorder, then sanitizes, summarizes, hashes and chains it';

CREATE FUNCTION tool_audit.admin_events_before_insert() RETURNS trigger
    AS 'MODULE_PATHNAME', 'admin_events_before_insert' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.admin_events_before_insert() IS
    'Insert trigger of admin_events: gives the row its id, time and recorder, then sanitizes, hashes and chains it';

CREATE FUNCTION tool_audit.refuse_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'refuse_change' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.refuse_change() IS
    'Trigger that refuses UPDATE, DELETE and TRUNCATE on the append-only tables';

-- the event triggers that call it are created last, in 95_dump_and_guards.sql,
-- so that this script's own DDL is not inspected
CREATE FUNCTION tool_audit.ddl_guard() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'ddl_guard' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.ddl_guard() IS
    'Event trigger function that refuses DDL which would disable, change or drop the audit trail''s protections';

CREATE TYPE tool_audit.call_trigger AS ENUM
    ('user_request', 'proactive', 'retry', 'follow_up', 'system');
COMMENT ON TYPE tool_audit.call_trigger IS
    'What prompted a tool call: the user''s request, the model on its own, a retry, a follow-up or the system';

-- ids come from these sequences through the insert triggers, never from the
-- caller (an INSERT that brings an id is refused).
CREATE SEQUENCE tool_audit.tool_calls_id_seq;
CREATE SEQUENCE tool_audit.admin_events_id_seq;

-- event_id has no default: the insert trigger gives a row without one a
-- random uuid, and so can tell an event_id the caller brought (which must be
-- checked before the row takes a chain position: ON CONFLICT DO NOTHING may
-- skip it) from one it makes up.
--
-- The chain columns come after the 1.0 columns, where ALTER TABLE put them in
-- databases created at 1.0, and the retention columns (1.4) after them, so
-- that SELECT * and the row type read the same in every database (the row hash takes the other columns in name order, whatever
-- their order in the table: doc/canonical-encoding.md).  They stay nullable:
-- a row whose event_id is already taken gets no position, because it will
-- not be stored (ON CONFLICT DO NOTHING skips it, or the unique index
-- refuses it).  verify() reports any stored row without one.
CREATE TABLE tool_audit.tool_calls (
    id               bigint PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    recorded_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tenant_id        text,
    conversation_id  text,
    turn_number      integer CONSTRAINT turn_number_not_negative CHECK (turn_number >= 0),
    user_id          text,
    user_role        text,
    model            text,
    tool_name        text NOT NULL CONSTRAINT tool_name_not_empty CHECK (tool_name <> ''),
    tool_call_id     text,
    call_trigger     tool_audit.call_trigger NOT NULL DEFAULT 'user_request',
    purpose          text,
    subject_id       text,
    arguments        jsonb NOT NULL DEFAULT '{}',
    result_summary   jsonb NOT NULL DEFAULT '{}',
    success          boolean NOT NULL,
    error            text,
    duration_ms      double precision
                     CONSTRAINT duration_ms_finite_not_negative
                     CHECK (duration_ms >= 0 AND duration_ms < 'Infinity'),
    client_ip        inet,
    user_agent       text,
    session_metadata jsonb NOT NULL DEFAULT '{}',
    recorded_by      text NOT NULL,
    row_hash         bytea,
    chain_id         bigint,
    chain_lane       integer,
    chain_seq        bigint,
    chain_hash       bytea,
    retention_policy text,
    expires_at       timestamptz,
    call_phase       text CONSTRAINT call_phase_is_known CHECK (call_phase IN ('started', 'ended')),
    call_event_id    uuid,
    caller_txid      bigint,
    impersonated_by  text,
    break_glass      boolean,
    started_at       timestamptz
);
COMMENT ON TABLE tool_audit.tool_calls IS 'One row per AI tool call; append-only, sanitized on insert';

CREATE TABLE tool_audit.admin_events (
    id          bigint PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    occurred_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    event_type  text NOT NULL
                CONSTRAINT event_type_is_dotted
                CHECK (event_type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    actor       text NOT NULL CONSTRAINT actor_not_empty CHECK (actor <> ''),
    actor_type  text NOT NULL DEFAULT 'user'
                CONSTRAINT actor_type_is_known CHECK (actor_type IN ('user', 'service')),
    tenant_id   text,
    payload     jsonb NOT NULL DEFAULT '{}',
    reason      text,
    source_ip   inet,
    metadata    jsonb NOT NULL DEFAULT '{}',
    recorded_by text NOT NULL,
    row_hash    bytea,
    chain_id    bigint,
    chain_lane  integer,
    chain_seq   bigint,
    chain_hash  bytea,
    retention_policy text,
    expires_at  timestamptz,
    impersonated_by text
);
ALTER SEQUENCE tool_audit.tool_calls_id_seq OWNED BY tool_audit.tool_calls.id;
ALTER SEQUENCE tool_audit.admin_events_id_seq OWNED BY tool_audit.admin_events.id;
COMMENT ON TABLE tool_audit.admin_events IS 'Administrative actions (prompt, policy, billing, impersonation, kill switch); append-only';

COMMENT ON COLUMN tool_audit.tool_calls.row_hash IS 'SHA-256 of the row''s canonical encoding (doc/canonical-encoding.md)';
COMMENT ON COLUMN tool_audit.tool_calls.chain_hash IS 'SHA-256 link over the previous row of the same chain and lane';
COMMENT ON COLUMN tool_audit.admin_events.row_hash IS 'SHA-256 of the row''s canonical encoding (doc/canonical-encoding.md)';
COMMENT ON COLUMN tool_audit.admin_events.chain_hash IS 'SHA-256 link over the previous row of the same chain and lane';
COMMENT ON COLUMN tool_audit.tool_calls.retention_policy IS 'The retention policy that decided the row''s expiry when it was written (NULL: written before 1.4)';
COMMENT ON COLUMN tool_audit.tool_calls.expires_at IS 'When the row may be purged at the earliest, decided when it was written (a policy lengthened later keeps it longer)';
COMMENT ON COLUMN tool_audit.admin_events.retention_policy IS 'The retention policy that decided the row''s expiry when it was written (NULL: written before 1.4)';
COMMENT ON COLUMN tool_audit.admin_events.expires_at IS 'When the row may be purged at the earliest, decided when it was written (a policy lengthened later keeps it longer)';
COMMENT ON COLUMN tool_audit.tool_calls.call_phase IS 'NULL: a call recorded in one row; started or ended: one half of a call recorded by begin_call() and end_call()';
COMMENT ON COLUMN tool_audit.tool_calls.call_event_id IS 'On an ended row: the event_id of the started row it closes';
COMMENT ON COLUMN tool_audit.tool_calls.caller_txid IS 'On a row written autonomously: the caller''s transaction id, so that whether the caller committed can be known';
COMMENT ON COLUMN tool_audit.tool_calls.impersonated_by IS 'The admin impersonating user_id when the call was made (NULL: no impersonation)';
COMMENT ON COLUMN tool_audit.tool_calls.break_glass IS 'true: an emergency (break-the-glass) access, with its reason in session_metadata';
COMMENT ON COLUMN tool_audit.admin_events.impersonated_by IS 'The admin impersonating the actor when the event was recorded (NULL: no impersonation)';
COMMENT ON COLUMN tool_audit.tool_calls.started_at IS 'When the call began, as the client said (its clock; recorded_at is the server''s); hashed, not a chain or report period key';

-- a retry of a stored call (same tenant_id, conversation_id, tool_call_id and
-- call_phase) is found through this index and not stored again (the insert
-- trigger and log_call(), src/idempotency.c); not unique: databases created
-- before 1.5 may hold rows sharing a tool_call_id
CREATE INDEX tool_calls_tool_call_id
    ON tool_audit.tool_calls (tool_call_id) WHERE tool_call_id IS NOT NULL;

-- a fork (two rows at one position) is a constraint violation
CREATE UNIQUE INDEX tool_calls_chain_position
    ON tool_audit.tool_calls (chain_id, chain_lane, chain_seq);
CREATE UNIQUE INDEX admin_events_chain_position
    ON tool_audit.admin_events (chain_id, chain_lane, chain_seq);

CREATE TRIGGER tool_calls_before_insert
    BEFORE INSERT ON tool_audit.tool_calls
    FOR EACH ROW EXECUTE FUNCTION tool_audit.tool_calls_before_insert();
CREATE TRIGGER tool_calls_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.tool_calls
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
-- row level as well: logical replication's apply worker fires only row triggers
CREATE TRIGGER tool_calls_append_only_row
    BEFORE UPDATE OR DELETE ON tool_audit.tool_calls
    FOR EACH ROW EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.tool_calls
    ENABLE ALWAYS TRIGGER tool_calls_before_insert,
    ENABLE ALWAYS TRIGGER tool_calls_append_only,
    ENABLE ALWAYS TRIGGER tool_calls_append_only_row;

CREATE TRIGGER admin_events_before_insert
    BEFORE INSERT ON tool_audit.admin_events
    FOR EACH ROW EXECUTE FUNCTION tool_audit.admin_events_before_insert();
CREATE TRIGGER admin_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.admin_events
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
CREATE TRIGGER admin_events_append_only_row
    BEFORE UPDATE OR DELETE ON tool_audit.admin_events
    FOR EACH ROW EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.admin_events
    ENABLE ALWAYS TRIGGER admin_events_before_insert,
    ENABLE ALWAYS TRIGGER admin_events_append_only,
    ENABLE ALWAYS TRIGGER admin_events_append_only_row;


-- 1.5: a call recorded in two halves (begin_call(), end_call()): the started
-- row has no outcome yet (success NULL, and only there); the ended row names
-- the started row in call_event_id, found through this index (one end per
-- call: insert.c serializes on the value and looks, as for event_id)
ALTER TABLE tool_audit.tool_calls
    ALTER COLUMN success DROP NOT NULL,
    ADD CONSTRAINT success_null_only_when_started
        CHECK ((success IS NULL) = (call_phase IS NOT DISTINCT FROM 'started'));
CREATE INDEX tool_calls_call_event_id
    ON tool_audit.tool_calls (call_event_id) WHERE call_event_id IS NOT NULL;
