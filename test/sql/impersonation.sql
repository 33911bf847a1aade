-- Impersonation (1.5): an application admin acting as one of its users.
-- start_impersonation() and end_impersonation() record it; while it is open,
-- the rows of that user in that tenant carry impersonated_by; it ends by
-- itself at its expiry.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
\set VERBOSITY terse

-- who may: the application (writer) and admins; readers, the verifier and
-- others may not
SET ROLE regress_reader;
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', 'usr_1', 'ticket 1', 30, 'imp_t1')$$);
RESET ROLE;
SET ROLE regress_nobody;
SELECT regress_try($$SELECT tool_audit.end_impersonation('adm_7', 'usr_1', 'imp_t1')$$);
RESET ROLE;

-- arguments: each error names the argument, never its value
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.start_impersonation(NULL, 'usr_1', 'ticket 1', 30, 'imp_t1')$$);
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', '', 'ticket 1', 30, 'imp_t1')$$);
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', 'usr_1', ' ', 30, 'imp_t1')$$);
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', 'usr_1', 'ticket 1', 0, 'imp_t1')$$);
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', 'usr_1', 'ticket 1', 1441, 'imp_t1')$$);
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', 'adm_7', 'ticket 1', 30, 'imp_t1')$$);

-- start: an impersonation.start event, the admin as actor, the reason kept
SELECT tool_audit.start_impersonation('adm_7', 'usr_1', 'ticket 4711: refund stuck', 30, 'imp_t1') AS imp \gset
RESET ROLE;
SELECT event_type, actor, tenant_id, reason, payload - 'impersonation_id' AS payload,
       (payload->>'impersonation_id')::bigint = :imp AS names_it, recorded_by, impersonated_by
  FROM tool_audit.admin_events WHERE event_type LIKE 'impersonation.%' AND tenant_id LIKE 'imp\_%' ORDER BY id;
SELECT tenant_id, admin_id, target_user, reason, expires_at - started_at AS max_duration,
       started_by, ended_at IS NULL AS open
  FROM tool_audit.impersonations WHERE impersonation_id = :imp;
-- one open impersonation of a user per tenant
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_8', 'usr_1', 'ticket 2', 30, 'imp_t1')$$);

-- while open: the user's calls and events in that tenant carry both
-- identities; the same user id in another tenant, or without one, does not
SELECT (tool_audit.log_call('refund_order', '{"order_id": 12}', '{"status": "refunded"}', 12,
       '{"tenant_id": "imp_t1", "user_id": "usr_1", "user_role": "customer", "model": "gpt-4.1"}')).id IS NOT NULL AS logged;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, user_role, model, success)
VALUES ('imp_get_order', 'imp_t1', 'usr_1', 'customer', 'gpt-4.1', true),
       ('imp_get_order', 'imp_t2', 'usr_1', 'customer', 'gpt-4.1', true),
       ('imp_get_order', NULL, 'usr_1', 'customer', 'gpt-4.1', true),
       ('imp_get_order', 'imp_t1', 'usr_2', 'customer', 'gpt-4.1', true);
SELECT (tool_audit.log_event('profile.update', 'usr_1', '{"field": "address_line"}', '{"tenant_id": "imp_t1"}')).id IS NOT NULL AS logged;
SELECT (tool_audit.log_event('profile.update', 'usr_1', '{"field": "address_line"}', '{"tenant_id": "imp_t2"}')).id IS NOT NULL AS logged;
-- a caller cannot bring impersonated_by: it would blame or hide an admin
-- (log_call() has no such context field: the key goes to session_metadata)
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, user_id, success, impersonated_by) VALUES ('imp_x', 'usr_9', true, 'adm_1')$$);
SELECT regress_try($$INSERT INTO tool_audit.admin_events (event_type, actor, impersonated_by) VALUES ('a.b', 'usr_9', 'adm_1')$$);
SELECT regress_try($$SELECT tool_audit.log_call('imp_x', '{}', '{}', 1, '{"user_id": "usr_9", "impersonated_by": "adm_1"}')$$);
RESET ROLE;
SELECT tool_name, tenant_id, user_id, impersonated_by FROM tool_audit.tool_calls
 WHERE tool_name IN ('refund_order', 'imp_get_order', 'imp_x') ORDER BY id;
