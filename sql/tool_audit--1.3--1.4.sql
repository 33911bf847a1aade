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

-- ==== H1 policy: the insert trigger's retention, the functions that change it ====

-- ---------------------------------------------------------------------------
-- Retention policies (1.4): the insert trigger decides each new row's
-- retention_policy and expires_at from a per-backend copy of the policies,
-- overrides and floor (src/retention.c), dropped when they change; the
-- functions that change them, each an audited admin event; a restore's rows
-- replacing the seeds.  doc/retention.md.
-- ---------------------------------------------------------------------------

-- every backend drops its copy at a change (rules_changed(): a relcache
-- invalidation of the table, as for the sanitizing rules)
CREATE TRIGGER retention_policies_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.retention_policies
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();
CREATE TRIGGER retention_overrides_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.retention_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();
CREATE TRIGGER retention_floor_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.retention_floor
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();

-- A dump holds the seeded rows that were changed (changed_by <> 'tool_audit');
-- the database it is restored into has the seeds already, under the same
-- keys: the restored row replaces the seed instead of failing on its key.
CREATE FUNCTION tool_audit.retention_restore_seed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'retention_policies' THEN
        UPDATE tool_audit.retention_policies p
           SET applies_to = NEW.applies_to, retention_days = NEW.retention_days,
               matches = NEW.matches, is_default = NEW.is_default,
               description = NEW.description, changed_at = NEW.changed_at,
               changed_by = NEW.changed_by
         WHERE p.policy_name = NEW.policy_name;
    ELSE
        UPDATE tool_audit.retention_floor f
           SET floor_days = NEW.floor_days, changed_at = NEW.changed_at,
               changed_by = NEW.changed_by
         WHERE f.one_row = NEW.one_row;
    END IF;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION tool_audit.retention_restore_seed() IS
    'Trigger: a row inserted under the key of an existing policy or of the floor (a restore of a changed seed) updates that row instead';
CREATE TRIGGER retention_policies_restore_seed
    BEFORE INSERT ON tool_audit.retention_policies
    FOR EACH ROW EXECUTE FUNCTION tool_audit.retention_restore_seed();
CREATE TRIGGER retention_floor_restore_seed
    BEFORE INSERT ON tool_audit.retention_floor
    FOR EACH ROW EXECUTE FUNCTION tool_audit.retention_restore_seed();
-- session_replication_role = replica (a data-only restore) must not skip them
ALTER TABLE tool_audit.retention_policies
    ENABLE ALWAYS TRIGGER retention_policies_changed,
    ENABLE ALWAYS TRIGGER retention_policies_restore_seed;
ALTER TABLE tool_audit.retention_overrides
    ENABLE ALWAYS TRIGGER retention_overrides_changed;
ALTER TABLE tool_audit.retention_floor
    ENABLE ALWAYS TRIGGER retention_floor_changed,
    ENABLE ALWAYS TRIGGER retention_floor_restore_seed;

