-- Alerts (1.5): the rules installed on, each rule kind firing and not
-- firing, one alert per burst, nothing from a rolled-back row, rule edits
-- and acknowledgements audited and for admins only, tenant isolation, and
-- how a writer, a bound reader, an admin and a superuser could try to
-- suppress or forge alerts.  The NOTIFY payload and a real LISTEN client:
-- test/t/019_alert_forwarder.pl.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- what earlier files raised is not this file's: their bursts are closed
SELECT count(tool_audit.acknowledge_alert(alert_id, 'an earlier test file')) >= 0 AS closed
  FROM tool_audit.alerts WHERE acknowledged_at IS NULL;
SELECT coalesce(max(alert_id), 0) AS base FROM tool_audit.alerts \gset
SELECT coalesce(max(id), 0) AS ev_base FROM tool_audit.admin_events \gset
CREATE VIEW new_alerts AS
SELECT rule_name, kind, severity, tenant_id, burst_key, count,
       cardinality(tool_call_ids) AS calls, cardinality(admin_event_ids) AS events,
       last_at >= first_at AS ordered, acknowledged_by, acknowledged_note
  FROM tool_audit.alerts WHERE alert_id > :base ORDER BY alert_id;
GRANT SELECT ON new_alerts TO PUBLIC;

-- on at install
SELECT rule_name, kind, severity, enabled, cardinality(matches) AS names, threshold, window_seconds
  FROM tool_audit.alert_rules ORDER BY rule_name;
SELECT rule_name, m AS matches FROM tool_audit.alert_rules, unnest(matches) m ORDER BY 1, 2 COLLATE "C";

