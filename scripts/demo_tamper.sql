-- Part two of the demo (scripts/demo.sh, throwaway cluster only): the server
-- was restarted without shared_preload_libraries, so a superuser can switch
-- the append-only triggers off through the catalog.  What verify() and the
-- digest saved before make of it.
\pset footer off
\set VERBOSITY terse
\echo
\echo '== 10. A superuser rewrites history: the failed cancellation now looks successful, the email was never sent,'
\echo '        and the nurse''s break-glass access to P-1001 is passed off as routine treatment'
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
UPDATE tool_audit.tool_calls SET success = true, error = NULL, result_summary = '{"success": true}'
 WHERE tool_name = 'update_order_status';
DELETE FROM tool_audit.tool_calls WHERE id = (SELECT max(id) FROM tool_audit.tool_calls WHERE tenant_id = 'acme');
UPDATE tool_audit.tool_calls SET purpose = 'treatment', session_metadata = '{}', break_glass = NULL
 WHERE subject_id = 'P-1001' AND user_id = 'nurse_kim';
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;

\echo
\echo '== 11. verify() names the altered rows; the digest saved before also shows the deleted one'
SELECT table_name, "position", row_id, problem FROM tool_audit.verify();
SELECT table_name, "position", row_id, problem FROM tool_audit.verify_digest(:'digest');
