/* tool_audit--1.0--1.1.sql: row hashes, chains in commit order, verification and signed digests */

\echo Use "ALTER EXTENSION tool_audit UPDATE TO '1.1'" to load this file. \quit

-- A fresh CREATE EXTENSION runs tool_audit--1.0.sql and then this script, so
-- new and upgraded databases are the same.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname OPERATOR(pg_catalog.=) 'tool_audit_verifier') THEN
        CREATE ROLE tool_audit_verifier NOLOGIN;
    END IF;
END
$roles$;

-- ---------------------------------------------------------------------------
-- Chains: one per audit table and tenant (chain_id is derived from the two);
-- rows carry their place in it.  doc/canonical-encoding.md says what is
-- hashed, byte by byte.
-- ---------------------------------------------------------------------------
ALTER TABLE tool_audit.tool_calls
    ADD COLUMN row_hash   bytea,
    ADD COLUMN chain_id   bigint,
    ADD COLUMN chain_lane integer,
    ADD COLUMN chain_seq  bigint,
    ADD COLUMN chain_hash bytea;
ALTER TABLE tool_audit.admin_events
    ADD COLUMN row_hash   bytea,
    ADD COLUMN chain_id   bigint,
    ADD COLUMN chain_lane integer,
    ADD COLUMN chain_seq  bigint,
    ADD COLUMN chain_hash bytea;

-- event_id: the insert trigger gives a row without one a random uuid, as the
-- column default did; without the default, the trigger can tell an event_id
-- the caller brought (which must be checked before the row takes a chain
-- position: ON CONFLICT DO NOTHING may skip it) from one it makes up
ALTER TABLE tool_audit.tool_calls ALTER COLUMN event_id DROP DEFAULT;
ALTER TABLE tool_audit.admin_events ALTER COLUMN event_id DROP DEFAULT;

-- a fork (two rows at one position) is a constraint violation
CREATE UNIQUE INDEX tool_calls_chain_position
    ON tool_audit.tool_calls (chain_id, chain_lane, chain_seq);
CREATE UNIQUE INDEX admin_events_chain_position
    ON tool_audit.admin_events (chain_id, chain_lane, chain_seq);

-- rows recorded by 1.0: hashed and chained now, in id order
CREATE FUNCTION tool_audit.chain_existing_rows(regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'chain_existing_rows' LANGUAGE C STRICT;
SELECT tool_audit.chain_existing_rows('tool_audit.tool_calls');
SELECT tool_audit.chain_existing_rows('tool_audit.admin_events');
DROP FUNCTION tool_audit.chain_existing_rows(regclass);

-- The chain columns stay nullable: a row whose event_id is already taken
-- gets no position, because it will not be stored (ON CONFLICT DO NOTHING
-- skips it, or the unique index refuses it).  verify() reports any stored
-- row without one.
COMMENT ON COLUMN tool_audit.tool_calls.row_hash IS 'SHA-256 of the row''s canonical encoding (doc/canonical-encoding.md)';
COMMENT ON COLUMN tool_audit.tool_calls.chain_hash IS 'SHA-256 link over the previous row of the same chain and lane';
COMMENT ON COLUMN tool_audit.admin_events.row_hash IS 'SHA-256 of the row''s canonical encoding (doc/canonical-encoding.md)';
COMMENT ON COLUMN tool_audit.admin_events.chain_hash IS 'SHA-256 link over the previous row of the same chain and lane';

-- log_call() in C: the same contract, as cheap as an audited INSERT (it runs
-- the insert trigger's work and inserts the row itself, so it needs no
-- SECURITY DEFINER)
CREATE OR REPLACE FUNCTION tool_audit.log_call(
    tool_name   text,
    arguments   jsonb,
    result      jsonb,
    duration_ms double precision,
    context     jsonb DEFAULT '{}')
RETURNS tool_audit.tool_calls
    AS 'MODULE_PATHNAME', 'log_call' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- ---------------------------------------------------------------------------
-- Verification and digests
-- ---------------------------------------------------------------------------

-- canonical_json(document): the canonical JSON a row hash covers for a jsonb column
CREATE FUNCTION tool_audit.canonical_json(document jsonb) RETURNS text
    AS 'MODULE_PATHNAME', 'canonical_json' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

-- verify(since): one row per problem found; no rows means intact
CREATE FUNCTION tool_audit.verify(since timestamptz DEFAULT NULL)
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- digest(): every chain lane's head, with the time, signed when a key is configured
CREATE FUNCTION tool_audit.digest() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'digest' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- verify_digest(digest): problems relative to an earlier digest, and verify()'s
CREATE FUNCTION tool_audit.verify_digest(digest jsonb)
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify_digest' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- signing_public_key(): the PEM public key that checks digest signatures (NULL without a key)
CREATE FUNCTION tool_audit.signing_public_key() RETURNS text
    AS 'MODULE_PATHNAME', 'signing_public_key' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION tool_audit.canonical_json(jsonb), tool_audit.verify(timestamptz),
    tool_audit.digest(), tool_audit.verify_digest(jsonb), tool_audit.signing_public_key()
    FROM PUBLIC;

-- the verifier role reads every row of every tenant (what an external
-- verifier needs) and runs the checks, and can change nothing
GRANT USAGE ON SCHEMA tool_audit TO tool_audit_verifier;
GRANT USAGE ON TYPE tool_audit.call_trigger TO tool_audit_verifier;
GRANT SELECT ON tool_audit.tool_calls, tool_audit.admin_events TO tool_audit_verifier;
CREATE POLICY verifier_read ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_verifier USING (true);
CREATE POLICY verifier_read ON tool_audit.admin_events
    FOR SELECT TO tool_audit_verifier USING (true);
GRANT EXECUTE ON FUNCTION tool_audit.canonical_json(jsonb), tool_audit.verify(timestamptz),
    tool_audit.digest(), tool_audit.verify_digest(jsonb), tool_audit.signing_public_key()
    TO tool_audit_verifier, tool_audit_admin;
GRANT EXECUTE ON FUNCTION tool_audit.canonical_json(jsonb) TO tool_audit_reader, tool_audit_writer;
