/* tool_audit--1.3--1.4.sql: retention (issue 11): the retention columns of the
   audit tables, policies, tenant overrides, the floor, legal holds, purge
   anchors and erasures */

\echo Use "ALTER EXTENSION tool_audit UPDATE TO '1.4'" to load this file. \quit

-- The objects below are those of sql/install/45_retention.sql (and the
-- columns, grants and dump settings of 20, 90 and 95), word for word:
-- test/t/010_fresh_vs_upgraded.pl compares a fresh and an upgraded database.
-- Rows written before 1.4 keep NULL in both columns (a NULL column is not
-- hashed, so their row hashes do not change).

ALTER TABLE tool_audit.tool_calls
    ADD COLUMN retention_policy text,
    ADD COLUMN expires_at timestamptz;
ALTER TABLE tool_audit.admin_events
    ADD COLUMN retention_policy text,
    ADD COLUMN expires_at timestamptz;
COMMENT ON COLUMN tool_audit.tool_calls.retention_policy IS 'The retention policy that decided the row''s expiry when it was written (NULL: written before 1.4)';
COMMENT ON COLUMN tool_audit.tool_calls.expires_at IS 'When the row may be purged at the earliest, decided when it was written (a policy lengthened later keeps it longer)';
COMMENT ON COLUMN tool_audit.admin_events.retention_policy IS 'The retention policy that decided the row''s expiry when it was written (NULL: written before 1.4)';
COMMENT ON COLUMN tool_audit.admin_events.expires_at IS 'When the row may be purged at the earliest, decided when it was written (a policy lengthened later keeps it longer)';
-- A policy covers tool calls (by tool name) or admin events (by event type):
-- `matches` lists names, or patterns where '*' stands for any characters.  A
-- row takes the policy whose name list has its tool or event type, else the
-- policy with the longest matching pattern, else its table's default policy.
CREATE TABLE tool_audit.retention_policies (
    policy_name    text PRIMARY KEY
                   CONSTRAINT policy_name_is_identifier CHECK (policy_name ~ '^[a-z][a-z0-9_]{0,62}$'),
    applies_to     text NOT NULL
                   CONSTRAINT applies_to_is_audit_table CHECK (applies_to IN ('tool_calls', 'admin_events')),
    retention_days integer NOT NULL CONSTRAINT retention_days_positive CHECK (retention_days > 0),
    matches        text[] NOT NULL DEFAULT '{}',
    is_default     boolean NOT NULL DEFAULT false,
    description    text,
    changed_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_by     text NOT NULL
);
CREATE UNIQUE INDEX retention_policies_one_default
    ON tool_audit.retention_policies (applies_to) WHERE is_default;
COMMENT ON TABLE tool_audit.retention_policies IS
    'How long rows are kept, by tool name or admin event type; changed through set_retention_policy() only';

INSERT INTO tool_audit.retention_policies
    (policy_name, applies_to, retention_days, matches, is_default, description, changed_by)
VALUES
    ('financial', 'tool_calls', 2555, '{charge_payment,issue_refund,apply_credit}', false,
     'Payments, refunds and credits: seven years', 'tool_audit'),
    ('healthcare', 'tool_calls', 2190, '{access_patient_record,update_treatment}', false,
     'Patient records and treatments: six years', 'tool_audit'),
    ('general', 'tool_calls', 365, '{}', true,
     'Every other tool call: one year', 'tool_audit'),
    ('admin', 'admin_events', 365, '{}', true,
     'Administrative events: one year (seed 001: at least 365 days)', 'tool_audit');

-- A tenant's contract may keep a policy's rows longer, never shorter.  No
-- foreign key: set_retention_override() checks the policy exists, and a row of
-- a policy dropped later keeps the expiry it was written with.
CREATE TABLE tool_audit.retention_overrides (
    tenant_id      text NOT NULL,
    policy_name    text NOT NULL,
    retention_days integer NOT NULL CONSTRAINT retention_days_positive CHECK (retention_days > 0),
    reason         text,
    changed_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_by     text NOT NULL,
    PRIMARY KEY (tenant_id, policy_name)
);
COMMENT ON TABLE tool_audit.retention_overrides IS
    'Per-tenant contract retention that lengthens a policy; changed through set_retention_override() only';

-- The floor no policy or override goes under; one row, changed by a superuser.
CREATE TABLE tool_audit.retention_floor (
    floor_days integer NOT NULL CONSTRAINT floor_days_positive CHECK (floor_days > 0),
    changed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_by text NOT NULL,
    one_row    boolean PRIMARY KEY DEFAULT true CONSTRAINT one_row CHECK (one_row)
);
INSERT INTO tool_audit.retention_floor (floor_days, changed_by) VALUES (183, 'tool_audit');
COMMENT ON TABLE tool_audit.retention_floor IS
    'The shortest retention in days (default 183, the EU AI Act''s six months); changed by a superuser through set_retention_floor()';