SELECT event_type, actor, tenant_id, impersonated_by FROM tool_audit.admin_events
 WHERE event_type = 'profile.update' AND tenant_id LIKE 'imp\_%' ORDER BY id;
-- the impersonated row's hash covers impersonated_by
SELECT count(*) AS problems FROM tool_audit.verify();

-- the attribution chain and the access report show it; other rows read as before
SELECT tool_audit.attribution(id) FROM tool_audit.tool_calls
 WHERE user_id = 'usr_1' AND tenant_id IN ('imp_t1', 'imp_t2') ORDER BY id;
-- (recorded by the application that started the impersonation)
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success)
VALUES ('get_patient_record', 'imp_t1', 'usr_1', 'imp_subject', true);
RESET ROLE;
SELECT a - 'timestamp' - 'call_id' AS access
  FROM jsonb_array_elements(tool_audit.access_report('imp_subject', '-infinity', 'infinity')->'accesses') a;

-- another backend sees it at once after commit (the cache is dropped at a change)
\c
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success)
VALUES ('after_reconnect', 'imp_t1', 'usr_1', true);
-- end: by the admin who started it; another admin's end finds nothing
SELECT tool_audit.end_impersonation('adm_8', 'usr_1', 'imp_t1') AS other_admin;
SELECT tool_audit.end_impersonation('adm_7', 'usr_1', 'imp_t1') = :imp AS ended;
SELECT tool_audit.end_impersonation('adm_7', 'usr_1', 'imp_t1') AS again;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success)
VALUES ('after_end', 'imp_t1', 'usr_1', true);
RESET ROLE;
SELECT tool_name, impersonated_by FROM tool_audit.tool_calls
 WHERE tool_name IN ('after_reconnect', 'after_end') ORDER BY id;
SELECT event_type, actor, tenant_id, payload - 'impersonation_id' - 'started_at' AS payload
  FROM tool_audit.admin_events WHERE event_type LIKE 'impersonation.%' AND tenant_id LIKE 'imp\_%' ORDER BY id;
SELECT ended_by, ended_at > started_at AS after_start, end_event_id IS NOT NULL AS has_event
  FROM tool_audit.impersonations WHERE impersonation_id = :imp;

-- expiry: started 10 minutes ago (the test clock) for 5 minutes; a row now is
-- past it and not stamped, a row born 8 minutes ago is within it (in a tenant
-- of its own: rows born old after today's rows of a lane go back in time)
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET tool_audit.test_database = on', current_database()); END $$;
\c
SET tool_audit.test_clock_offset = '10 minutes';
SELECT tool_audit.start_impersonation('adm_7', 'usr_3', 'ticket 9', 5, 'imp_t_clock') AS imp3 \gset
SET tool_audit.test_clock_offset = '8 minutes';
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success) VALUES ('within', 'imp_t_clock', 'usr_3', true);
RESET tool_audit.test_clock_offset;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success) VALUES ('expired', 'imp_t_clock', 'usr_3', true);
SELECT tool_name, impersonated_by FROM tool_audit.tool_calls WHERE user_id = 'usr_3' ORDER BY id;
-- the expiry becomes visible in the trail: an impersonation.expire event
-- (by the next start or end, or close_expired_impersonations() from a job)
SELECT tool_audit.close_expired_impersonations() AS closed;
SELECT event_type, actor, payload->>'target_user' AS target,
       (payload->>'expired_at')::timestamptz = i.expires_at AS at_expiry
  FROM tool_audit.admin_events e JOIN tool_audit.impersonations i ON i.end_event_id = e.id
 WHERE i.impersonation_id = :imp3;
SELECT ended_by, ended_at = expires_at AS at_expiry FROM tool_audit.impersonations WHERE impersonation_id = :imp3;
SELECT tool_audit.close_expired_impersonations() AS closed_again;
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET tool_audit.test_database', current_database()); END $$;

