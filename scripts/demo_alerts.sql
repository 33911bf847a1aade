-- The demo's alerts part (scripts/demo.sh, throwaway cluster only): the
-- alerts the rows above raised as they were written (doc/alerts.md), and
-- those the verification of the tampered trail raised.  Read only: after
-- part two the triggers may be off.

\echo
\echo '== Alerts raised along the way, each in the transaction of the row that fired it: high-risk admin'
\echo '   events, break-the-glass calls, and verify() finding the tampering (one alert per burst)'
SELECT alert_id, rule_name, severity, coalesce(tenant_id, '-') AS tenant, burst_key, count,
       cardinality(tool_call_ids) + cardinality(admin_event_ids) AS rows_listed
  FROM tool_audit.alerts ORDER BY alert_id;
