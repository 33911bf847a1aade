
-- ---------------------------------------------------------------------------
-- Tenants: which tenants a reader may see
-- ---------------------------------------------------------------------------
CREATE TABLE tool_audit.tenant_bindings (
    role      regrole NOT NULL,
    tenant_id text NOT NULL,
    PRIMARY KEY (role, tenant_id)
);
COMMENT ON TABLE tool_audit.tenant_bindings IS 'Readers that are members of a bound role see only the bound tenants';

-- bound_tenants(): the tenants the calling session is limited to: the union of
-- the bindings of every role that its current role (after SET ROLE) or its login
-- role is a member of; NULL if none is bound.  Both count, so a bound login
-- cannot escape its binding with SET ROLE to an unbound role it belongs to.  It
-- answers for the caller only: nobody can list other roles' tenants with it.
CREATE FUNCTION tool_audit.bound_tenants() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- superusers are members of every role by definition: their memberships say nothing
    SELECT array_agg(DISTINCT b.tenant_id ORDER BY b.tenant_id)
      FROM tool_audit.tenant_bindings b,
           unnest(ARRAY[tool_audit.acting_role()::name, SESSION_USER]) AS r(name)
     WHERE NOT coalesce((SELECT a.rolsuper FROM pg_authid a WHERE a.rolname = r.name), false)
       AND pg_has_role(r.name, b.role::oid, 'MEMBER')
$$;
COMMENT ON FUNCTION tool_audit.bound_tenants() IS
    'The tenants the calling session is limited to by tenant bindings, or NULL if it is bound to none';

CREATE FUNCTION tool_audit.bind_tenant(role regrole, tenant_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added boolean;
BEGIN
    IF role IS NULL OR tenant_id IS NULL THEN
        RAISE EXCEPTION 'role and tenant_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO tool_audit.tenant_bindings VALUES (bind_tenant.role, bind_tenant.tenant_id)
        ON CONFLICT DO NOTHING;
    added := FOUND;
    IF added THEN
        PERFORM tool_audit.record_own_event('tenant_binding.add',
                                            jsonb_build_object('after', jsonb_build_object('role', role::text, 'tenant_id', tenant_id)),
                                            tenant_id);
    END IF;
    RETURN added;
END
$$;
COMMENT ON FUNCTION tool_audit.bind_tenant(regrole, text) IS
    'Limits the readers that are members of the role to the tenant (and any others bound); true if the binding is new';

CREATE FUNCTION tool_audit.unbind_tenant(role regrole, tenant_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_one boolean;
BEGIN
    DELETE FROM tool_audit.tenant_bindings b
     WHERE b.role = unbind_tenant.role AND b.tenant_id = unbind_tenant.tenant_id;
    found_one := FOUND;
    IF found_one THEN
        PERFORM tool_audit.record_own_event('tenant_binding.remove',
                                            jsonb_build_object('before', jsonb_build_object('role', role::text, 'tenant_id', tenant_id)),
                                            tenant_id);
    END IF;
    RETURN found_one;
END
$$;
COMMENT ON FUNCTION tool_audit.unbind_tenant(regrole, text) IS
    'Removes a tenant binding of a role; true if there was one';

-- ---------------------------------------------------------------------------
-- Row-level security: writers insert, readers read their tenants, admins and
-- the verifier read all
-- ---------------------------------------------------------------------------
ALTER TABLE tool_audit.tool_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_audit.admin_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY writer_insert ON tool_audit.tool_calls
    FOR INSERT TO tool_audit_writer WITH CHECK (true);
CREATE POLICY writer_insert ON tool_audit.admin_events
    FOR INSERT TO tool_audit_writer WITH CHECK (true);
-- what ORMs need: INSERT ... RETURNING id, ON CONFLICT (event_id) DO NOTHING;
-- a writer sees the id and event_id of the rows it recorded itself, nothing else
CREATE POLICY writer_own_ids ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_writer USING (recorded_by = CURRENT_USER);
CREATE POLICY writer_own_ids ON tool_audit.admin_events
    FOR SELECT TO tool_audit_writer USING (recorded_by = CURRENT_USER);
CREATE POLICY admin_read ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY admin_read ON tool_audit.admin_events
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY reader_tenant ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));
CREATE POLICY reader_tenant ON tool_audit.admin_events
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));
-- the verifier role reads every row of every tenant (what an external
-- verifier needs)
CREATE POLICY verifier_read ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_verifier USING (true);
CREATE POLICY verifier_read ON tool_audit.admin_events
    FOR SELECT TO tool_audit_verifier USING (true);
