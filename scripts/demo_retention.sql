-- The demo's retention part (scripts/demo.sh, throwaway cluster only): in a
-- database of its own marked as a test database, so that the test clock can
-- write rows that are already old.  The purge itself always uses the real
-- clock.
\pset footer off
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;

\echo
\echo '== 15. Retention: a year of calls, a legal hold, and the nightly purge'
-- each row's expiry is decided when it is written, by the policy of its tool
SELECT policy_name, retention_days, matches, is_default FROM tool_audit.retention_policies
 ORDER BY applies_to DESC, retention_days DESC;
-- rows written "400 days ago" (the test clock, honoured only in a test database)
SET tool_audit.test_clock_offset = '400 days';
SELECT count(tool_audit.log_call(tool, '{"order_id": "o-1"}', '{"status": "ok"}', 3,
                                 jsonb_build_object('tenant_id', 'acme', 'user_id', 'agent-7',
                                                    'subject_id', 'cust-' || (g % 4))))
       AS old_calls
  FROM generate_series(1, 40) g,
       LATERAL (SELECT CASE WHEN g % 5 = 0 THEN 'issue_refund' ELSE 'lookup_order' END) t(tool);
RESET tool_audit.test_clock_offset;
SELECT (tool_audit.log_call('lookup_order', '{}', '{}', 2, '{"tenant_id": "acme", "subject_id": "cust-1"}')).id IS NOT NULL
       AS call_today;
SELECT retention_policy, count(*) AS rows, min(expires_at)::date AS earliest_expiry
  FROM tool_audit.tool_calls GROUP BY 1 ORDER BY 1;
-- litigation about one customer: a hold keeps their rows whatever their age
SELECT tool_audit.place_hold('{"tenant_id": "acme", "subject_id": "cust-3"}', 'dispute 2026-17') AS hold_id;
SELECT tool_audit.digest() AS before_purge \gset
SELECT tool_audit.purge_expired(dry_run => true) ->> 'rows' AS would_purge;
SELECT p ->> 'rows' AS purged, jsonb_array_length(p -> 'anchors') AS anchors,
       p ->> 'purge_event_id' AS purge_event
  FROM tool_audit.purge_expired() p;
SELECT subject_id, tool_name, count(*) AS rows_left FROM tool_audit.tool_calls GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS "verify(): problems" FROM tool_audit.verify();
SELECT table_name, problem AS "verify_digest() with the digest taken before the purge"
  FROM tool_audit.verify_digest(:'before_purge') ORDER BY 1, 2;

\echo
\echo '== 16. Erasure (GDPR Art. 17): the personal data goes, every chain still verifies'
SELECT e - 'erasures_hash' AS erasure
  FROM tool_audit.erase_subject('cust-1', 'request #4411', 'GDPR Art. 17(1)(a)') e;
SELECT count(*) AS "rows found by cust-1 afterwards" FROM tool_audit.tool_calls
 WHERE 'cust-1' IN (subject_id, user_id) OR arguments::text LIKE '%cust-1%';
SELECT tool_audit.erase_subject('cust-3', 'request #4412', 'GDPR Art. 17(1)(a)') -> 'exception'
       AS "cust-3 is under a legal hold";
SELECT count(*) AS "verify(): problems" FROM tool_audit.verify();
SELECT erased_by, legal_basis, table_name, count(*) AS rows
  FROM tool_audit.erasure_log GROUP BY 1, 2, 3;
