-- The demo's last part (scripts/demo.sh): what a compliance officer and a
-- support lead read.  After part two's tampering (throwaway cluster), the
-- report is no longer verified and names the row that was rewritten.
\pset footer off
\set VERBOSITY terse
\echo
\echo :h1
SET ROLE demo_compliance_stmary;
SELECT tool_audit.access_report('P-1001', date_trunc('day', now()) - interval '30 days', now()) AS report \gset
SELECT jsonb_pretty(:'report'::jsonb) AS "access report for P-1001 (as the St Mary's compliance officer)";
RESET ROLE;

\echo
\echo :h2
SELECT conversation_id AS conv FROM tool_audit.tool_calls
 WHERE user_id = 'usr_98765' ORDER BY id DESC LIMIT 1 \gset
SET ROLE demo_auditor_acme;
SELECT line AS "timeline (as the acme auditor)" FROM tool_audit.conversation_timeline(:'conv') line;
SELECT c.turn_number AS turn, c.tool_name, coalesce(tool_audit.check_row(c), 'intact') AS row_check
  FROM tool_audit.calls_by_conversation(:'conv') c;
SELECT tool_audit.attribution(c.id) AS "who is accountable for the cancellation"
  FROM tool_audit.calls_by_conversation(:'conv') c WHERE c.tool_name = 'update_order_status';
RESET ROLE;
