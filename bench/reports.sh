#!/usr/bin/env bash
# access_report() and calls_by_conversation() over a large tool_calls table
# answer through indexes, in milliseconds: timed against the same calls with
# index scans switched off (the baseline, a scan of the table), in one run,
# and their plans printed (EXPLAIN ANALYZE; for access_report, the plans of
# the statements inside it, through auto_explain).
#   bench/reports.sh [rows (default 10000000)] [keys (default 200)]
# The table is filled through the audit trigger (sanitized, hashed, chained)
# as a restore would (tool_audit.restoring: ids and times given), with a year
# of calls: 20 tenants, a million patients (8 accesses each on average),
# conversations of 6 calls, 20,000 users.  Each function is called for `keys`
# random patients or conversations (indexed) and for 3 of them with index
# scans off (baseline); times are medians and 95th percentiles per call.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROWS=${1:-10000000}
KEYS=${2:-200}
bench_cluster "shared_buffers = 1GB" "max_wal_size = 16GB" \
    "checkpoint_timeout = 30min" "maintenance_work_mem = 512MB" "synchronous_commit = off"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"
BATCH=20000

# insert_sql FROM TO: rows FROM..TO, their times spread over 2025 in id order
insert_sql() {
    cat <<SQL
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls
    (id, recorded_at, recorded_by, tenant_id, conversation_id, turn_number, user_id, user_role, model,
     tool_name, call_trigger, purpose, subject_id, arguments, result_summary, success, error, duration_ms)
SELECT i, timestamptz '2025-01-01 00:00:00+00' + (i::float8 / $ROWS) * interval '365 days', 'clinical_app',
       'tenant_' || (i % 20), 'conv_' || (i / 6), i % 6, 'usr_' || (i % 20000),
       (ARRAY['physician', 'nurse', 'billing', 'support_agent'])[1 + i % 4],
       (ARRAY['gpt-4.1', 'claude-sonnet-4', 'gemini-2.5-pro'])[1 + i % 3],
       tool, (ARRAY['user_request', 'proactive', 'retry', 'follow_up'])[1 + i % 4]::tool_audit.call_trigger,
       (ARRAY['treatment', 'billing', 'operations', 'research', 'emergency'])[1 + i % 5],
       CASE WHEN i % 5 <> 0 THEN 'pat_' || (i::bigint * 7919 % 1000000) END,
       jsonb_build_object('patient_id', 'pat_' || (i::bigint * 7919 % 1000000), 'sections',
                          jsonb_build_array('allergies', 'medications'), 'note', 'visit follow-up ' || i),
       jsonb_build_object('success', i % 23 <> 0, 'record_id', 'R-' || i),
       i % 23 <> 0, CASE WHEN i % 23 = 0 THEN 'upstream timeout' END, (i % 5000) / 10.0
  FROM generate_series($1, $2) i,
       LATERAL (SELECT (ARRAY['get_patient_record', 'update_chart', 'list_visits', 'get_invoice',
                              'search_notes', 'order_lab', 'get_lab_result', 'send_message',
                              'schedule_visit', 'refill_prescription'])[1 + i % 10] AS tool) x;
SQL
}

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, $ROWS rows, $KEYS keys"
t0=$(date +%s)
bench_load 1 "$ROWS" "$BATCH"
echo "load: $(( $(date +%s) - t0 )) s through the audit trigger ($(nproc) sessions); table with indexes:" \
     "$("${PSQL[@]}" -At -c "SELECT pg_size_pretty(pg_total_relation_size('tool_audit.tool_calls'))")"

# time_calls LABEL N SETTINGS EXPR: EXPR (with $1, the key) run for N random
# keys in one session, each timed alone; prints median and p95 in ms
BASE_OFF="SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;"
time_calls() {
    local label=$1 n=$2 settings=$3 kind=$4 expr=$5
    "${PSQL[@]}" -At <<SQL
SELECT setseed(0.42) \\g /dev/null
$settings
CREATE TEMP TABLE t (ms float8, rows bigint);
DO \$\$
DECLARE
    k text;
    t0 timestamptz;
    r bigint;
BEGIN
    FOR i IN 1..$n LOOP
        k := CASE '$kind' WHEN 'patient' THEN 'pat_' || floor(random() * 1000000)::int
                          ELSE 'conv_' || floor(random() * ($ROWS / 6))::int END;
        t0 := clock_timestamp();
        EXECUTE \$q\$ $expr \$q\$ INTO r USING k;
        INSERT INTO t VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000, r);
    END LOOP;
END
\$\$;
SELECT format('%-44s %5s calls  median %10s ms  p95 %10s ms  rows/call %5s', '$label', count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
              round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 2),
              round(avg(rows), 1))
  FROM t;
SQL
}
REPORT="SELECT (tool_audit.access_report(\$1, '2025-01-01 00:00+00', '2026-01-01 00:00+00')->>'total_accesses')::bigint"
CONV="SELECT count(*) FROM tool_audit.calls_by_conversation(\$1)"
"${PSQL[@]}" -At -c "SELECT count(*) FROM tool_audit.tool_calls" >/dev/null     # warm the catalog caches
echo
time_calls "access_report (indexes)" "$KEYS" "" patient "$REPORT"
time_calls "access_report (no index scans: baseline)" 3 "$BASE_OFF" patient "$REPORT"
time_calls "calls_by_conversation (indexes)" "$KEYS" "" conversation "$CONV"
time_calls "calls_by_conversation (no index scans: baseline)" 3 "$BASE_OFF" conversation "$CONV"

echo
echo "EXPLAIN ANALYZE of calls_by_conversation (an inlined SQL function):"
"${PSQL[@]}" -At -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM tool_audit.calls_by_conversation('conv_123456')"
echo
echo "access_report('pat_4242', 2025): the plans of the statements inside it (auto_explain):"
# the statement that selects the covered rows, and the first check_row()
# (auto_explain logs a statement's text and plan after "LOG:  duration")
"${PSQL[@]}" -At 2>&1 <<'SQL' | awk '
    /^LOG:  duration/ { if (keep(block)) printf "%s", block; block = ""; next }
    { block = block $0 "\n" }
    function keep(b) { return b ~ /WITH covered/ || (b ~ /chain_link/ && !seen++) }'
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET client_min_messages = log;
SELECT tool_audit.access_report('pat_4242', '2025-01-01 00:00+00', '2026-01-01 00:00+00')->'total_accesses';
SQL
