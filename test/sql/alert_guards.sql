-- Guards on switching the audit function off (1.5): disabling or weakening
-- an alert rule raises a high alert, even when the rule is audit_changes
-- itself; with tool_audit.require_dual_approval on, untrack(),
-- disable_alert_rule() and set_alert_rule(enabled => false) need an
-- approved request, used once.  doc/alerts.md, doc/governance.md.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT current_database() AS regress_db, current_user AS su \gset
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_guard_alice') THEN
        CREATE ROLE regress_guard_alice LOGIN;
        GRANT tool_audit_admin TO regress_guard_alice;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_guard_bob') THEN
        CREATE ROLE regress_guard_bob LOGIN;
        GRANT tool_audit_admin TO regress_guard_bob;
    END IF;
END $$;
RESET client_min_messages;
SELECT coalesce(max(alert_id), 0) AS a0 FROM tool_audit.alerts \gset

-- ---- disabling or weakening a rule raises a high alert ----
SET ROLE regress_admin;
-- audit_changes disabled: it cannot report itself, the alert is raised anyway
SELECT tool_audit.disable_alert_rule('audit_changes', 'too noisy') ->> 'admin_event_id' IS NOT NULL AS recorded;
SELECT rule_name, severity, burst_key, detail, cardinality(admin_event_ids) AS events
  FROM tool_audit.alerts WHERE alert_id > :a0 ORDER BY alert_id;
-- with audit_changes off, weakening another rule: a lower severity, a
-- higher threshold, another rule disabled through set_alert_rule()
SELECT coalesce(max(alert_id), 0) AS a1 FROM tool_audit.alerts \gset
SELECT (tool_audit.set_alert_rule('break_glass', severity => 'low')) IS NOT NULL AS changed;
SELECT (tool_audit.set_alert_rule('same_subject_hourly', threshold => 1000)) IS NOT NULL AS changed;
SELECT (tool_audit.set_alert_rule('high_risk_events', enabled => false)) IS NOT NULL AS changed;
SELECT rule_name, severity, burst_key, detail FROM tool_audit.alerts WHERE alert_id > :a1 ORDER BY alert_id;
-- strengthening or a no-op raises nothing; disabling a disabled rule neither
SELECT coalesce(max(alert_id), 0) AS a2 FROM tool_audit.alerts \gset
SELECT (tool_audit.set_alert_rule('break_glass', severity => 'critical')) IS NOT NULL AS changed;
SELECT (tool_audit.set_alert_rule('same_subject_hourly', threshold => 5)) IS NOT NULL AS changed;
SELECT (tool_audit.disable_alert_rule('high_risk_events')) IS NOT NULL AS changed;
SELECT count(*) AS new_alerts FROM tool_audit.alerts WHERE alert_id > :a2;
-- back on: with audit_changes on, disabling a rule is in one alert (the
-- open burst of audit_changes grows), not two
SELECT (tool_audit.set_alert_rule(r, enabled => true)) IS NOT NULL AS changed
  FROM unnest(ARRAY['audit_changes', 'high_risk_events']) r;
SELECT (tool_audit.set_alert_rule('break_glass', severity => 'high')) IS NOT NULL AS changed;
SELECT (tool_audit.set_alert_rule('same_subject_hourly', threshold => 10)) IS NOT NULL AS changed;
SELECT coalesce(max(alert_id), 0) AS a3 FROM tool_audit.alerts \gset
SELECT (tool_audit.disable_alert_rule('tenant_silent')) ->> 'admin_event_id' AS ev \gset
SELECT count(*) AS alerts_for_event, min(severity) AS severity, count(*) FILTER (WHERE alert_id > :a3) AS new_alerts
  FROM tool_audit.alerts WHERE admin_event_ids @> ARRAY[:ev::bigint];
SELECT (tool_audit.set_alert_rule('tenant_silent', enabled => true)) IS NOT NULL AS changed;
-- a rolled-back disabling raises nothing
SELECT coalesce(max(alert_id), 0) AS a4 FROM tool_audit.alerts \gset
BEGIN;
SELECT (tool_audit.disable_alert_rule('audit_changes')) IS NOT NULL AS changed;
ROLLBACK;
SELECT count(*) AS new_alerts FROM tool_audit.alerts WHERE alert_id > :a4;
SELECT enabled FROM tool_audit.alert_rules WHERE rule_name = 'audit_changes';
RESET ROLE;

