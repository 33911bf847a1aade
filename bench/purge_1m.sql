-- purge_expired() on 1M rows (500k expired, 1,000 tenants, one hold): H2's own
-- measurement (H4's bench/purge.sh compares the options on 20M).  Run as a
-- superuser on a throwaway server: psql -X -d postgres -f bench/purge_1m.sql
\timing on
DROP DATABASE IF EXISTS purge_bench;
CREATE DATABASE purge_bench;
\c purge_bench
CREATE EXTENSION tool_audit;
SET tool_audit.restoring = on;
-- 500k rows 800 days old (expired), 500k recent, 1000 tenants
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, user_id, success)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days' + g * interval '1 second',
         't' || (g % 1000), 'search', 'u' || (g % 5000), true
    FROM generate_series(1, 500000) g;
RESET tool_audit.restoring;
INSERT INTO tool_audit.tool_calls (tenant_id, tool_name, user_id, success)
  SELECT 't' || (g % 1000), 'search', 'u' || (g % 5000), true FROM generate_series(1, 500000) g;
SELECT tool_audit.place_hold('{"user_id": "u42"}', 'bench');
VACUUM ANALYZE tool_audit.tool_calls;
SELECT pg_size_pretty(pg_total_relation_size('tool_audit.tool_calls')) AS size_before;
SELECT (tool_audit.purge_expired(true))->'rows' AS dry_run_rows;
SELECT r->'rows' AS rows, jsonb_array_length(r->'anchors') AS anchors FROM tool_audit.purge_expired() r;
VACUUM tool_audit.tool_calls;
SELECT pg_size_pretty(pg_total_relation_size('tool_audit.tool_calls')) AS size_after_vacuum;
SELECT count(*) AS verify_problems FROM tool_audit.verify();
