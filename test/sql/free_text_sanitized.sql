-- Free text given to the 1.5 functions is stored as the audit tables store
-- free text (tool_audit.sanitize_text()): a secret pasted in a note or a
-- reason is never kept in clear, neither in the function's own table nor in
-- its admin event.  acknowledge_alert()'s note was stored as given.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT coalesce(max(alert_id), 0) AS base FROM tool_audit.alerts \gset
SELECT coalesce(max(id), 0) AS ev_base FROM tool_audit.admin_events \gset
\set secret 'rotated it: sk-proj-Zq3vT9xLm2Wp8Rk4Hn6Jd1Fs5Gb7Yc0Ae and password=hunter2-secret'
SELECT tool_audit.sanitize_text(:'secret') AS sanitized;

-- acknowledge_alert(id, note)
SET ROLE regress_writer;
SELECT (tool_audit.log_event('prompt.update', 'adm_ft', '{"prompt": "v9"}', '{"tenant_id": "ft"}')).id IS NOT NULL AS logged;
RESET ROLE;
SELECT alert_id AS ft_alert FROM tool_audit.alerts
 WHERE alert_id > :base AND tenant_id = 'ft' AND acknowledged_at IS NULL \gset
SET ROLE regress_admin;
SELECT acknowledged_note FROM tool_audit.acknowledge_alert(:ft_alert, :'secret');
RESET ROLE;
SELECT acknowledged_note, acknowledged_note LIKE '%hunter2%' OR acknowledged_note LIKE '%sk-proj%' AS in_clear
  FROM tool_audit.alerts WHERE alert_id = :ft_alert;
SELECT event_type, reason LIKE '%hunter2%' OR reason LIKE '%sk-proj%' AS in_clear
  FROM tool_audit.admin_events WHERE id > :ev_base AND event_type = 'tool_audit.alert.acknowledge';

-- start_impersonation(..., reason, ...): the table and the event
SET ROLE regress_writer;
SELECT tool_audit.start_impersonation('adm_ft', 'usr_ft', :'secret', 5, 'ft') IS NOT NULL AS started;
SELECT tool_audit.end_impersonation('adm_ft', 'usr_ft', 'ft') IS NOT NULL AS ended;
RESET ROLE;
SELECT reason, reason LIKE '%hunter2%' OR reason LIKE '%sk-proj%' AS in_clear
  FROM tool_audit.impersonations WHERE target_user = 'usr_ft';
SELECT event_type, reason LIKE '%hunter2%' OR reason LIKE '%sk-proj%' AS in_clear
  FROM tool_audit.admin_events WHERE id > :ev_base AND event_type LIKE 'impersonation.%' ORDER BY id;

-- request_approval(action, payload, reason) and reject(id, note)
SET ROLE regress_writer;
SELECT tool_audit.request_approval('app.disable_tenant', '{"tenant_id": "ft"}', :'secret') AS req \gset
RESET ROLE;
SET ROLE regress_admin;
SELECT tool_audit.reject(:req, :'secret');
RESET ROLE;
SELECT reason LIKE '%hunter2%' OR reason LIKE '%sk-proj%' AS reason_in_clear,
       decision_note LIKE '%hunter2%' OR decision_note LIKE '%sk-proj%' AS note_in_clear
  FROM tool_audit.approval_requests WHERE request_id = :req;
SELECT count(*) FILTER (WHERE reason LIKE '%hunter2%' OR reason LIKE '%sk-proj%'
                           OR payload::text LIKE '%hunter2%' OR payload::text LIKE '%sk-proj%') AS events_in_clear
  FROM tool_audit.admin_events WHERE id > :ev_base AND event_type LIKE 'tool_audit.approval.%';
