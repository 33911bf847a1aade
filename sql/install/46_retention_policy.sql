
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
    IF applies_to IS NULL OR applies_to NOT IN ('tool_calls', 'admin_events', 'data_changes') THEN
        RAISE EXCEPTION 'invalid value for argument "applies_to": expected tool_calls, admin_events or data_changes'
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
        -- (1.5) lengthening alone needs no second person; fewer days or
        -- other names and patterns may shorten some rows' retention
        IF retention_days < before_row.retention_days OR
           (matches IS NOT NULL AND matches IS DISTINCT FROM before_row.matches) THEN
            PERFORM tool_audit.approval_gate('tool_audit.retention.set_policy',
                jsonb_build_object('policy_name', policy_name, 'retention_days', retention_days,
                                   'matches', to_jsonb(matches), 'applies_to', applies_to));
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
    -- (1.5) a new policy takes rows from the policy that covered them
    PERFORM tool_audit.approval_gate('tool_audit.retention.set_policy',
        jsonb_build_object('policy_name', policy_name, 'retention_days', retention_days,
                           'matches', to_jsonb(matches), 'applies_to', applies_to));
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
    -- (1.5) an override that shortens the tenant's retention
    IF had_one AND retention_days < before_row.retention_days THEN
        PERFORM tool_audit.approval_gate('tool_audit.retention.set_override',
            jsonb_build_object('tenant_id', tenant_id, 'policy_name', policy_name,
                               'retention_days', retention_days));
    END IF;
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
