#!/usr/bin/env bash
# access_report_rows() (1.5) against access_report() on one busy subject:
# the first page and a page deep in (through its cursor) cost the same, and
# each is a small fraction of the whole report, which builds one JSON value
# of every access.  One run of each, timed in the server (clock_timestamp),
# as the superuser and as an admin role (row-level security applies).
#   bench/access_rows.sh [accesses (default 100000)] [page (default 1000)]
# The table is filled through the audit trigger as a restore would
# (tool_audit.restoring: ids and times given): the subject's accesses spread
# over 2025, as many calls of other subjects, 1,000 admin events of which
# 100 are about the subject (ids far from the sequence's: reads are recorded).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-100000}
PAGE=${2:-1000}
bench_cluster "shared_buffers = 512MB" "max_wal_size = 8GB" "synchronous_commit = off"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"
ROWS=$((2 * N))

# insert_sql FROM TO: even ids are the busy subject's, odd ids others'
insert_sql() {
    cat <<SQL
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls
    (id, recorded_at, recorded_by, tenant_id, user_id, user_role, tool_name, purpose, subject_id,
     arguments, result_summary, success, duration_ms)
SELECT i, timestamptz '2025-01-01 00:00:00+00' + (i::float8 / $ROWS) * interval '365 days', 'clinical_app',
       'tenant_1', 'usr_' || (i % 200), 'nurse', 'get_patient_record', 'treatment',
       CASE WHEN i % 2 = 0 THEN 'pat_busy' ELSE 'pat_' || i END,
       jsonb_build_object('patient_id', 'pat_busy', 'sections', jsonb_build_array('allergies', 'medications')),
       jsonb_build_object('success', true, 'record_id', 'R-' || i), true, (i % 5000) / 10.0
  FROM generate_series($1, $2) i;
SQL
}
echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores; $N accesses of pat_busy among $ROWS calls; pages of $PAGE"
t0=$(date +%s)
bench_load 1 "$ROWS" 10000
"${PSQL[@]}" <<SQL
SET tool_audit.restoring = on;
INSERT INTO tool_audit.admin_events (id, occurred_at, recorded_by, event_type, actor, tenant_id, payload)
SELECT 1000000000 + i, timestamptz '2025-01-01 00:00:00+00' + (i::float8 / 1000) * interval '365 days', 'app',
       'record.flagged', 'adm_1', 'tenant_1',
       CASE WHEN i % 10 = 0 THEN '{"subject_id": "pat_busy"}' ELSE jsonb_build_object('subject_id', 'pat_o' || i) END
  FROM generate_series(1, 1000) i;
RESET tool_audit.restoring;
VACUUM ANALYZE tool_audit.admin_events;
CREATE ROLE bench_admin IN ROLE tool_audit_admin;
SQL
echo "load: $(( $(date +%s) - t0 )) s"

