-- Row-level security: readers bound to a tenant see only that tenant's rows.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT count(tool_audit.log_call('lookup', '{}', '{}', 1, jsonb_build_object('tenant_id', t, 'conversation_id', 'conv_tenants')))
  FROM unnest(ARRAY['acme', 'globex']) t;
SELECT tool_name FROM tool_audit.log_call('lookup', '{}', '{}', 1, '{"conversation_id": "conv_tenants"}');
SELECT count(tool_audit.log_event('policy.update', 'a', '{}', jsonb_build_object('tenant_id', t, 'reason', 'tenants test')))
  FROM unnest(ARRAY['acme', 'globex']) t;

-- an unbound reader sees every tenant
SET ROLE regress_reader;
SELECT tenant_id FROM tool_audit.tool_calls WHERE conversation_id = 'conv_tenants' ORDER BY 1 NULLS LAST;
-- and can narrow its own view for the session
SET tool_audit.tenant = 'globex';
SELECT tenant_id FROM tool_audit.tool_calls WHERE conversation_id = 'conv_tenants' ORDER BY 1;
RESET tool_audit.tenant;
RESET ROLE;

-- bind regress_reader_acme to acme (as the admin), and it is logged
SET ROLE regress_admin;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'acme');
SELECT tool_audit.bind_tenant('regress_reader_acme', 'acme');   -- twice: nothing new, nothing logged
SELECT role, tenant_id FROM tool_audit.tenant_bindings ORDER BY 1, 2;
RESET ROLE;
SELECT event_type, actor, tenant_id, payload FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.tenant_binding.%' ORDER BY id;

SET ROLE regress_reader_acme;
SELECT tool_audit.bound_tenants();   -- its own binding, and nobody else's
SELECT tenant_id FROM tool_audit.tool_calls WHERE conversation_id = 'conv_tenants' ORDER BY 1;
SELECT DISTINCT tenant_id FROM tool_audit.tool_calls ORDER BY 1;
SELECT tenant_id, reason FROM tool_audit.admin_events WHERE reason = 'tenants test' ORDER BY 1;
-- the session setting cannot widen the binding
SET tool_audit.tenant = 'globex';
SELECT count(*) AS globex_rows_seen FROM tool_audit.tool_calls;
RESET tool_audit.tenant;
RESET ROLE;

-- membership counts: a member of a bound role is bound too
SET ROLE regress_acme_member;
SELECT DISTINCT tenant_id FROM tool_audit.tool_calls ORDER BY 1;
RESET ROLE;

-- SET ROLE to an unbound role does not escape the login's binding
SET SESSION AUTHORIZATION regress_acme_member;
SET ROLE tool_audit_reader;
SELECT current_user, session_user, array_agg(DISTINCT tenant_id) AS tenants_seen FROM tool_audit.tool_calls;
RESET ROLE;
RESET SESSION AUTHORIZATION;

-- an unbound reader is unaffected by someone else's binding
SET ROLE regress_reader;
SELECT count(DISTINCT tenant_id) AS tenants_seen FROM tool_audit.tool_calls WHERE conversation_id = 'conv_tenants';
RESET ROLE;

-- unbind: the reader sees everything again
SET ROLE regress_admin;
SELECT tool_audit.unbind_tenant('regress_reader_acme', 'acme');
SELECT tool_audit.unbind_tenant('regress_reader_acme', 'acme');   -- nothing left to remove
SELECT regress_try($$SELECT tool_audit.bind_tenant(NULL, 'acme')$$);
SELECT regress_try($$SELECT tool_audit.bind_tenant('no_such_role', 'acme')$$);
RESET ROLE;
SET ROLE regress_reader_acme;
SELECT count(DISTINCT tenant_id) AS tenants_seen FROM tool_audit.tool_calls WHERE conversation_id = 'conv_tenants';
RESET ROLE;