-- event types: a high-risk event fires; a second one of the burst grows the
-- same alert; another event type fires nothing
SET ROLE regress_writer;
SELECT (tool_audit.log_event('prompt.update', 'adm_1', '{"prompt": "v2"}', '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
SELECT (tool_audit.log_event('prompt.update', 'adm_1', '{"prompt": "v3"}', '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
SELECT (tool_audit.log_event('prompt.read', 'adm_1', '{}', '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
SELECT (tool_audit.log_event('impersonation.start', 'adm_7', '{"target": "usr_1"}', '{"tenant_id": "globex"}')).id IS NOT NULL AS logged;
RESET ROLE;
SELECT * FROM new_alerts;

-- a rolled-back row raises nothing, and grows nothing
BEGIN;
SET LOCAL ROLE regress_writer;
SELECT (tool_audit.log_event('killswitch.enable', 'adm_1', '{}', '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
SELECT (tool_audit.log_event('prompt.update', 'adm_1', '{}', '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
ROLLBACK;
SELECT * FROM new_alerts;

-- break-the-glass: a plain INSERT of a row flagged break_glass
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success, break_glass, session_metadata)
VALUES ('read_chart', 'acme', 'dr_house', 'pat_1', true, true, '{"break_glass_reason": "ER"}');
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success, break_glass)
VALUES ('read_chart', 'acme', 'dr_house', 'pat_2', true, false);
RESET ROLE;
SELECT * FROM new_alerts WHERE kind = 'break_glass';

-- rule edits: admins only, each a tool_audit.alert.rule event with before
-- and after, which itself fires the audit_changes rule
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.set_alert_rule('refunds', 'tool_name', 'high', '{refund_*}')$$);
SELECT regress_try($$SELECT tool_audit.disable_alert_rule('break_glass')$$);
SELECT regress_try($$SELECT * FROM tool_audit.alert_rules$$);
RESET ROLE;
SET ROLE regress_reader;
SELECT regress_try($$SELECT tool_audit.set_alert_rule('refunds', 'tool_name', 'high', '{refund_*}')$$);
SELECT regress_try($$SELECT tool_audit.disable_alert_rule('break_glass')$$);
SELECT regress_try($$SELECT tool_audit.acknowledge_alert(1, 'x')$$);
RESET ROLE;
SET ROLE regress_admin;
SELECT jsonb_pretty(tool_audit.set_alert_rule('refunds', 'tool_name', 'high', '{refund_*}',
                                              reason => 'watch refunds') - 'admin_event_id'
                    #- '{after,changed_at}');
SELECT (tool_audit.set_alert_rule('pay_failures', 'failure', 'low', '{pay_*}', tenant_id => 'acme'))->'after'->>'kind' AS kind;
SELECT (tool_audit.set_alert_rule('tool_failures', threshold => 3, enabled => true))->'after'->>'threshold' AS threshold;
SELECT (tool_audit.set_alert_rule('distinct_subjects_hourly', threshold => 3, enabled => true))->'after'->>'enabled' AS enabled;
SELECT (tool_audit.set_alert_rule('always_open', 'business_hours', 'low', tenant_id => 'acme',
        params => '{"start": "00:00", "end": "24:00", "days": [1,2,3,4,5,6,7], "time_zone": "UTC"}'))->'after'->>'kind' AS kind;
SELECT (tool_audit.set_alert_rule('never_open', 'business_hours', 'medium', tenant_id => 'globex',
        params => '{"start": "00:00", "end": "00:00", "time_zone": "Europe/Paris"}'))->'after'->>'kind' AS kind;
-- bad arguments are refused naming the argument, never quoting it
SELECT regress_try($$SELECT tool_audit.set_alert_rule('sk-ant-FAKE-rule', 'tool_name', 'high')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'sk-ant-FAKE-kind', 'high')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'tool_name', 'urgent')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'event_type', 'high')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'same_subject', 'high')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'business_hours', 'high', tenant_id => 'acme', params => '{"start": "9"}')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'business_hours', 'high', params => '{"start": "09:00", "end": "17:00"}')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('refunds', 'failure')$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'tool_name', 'high', window_seconds => 0)$$);
SELECT regress_try($$SELECT tool_audit.set_alert_rule('x1', 'same_subject', 'high', threshold => 10001)$$);
-- a rule made by hand (a superuser) with bad hours breaks no insert
RESET ROLE;
UPDATE tool_audit.alert_rules SET params = '{"start": "9", "end": "x", "days": ["mon", 9]}' WHERE rule_name = 'never_open';
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('get_weather', 'nobody', true);
RESET ROLE;
UPDATE tool_audit.alert_rules SET params = '{"start": "00:00", "end": "00:00", "time_zone": "Europe/Paris"}' WHERE rule_name = 'never_open';
SET ROLE regress_admin;
SELECT regress_try($$SELECT tool_audit.disable_alert_rule('no_such_rule')$$);
RESET ROLE;
SELECT event_type, actor, reason, payload->'before' IS NULL AS created,
       payload->'after'->>'rule_name' AS rule_name, payload->'after'->>'enabled' AS enabled
  FROM tool_audit.admin_events WHERE id > :ev_base AND event_type LIKE 'tool_audit.alert.%' ORDER BY id;
SELECT rule_name, count, events FROM new_alerts WHERE rule_name = 'audit_changes';

-- tool names: refund_* fires, get_weather does not
SET ROLE regress_writer;
SELECT (tool_audit.log_call('refund_order', '{}', '{"ok": true}', 1, '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
SELECT (tool_audit.log_call('get_weather', '{}', '{"ok": true}', 1, '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
-- failures: of pay_* for tenant acme only
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('pay_invoice', 'acme', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('pay_invoice', 'globex', false);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('pay_invoice', 'acme', false);
RESET ROLE;
SELECT * FROM new_alerts WHERE rule_name IN ('refunds', 'pay_failures');

-- same subject: the 10th access of one user to one subject within the hour
-- fires, the 11th grows the same alert; another subject fires nothing
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success)
SELECT 'read_chart', 'acme', 'usr_same', 'pat_9', true FROM generate_series(1, 1);
\set i 1
SELECT 'INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES (''read_chart'', ''acme'', ''usr_same'', ''pat_9'', true)'
  FROM generate_series(2, 9) \gexec
RESET ROLE;
SELECT count(*) AS same_subject_alerts FROM new_alerts WHERE rule_name = 'same_subject_hourly';
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES ('read_chart', 'acme', 'usr_same', 'pat_9', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES ('read_chart', 'acme', 'usr_same', 'pat_9', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES ('read_chart', 'acme', 'usr_same', 'pat_8', true);
RESET ROLE;
SELECT * FROM new_alerts WHERE rule_name = 'same_subject_hourly';
SELECT detail FROM tool_audit.alerts WHERE alert_id > :base AND rule_name = 'same_subject_hourly';

-- failures of one tool: more than 3 within 10 minutes
SET ROLE regress_writer;
SELECT 'INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES (''flaky_api'', ''acme'', false)'
  FROM generate_series(1, 3) \gexec
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('flaky_api', 'acme', true);
RESET ROLE;
SELECT count(*) AS tool_failure_alerts FROM new_alerts WHERE rule_name = 'tool_failures';
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('flaky_api', 'acme', false);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('flaky_api', 'acme', false);
RESET ROLE;
SELECT * FROM new_alerts WHERE rule_name = 'tool_failures';

-- distinct subjects: more than 3 for one user within the hour
SET ROLE regress_writer;
SELECT format('INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES (''read_chart'', ''acme'', ''usr_wide'', %L, true)', 'pat_w' || i)
  FROM generate_series(1, 3) i \gexec
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES ('read_chart', 'acme', 'usr_wide', 'pat_w1', true);
RESET ROLE;
SELECT count(*) AS distinct_alerts FROM new_alerts WHERE rule_name = 'distinct_subjects_hourly';
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES ('read_chart', 'acme', 'usr_wide', 'pat_w4', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success) VALUES ('read_chart', 'acme', 'usr_wide', 'pat_w5', true);
RESET ROLE;
SELECT * FROM new_alerts WHERE rule_name = 'distinct_subjects_hourly';

-- business hours: acme is always open, globex never
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('get_weather', 'acme', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('get_weather', 'globex', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('get_weather', 'globex', true);
RESET ROLE;
SELECT * FROM new_alerts WHERE kind = 'business_hours';

-- a disabled rule fires nothing (audited: audit_changes grows)
SET ROLE regress_admin;
SELECT (tool_audit.disable_alert_rule('refunds', 'noisy'))->'after'->>'enabled' AS enabled;
RESET ROLE;
SET ROLE regress_writer;
SELECT (tool_audit.log_call('refund_order', '{}', '{"ok": true}', 1, '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
RESET ROLE;
SELECT rule_name, count FROM new_alerts WHERE rule_name IN ('refunds', 'audit_changes');

-- acknowledging: admins only, once, audited; the next row starts a new alert
SELECT alert_id AS prompt_alert FROM tool_audit.alerts
 WHERE alert_id > :base AND rule_name = 'high_risk_events' AND burst_key = 'prompt.update' \gset
SET ROLE regress_writer;
SELECT regress_try(format('SELECT tool_audit.acknowledge_alert(%s, %L)', :prompt_alert, 'x'));
RESET ROLE;
SET ROLE regress_admin;
SELECT acknowledged_by, acknowledged_note, acknowledged_at IS NOT NULL AS at
  FROM tool_audit.acknowledge_alert(:prompt_alert, 'expected: release 2.3');
SELECT regress_try(format('SELECT tool_audit.acknowledge_alert(%s, %L)', :prompt_alert, 'again'));
SELECT regress_try('SELECT tool_audit.acknowledge_alert(-1, ''x'')');
RESET ROLE;
SELECT event_type, actor, tenant_id, reason, payload->'before'->>'rule_name' AS rule_name,
       (payload->'before'->>'count')::int AS count, payload->'after'->>'acknowledged_by' AS acknowledged_by
  FROM tool_audit.admin_events WHERE id > :ev_base AND event_type = 'tool_audit.alert.acknowledge';
SET ROLE regress_writer;
SELECT (tool_audit.log_event('prompt.update', 'adm_1', '{}', '{"tenant_id": "acme"}')).id IS NOT NULL AS logged;
RESET ROLE;
SELECT rule_name, burst_key, count, acknowledged_by FROM new_alerts WHERE burst_key = 'prompt.update';

-- tenant isolation: a reader bound to acme sees acme's alerts only; an
-- unbound reader and admins see all
SELECT tool_audit.bind_tenant('regress_reader_acme', 'acme');
SET ROLE regress_reader_acme;
SELECT DISTINCT tenant_id FROM tool_audit.alerts WHERE alert_id > :base ORDER BY 1;
SET tool_audit.tenant = 'globex';
SELECT count(*) AS globex_seen FROM tool_audit.alerts WHERE alert_id > :base;
RESET tool_audit.tenant;
RESET ROLE;
SET ROLE regress_reader;
SELECT DISTINCT tenant_id FROM tool_audit.alerts WHERE alert_id > :base ORDER BY 1;
RESET ROLE;
SET ROLE regress_admin;
SELECT DISTINCT tenant_id FROM tool_audit.alerts WHERE alert_id > :base ORDER BY 1;
RESET ROLE;

-- suppressing or forging alerts.  A writer: no access to alerts or rules,
-- no raise_alert(), no reserved event type
SET ROLE regress_writer;
SELECT regress_try('SELECT count(*) FROM tool_audit.alerts');
SELECT regress_try('DELETE FROM tool_audit.alerts');
SELECT regress_try('UPDATE tool_audit.alerts SET count = 0');
SELECT regress_try($$INSERT INTO tool_audit.alerts (rule_name, kind, severity, first_at, last_at) VALUES ('x', 'x', 'low', now(), now())$$);
SELECT regress_try($$UPDATE tool_audit.alert_rules SET enabled = false$$);
SELECT regress_try($$SELECT tool_audit.raise_alert('break_glass')$$);
SELECT regress_try($$INSERT INTO tool_audit.admin_events (event_type, actor) VALUES ('tool_audit.alert.acknowledge', 'me')$$);
RESET ROLE;
-- a bound reader: reads, changes nothing
SET ROLE regress_reader_acme;
SELECT regress_try('DELETE FROM tool_audit.alerts');
SELECT regress_try('UPDATE tool_audit.alerts SET acknowledged_at = now()');
SELECT regress_try($$SELECT tool_audit.raise_alert('break_glass', 'acme')$$);
RESET ROLE;
-- an admin: changes rules (audited, and alerting), acknowledges (audited),
-- but cannot edit, delete or raise alerts, nor edit rules directly
SET ROLE regress_admin;
SELECT regress_try('DELETE FROM tool_audit.alerts');
SELECT regress_try('UPDATE tool_audit.alerts SET count = 0');
SELECT regress_try($$UPDATE tool_audit.alert_rules SET enabled = false$$);
SELECT regress_try($$DELETE FROM tool_audit.alert_rules$$);
SELECT regress_try($$SELECT tool_audit.raise_alert('break_glass')$$);
SELECT regress_try($$SELECT tool_audit.alert_event('rule', NULL, NULL, NULL)$$);
RESET ROLE;
-- the owner (a superuser here): the guard trigger still refuses deleting,
-- truncating, shrinking or re-acknowledging an alert
SELECT regress_try('DELETE FROM tool_audit.alerts');
SELECT regress_try('TRUNCATE tool_audit.alerts');
SELECT regress_try(format('UPDATE tool_audit.alerts SET count = 0 WHERE alert_id = %s', :prompt_alert));
SELECT regress_try(format('UPDATE tool_audit.alerts SET acknowledged_note = ''nothing'' WHERE alert_id = %s', :prompt_alert));
SELECT regress_try(format('UPDATE tool_audit.alerts SET tenant_id = ''other'' WHERE alert_id = %s', :prompt_alert));
SELECT regress_try(format('UPDATE tool_audit.alerts SET admin_event_ids = ''{}'' WHERE alert_id = %s', :prompt_alert));

-- the checks: verify_digest() finding problems raises audit_integrity
-- (one alert for a burst of runs); run_alert_checks() counts calls per
-- tenant and day
SELECT count(*) > 0 AS problems
  FROM tool_audit.verify_digest(jsonb_set(tool_audit.digest(), '{heads,0,hash}', to_jsonb(repeat('0', 64))));
SELECT count(*) > 0 AS problems
  FROM tool_audit.verify_digest(jsonb_set(tool_audit.digest(), '{heads,0,hash}', to_jsonb(repeat('0', 64))));
SELECT jsonb_array_length(tool_audit.run_alert_checks()) AS raised;
SELECT rule_name, kind, severity, tenant_id, burst_key, count FROM new_alerts WHERE kind = 'check';
-- in a read-only transaction verify() raises nothing
-- (1.5: reports and checks record their reads, so a read-only transaction
-- refuses verify_digest() before it could raise anything; the digest is taken
-- outside it)
SELECT jsonb_set(tool_audit.digest(), '{heads,0,hash}', to_jsonb(repeat('0', 64))) AS bad_digest \gset
BEGIN READ ONLY;
SELECT regress_try(format('SELECT count(*) FROM tool_audit.verify_digest(%L::jsonb)', :'bad_digest'));
COMMIT;
SELECT count FROM new_alerts WHERE kind = 'check';
-- a check reports its problems even when the alert cannot be raised (here:
-- no alert id left): a warning, not an error
SELECT (tool_audit.acknowledge_alert(alert_id, 'seen')).acknowledged_by IS NOT NULL AS acknowledged FROM tool_audit.alerts
 WHERE alert_id > :base AND rule_name = 'audit_integrity';
SELECT last_value AS alert_seq FROM tool_audit.alerts_alert_id_seq \gset
SELECT setval('tool_audit.alerts_alert_id_seq', 9223372036854775807) > 0 AS exhausted;
SELECT count(*) > 0 AS problems
  FROM tool_audit.verify_digest(jsonb_set(tool_audit.digest(), '{heads,0,hash}', to_jsonb(repeat('0', 64))));
SELECT setval('tool_audit.alerts_alert_id_seq', :alert_seq) > 0 AS restored;
SELECT tenant_id, calls > 0 AS counted FROM tool_audit.tenant_activity
 WHERE tenant_id IN ('acme', 'globex') AND day = (now() AT TIME ZONE 'UTC')::date ORDER BY 1;
-- a tenant that logged on 5 of the last 7 days and not for 6 hours is silent
INSERT INTO tool_audit.tenant_activity (tenant_id, day, calls, last_at)
SELECT 'quiet_co', (now() AT TIME ZONE 'UTC')::date - d, 100, now() - d * interval '1 day'
  FROM generate_series(1, 5) d;
INSERT INTO tool_audit.tenant_activity (tenant_id, day, calls, last_at)
SELECT 'rare_co', (now() AT TIME ZONE 'UTC')::date - d, 1, now() - d * interval '1 day'
  FROM generate_series(1, 4) d;
SELECT r->>'rule' AS rule, r->>'tenant_id' AS tenant_id
  FROM jsonb_array_elements(tool_audit.run_alert_checks()) r ORDER BY 1, 2;
SELECT rule_name, tenant_id, count FROM new_alerts WHERE rule_name = 'tenant_silent';
-- run_alert_checks() and its schedule are for admins
SET ROLE regress_writer;
SELECT regress_try('SELECT tool_audit.run_alert_checks()');
SELECT regress_try('SELECT tool_audit.schedule_alert_checks()');
RESET ROLE;
SET ROLE regress_admin;
SELECT regress_try('SELECT tool_audit.schedule_alert_checks(''sk-ant-FAKE-sched'')');
SELECT regress_try('SELECT tool_audit.schedule_alert_checks()');
SELECT regress_try('SELECT tool_audit.unschedule_alert_checks()');
RESET ROLE;

-- the trail is still whole
SELECT count(*) AS problems FROM tool_audit.verify();
DROP VIEW new_alerts;
