-- Privileges: writers log, readers read, admins manage rules and keys, PUBLIC nothing.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
-- a row recorded by another role (the owner), which the writer must not see,
-- and the writer's rows recorded before this file (none when it runs alone)
SELECT tool_name FROM tool_audit.log_call('owner_call', '{}', '{}', 1, '{"conversation_id": "conv_roles_owner"}');
SELECT count(*) AS writer_rows_before FROM tool_audit.tool_calls WHERE recorded_by = 'regress_writer' \gset

-- a role with no tool_audit role at all
SET ROLE regress_nobody;
SELECT regress_try($$SELECT count(*) FROM tool_audit.tool_calls$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.sanitize('{}')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES ('t')$$);
RESET ROLE;

-- the writer: may log, nothing else
SET ROLE regress_writer;
SELECT tool_name, success FROM tool_audit.log_call('writer_call', '{"password": "p"}', '{}', 5, '{"conversation_id": "conv_roles", "tenant_id": "acme"}');
SELECT event_type FROM tool_audit.log_event('prompt.update', 'svc', '{}', '{"tenant_id": "acme"}');
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, tenant_id) VALUES ('writer_insert', 'conv_roles', 'acme')$$);
SELECT regress_try($$SELECT tool_audit.sanitize('{"token": "t"}')$$);
SELECT regress_try($$SELECT tool_audit.summarize_result('{}')$$);
SELECT regress_try($$SELECT arguments FROM tool_audit.tool_calls$$);
SELECT regress_try($$UPDATE tool_audit.tool_calls SET success = true$$);
SELECT regress_try($$DELETE FROM tool_audit.tool_calls$$);
SELECT left(regress_try($$TRUNCATE tool_audit.tool_calls$$), 5) AS sqlstate;   -- the preload hook may refuse first
SELECT regress_try($$SELECT tool_audit.pseudonymize('078-05-1120')$$);
SELECT regress_try($$SELECT tool_audit.record_own_event('sanitize_rule.delete', '{}')$$);
-- what an ORM does: INSERT ... RETURNING id, and idempotent retries on event_id
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, conversation_id) VALUES ('orm', 'conv_roles') RETURNING id$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, event_id)
                     VALUES ('orm', 'conv_roles', '00000000-0000-4000-8000-0000000000aa')
                     ON CONFLICT (event_id) DO NOTHING$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, event_id)
                     VALUES ('orm', 'conv_roles', '00000000-0000-4000-8000-0000000000aa')
                     ON CONFLICT (event_id) DO NOTHING$$);
-- a writer sees the ids of its own rows only
SELECT count(*) = count(*) FILTER (WHERE id > 0) AS only_ids, count(*) - :writer_rows_before AS own_rows FROM tool_audit.tool_calls;
SELECT regress_try($$SELECT * FROM tool_audit.pseudonym_keys$$);
SELECT regress_try($$SELECT tool_audit.rotate_pseudonym_key()$$);
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('key', 'exact', 'x', 'keep')$$);
RESET ROLE;

-- the reader: may read, nothing else
SET ROLE regress_reader;
SELECT tool_name, arguments FROM tool_audit.tool_calls WHERE conversation_id = 'conv_roles' ORDER BY id;
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{}')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES ('t')$$);
SELECT regress_try($$UPDATE tool_audit.tool_calls SET success = true$$);
SELECT regress_try($$SELECT tool_audit.sanitize('{}')$$);
SELECT regress_try($$SELECT * FROM tool_audit.pseudonym_keys$$);
SELECT regress_try($$SELECT * FROM tool_audit.sanitize_rules$$);
SELECT regress_try($$SELECT tool_audit.bind_tenant('regress_reader', 'acme')$$);
SELECT left(regress_try($$TRUNCATE tool_audit.tool_calls$$), 5) AS sqlstate;   -- the preload hook may refuse first
SELECT regress_try($$DELETE FROM tool_audit.tool_calls$$);
SELECT regress_try($$SELECT tool_audit.record_own_event('sanitize_rule.delete', '{}')$$);
SELECT tool_audit.bound_tenants() IS NULL AS unbound;
RESET ROLE;

-- the admin: rules and keys, reads everything, does not log tool calls
SET ROLE regress_admin;
SELECT count(*) > 0 AS admin_reads FROM tool_audit.tool_calls;
SELECT count(*) AS builtin_rules_visible FROM tool_audit.sanitize_rules WHERE builtin;
SELECT key_id, active FROM tool_audit.pseudonym_key_ids WHERE active;
SELECT regress_try($$SELECT * FROM tool_audit.pseudonym_keys$$);    -- key ids yes, key bytes no
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{}')$$);
SELECT regress_try($$UPDATE tool_audit.tool_calls SET success = true$$);
SELECT regress_try($$DELETE FROM tool_audit.tool_calls$$);
SELECT left(regress_try($$TRUNCATE tool_audit.tool_calls$$), 5) AS sqlstate;   -- the preload hook may refuse first
SELECT regress_try($$TRUNCATE tool_audit.sanitize_rules$$);
SELECT regress_try($$SELECT tool_audit.acting_role()$$);
BEGIN;
SELECT tool_audit.rotate_pseudonym_key('admin_key', decode(repeat('ef', 32), 'hex'));
ROLLBACK;
RESET ROLE;

-- REVOKE, the call fails; GRANT, it works again
REVOKE tool_audit_writer FROM regress_writer;
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"conversation_id": "conv_roles"}')$$);
RESET ROLE;
GRANT tool_audit_writer TO regress_writer;
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"conversation_id": "conv_roles"}')$$);
RESET ROLE;

-- the extension's grants, as the catalog has them
SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants
 WHERE table_schema = 'tool_audit' AND table_name IN ('tool_calls', 'admin_events', 'sanitize_rules', 'pseudonym_keys')
   AND grantee LIKE 'tool_audit%' ORDER BY table_name, grantee, privilege_type;
-- (PUBLIC executes nothing but, since 1.5, track_change(): a trigger function,
-- which cannot be called, and only track() may install (the DDL guard); the
-- copy of its trigger a partition of a tracked table gets checks EXECUTE)
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
  FROM pg_proc p WHERE p.pronamespace = 'tool_audit'::regnamespace ORDER BY 1;
-- every SECURITY DEFINER function pins its search_path
SELECT p.proname, p.proconfig FROM pg_proc p
 WHERE p.pronamespace = 'tool_audit'::regnamespace AND p.prosecdef ORDER BY 1;
