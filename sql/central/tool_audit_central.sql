-- tool_audit_central.sql: the tables of a central copy of one application
-- database's audit trail, filled by native logical replication
-- (doc/scaling.md, "A central audit database").
--
-- Run it with psql in an empty database of the central cluster, WITHOUT the
-- tool_audit extension, before CREATE SUBSCRIPTION:
--
--     psql -d audit_app1 -v ON_ERROR_STOP=1 -f tool_audit_central.sql
--
-- What it makes: schema tool_audit with plain tables of the same names and
-- columns as the extension's (tool_calls, admin_events, data_changes,
-- purge_anchors, erasures; version 1.5), so that the external verifier
-- (verifier/tool_audit_verify), pointed at this database with a signed
-- digest taken at the source, checks every row, link, purge and erasure.
-- Nothing here computes a hash or signs anything: the rows keep the hashes
-- and chain positions the source gave them, and only a digest signed with the
-- source's key can vouch for them.
--
-- Local writers are refused by a trigger that fires for every session except
-- the logical replication apply worker (which runs with
-- session_replication_role = replica, where ordinary triggers do not fire).
-- A superuser can get past it (SET session_replication_role, ALTER TABLE
-- DISABLE TRIGGER); what it then changes is reported by the verifier.  So
-- can the tables' owner (ALTER TABLE ... DISABLE TRIGGER): the script
-- refuses to run as anyone but a superuser, who then owns them.
--
-- One central database per source database: ids and chain ids (derived from
-- table and tenant) are the same in two sources, and the verifier reads
-- schema tool_audit.
\set ON_ERROR_STOP 1

BEGIN;

-- the owner of the tables could switch their guard off: only a superuser
DO $owner$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'tool_audit_central.sql must be run by a superuser'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The owner of the central tables can disable the trigger that refuses local writers.';
    END IF;
END
$owner$;

CREATE SCHEMA tool_audit;
REVOKE ALL ON SCHEMA tool_audit FROM PUBLIC;

-- the same labels as the extension's type, which the row hash encodes as an enum
CREATE TYPE tool_audit.call_trigger AS ENUM
    ('user_request', 'proactive', 'retry', 'follow_up', 'system');

-- No defaults, no sequences, no CHECK constraints: every value comes from
-- the source as it was stored there (sequences are not replicated and are
-- not needed: nothing is inserted here but by the apply worker).  A column
-- is NOT NULL here only where it is NOT NULL at the source: a stricter one
-- stops the apply worker at the first row that has the NULL (it retries
-- forever, and the verifier reports every later row missing).  The
-- primary keys are the replica identity that replicated UPDATEs (erasures)
-- and DELETEs (purges) find their rows by; the unique chain position index
-- keeps a fork out, as at the source.
CREATE TABLE tool_audit.tool_calls (
    id               bigint PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    recorded_at      timestamptz NOT NULL,
    tenant_id        text,
    conversation_id  text,
    turn_number      integer,
    user_id          text,
    user_role        text,
    model            text,
    tool_name        text NOT NULL,
    tool_call_id     text,
    call_trigger     tool_audit.call_trigger NOT NULL,
    purpose          text,
    subject_id       text,
    arguments        jsonb NOT NULL,
    result_summary   jsonb NOT NULL,
    success          boolean,            -- NULL on a started row (begin_call())
    error            text,
    duration_ms      double precision,
    client_ip        inet,
    user_agent       text,
    session_metadata jsonb NOT NULL,
    recorded_by      text NOT NULL,
    row_hash         bytea,
    chain_id         bigint,
    chain_lane       integer,
    chain_seq        bigint,
    chain_hash       bytea,
    retention_policy text,
    expires_at       timestamptz,
    call_phase       text,
    call_event_id    uuid,
    caller_txid      bigint,
    impersonated_by  text,
    break_glass      boolean,
    started_at       timestamptz
);

CREATE TABLE tool_audit.admin_events (
    id          bigint PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    occurred_at timestamptz NOT NULL,
    event_type  text NOT NULL,
    actor       text NOT NULL,
    actor_type  text NOT NULL,
    tenant_id   text,
    payload     jsonb NOT NULL,
    reason      text,
    source_ip   inet,
    metadata    jsonb NOT NULL,
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

CREATE TABLE tool_audit.data_changes (
    id               bigint PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    recorded_at      timestamptz NOT NULL,
    tenant_id        text,
    table_name       text NOT NULL,
    operation        text NOT NULL,
    row_key          jsonb NOT NULL,
    old_values       jsonb NOT NULL,
    new_values       jsonb NOT NULL,
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

CREATE UNIQUE INDEX tool_calls_chain_position
    ON tool_audit.tool_calls (chain_id, chain_lane, chain_seq);
CREATE UNIQUE INDEX admin_events_chain_position
    ON tool_audit.admin_events (chain_id, chain_lane, chain_seq);
CREATE UNIQUE INDEX data_changes_chain_position
    ON tool_audit.data_changes (chain_id, chain_lane, chain_seq);

-- what the source's purges removed and its erasures replaced: the verifier
-- accepts a missing span or an erased row only through these
CREATE TABLE tool_audit.purge_anchors (
    purge_event_id   bigint NOT NULL,
    table_name       text NOT NULL,
    chain_id         bigint NOT NULL,
    chain_lane       integer NOT NULL,
    first_seq        bigint NOT NULL,
    last_seq         bigint NOT NULL,
    link_before      bytea NOT NULL,
    link_after       bytea NOT NULL,
    rows_removed     bigint NOT NULL,
    max_expires_at   timestamptz,
    tenant_id        text,
    retention_policy text,
    PRIMARY KEY (table_name, chain_id, chain_lane, first_seq)
);

CREATE TABLE tool_audit.erasures (
    erase_event_id bigint NOT NULL,
    table_name     text NOT NULL,
    row_id         bigint NOT NULL,
    erased_columns text[] NOT NULL,
    row_hash_after bytea NOT NULL,
    PRIMARY KEY (table_name, row_id, erase_event_id)
);

-- Refuses every write of a local session.  Ordinary triggers (ENABLE ORIGIN,
-- the default) do not fire under session_replication_role = replica, which is
-- how the apply worker runs: its inserts, and the UPDATEs and DELETEs of the
-- source's erasures and purges, go through; nothing else does.
CREATE FUNCTION tool_audit.refuse_local_write() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% is not allowed on tool_audit table % of a central copy', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = 'This database holds a replicated copy of an audit trail; its rows come only from the subscription.',
              HINT = 'Write at the source: the change reaches this copy through logical replication.';
END
$$;
REVOKE ALL ON FUNCTION tool_audit.refuse_local_write() FROM PUBLIC;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tool_calls', 'admin_events', 'data_changes', 'purge_anchors', 'erasures'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON tool_audit.%I '
                       'FOR EACH ROW EXECUTE FUNCTION tool_audit.refuse_local_write()',
                       t || '_local_write', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON tool_audit.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_local_write()',
                       t || '_local_truncate', t);
        EXECUTE format('REVOKE ALL ON tool_audit.%I FROM PUBLIC', t);
    END LOOP;
END
$$;

COMMIT;
