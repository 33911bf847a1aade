#!/usr/bin/env bash
# Purging half of a large audit table, three ways, in one run on a throwaway
# cluster, each with a writer inserting one row per transaction (about 100 a
# second) throughout, whose latencies show whether the purge blocks it:
#   A  tool_audit.purge_expired() (batched DELETE through the sanctioned
#      path, with its anchors and event), then VACUUM;
#   P  the baseline: the same rows in a plain copy (same columns and
#      indexes, no trigger), DELETEd in batches of 10,000 rows, one
#      transaction each, then VACUUM: what A costs without its bookkeeping;
#   B  the same rows in a plain table partitioned by month, the expired
#      months detached (DETACH PARTITION ... CONCURRENTLY) and dropped.
# For each: rows removed, time, heap and index sizes before and after, WAL
# written, and the writer's median, 99th percentile and worst latency against
# the same writer alone (before the purges); then, for A and P, whether new
# rows reuse the space VACUUM freed (the heap's growth for rows/10 new rows).
#   bench/purge.sh [rows (default 20000000)] [seconds of the writer alone (default 10)] [options (default "P B A")]
# The rows are spread over the two years up to now, 20 tenants, tools under
# the "general" policy (365 days): the older half is expired.  The audited
# table is filled through the audit trigger as a restore would
# (tool_audit.restoring: ids and times given), then copied into the others.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROWS=${1:-20000000}
ALONE_SECS=${2:-10}
OPTIONS=${3:-"P B A"}
bench_cluster "shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" \
    "maintenance_work_mem = 512MB" "autovacuum = off"
cp "$TA_ROOT/bench/purge.sql" "$WORK/"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/purge.sql"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"
SQL=("${PSQL[@]}" -At)
T_END=$("${SQL[@]}" -c "SELECT now()")
BATCH=20000
I_END=$ROWS

# insert_sql FROM TO: rows FROM..TO, in id order, ROWS rows spread over two
# years, row I_END at T_END
insert_sql() {
    cat <<SQL
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls
    (id, recorded_at, recorded_by, tenant_id, conversation_id, turn_number, user_id, user_role, model,
     tool_name, call_trigger, purpose, subject_id, arguments, result_summary, success, error, duration_ms)
SELECT i, timestamptz '$T_END' - (($I_END - i)::float8 / $ROWS) * interval '730 days', 'clinical_app',
       'tenant_' || (i % 20), 'conv_' || (i / 6), i % 6, 'usr_' || (i % 20000),
       (ARRAY['physician', 'nurse', 'billing', 'support_agent'])[1 + i % 4],
       (ARRAY['gpt-4.1', 'claude-sonnet-4', 'gemini-2.5-pro'])[1 + i % 3],
       (ARRAY['get_patient_record', 'update_chart', 'list_visits', 'get_invoice', 'search_notes',
              'order_lab', 'get_lab_result', 'send_message', 'schedule_visit', 'refill_prescription'])[1 + i % 10],
       (ARRAY['user_request', 'proactive', 'retry', 'follow_up'])[1 + i % 4]::tool_audit.call_trigger,
       (ARRAY['treatment', 'billing', 'operations', 'research', 'emergency'])[1 + i % 5],
       CASE WHEN i % 5 <> 0 THEN 'pat_' || (i::bigint * 7919 % 1000000) END,
       jsonb_build_object('patient_id', 'pat_' || (i::bigint * 7919 % 1000000), 'sections',
                          jsonb_build_array('allergies', 'medications'), 'note', 'visit follow-up ' || i),
       jsonb_build_object('success', i % 23 <> 0, 'record_id', 'R-' || i),
       i % 23 <> 0, CASE WHEN i % 23 = 0 THEN 'upstream timeout' END, (i % 5000) / 10.0
  FROM generate_series($1, $2) i;
SQL
}

now_s() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }
lsn() { "${SQL[@]}" -c "SELECT pg_current_wal_lsn()"; }
wal_mb() { "${SQL[@]}" -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$1') / 1048576.0)"; }

# writer_start LABEL TARGET / writer_stop: the concurrent writer (bench_writer)
writer_start() {
    "${SQL[@]}" -c "TRUNCATE bench_stop"
    "${PSQL[@]}" -c "CALL bench_writer('$1', '$2')" &
    WRITER=$!
    sleep 2
}
writer_stop() {
    sleep 2
    "${SQL[@]}" -c "INSERT INTO bench_stop VALUES (true)"
    wait "$WRITER"
}
latency() {   # LABEL: the writer's figures
    "${SQL[@]}" -c "SELECT format('%s inserts, median %s ms, p99 %s ms, max %s ms, %s over 100 ms',
                        count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                        round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                        round(max(ms)::numeric, 1), count(*) FILTER (WHERE ms > 100))
                      FROM bench_latency WHERE label = '$1'"
}
writer_alone() {   # LABEL TARGET
    writer_start "$1" "$2"
    sleep "$ALONE_SECS"
    writer_stop
    echo "  writer alone ($2): $(latency "$1")"
}
size() { "${SQL[@]}" -c "SELECT bench_size('$1')"; }

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, $ROWS rows, options: $OPTIONS"
t0=$(now_s)
bench_load 1 "$ROWS" "$BATCH"
echo "load: $(since "$t0") s through the audit trigger ($(nproc) sessions)"
"${SQL[@]}" -c "SELECT setval('tool_audit.tool_calls_id_seq', max(id)) FROM tool_audit.tool_calls" >/dev/null
EXPIRED="recorded_at <= now() - interval '365 days'"
echo "expired (older than 365 days): $("${SQL[@]}" -c "SELECT count(*) FROM tool_audit.tool_calls WHERE $EXPIRED") of $ROWS"

