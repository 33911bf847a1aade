-- The default alert rule extension_roles (1.5, issue 12): a membership
-- change of one of the extension's roles (a tool_audit.role.* admin event,
-- written by the ProcessUtility hook as the tables' owner when the library
-- is preloaded: test/t/025_role_events.pl runs the real GRANT) raises a
-- high alert.  Here the owner writes such events the way the hook does,
-- since the schedules run with tool_audit.record_role_changes off.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- earlier files' bursts are closed
SELECT count(tool_audit.acknowledge_alert(alert_id, 'an earlier test file')) >= 0 AS closed
  FROM tool_audit.alerts WHERE acknowledged_at IS NULL;
SELECT coalesce(max(alert_id), 0) AS base FROM tool_audit.alerts \gset

-- on at install
SELECT rule_name, kind, severity, enabled, matches, window_seconds
  FROM tool_audit.alert_rules WHERE rule_name = 'extension_roles';

-- a grant of an extension role, directly and through another role, and a revoke
INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, payload)
VALUES ('tool_audit.role.grant', 'regress_mgr', 'user',
        '{"roles": ["tool_audit_admin"], "grantees": ["regress_mgr"], "granted_by": "regress_mgr", "admin_option": false}'),
       ('tool_audit.role.grant', 'regress_mgr', 'user',
        '{"roles": ["ops"], "grantees": ["eve"], "indirect": {"ops": ["tool_audit_admin"]}, "granted_by": "regress_mgr", "admin_option": false}'),
       ('tool_audit.role.revoke', 'regress_mgr', 'user',
        '{"roles": ["tool_audit_reader"], "grantees": ["bob"], "granted_by": "regress_mgr", "admin_option": false}');
SELECT rule_name, kind, severity, burst_key, count, cardinality(admin_event_ids) AS events
  FROM tool_audit.alerts WHERE alert_id > :base ORDER BY alert_id;

-- an event type that only looks like it fires nothing
SELECT coalesce(max(alert_id), 0) AS base2 FROM tool_audit.alerts \gset
SET ROLE regress_writer;
SELECT (tool_audit.log_event('role.grant', 'adm_1', '{}', '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
-- and a writer cannot write the reserved event type (nor forge the alert)
SELECT regress_try($$SELECT tool_audit.log_event('tool_audit.role.grant', 'adm_1', '{}')$$);
RESET ROLE;
SELECT count(*) AS new_alerts FROM tool_audit.alerts WHERE alert_id > :base2;

-- the rule can be disabled by an admin only, audited (and that raises its own alert)
SET ROLE regress_admin;
SELECT (tool_audit.disable_alert_rule('extension_roles', 'test')) ->> 'admin_event_id' IS NOT NULL AS disabled;
RESET ROLE;
SELECT coalesce(max(alert_id), 0) AS base3 FROM tool_audit.alerts \gset
INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, payload)
VALUES ('tool_audit.role.grant', 'regress_mgr', 'user', '{"roles": ["tool_audit_writer"], "grantees": ["x"]}');
SELECT count(*) AS alerts_while_disabled FROM tool_audit.alerts WHERE alert_id > :base3 AND rule_name = 'extension_roles';
SET ROLE regress_admin;
SELECT (tool_audit.set_alert_rule('extension_roles', enabled => true)) IS NOT NULL AS enabled;
RESET ROLE;