-- retention_event(): the admin event of a retention change, with the
-- caller's reason in its reason column; returns what the function returns.
CREATE FUNCTION tool_audit.retention_event(event_type text, before jsonb, after jsonb,
                                           reason text, tenant_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH e AS (
        INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
        VALUES ('tool_audit.retention.' || retention_event.event_type, tool_audit.acting_role(), 'user',
                retention_event.tenant_id,
                jsonb_build_object('before', retention_event.before, 'after', retention_event.after),
                retention_event.reason)
        RETURNING id)
    SELECT jsonb_build_object('before', retention_event.before, 'after', retention_event.after,
                              'admin_event_id', e.id)
      FROM e
$$;
COMMENT ON FUNCTION tool_audit.retention_event(text, jsonb, jsonb, text, text) IS
    'Records a change of retention as a "tool_audit.retention." admin event with before/after; callable only by the owner (its own functions)';

-- set_retention_policy(): creates a policy or changes one.  matches NULL
-- keeps an existing policy's names and patterns; a new policy without any
-- becomes its table's default, if the table has none.  Days under the floor
-- are refused.  Shortening applies to rows written from now on; lengthening
-- to every row too (a row is kept until both its expires_at and its time
-- plus current_retention_days() have passed).
CREATE FUNCTION tool_audit.set_retention_policy(policy_name text, retention_days integer,
                                                matches text[] DEFAULT NULL,
                                                applies_to text DEFAULT 'tool_calls',
                                                reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.retention_policies;
    after_row tool_audit.retention_policies;
    floor_days integer;
    dflt text;
BEGIN
    -- errors name the argument, never its value
    IF policy_name IS NULL OR policy_name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid value for argument "policy_name": expected a lowercase identifier of 1 to 63 characters'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF applies_to IS NULL OR applies_to NOT IN ('tool_calls', 'admin_events') THEN
        RAISE EXCEPTION 'invalid value for argument "applies_to": expected tool_calls or admin_events'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention_days IS NULL OR retention_days <= 0 THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": expected a positive number of days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF matches IS NOT NULL AND (array_ndims(matches) > 1 OR
        EXISTS (SELECT FROM unnest(matches) m WHERE m IS NULL OR m = '')) THEN
        RAISE EXCEPTION 'invalid value for argument "matches": expected a list of tool names, event types or patterns (''*'': any characters), none empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE tool_audit.retention_policies IN SHARE ROW EXCLUSIVE MODE;
    SELECT f.floor_days INTO floor_days FROM tool_audit.retention_floor f;
    IF retention_days < floor_days THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": under the retention floor of % days', floor_days
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A superuser sets the floor with tool_audit.set_retention_floor().';
    END IF;
    SELECT * INTO before_row FROM tool_audit.retention_policies p
     WHERE p.policy_name = set_retention_policy.policy_name;
    IF FOUND THEN
        IF before_row.applies_to <> set_retention_policy.applies_to THEN
            RAISE EXCEPTION 'invalid value for argument "applies_to": the policy covers %', before_row.applies_to
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A policy covers one table; create another policy for the other.';
        END IF;
        UPDATE tool_audit.retention_policies p
           SET retention_days = set_retention_policy.retention_days,
               matches = coalesce(set_retention_policy.matches, p.matches),
               changed_at = now(), changed_by = tool_audit.acting_role()
         WHERE p.policy_name = set_retention_policy.policy_name
        RETURNING * INTO after_row;
        RETURN tool_audit.retention_event('policy', to_jsonb(before_row), to_jsonb(after_row), reason);
    END IF;
    IF coalesce(cardinality(matches), 0) = 0 THEN
        SELECT p.policy_name INTO dflt FROM tool_audit.retention_policies p
         WHERE p.applies_to = set_retention_policy.applies_to AND p.is_default;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid value for argument "matches": a new policy needs tool names or patterns, % already has a default policy (%)',
                    applies_to, dflt
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Change the default policy''s days instead, or list what the new policy covers.';
        END IF;
    END IF;
    INSERT INTO tool_audit.retention_policies
        (policy_name, applies_to, retention_days, matches, is_default, changed_by)
    VALUES (set_retention_policy.policy_name, set_retention_policy.applies_to,
            set_retention_policy.retention_days, coalesce(set_retention_policy.matches, '{}'),
            coalesce(cardinality(set_retention_policy.matches), 0) = 0, tool_audit.acting_role())
    RETURNING * INTO after_row;
    RETURN tool_audit.retention_event('policy', NULL, to_jsonb(after_row), reason);
END
$$;
COMMENT ON FUNCTION tool_audit.set_retention_policy(text, integer, text[], text, text) IS
    'Creates or changes a retention policy (never under the floor) and records it as a tool_audit.retention.policy admin event';

-- set_retention_override(): a tenant's contract keeps a policy's rows
-- longer; never shorter than the policy.
CREATE FUNCTION tool_audit.set_retention_override(tenant_id text, policy_name text,
                                                  retention_days integer, reason text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.retention_overrides;
    after_row tool_audit.retention_overrides;
    policy_days integer;
    had_one boolean;
BEGIN
    IF tenant_id IS NULL OR tenant_id = '' THEN
        RAISE EXCEPTION 'invalid value for argument "tenant_id": expected a tenant id'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention_days IS NULL OR retention_days <= 0 THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": expected a positive number of days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE tool_audit.retention_policies IN SHARE ROW EXCLUSIVE MODE;
    SELECT p.retention_days INTO policy_days FROM tool_audit.retention_policies p
     WHERE p.policy_name = set_retention_override.policy_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid value for argument "policy_name": no such retention policy'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF retention_days < policy_days THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": under the policy''s % days', policy_days
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A tenant''s contract can only lengthen retention.';
    END IF;
    SELECT * INTO before_row FROM tool_audit.retention_overrides o
     WHERE o.tenant_id = set_retention_override.tenant_id
       AND o.policy_name = set_retention_override.policy_name;
    had_one := FOUND;
    INSERT INTO tool_audit.retention_overrides AS o
        (tenant_id, policy_name, retention_days, reason, changed_by)
    VALUES (set_retention_override.tenant_id, set_retention_override.policy_name,
            set_retention_override.retention_days, set_retention_override.reason,
            tool_audit.acting_role())
    ON CONFLICT ON CONSTRAINT retention_overrides_pkey DO UPDATE
       SET retention_days = excluded.retention_days, reason = excluded.reason,
           changed_at = now(), changed_by = excluded.changed_by
    RETURNING * INTO after_row;
    RETURN tool_audit.retention_event('override', CASE WHEN had_one THEN to_jsonb(before_row) END,
                                      to_jsonb(after_row), reason, tenant_id);
END
$$;
COMMENT ON FUNCTION tool_audit.set_retention_override(text, text, integer, text) IS
    'Sets a tenant''s contract retention for a policy (never under the policy''s) and records it as a tool_audit.retention.override admin event';

-- set_retention_floor(): superusers only.  A policy under a new floor keeps
-- its days, and its rows get the floor (current_retention_days()).
CREATE FUNCTION tool_audit.set_retention_floor(floor_days integer, reason text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.retention_floor;
    after_row tool_audit.retention_floor;
    had_one boolean;
BEGIN
    IF NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = tool_audit.acting_role()), false) THEN
        RAISE EXCEPTION 'only a superuser can change the retention floor'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF floor_days IS NULL OR floor_days <= 0 THEN
        RAISE EXCEPTION 'invalid value for argument "floor_days": expected a positive number of days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO before_row FROM tool_audit.retention_floor f FOR UPDATE;
    had_one := FOUND;
    UPDATE tool_audit.retention_floor f
       SET floor_days = set_retention_floor.floor_days, changed_at = now(),
           changed_by = tool_audit.acting_role()
    RETURNING * INTO after_row;
    IF NOT FOUND THEN
        INSERT INTO tool_audit.retention_floor (floor_days, changed_by)
        VALUES (set_retention_floor.floor_days, tool_audit.acting_role())
        RETURNING * INTO after_row;
    END IF;
    RETURN tool_audit.retention_event('floor', CASE WHEN had_one THEN to_jsonb(before_row) END,
                                      to_jsonb(after_row), reason);
END
$$;
COMMENT ON FUNCTION tool_audit.set_retention_floor(integer, text) IS
    'Sets the shortest retention in days (superusers only) and records it as a tool_audit.retention.floor admin event';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tool_audit FROM PUBLIC;

-- (1.4) retention policies: admins change policies and tenant overrides,
-- and call the floor's function, which refuses all but superusers
GRANT EXECUTE ON FUNCTION
    tool_audit.set_retention_policy(text, integer, text[], text, text),
    tool_audit.set_retention_override(text, text, integer, text),
    tool_audit.set_retention_floor(integer, text)
    TO tool_audit_admin;

-- ---- H2 purge: holds, purge_expired() and the anchors (sql/install/66_purge.sql, 90) ----

-- ---------------------------------------------------------------------------
-- (1.4) The links purge anchors keep, for check_row(): the row after a
-- purged span links to the span's last link, and the row before it is
-- followed by the span.  SECURITY DEFINER: readers check rows they can see
-- without reading purge_anchors themselves; a reader bound to tenants learns
-- of their spans only (other tenants' chain ids are computable).
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.purged_link(table_name text, chain_id bigint, chain_lane integer, chain_seq bigint)
RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.link_after FROM tool_audit.purge_anchors a
     WHERE a.table_name = purged_link.table_name AND a.chain_id = purged_link.chain_id
       AND a.chain_lane = purged_link.chain_lane AND a.last_seq = purged_link.chain_seq
       AND (tool_audit.bound_tenants() IS NULL OR a.tenant_id = ANY (tool_audit.bound_tenants()))
     ORDER BY a.first_seq DESC LIMIT 1
$$;
COMMENT ON FUNCTION tool_audit.purged_link(text, bigint, integer, bigint) IS
    'The chain_hash a purge anchor keeps for the last position of a purged span, or NULL';

CREATE FUNCTION tool_audit.purge_link_before(table_name text, chain_id bigint, chain_lane integer, chain_seq bigint)
RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.link_before FROM tool_audit.purge_anchors a
     WHERE a.table_name = purge_link_before.table_name AND a.chain_id = purge_link_before.chain_id
       AND a.chain_lane = purge_link_before.chain_lane AND a.first_seq = purge_link_before.chain_seq
       AND (tool_audit.bound_tenants() IS NULL OR a.tenant_id = ANY (tool_audit.bound_tenants()))
$$;
COMMENT ON FUNCTION tool_audit.purge_link_before(text, bigint, integer, bigint) IS
    'The link before a purged span that starts at this position, or NULL';

-- check_row() takes these links since 1.4: it is redefined once, below in
-- the erasure section, with accepted_row_hash() as well.

-- ---------------------------------------------------------------------------
-- Legal holds and purges (1.4, doc/retention.md "Holds" and "Purge")
-- ---------------------------------------------------------------------------

-- A lane whose rows were all purged keeps its head in its last anchor; the
-- tenant and policy of the span's last row let digest() list that head like
-- a row's.
ALTER TABLE tool_audit.purge_anchors
    ADD COLUMN tenant_id text,
    ADD COLUMN retention_policy text;
COMMENT ON COLUMN tool_audit.purge_anchors.tenant_id IS
    'The tenant of the span''s last row (a lane whose rows are all purged keeps its head here)';
COMMENT ON COLUMN tool_audit.purge_anchors.retention_policy IS
    'The retention_policy column of the span''s last row';

-- check_hold_scope(scope): raises an error naming the first bad key of a hold's
-- scope, never its value; the keys and their values in hold_covers()'s terms.
CREATE FUNCTION tool_audit.check_hold_scope(scope jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    IF scope IS NULL OR jsonb_typeof(scope) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'scope must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope = '{}'::jsonb THEN
        RAISE EXCEPTION 'scope must give at least one key'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Keys: tenant_id, subject_id, user_id, conversation_id, tool_name, from, to.';
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(scope) e ORDER BY e.key LOOP
        IF k NOT IN ('tenant_id', 'subject_id', 'user_id', 'conversation_id', 'tool_name', 'from', 'to') THEN
            -- the key itself is the caller's text: it is not repeated
            RAISE EXCEPTION 'scope has a key that is not one of tenant_id, subject_id, user_id, conversation_id, tool_name, from, to'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(v) IS DISTINCT FROM 'string' OR v #>> '{}' = '' THEN
            RAISE EXCEPTION 'scope key "%" must be a non-empty string', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF k IN ('from', 'to') THEN
            -- a hold must mean the same instants every time it is read
            IF lower(btrim(v #>> '{}')) IN ('now', 'today', 'tomorrow', 'yesterday', 'infinity',
                                            '-infinity', 'epoch', 'allballs') THEN
                RAISE EXCEPTION 'scope key "%" must be a fixed timestamp, not a word for one', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            BEGIN
                PERFORM (v #>> '{}')::timestamptz;
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'scope key "%" must be a timestamp', k
                    USING ERRCODE = 'invalid_parameter_value';
            END;
        END IF;
    END LOOP;
    IF (scope ->> 'from')::timestamptz > (scope ->> 'to')::timestamptz THEN
        RAISE EXCEPTION 'scope key "from" must not be after "to"'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION tool_audit.check_hold_scope(jsonb) IS
    'Raises an error naming the first bad key of a legal hold''s scope (never its value)';

CREATE FUNCTION tool_audit.place_hold(scope jsonb, reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    PERFORM tool_audit.check_hold_scope(scope);
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- from and to are read once, in the placer's time zone, and kept as UTC
    -- instants: a purge or an erasure in a session with another TimeZone
    -- must cover exactly the same rows
    IF scope ? 'from' THEN
        scope := scope || jsonb_build_object('from', to_char((scope ->> 'from')::timestamptz AT TIME ZONE 'UTC',
                                                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    END IF;
    IF scope ? 'to' THEN
        scope := scope || jsonb_build_object('to', to_char((scope ->> 'to')::timestamptz AT TIME ZONE 'UTC',
                                                           'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    END IF;
    -- a running purge_expired() holds SHARE on legal_holds: this waits for it
    INSERT INTO tool_audit.legal_holds (scope, reason, placed_by)
    VALUES (place_hold.scope, place_hold.reason, tool_audit.acting_role())
    RETURNING hold_id INTO new_id;
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('tool_audit.hold.place', tool_audit.acting_role(), 'user', scope ->> 'tenant_id',
            jsonb_build_object('hold_id', new_id, 'scope', scope), place_hold.reason);
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION tool_audit.place_hold(jsonb, text) IS
    'Places a legal hold on every audit row its scope covers (no purge or erasure removes them) and returns its id';

CREATE FUNCTION tool_audit.release_hold(hold_id bigint, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h tool_audit.legal_holds;
BEGIN
    IF hold_id IS NULL THEN
        RAISE EXCEPTION 'hold_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO h FROM tool_audit.legal_holds l WHERE l.hold_id = release_hold.hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no legal hold has this hold_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF h.released_at IS NOT NULL THEN
        RAISE EXCEPTION 'this legal hold is already released'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE tool_audit.legal_holds l
       SET released_at = now(), released_by = tool_audit.acting_role(),
           release_reason = release_hold.reason
     WHERE l.hold_id = h.hold_id;
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('tool_audit.hold.release', tool_audit.acting_role(), 'user', h.scope ->> 'tenant_id',
            jsonb_build_object('hold_id', h.hold_id, 'scope', h.scope), release_hold.reason);
END
$$;
COMMENT ON FUNCTION tool_audit.release_hold(bigint, text) IS
    'Releases an active legal hold (its rows follow their retention again)';

-- hold_report(): each active hold and, per audit table, how many rows it
-- covers and their first and last time (one pass over each table per hold).
CREATE FUNCTION tool_audit.hold_report()
RETURNS TABLE (hold_id bigint, scope jsonb, reason text, placed_by text, placed_at timestamptz,
               table_name text, rows_covered bigint, first_at timestamptz, last_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h.hold_id, h.scope, h.reason, h.placed_by, h.placed_at, c.table_name, c.n, c.first_at, c.last_at
      FROM tool_audit.legal_holds h
     CROSS JOIN LATERAL (
        SELECT 'admin_events'::text, count(*), min(e.occurred_at), max(e.occurred_at)
          FROM tool_audit.admin_events e
         WHERE tool_audit.hold_covers(h.scope, e.tenant_id, e.payload ->> 'subject_id', e.actor,
                                      e.payload ->> 'conversation_id', e.payload ->> 'tool_name',
                                      e.occurred_at)
        UNION ALL
        SELECT 'tool_calls'::text, count(*), min(t.recorded_at), max(t.recorded_at)
          FROM tool_audit.tool_calls t
         WHERE tool_audit.hold_covers(h.scope, t.tenant_id, t.subject_id, t.user_id,
                                      t.conversation_id, t.tool_name, t.recorded_at)) AS c(table_name, n, first_at, last_at)
     WHERE h.released_at IS NULL
     ORDER BY h.hold_id, c.table_name
$$;
COMMENT ON FUNCTION tool_audit.hold_report() IS
    'The active legal holds with, per audit table, the rows each covers and their first and last time';

CREATE FUNCTION tool_audit.purge_expired(dry_run boolean DEFAULT false) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'purge_expired' LANGUAGE C VOLATILE SECURITY DEFINER PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.purge_expired(boolean) IS
    'Deletes the expired rows no legal hold covers, leaves an anchor per purged span and a tool_audit.retention.purge event; a dry run only reports';

-- purge_anchor_check(table_name): the purge anchors of an audit table in
-- chain position order, each with what is wrong with it, or NULL when it is
-- tied to its purge event (purged_at: the event's time): the event exists, is a tool_audit.retention.purge
-- event whose row matches its row hash, lists the anchor exactly, and was
-- written after every row the anchor removed had expired.  verify() and
-- verify_digest() continue a lane across an anchor with either answer, and
-- call a span removed by a sanctioned purge only when the answer is NULL.
CREATE FUNCTION tool_audit.purge_anchor_check(table_name text)
RETURNS TABLE (chain_id bigint, chain_lane integer, first_seq bigint, last_seq bigint,
               link_before bytea, link_after bytea, purge_event_id bigint,
               tenant_id text, retention_policy text, purged_at timestamptz, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.chain_id, a.chain_lane, a.first_seq, a.last_seq, a.link_before, a.link_after,
           a.purge_event_id, a.tenant_id, a.retention_policy, e.occurred_at,
           CASE
           WHEN e.id IS NULL
               THEN format('purge anchor names admin event %s, which does not exist', a.purge_event_id)
           WHEN e.event_type IS DISTINCT FROM 'tool_audit.retention.purge'
               THEN format('purge anchor names admin event %s, which is not a tool_audit.retention.purge event',
                           a.purge_event_id)
           WHEN e.row_hash IS DISTINCT FROM tool_audit.compute_row_hash(e)
               THEN format('purge anchor''s event (admin event %s) does not match its row hash', a.purge_event_id)
           WHEN NOT EXISTS (
                SELECT FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.payload -> 'anchors') = 'array'
                                                      THEN e.payload -> 'anchors' ELSE '[]' END) x
                 WHERE x ->> 'table' = a.table_name AND x ->> 'chain' = a.chain_id::text
                   AND x ->> 'lane' = a.chain_lane::text
                   AND x ->> 'first' = a.first_seq::text AND x ->> 'last' = a.last_seq::text
                   AND x ->> 'link_before' = encode(a.link_before, 'hex')
                   AND x ->> 'link_after' = encode(a.link_after, 'hex')
                   AND x ->> 'rows' = a.rows_removed::text
                   AND x ->> 'max_expires_at' = to_char(a.max_expires_at AT TIME ZONE 'UTC',
                                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AND (x ->> 'tenant') IS NOT DISTINCT FROM a.tenant_id
                   AND (x ->> 'retention_policy') IS NOT DISTINCT FROM a.retention_policy)
               THEN format('purge anchor not listed by its purge event (admin event %s)', a.purge_event_id)
           WHEN a.rows_removed <> a.last_seq - a.first_seq + 1
               THEN format('purge anchor''s row count does not match its positions (admin event %s)',
                           a.purge_event_id)
           WHEN NOT (a.max_expires_at <= e.occurred_at)
               THEN format('purge anchor removed rows that had not expired when its purge event (admin event %s) was written',
                           a.purge_event_id)
           END
      FROM tool_audit.purge_anchors a
      LEFT JOIN tool_audit.admin_events e ON e.id = a.purge_event_id
     WHERE a.table_name = purge_anchor_check.table_name
     ORDER BY a.chain_id, a.chain_lane, a.first_seq
$$;
COMMENT ON FUNCTION tool_audit.purge_anchor_check(text) IS
    'The purge anchors of an audit table in chain order, each with what is wrong with it or NULL when its purge event backs it';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tool_audit FROM PUBLIC;

-- (1.4) purge: admins place and release legal holds, list them, and purge
GRANT EXECUTE ON FUNCTION
    tool_audit.place_hold(jsonb, text),
    tool_audit.release_hold(bigint, text),
    tool_audit.hold_report(),
    tool_audit.purge_expired(boolean)
    TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION tool_audit.purge_anchor_check(text) TO tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.purged_link(text, bigint, integer, bigint),
    tool_audit.purge_link_before(text, bigint, integer, bigint)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;

-- (1.4) erasure: the objects of sql/install/85_erasure.sql and their grants
-- ---------------------------------------------------------------------------
-- Erasure (1.4): a data subject's personal fields in audit rows replaced by
-- markers, the stored row hashes and links kept (doc/retention.md, Erasure)
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.erase_subject(subject_id text, reason text, legal_basis text)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'erase_subject' LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.erase_subject(text, text, text) IS
    'Replaces the personal fields of every audit row naming the subject by markers (rows under a legal hold kept), records one erasures row per row and a tool_audit.retention.erase event, and returns what it did';

-- Every erasure entry with the event it belongs to.  event_type is
-- tool_audit.retention.erase for an entry erase_subject() wrote; verify()
-- checks that the event commits to the entry (its "erasures_hash").
CREATE VIEW tool_audit.erasure_log AS
SELECT e.erase_event_id,
       a.event_id AS erase_event_uuid,
       a.event_type,
       a.occurred_at AS erased_at,
       a.actor AS erased_by,
       a.reason,
       a.payload ->> 'legal_basis' AS legal_basis,
       e.table_name,
       e.row_id,
       e.erased_columns,
       e.row_hash_after
  FROM tool_audit.erasures e
  LEFT JOIN tool_audit.admin_events a ON a.id = e.erase_event_id;
COMMENT ON VIEW tool_audit.erasure_log IS
    'Every erased audit row with its tool_audit.retention.erase event (who, when, reason, legal basis); verify() tells an erasure from tampering';
REVOKE ALL ON FUNCTION tool_audit.erase_subject(text, text, text) FROM PUBLIC;
-- (1.4) erasure: admins erase; admins and the verifier read the erasure log
GRANT EXECUTE ON FUNCTION tool_audit.erase_subject(text, text, text) TO tool_audit_admin;
GRANT SELECT ON tool_audit.erasure_log TO tool_audit_admin, tool_audit_verifier;

-- The reports check the rows they cover with check_row(): from 1.4 it takes
-- the row hash through accepted_row_hash(), so that a row as a verified
-- erasure left it is accepted there as verify() accepts it.  (Redefined here,
-- after accepted_row_hash(), rather than in 60_verification.sql.)
CREATE INDEX erasures_by_event ON tool_audit.erasures (erase_event_id);
CREATE FUNCTION tool_audit.accepted_row_hash(tool_audit.tool_calls) RETURNS bytea
    AS 'MODULE_PATHNAME', 'accepted_row_hash' LANGUAGE C STRICT STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.accepted_row_hash(tool_audit.tool_calls) IS
    'The row hash recomputed from a tool_calls row, or its stored row_hash when the row is as a verified erasure left it';
CREATE FUNCTION tool_audit.accepted_row_hash(tool_audit.admin_events) RETURNS bytea
    AS 'MODULE_PATHNAME', 'accepted_row_hash' LANGUAGE C STRICT STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.accepted_row_hash(tool_audit.admin_events) IS
    'The row hash recomputed from an admin_events row, or its stored row_hash when the row is as a verified erasure left it';
CREATE OR REPLACE FUNCTION tool_audit.check_row(r tool_audit.tool_calls) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.accepted_row_hash(r),
        coalesce(p.chain_hash, CASE WHEN r.chain_seq > 1 AND r.chain_seq < 9223372036854775807 THEN
                 tool_audit.purged_link('tool_calls', r.chain_id, r.chain_lane, r.chain_seq - 1) END),
        n.chain_seq, n.row_hash, n.chain_hash,
        n.chain_seq IS NULL AND r.chain_seq < 9223372036854775807
        AND tool_audit.purge_link_before('tool_calls', r.chain_id, r.chain_lane, r.chain_seq + 1)
            IS DISTINCT FROM r.chain_hash
        AND EXISTS (
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

CREATE OR REPLACE FUNCTION tool_audit.check_row(r tool_audit.admin_events) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.accepted_row_hash(r),
        coalesce(p.chain_hash, CASE WHEN r.chain_seq > 1 AND r.chain_seq < 9223372036854775807 THEN
                 tool_audit.purged_link('admin_events', r.chain_id, r.chain_lane, r.chain_seq - 1) END),
        n.chain_seq, n.row_hash, n.chain_hash,
        n.chain_seq IS NULL AND r.chain_seq < 9223372036854775807
        AND tool_audit.purge_link_before('admin_events', r.chain_id, r.chain_lane, r.chain_seq + 1)
            IS DISTINCT FROM r.chain_hash
        AND EXISTS (
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
REVOKE ALL ON FUNCTION tool_audit.accepted_row_hash(tool_audit.tool_calls), tool_audit.accepted_row_hash(tool_audit.admin_events) FROM PUBLIC;
-- (1.4) the reports' row check accepts verified erasures
GRANT EXECUTE ON FUNCTION
    tool_audit.accepted_row_hash(tool_audit.tool_calls),
    tool_audit.accepted_row_hash(tool_audit.admin_events)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;

-- ---------------------------------------------------------------------------
-- (1.4) the purge as a pg_cron job: sql/install/48_retention_schedule.sql and
-- its grant in 90_privileges.sql, word for word
-- require_pg_cron(statement): returns when pg_cron's functions can be called
-- here; otherwise raises 55000 with the exact steps to take, `statement`
-- being what to run in pg_cron's database when it is another one.
CREATE FUNCTION tool_audit.require_pg_cron(statement text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    cron_version text;
BEGIN
    SELECT e.extversion INTO cron_version FROM pg_extension e WHERE e.extname = 'pg_cron';
    IF cron_version IS NOT NULL THEN
        IF to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NULL THEN
            RAISE EXCEPTION 'pg_cron % is too old: tool_audit needs cron.schedule_in_database() (pg_cron 1.4)', cron_version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Install pg_cron 1.4 or later, run ALTER EXTENSION pg_cron UPDATE; in this database, and call this function again.';
        END IF;
        RETURN;
    END IF;
    IF cron_db = current_database() THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'pg_cron is loaded, and this is its database (cron.database_name).',
                  HINT = 'Run CREATE EXTENSION pg_cron; in this database, and call this function again.';
    END IF;
    IF coalesce(cron_db, '') = '' THEN
        RAISE EXCEPTION 'pg_cron is not loaded on this server'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'tool_audit runs its purge as a pg_cron job, scheduled from the database where pg_cron is installed (cron.database_name).',
                  HINT = format('Install pg_cron (Debian: postgresql-15-cron), set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L in postgresql.conf, restart, run CREATE EXTENSION pg_cron; in this database, and call this function again.',
                                current_database());
    END IF;
    RAISE EXCEPTION 'pg_cron is installed in database %, not in this one', quote_ident(cron_db)
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = 'pg_cron''s jobs are managed from its own database (cron.database_name); the job itself runs in this one.',
              HINT = format('In database %s, as a superuser, run: %s', quote_ident(cron_db), statement);
END
$$;
COMMENT ON FUNCTION tool_audit.require_pg_cron(text) IS
    'Raises 55000, with the command to run in pg_cron''s database, unless pg_cron is installed in this one';

-- remove_retention_jobs(): removes this database's purge jobs (whoever owns
-- them), under a lock on cron.job that makes concurrent callers take turns,
-- and returns them as a list (NULL if there were none).  Only for the two
-- functions below, which have checked that pg_cron is here.
CREATE FUNCTION tool_audit.remove_retention_jobs()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit retention in ' || current_database();
    removed jsonb;
BEGIN
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    SELECT jsonb_agg(jsonb_build_object('job_id', j.jobid, 'schedule', j.schedule,
                                        'command', j.command, 'username', j.username,
                                        'active', j.active) ORDER BY j.jobid)
      INTO removed
      FROM cron.job j
     WHERE j.jobname = job_name AND j.database = current_database();
    PERFORM cron.unschedule(j.jobid)
       FROM cron.job j
      WHERE j.jobname = job_name AND j.database = current_database();
    RETURN removed;
END
$$;
COMMENT ON FUNCTION tool_audit.remove_retention_jobs() IS
    'Removes this database''s pg_cron purge jobs and returns them (NULL if none); for schedule_retention() and unschedule_retention()';

CREATE FUNCTION tool_audit.schedule_retention(schedule text DEFAULT '0 3 * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit retention in ' || current_database();
    command constant text := 'SELECT tool_audit.purge_expired()';
    job_role constant text := tool_audit.acting_role();
    spec constant text := btrim(schedule);
    replaced jsonb;
    job_id bigint;
BEGIN
    -- not quoted: a value that is not a schedule may be a secret put in the wrong place
    IF spec IS NULL OR length(spec) > 100
       OR spec !~ '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9]{1,2} seconds?|[0-9A-Za-z*,/$-]+( +[0-9A-Za-z*,/$-]+){4})$' THEN
        RAISE EXCEPTION 'invalid value for argument "schedule": expected a cron schedule'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'Five fields, minute hour day-of-month month day-of-week, as in ''0 3 * * *'' (03:00 every day); or @daily, @hourly; pg_cron 1.5 and later also take ''N seconds''.';
    END IF;
    -- the job runs as the role scheduling it: it must be able to log in and to purge
    IF NOT coalesce((SELECT r.rolcanlogin FROM pg_roles r WHERE r.rolname = job_role), false) THEN
        RAISE EXCEPTION 'the retention job runs as the role that schedules it, and role % cannot log in', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Call schedule_retention() as a login role that is a member of tool_audit_admin (not after SET ROLE to a role without LOGIN).';
    END IF;
    IF to_regprocedure('tool_audit.purge_expired(boolean)') IS NULL
       OR NOT has_function_privilege(job_role, 'tool_audit.purge_expired(boolean)', 'EXECUTE') THEN
        RAISE EXCEPTION 'the retention job runs as the role that schedules it, and role % may not execute tool_audit.purge_expired()', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Grant tool_audit_admin to that role, or schedule as one that has it.';
    END IF;
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.schedule_in_database(%L, %L, %L, %L, %L);',
               job_name, spec, command, current_database(), job_role));

    -- one purge job per database: replace whatever job has the name, whoever owns it
    replaced := coalesce(tool_audit.remove_retention_jobs(), '[]');
    BEGIN
        job_id := cron.schedule_in_database(job_name, spec, command, current_database(), job_role);
    EXCEPTION WHEN invalid_parameter_value THEN
        -- pg_cron's message quotes the schedule: say the same without it
        RAISE EXCEPTION 'invalid value for argument "schedule": pg_cron % does not accept it',
                        (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_cron')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'Five fields, minute hour day-of-month month day-of-week, as in ''0 3 * * *'' (03:00 every day); or @daily, @hourly; pg_cron 1.5 and later also take ''N seconds''.';
    END;

    PERFORM tool_audit.record_own_event('retention.schedule', jsonb_build_object(
        'before', replaced,
        'after', jsonb_build_object('job_id', job_id, 'job_name', job_name, 'schedule', spec,
                                    'command', command, 'database', current_database(),
                                    'username', job_role)));
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION tool_audit.schedule_retention(text) IS
    'Schedules purge_expired() as this database''s pg_cron job, run as the calling role, replacing any earlier one; returns the job id';

CREATE FUNCTION tool_audit.unschedule_retention()
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit retention in ' || current_database();
    removed jsonb;
BEGIN
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L AND j.database = %L;',
               job_name, current_database()));
    removed := tool_audit.remove_retention_jobs();
    IF removed IS NULL THEN
        RETURN false;
    END IF;
    PERFORM tool_audit.record_own_event('retention.schedule',
                                        jsonb_build_object('before', removed, 'after', NULL));
    RETURN true;
END
$$;
COMMENT ON FUNCTION tool_audit.unschedule_retention() IS
    'Removes this database''s pg_cron purge job; true if there was one';

REVOKE ALL ON FUNCTION tool_audit.require_pg_cron(text), tool_audit.remove_retention_jobs(),
    tool_audit.schedule_retention(text), tool_audit.unschedule_retention() FROM PUBLIC;
-- (1.4) admins schedule and unschedule the purge as a pg_cron job
GRANT EXECUTE ON FUNCTION tool_audit.schedule_retention(text), tool_audit.unschedule_retention()
    TO tool_audit_admin;

-- (1.4) a restore with no setting: a superuser's rule that brings a rule_id
-- this session did not draw (a dump's row) records no second event
CREATE OR REPLACE FUNCTION tool_audit.sanitize_rules_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    restored boolean := current_setting('tool_audit.restoring', true) = 'on';
BEGIN
    -- a superuser's restore re-inserts rules whose events the dump already
    -- holds: with tool_audit.restoring = on, or with no setting a rule whose
    -- rule_id this session did not draw from the sequence (a dump brings its
    -- rule_ids and sets the sequence after the rows)
    IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = tool_audit.acting_role()) THEN
        IF NOT coalesce(restored, false) AND TG_OP = 'INSERT' THEN
            BEGIN
                restored := NEW.rule_id > currval('tool_audit.sanitize_rules_rule_id_seq');
            EXCEPTION WHEN object_not_in_prerequisite_state THEN
                restored := true;       -- currval not yet defined in this session
            END;
        END IF;
        IF restored THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM tool_audit.record_own_event(
        'sanitize_rule.' || lower(TG_OP),
        jsonb_build_object(
            'before', CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            'after',  CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END));
    RETURN NULL;
END
$$;

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

-- review fixes (issue 11)
-- legacy_retention_days(applies_to, name, tenant): the retention purge_expired()
-- gives a row written before 1.4 (which has no recorded policy or expiry): the
-- longest that any policy covering its tool or event type (by name or pattern),
-- or its table's default, gives the tenant today; so a policy added later, or
-- one that wins a tie, cannot take such rows away early.
CREATE FUNCTION tool_audit.legacy_retention_days(applies_to text, name text, tenant_id text)
    RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT max(tool_audit.current_retention_days(p.policy_name, legacy_retention_days.tenant_id))
      FROM tool_audit.retention_policies p
     WHERE p.applies_to = legacy_retention_days.applies_to
       AND (p.is_default OR name = ANY (p.matches)
            OR EXISTS (SELECT FROM unnest(p.matches) m
                        WHERE strpos(m, '*') > 0
                          AND name LIKE replace(replace(replace(replace(m, '\', '\\'),
                                                '%', '\%'), '_', '\_'), '*', '%')))
$$;
COMMENT ON FUNCTION tool_audit.legacy_retention_days(text, text, text) IS
    'The retention in days purge_expired() gives a row written before 1.4: the longest of every policy covering its tool or event type, or the default';

REVOKE ALL ON FUNCTION tool_audit.legacy_retention_days(text, text, text) FROM PUBLIC;

-- (1.4) purge: the retention of rows written before 1.4
GRANT EXECUTE ON FUNCTION tool_audit.legacy_retention_days(text, text, text)
    TO tool_audit_admin, tool_audit_verifier;