-- tenant scoping: a caller bound to a tenant impersonates in it only
CREATE ROLE regress_imp_app IN ROLE tool_audit_writer;
SELECT tool_audit.bind_tenant('regress_imp_app', 'imp_t2');
SET ROLE regress_imp_app;
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', 'usr_4', 'ticket 5', 30, 'imp_t1')$$);
SELECT regress_try($$SELECT tool_audit.start_impersonation('adm_7', 'usr_4', 'ticket 5', 30)$$);
SELECT tool_audit.start_impersonation('adm_7', 'usr_4', 'ticket 5', 30, 'imp_t2') IS NOT NULL AS started;
SELECT regress_try($$SELECT tool_audit.end_impersonation('adm_7', 'usr_4', 'imp_t1')$$);
SELECT tool_audit.end_impersonation('adm_7', 'usr_4', 'imp_t2') IS NOT NULL AS ended;
RESET ROLE;
SELECT tool_audit.unbind_tenant('regress_imp_app', 'imp_t2');
DROP ROLE regress_imp_app;

-- a rolled-back start leaves nothing open, in this backend either
BEGIN;
SELECT tool_audit.start_impersonation('adm_7', 'usr_5', 'ticket 6', 30, 'imp_t1') IS NOT NULL AS started;
ROLLBACK;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success) VALUES ('after_rollback', 'imp_t1', 'usr_5', true);
SELECT impersonated_by FROM tool_audit.tool_calls WHERE tool_name = 'after_rollback';
SELECT count(*) AS open FROM tool_audit.impersonations WHERE ended_at IS NULL;

-- two applications (writer roles): an impersonation is that of the role
-- that started it (started_by).  The other's rows for a user of the same id
-- are not stamped, it cannot end it (none of its own is open) and may start
-- its own; an admin may end any; ended_by is the role that ended it
CREATE ROLE regress_imp_app_b IN ROLE tool_audit_writer;
SET ROLE regress_writer;
SELECT tool_audit.start_impersonation('adm_7', 'usr_6', 'ticket 10', 30, 'imp_t1') AS imp6 \gset
RESET ROLE;
SET ROLE regress_imp_app_b;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success) VALUES ('b_call', 'imp_t1', 'usr_6', true);
SELECT (tool_audit.log_event('profile.update', 'usr_6', '{}', '{"tenant_id": "imp_t1"}')).id IS NOT NULL AS logged;
SELECT tool_audit.end_impersonation('adm_7', 'usr_6', 'imp_t1') AS b_ends_a;
SELECT tool_audit.start_impersonation('adm_b', 'usr_6', 'ticket b1', 30, 'imp_t1') AS imp6b \gset
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success) VALUES ('b_call_impersonated', 'imp_t1', 'usr_6', true);
SELECT tool_audit.end_impersonation('adm_b', 'usr_6', 'imp_t1') = :imp6b AS b_ends_own;
RESET ROLE;
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success) VALUES ('a_call', 'imp_t1', 'usr_6', true);
RESET ROLE;
SET ROLE regress_admin;
SELECT tool_audit.end_impersonation('adm_7', 'usr_6', 'imp_t1') = :imp6 AS admin_ends_a;
RESET ROLE;
SELECT tool_name, recorded_by, impersonated_by FROM tool_audit.tool_calls WHERE user_id = 'usr_6' ORDER BY id;
SELECT event_type, actor, recorded_by, impersonated_by FROM tool_audit.admin_events
 WHERE tenant_id = 'imp_t1' AND (actor = 'usr_6' OR payload->>'target_user' = 'usr_6') ORDER BY id;
SELECT impersonation_id = :imp6 AS is_a, admin_id, started_by, ended_by
  FROM tool_audit.impersonations WHERE target_user = 'usr_6' ORDER BY impersonation_id;
DROP ROLE regress_imp_app_b;

-- the trail is intact
SELECT count(*) AS problems FROM tool_audit.verify();
