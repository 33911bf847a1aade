
-- ---------------------------------------------------------------------------
-- Impersonation (1.5): an application's admin user (adm_7) acting as one of
-- its users (usr_1).  The application records it, as it records tool calls:
-- the admin and the user are the application's ids, not database roles, so
-- the writer role (the application) and the admin role may start and end
-- one.  While one is open, the insert triggers stamp impersonated_by on the
-- rows of that user in that tenant recorded by the role that started it
-- (started_by: the ids are that application's); it stops by itself at its
-- expiry (src/impersonation.c).  Only that role, or an admin, ends it.
-- doc/governance.md.
-- ---------------------------------------------------------------------------
CREATE SEQUENCE tool_audit.impersonations_impersonation_id_seq;
CREATE TABLE tool_audit.impersonations (
    impersonation_id bigint PRIMARY KEY
                     DEFAULT nextval('tool_audit.impersonations_impersonation_id_seq'),
    tenant_id      text,
    admin_id       text NOT NULL,
    target_user    text NOT NULL,
    reason         text NOT NULL,
    started_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    started_by     text NOT NULL,
    start_event_id bigint NOT NULL,
    ended_at       timestamptz,
    ended_by       text,
    end_event_id   bigint,
    CONSTRAINT expires_after_start CHECK (expires_at > started_at)
);
ALTER SEQUENCE tool_audit.impersonations_impersonation_id_seq
    OWNED BY tool_audit.impersonations.impersonation_id;
COMMENT ON TABLE tool_audit.impersonations IS
    'Impersonations started with start_impersonation(); open (ended_at NULL) until end_impersonation() or, after expires_at, close_expired_impersonations()';

-- every backend drops its copy of the open impersonations at a change
CREATE TRIGGER impersonations_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.impersonations
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();
ALTER TABLE tool_audit.impersonations ENABLE ALWAYS TRIGGER impersonations_changed;

-- impersonation_event(): an impersonation.* admin event, the admin as its
-- actor; returns the stored row's id and time
CREATE FUNCTION tool_audit.impersonation_event(event_type text, admin text, tenant_id text,
                                               payload jsonb, reason text,
                                               OUT event_id bigint, OUT occurred_at timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('impersonation.' || impersonation_event.event_type, impersonation_event.admin, 'user',
            impersonation_event.tenant_id, impersonation_event.payload, impersonation_event.reason)
    RETURNING id, occurred_at
$$;
COMMENT ON FUNCTION tool_audit.impersonation_event(text, text, text, jsonb, text) IS
    'Records an "impersonation." admin event with the admin as actor; callable only by the owner (its own functions)';

-- close_expired_impersonations(): closes every open impersonation past its
-- expiry, each with an impersonation.expire event (the rows written after
-- the expiry were never stamped: this makes the end visible in the trail)
CREATE FUNCTION tool_audit.close_expired_impersonations() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i tool_audit.impersonations;
    e record;
    closed integer := 0;
BEGIN
    FOR i IN SELECT * FROM tool_audit.impersonations m
              WHERE m.ended_at IS NULL AND m.expires_at <= statement_timestamp()
              ORDER BY m.impersonation_id FOR UPDATE
    LOOP
        e := tool_audit.impersonation_event('expire', i.admin_id, i.tenant_id,
                 jsonb_build_object('impersonation_id', i.impersonation_id, 'target_user', i.target_user,
                                    'started_at', tool_audit.iso8601_utc(i.started_at),
                                    'expired_at', tool_audit.iso8601_utc(i.expires_at)),
                 NULL);
        UPDATE tool_audit.impersonations m
           SET ended_at = i.expires_at, ended_by = 'expired', end_event_id = e.event_id
         WHERE m.impersonation_id = i.impersonation_id;
        closed := closed + 1;
    END LOOP;
    RETURN closed;
END
$$;
COMMENT ON FUNCTION tool_audit.close_expired_impersonations() IS
    'Closes the impersonations past their expiry, each with an impersonation.expire admin event; returns how many';

-- impersonation_caller_check(tenant_id): a caller bound to tenants may act
-- in those only
CREATE FUNCTION tool_audit.impersonation_caller_check(tenant_id text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound text[] := tool_audit.bound_tenants();
BEGIN
    IF bound IS NOT NULL AND (tenant_id IS NULL OR NOT tenant_id = ANY (bound)) THEN
        RAISE EXCEPTION 'the caller is bound to other tenants than the impersonation''s'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A role bound with tool_audit.bind_tenant() impersonates in its own tenants only.';
    END IF;
END
$$;
COMMENT ON FUNCTION tool_audit.impersonation_caller_check(text) IS
    'Raises 42501 when the caller is bound to tenants and the given tenant is not one of them';

CREATE FUNCTION tool_audit.start_impersonation(admin text, target_user text, reason text,
                                               max_minutes integer, tenant_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clean_admin text;
    clean_target text;
    clean_tenant text;
    id bigint;
    e record;
BEGIN
    -- errors name the argument, never its value
    IF admin IS NULL OR admin = '' THEN
        RAISE EXCEPTION 'admin must not be null or empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF target_user IS NULL OR target_user = '' THEN
        RAISE EXCEPTION 'target_user must not be null or empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be null or empty'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Say why, for example the support ticket.';
    END IF;
    IF max_minutes IS NULL OR max_minutes < 1 OR max_minutes > 1440 THEN
        RAISE EXCEPTION 'invalid value for argument "max_minutes": expected 1 to 1440 minutes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tool_audit.impersonation_caller_check(tenant_id);
    -- the ids as the audit rows will hold them (the sanitizer's value rules:
    -- the trigger compares the sanitized row)
    clean_admin := tool_audit.sanitize_text(admin);
    clean_target := tool_audit.sanitize_text(target_user);
    clean_tenant := tool_audit.sanitize_text(tenant_id);
    IF clean_admin = clean_target THEN
        RAISE EXCEPTION 'invalid value for argument "target_user": an admin cannot impersonate itself'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE tool_audit.impersonations IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tool_audit.close_expired_impersonations();
    -- one open impersonation per user, tenant and starting role: another
    -- application's user of the same id is another user
    IF EXISTS (SELECT FROM tool_audit.impersonations m
                WHERE m.ended_at IS NULL AND m.target_user = clean_target
                  AND m.tenant_id IS NOT DISTINCT FROM clean_tenant
                  AND m.started_by = tool_audit.acting_role()) THEN
        RAISE EXCEPTION 'the user is already being impersonated'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'End that impersonation with tool_audit.end_impersonation() first.';
    END IF;
    id := nextval('tool_audit.impersonations_impersonation_id_seq');
    e := tool_audit.impersonation_event('start', clean_admin, clean_tenant,
             jsonb_build_object('impersonation_id', id, 'target_user', clean_target,
                                'max_minutes', max_minutes),
             reason);
    INSERT INTO tool_audit.impersonations
        (impersonation_id, tenant_id, admin_id, target_user, reason, started_at, expires_at,
         started_by, start_event_id)
    VALUES (id, clean_tenant, clean_admin, clean_target,
            tool_audit.sanitize_text(reason), e.occurred_at,
            e.occurred_at + make_interval(mins => max_minutes), tool_audit.acting_role(), e.event_id);
    RETURN id;
END
$$;
COMMENT ON FUNCTION tool_audit.start_impersonation(text, text, text, integer, text) IS
    'Starts an impersonation of an application user by an application admin in a tenant, for at most max_minutes, as an impersonation.start admin event; returns its id';

CREATE FUNCTION tool_audit.end_impersonation(admin text, target_user text, tenant_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i tool_audit.impersonations;
    e record;
    me text := tool_audit.acting_role();
    is_admin boolean := pg_has_role(tool_audit.acting_role()::name, 'tool_audit_admin', 'MEMBER');
BEGIN
    IF admin IS NULL OR target_user IS NULL THEN
        RAISE EXCEPTION 'admin and target_user must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM tool_audit.impersonation_caller_check(tenant_id);
    LOCK TABLE tool_audit.impersonations IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tool_audit.close_expired_impersonations();
    -- the caller's own impersonation (started_by); an admin may end
    -- another role's, its own first
    SELECT * INTO i FROM tool_audit.impersonations m
     WHERE m.ended_at IS NULL AND m.admin_id = tool_audit.sanitize_text(end_impersonation.admin)
       AND m.target_user = tool_audit.sanitize_text(end_impersonation.target_user)
       AND m.tenant_id IS NOT DISTINCT FROM tool_audit.sanitize_text(end_impersonation.tenant_id)
       AND (m.started_by = me OR is_admin)
     ORDER BY m.started_by = me DESC, m.impersonation_id
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    e := tool_audit.impersonation_event('end', i.admin_id, i.tenant_id,
             jsonb_build_object('impersonation_id', i.impersonation_id, 'target_user', i.target_user,
                                'started_at', tool_audit.iso8601_utc(i.started_at)),
             NULL);
    UPDATE tool_audit.impersonations m
       SET ended_at = e.occurred_at, ended_by = me, end_event_id = e.event_id
     WHERE m.impersonation_id = i.impersonation_id;
    RETURN i.impersonation_id;
END
$$;
COMMENT ON FUNCTION tool_audit.end_impersonation(text, text, text) IS
    'Ends the admin''s open impersonation of the user in the tenant started by the calling role (an admin: by any role), as an impersonation.end admin event; ended_by is the calling role; returns its id, or NULL if none was open';