"${PSQL[@]}" -f "$WORK/purge.sql"
t0=$(now_s)
"${PSQL[@]}" -c "INSERT INTO bench_plain SELECT * FROM tool_audit.tool_calls" \
             -c "INSERT INTO bench_parted SELECT * FROM tool_audit.tool_calls" \
             -c "VACUUM ANALYZE bench_plain" -c "VACUUM ANALYZE bench_parted"
echo "copies made in $(since "$t0") s; $("${SQL[@]}" -c "SELECT count(*) FROM pg_partition_tree('bench_parted') WHERE isleaf") monthly partitions"
"${PSQL[@]}" -c "CHECKPOINT"

echo "writer alone, each target ($ALONE_SECS s):"
writer_alone alone_audited audited
writer_alone alone_plain bench_plain
writer_alone alone_parted bench_parted

for opt in $OPTIONS; do
    "${PSQL[@]}" -c "CHECKPOINT"
    case $opt in
    P)
        echo "P: plain copy, batched DELETE (10,000 rows a transaction) + VACUUM"
        echo "  before: $(size bench_plain)"
        w=$(lsn)
        writer_start during_P bench_plain
        t0=$(now_s)
        n=$("${SQL[@]}" <<SQL
CREATE PROCEDURE bench_delete_batches(INOUT removed bigint) LANGUAGE plpgsql AS \$\$
DECLARE
    k bigint;
BEGIN
    removed := 0;
    LOOP
        DELETE FROM bench_plain WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM bench_plain WHERE $EXPIRED LIMIT 10000));
        GET DIAGNOSTICS k = ROW_COUNT;
        EXIT WHEN k = 0;
        removed := removed + k;
        COMMIT;
    END LOOP;
END
\$\$;
CALL bench_delete_batches(0);
SQL
)
        td=$(since "$t0"); t1=$(now_s)
        "${PSQL[@]}" -c "VACUUM bench_plain"
        tv=$(since "$t1")
        writer_stop
        echo "  removed $n rows: DELETE $td s, VACUUM $tv s; WAL $(wal_mb "$w") MB"
        echo "  after:  $(size bench_plain)"
        echo "  writer during: $(latency during_P)"
        ;;
    B)
        echo "B: monthly partitions, the expired ones detached concurrently and dropped"
        echo "  before: $(size bench_parted)"
        n=$("${SQL[@]}" -c "SELECT count(*) FROM bench_parted WHERE id < 1000000000000")
        w=$(lsn)
        writer_start during_B bench_parted
        t0=$(now_s)
        parts=$("${SQL[@]}" -c "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                 WHERE i.inhparent = 'bench_parted'::regclass
                                   AND (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz
                                       <= now() - interval '365 days'")
        for p in $parts; do
            "${PSQL[@]}" -c "ALTER TABLE bench_parted DETACH PARTITION $p CONCURRENTLY" -c "DROP TABLE $p"
        done
        tb=$(since "$t0")
        writer_stop
        n=$((n - $("${SQL[@]}" -c "SELECT count(*) FROM bench_parted WHERE id < 1000000000000")))
        echo "  removed $n rows ($(echo $parts | wc -w) partitions): $tb s; WAL $(wal_mb "$w") MB;" \
             "$("${SQL[@]}" -c "SELECT count(*) FROM bench_parted WHERE $EXPIRED") expired rows kept (their month is not over)"
        echo "  after:  $(size bench_parted)"
        echo "  writer during: $(latency during_B)"
        ;;
    A)
        echo "A: tool_audit.purge_expired() + VACUUM"
        echo "  before: $(size tool_audit.tool_calls)"
        w=$(lsn)
        writer_start during_A audited
        t0=$(now_s)
        "${SQL[@]}" -c "CREATE TABLE bench_purge AS SELECT tool_audit.purge_expired() AS r"
        td=$(since "$t0"); t1=$(now_s)
        "${PSQL[@]}" -c "VACUUM tool_audit.tool_calls"
        tv=$(since "$t1")
        writer_stop
        echo "  removed $("${SQL[@]}" -c "SELECT r->'rows' FROM bench_purge") rows: purge_expired() $td s, VACUUM $tv s; WAL $(wal_mb "$w") MB;" \
             "$("${SQL[@]}" -c "SELECT jsonb_array_length(r->'anchors') FROM bench_purge") anchors"
        echo "  after:  $(size tool_audit.tool_calls)"
        echo "  writer during: $(latency during_A)"
        echo "  verify() after the purge: $("${SQL[@]}" -c "SELECT count(*) FROM tool_audit.verify()") problems"
        ;;
    esac
done

# new rows after VACUUM: do they go into the freed space?
NEW=$((ROWS / 10))
echo "space reuse: $NEW new rows (heap MB before -> after)"
for opt in $OPTIONS; do
    case $opt in
    A)
        before=$("${SQL[@]}" -c "SELECT bench_heap_mb('tool_audit.tool_calls')")
        T_END=$("${SQL[@]}" -c "SELECT now()") I_END=$((ROWS * 2 + NEW))   # the new rows are recent
        bench_load $((ROWS * 2 + 1)) $((ROWS * 2 + NEW)) "$BATCH"
        echo "  A (audited):  $before -> $("${SQL[@]}" -c "SELECT bench_heap_mb('tool_audit.tool_calls')")"
        ;;
    P)
        before=$("${SQL[@]}" -c "SELECT bench_heap_mb('bench_plain')")
        "${SQL[@]}" -c "SELECT bench_new_rows('bench_plain', $NEW)" >/dev/null
        echo "  P (plain):    $before -> $("${SQL[@]}" -c "SELECT bench_heap_mb('bench_plain')")"
        ;;
    esac
done