-- ---- dual approval: untrack(), disable_alert_rule(), set_alert_rule(enabled => false) ----
CREATE TABLE public.guarded (id integer PRIMARY KEY, v text);
SET ROLE regress_admin;
SELECT (tool_audit.track('public.guarded'))->'table' AS tracked;
RESET ROLE;
ALTER DATABASE :"regress_db" SET tool_audit.require_dual_approval = on;
\c - regress_guard_alice
SELECT tool_audit.dual_approval_required();
-- refused without an approved request
SELECT regress_try($$SELECT tool_audit.untrack('public.guarded')$$);
SELECT regress_try($$SELECT tool_audit.disable_alert_rule('audit_changes', 'r')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('break_glass', enabled => false)$$);
-- enabling, or other changes, need none
SELECT (tool_audit.set_alert_rule('tool_failures', enabled => true)) IS NOT NULL AS changed;
SELECT status FROM tool_audit.tracking_status() WHERE table_name = 'public.guarded';
SELECT rule_name, enabled FROM tool_audit.alert_rules
 WHERE rule_name IN ('audit_changes', 'break_glass', 'tool_failures') ORDER BY 1;
-- the payloads are checked
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.untrack', '{"table": 1}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.alert_rule.disable', '{}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.alert_checks.unschedule', '{"x": 1}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.retention.unschedule', '{"x": 1}', 'r')$$);
SELECT tool_audit.request_approval('tool_audit.untrack', '{"table": "public.guarded"}', 'table retired') AS req_untrack \gset
SELECT tool_audit.request_approval('tool_audit.alert_rule.disable', '{"rule_name": "tool_failures"}', 'noisy') AS req_dis \gset
SELECT tool_audit.request_approval('tool_audit.alert_rule.disable', '{"rule_name": "break_glass"}', 'drill') AS req_set \gset
-- not before it is approved, nor by its requester
SELECT regress_try($$SELECT tool_audit.untrack('public.guarded')$$);
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req_untrack, 'self'));
\c - regress_guard_bob
SELECT tool_audit.approve(r, 'ok') FROM unnest(ARRAY[:req_untrack, :req_dis, :req_set]) r;
-- bob holds no request: he cannot use alice's
SELECT regress_try($$SELECT tool_audit.untrack('public.guarded')$$);
\c - regress_guard_alice
-- an approval for one rule does not disable another
SELECT regress_try($$SELECT tool_audit.disable_alert_rule('audit_changes', 'r')$$);
-- each runs once
SELECT tool_audit.untrack('public.guarded');
SELECT (tool_audit.disable_alert_rule('tool_failures', 'noisy')) IS NOT NULL AS disabled;
SELECT (tool_audit.set_alert_rule('break_glass', enabled => false, reason => 'drill')) IS NOT NULL AS disabled;
SELECT state, consumed_by FROM tool_audit.approval_requests
 WHERE request_id IN (:req_untrack, :req_dis, :req_set) ORDER BY request_id;
-- a second use is refused
SELECT (tool_audit.set_alert_rule(r, enabled => true)) IS NOT NULL AS changed
  FROM unnest(ARRAY['tool_failures', 'break_glass']) r;
SELECT (tool_audit.track('public.guarded'))->'table' AS tracked;
SELECT regress_try($$SELECT tool_audit.untrack('public.guarded')$$);
SELECT regress_try($$SELECT tool_audit.disable_alert_rule('tool_failures', 'r')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('break_glass', enabled => false)$$);
SELECT rule_name, enabled FROM tool_audit.alert_rules
 WHERE rule_name IN ('audit_changes', 'break_glass', 'tool_failures') ORDER BY 1;

-- ---- the setting off: as before ----
\c - :su
ALTER DATABASE :"regress_db" RESET tool_audit.require_dual_approval;
\c - regress_guard_alice
SELECT tool_audit.untrack('public.guarded');
SELECT (tool_audit.set_alert_rule('tool_failures', enabled => false)) IS NOT NULL AS disabled;
\c - :su
DROP TABLE public.guarded;
SELECT event_type, payload->>'action' AS action, payload->'before'->>'state' AS before,
       payload->'after'->>'state' AS after
  FROM tool_audit.admin_events
 WHERE event_type LIKE 'tool_audit.approval.%' AND payload->>'action' IN
       ('tool_audit.untrack', 'tool_audit.alert_rule.disable') ORDER BY id;
SELECT count(*) AS problems FROM tool_audit.verify();