# one run of each, as ROLE (empty: the superuser)
run() {
    local role=$1
    "${PSQL[@]}" -At <<SQL
$( [ -n "$role" ] && echo "SET ROLE $role;" )
SELECT count(*) FROM tool_audit.tool_calls \\g /dev/null
CREATE TEMP TABLE t (what text, ms numeric, rows bigint, bytes bigint);
DO \$\$
DECLARE
    t0 timestamptz;
    n bigint;
    b bigint;
    deep text;
    cur text;
    pages int := 0;
BEGIN
    t0 := clock_timestamp();
    SELECT (r->>'total_accesses')::bigint, octet_length(r::text) INTO n, b
      FROM tool_audit.access_report('pat_busy', '2025-01-01', '2026-01-01') r;
    INSERT INTO t VALUES ('access_report() (all)', extract(epoch FROM clock_timestamp() - t0) * 1000, n, b);

    t0 := clock_timestamp();
    SELECT count(*), sum(octet_length(r::text)) INTO n, b
      FROM tool_audit.access_report_rows('pat_busy', '2025-01-01', '2026-01-01', NULL, $PAGE) r;
    INSERT INTO t VALUES ('access_report_rows() first page', extract(epoch FROM clock_timestamp() - t0) * 1000, n, b);

    -- the cursor of the access at 90% of the way
    SELECT format('%s|tool_call|%s', tool_audit.iso8601_utc(c.recorded_at), c.id) INTO deep
      FROM tool_audit.tool_calls c WHERE c.subject_id = 'pat_busy'
     ORDER BY c.recorded_at, c.id OFFSET ($N * 9 / 10) LIMIT 1;
    t0 := clock_timestamp();
    SELECT count(*), sum(octet_length(r::text)) INTO n, b
      FROM tool_audit.access_report_rows('pat_busy', '2025-01-01', '2026-01-01', deep, $PAGE) r;
    INSERT INTO t VALUES ('access_report_rows() page at 90%', extract(epoch FROM clock_timestamp() - t0) * 1000, n, b);

    t0 := clock_timestamp();
    n := 0; b := 0; cur := NULL;
    LOOP
        CREATE TEMP TABLE pg AS
        SELECT * FROM tool_audit.access_report_rows('pat_busy', '2025-01-01', '2026-01-01', cur, $PAGE);
        EXIT WHEN NOT EXISTS (SELECT FROM pg);
        pages := pages + 1;
        n := n + (SELECT count(*) FROM pg);
        SELECT p.cursor INTO cur FROM pg p ORDER BY p.recorded_at DESC, p.kind DESC, p.id DESC LIMIT 1;
        DROP TABLE pg;
    END LOOP;
    DROP TABLE pg;
    INSERT INTO t VALUES (format('access_report_rows() all %s pages', pages),
                          extract(epoch FROM clock_timestamp() - t0) * 1000, n, NULL);
END
\$\$;
SELECT format('%-12s %-38s %10s ms  rows %7s  %s', coalesce(nullif('$role', ''), 'superuser'), what, round(ms, 1), rows,
              CASE WHEN bytes IS NOT NULL THEN pg_size_pretty(bytes) ELSE '' END)
  FROM t;
SELECT format('%-12s first page / whole report: 1/%s; page at 90%% / first page: %s', coalesce(nullif('$role', ''), 'superuser'),
              round((SELECT ms FROM t WHERE what LIKE 'access_report()%') / (SELECT ms FROM t WHERE what LIKE '%first page')),
              round((SELECT ms FROM t WHERE what LIKE '%90%%') / (SELECT ms FROM t WHERE what LIKE '%first page'), 2));
SQL
}
echo
run ""
run bench_admin
echo
echo "the plan of a page at 90% (the statement inside access_report_rows, auto_explain; the per-row checks left out):"
# (auto_explain logs a statement's text and plan after "LOG:  duration": the
# block whose text is the page's query)
"${PSQL[@]}" -At 2>&1 <<SQL | awk '
    /^LOG:  duration/ { if (block ~ /SELECT p.kind, p.at/) printf "%s", block; block = ""; next }
    { block = block $0 "\n" }' | sed -n '/Query Text/,$p' | grep -v "^ *[A-Za-z_(].*[,(]$" | grep -E "^ *(->|Limit|Sort|Append|Subquery|Index|Filter|Rows Removed|Buffers|Planning|Execution)|Index Cond" | head -40
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_nested_statements = on;
SET client_min_messages = log;
SELECT count(*) FROM tool_audit.access_report_rows('pat_busy', '2025-01-01', '2026-01-01',
    (SELECT format('%s|tool_call|%s', tool_audit.iso8601_utc(c.recorded_at), c.id)
       FROM tool_audit.tool_calls c WHERE c.subject_id = 'pat_busy'
      ORDER BY c.recorded_at, c.id OFFSET ($N * 9 / 10) LIMIT 1), $PAGE);
SQL
