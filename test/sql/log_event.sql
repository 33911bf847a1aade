-- tool_audit.log_event(): admin events with seed 001's structure.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT now() AS t0 \gset

SELECT event_type, actor, actor_type, tenant_id, payload, reason, source_ip, metadata, occurred_at >= :'t0' AS now
  FROM tool_audit.log_event('prompt.update', 'admin@acme.test',
         '{"before": {"prompt_hash": "sha256:aaa"}, "after": {"prompt_hash": "sha256:bbb"}}',
         '{"tenant_id": "acme", "reason": "tone fix", "source_ip": "192.0.2.7", "ticket": "OPS-1"}');
SELECT event_type, actor, actor_type, tenant_id, payload
  FROM tool_audit.log_event('crawl.run', 'scheduler', '{"domain": "docs.acme.test", "run_id": "r1", "pages": 120, "success": true, "triggered_by": "schedule"}',
                            '{"actor_type": "service", "tenant_id": "acme"}');
SELECT event_type, payload FROM tool_audit.log_event('policy.update', 'admin@acme.test',
         '{"before": {"threshold": 0.7}, "after": {"threshold": 0.8}, "justification": "fewer false alarms"}', '{"tenant_id": "acme"}');
SELECT event_type, payload FROM tool_audit.log_event('impersonation.start', 'support@vendor.test',
         '{"impersonated": "usr_98765", "started_at": "2025-07-06T14:00:00Z"}', '{"tenant_id": "acme"}');
SELECT event_type, payload FROM tool_audit.log_event('billing.plan_change', 'billing-svc',
         '{"before": {"tier": "pro"}, "after": {"tier": "enterprise"}, "grace_period": false}', '{"actor_type": "service", "tenant_id": "globex"}');
SELECT event_type, tenant_id, payload FROM tool_audit.log_event('killswitch.enable', 'oncall@vendor.test',
         '{"scope": "global", "embed": "disabled"}', '{"reason": "incident INC-7"}');
-- secrets in payloads and reasons are sanitized like tool arguments
SELECT payload, reason FROM tool_audit.log_event('policy.update', 'admin@acme.test',
         '{"after": {"webhook_secret": "s3cr3t", "api_key": "k", "url": "https://x.test"}}',
         '{"reason": "rotated to sk-abcdefghijklmnopqrstuvwx"}');

-- bad input
SELECT count(*) AS before FROM tool_audit.admin_events \gset
SELECT regress_try($$SELECT tool_audit.log_event('Prompt Update', 'a', '{}', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt', 'a', '{}', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.', 'a', '{}', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event(NULL, 'a', '{}', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', NULL, '{}', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', '', '{}', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', 'a', '{}', '{"actor_type": "robot"}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', 'a', '[1]', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', 'a', '{}', '{"reason": {"password": "hunter2"}}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', 'a', '{}', '"ctx"')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', 'a', '{}', '{"source_ip": "nowhere"}')$$);
SELECT regress_try($$INSERT INTO tool_audit.admin_events (event_type, actor) VALUES ('Bad Type', 'a')$$);
-- the extension's own event types cannot be forged
SELECT regress_try($$SELECT tool_audit.log_event('tool_audit.pseudonym_key.rotate', 'alice', '{}', '{}')$$);
SET ROLE regress_writer;
SELECT regress_try($$INSERT INTO tool_audit.admin_events (event_type, actor) VALUES ('tool_audit.sanitize_rule.delete', 'alice')$$);
RESET ROLE;
SELECT count(*) - :before AS stored_by_bad_calls FROM tool_audit.admin_events;

-- plain INSERT: server time, payload defaults to {}
INSERT INTO tool_audit.admin_events (event_type, actor, occurred_at, actor_type) VALUES ('prompt.view', 'auditor', '1999-12-31', NULL)
RETURNING event_type, payload, metadata, actor_type, recorded_by, occurred_at >= :'t0' AS server_time;