-- retention_policy_for(applies_to, name): the policy a row of that table with
-- this tool name (tool_calls) or event type (admin_events) takes today: the
-- policy that lists the name, else the one with the longest matching
-- pattern ('*': any characters), else the table's default; ties go to the
-- first policy name.  The insert trigger decides the same in C
-- (src/retention.c); test/sql/retention_policies.sql checks they agree.
CREATE FUNCTION tool_audit.retention_policy_for(applies_to text, name text)
    RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.policy_name
      FROM (SELECT p.policy_name,
                   CASE WHEN name = ANY (p.matches) THEN 3
                        WHEN plen IS NOT NULL THEN 2
                        WHEN p.is_default THEN 1
                        ELSE 0 END AS rank,
                   plen
              FROM tool_audit.retention_policies p,
                   LATERAL (SELECT max(length(m)) AS plen FROM unnest(p.matches) m
                             WHERE strpos(m, '*') > 0
                               AND name LIKE replace(replace(replace(replace(m, '\', '\\'),
                                                     '%', '\%'), '_', '\_'), '*', '%')) l
             WHERE p.applies_to = retention_policy_for.applies_to) c
     WHERE c.rank > 0
     ORDER BY c.rank DESC, c.plen DESC NULLS LAST, c.policy_name
     LIMIT 1
$$;
COMMENT ON FUNCTION tool_audit.retention_policy_for(text, text) IS
    'The retention policy a row of this table with this tool name or event type takes today';

-- current_retention_days(policy, tenant): the retention in days the policy
-- gives a tenant's rows today: the longest of the policy, the tenant's
-- override and the floor.  A row is kept until both its expires_at and
-- its recorded time plus this have passed: lengthening applies to old rows,
-- shortening to new rows only.
CREATE FUNCTION tool_audit.current_retention_days(policy_name text, tenant_id text)
    RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest((SELECT f.floor_days FROM tool_audit.retention_floor f),
                    (SELECT p.retention_days FROM tool_audit.retention_policies p
                      WHERE p.policy_name = current_retention_days.policy_name),
                    (SELECT o.retention_days FROM tool_audit.retention_overrides o
                      WHERE o.policy_name = current_retention_days.policy_name
                        AND o.tenant_id = current_retention_days.tenant_id))
$$;
COMMENT ON FUNCTION tool_audit.current_retention_days(text, text) IS
    'The retention in days a policy gives a tenant''s rows today: the longest of the policy, the tenant''s override and the floor';

-- Legal holds: a held row is removed by no path (purge, erasure).
CREATE SEQUENCE tool_audit.legal_holds_hold_id_seq;
CREATE TABLE tool_audit.legal_holds (
    hold_id        bigint PRIMARY KEY DEFAULT nextval('tool_audit.legal_holds_hold_id_seq'),
    scope          jsonb NOT NULL CONSTRAINT scope_is_object CHECK (jsonb_typeof(scope) = 'object'),
    reason         text NOT NULL,
    placed_by      text NOT NULL,
    placed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    released_by    text,
    released_at    timestamptz,
    release_reason text
);
ALTER SEQUENCE tool_audit.legal_holds_hold_id_seq OWNED BY tool_audit.legal_holds.hold_id;
COMMENT ON TABLE tool_audit.legal_holds IS
    'Legal holds placed with place_hold() and released with release_hold(); an active hold (released_at NULL) keeps every row its scope covers';

-- hold_covers(scope, ...): whether a hold's scope covers a row with these
-- values.  Every key the scope gives must match; "from" and "to" bound the
-- row's time, both inclusive.  For admin_events, user_id is the actor and
-- subject_id, conversation_id and tool_name are read from the payload.
CREATE FUNCTION tool_audit.hold_covers(scope jsonb, tenant_id text, subject_id text, user_id text,
                                       conversation_id text, tool_name text, at timestamptz)
    RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((NOT scope ? 'tenant_id' OR scope ->> 'tenant_id' = tenant_id)
               AND (NOT scope ? 'subject_id' OR scope ->> 'subject_id' = subject_id)
               AND (NOT scope ? 'user_id' OR scope ->> 'user_id' = user_id)
               AND (NOT scope ? 'conversation_id' OR scope ->> 'conversation_id' = conversation_id)
               AND (NOT scope ? 'tool_name' OR scope ->> 'tool_name' = tool_name)
               AND (NOT scope ? 'from' OR at >= (scope ->> 'from')::timestamptz)
               AND (NOT scope ? 'to' OR at <= (scope ->> 'to')::timestamptz), false)
$$;
COMMENT ON FUNCTION tool_audit.hold_covers(jsonb, text, text, text, text, text, timestamptz) IS
    'Whether a legal hold''s scope covers a row with these values (every key given must match; from/to inclusive)';

-- What a purge leaves: for each run of consecutive positions it removed from
-- a lane, the link before the run and the link of its last row, so that
-- verify() continues the lane across the gap.  Written by purge_expired()
-- only, in the transaction of its tool_audit.retention.purge event, whose
-- payload lists the same anchors.
CREATE TABLE tool_audit.purge_anchors (
    purge_event_id bigint NOT NULL,
    table_name     text NOT NULL
                   CONSTRAINT table_name_is_audit_table CHECK (table_name IN ('tool_calls', 'admin_events')),
    chain_id       bigint NOT NULL,
    chain_lane     integer NOT NULL,
    first_seq      bigint NOT NULL,
    last_seq       bigint NOT NULL,
    link_before    bytea NOT NULL,
    link_after     bytea NOT NULL,
    rows_removed   bigint NOT NULL,
    max_expires_at timestamptz,
    CONSTRAINT span_is_ordered CHECK (first_seq >= 1 AND last_seq >= first_seq),
    PRIMARY KEY (table_name, chain_id, chain_lane, first_seq)
);
COMMENT ON TABLE tool_audit.purge_anchors IS
    'Spans of lane positions removed by purge_expired(), with the links either side; append-only';

-- What an erasure changed: one row per audit row whose personal fields it
-- replaced.  The row keeps its stored row_hash (so every link holds);
-- row_hash_after is the hash of the row as the erasure left it, which
-- verify() recomputes instead, and accepts only through an entry here that
-- its tool_audit.retention.erase event lists.
CREATE TABLE tool_audit.erasures (
    erase_event_id bigint NOT NULL,
    table_name     text NOT NULL
                   CONSTRAINT table_name_is_audit_table CHECK (table_name IN ('tool_calls', 'admin_events')),
    row_id         bigint NOT NULL,
    erased_columns text[] NOT NULL,
    row_hash_after bytea NOT NULL,
    PRIMARY KEY (table_name, row_id, erase_event_id)
);
COMMENT ON TABLE tool_audit.erasures IS
    'Audit rows whose personal fields erase_subject() replaced, each tied to its erasure event; append-only';

CREATE TRIGGER purge_anchors_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.purge_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
CREATE TRIGGER erasures_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.erasures
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.purge_anchors ENABLE ALWAYS TRIGGER purge_anchors_append_only;
ALTER TABLE tool_audit.erasures ENABLE ALWAYS TRIGGER erasures_append_only;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tool_audit FROM PUBLIC;

-- (1.4) retention: admins read the policies, overrides, floor and holds
-- (and change them through the extension's functions only); the verifier
-- and admins read what purges and erasures left
GRANT SELECT ON tool_audit.retention_policies, tool_audit.retention_overrides,
    tool_audit.retention_floor, tool_audit.legal_holds
    TO tool_audit_admin;
GRANT SELECT ON tool_audit.purge_anchors, tool_audit.erasures
    TO tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.hold_covers(jsonb, text, text, text, text, text, timestamptz),
    tool_audit.retention_policy_for(text, text),
    tool_audit.current_retention_days(text, text)
    TO tool_audit_admin, tool_audit_verifier;

-- (1.4) seeded rows are dumped once changed (a restore's rows replace the
-- seeds: see the retention tables' restore triggers)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.retention_policies', 'WHERE changed_by <> ''tool_audit''');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.retention_floor', 'WHERE changed_by <> ''tool_audit''');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.retention_overrides', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.legal_holds', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.legal_holds_hold_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.purge_anchors', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.erasures', '');

-- clients (issue 15): export_jsonl() writes chain_id as a JSON string; as a
-- JSON number above 2^53 it lost precision in Node and jq, and an export's
-- links could not be recomputed there (the same definition as
-- sql/install/80_exports.sql; its comment and privileges are kept)
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
            'row_hash', encode(e.row_hash, 'hex'), 'chain_id', e.chain_id::text,
            'chain_lane', e.chain_lane, 'chain_seq', e.chain_seq,
            'chain_hash', encode(e.chain_hash, 'hex'))
          FROM tool_audit.admin_events e
         WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
    ) x
    ORDER BY x.at, x.tab, x.id;
END
$$;
