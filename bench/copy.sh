#!/usr/bin/env bash
# Bulk loading (issue 16): COPY of ROWS rows from a file into
# tool_audit.tool_calls (sanitized, hashed, chained by the insert trigger)
# against a plain COPY of the same file into bench_plain (bench/setup.sql:
# the same content columns, defaults, CHECKs and indexes, no trigger), and a
# batch INSERT of 1,000 rows per statement (an application exporting in
# batches) into each, in one run on a throwaway cluster (preloaded,
# synchronous_commit = on).  The four loads run interleaved, round after
# round; each prints rows per second, each ratio is the median of the
# ratios of the rounds.  Each load also reports the CPU time its backend
# used (utime + stime from /proc, read by the session itself before and
# after): on a machine shared with other work the wall-clock ratio measures
# the neighbours as much as the load, the CPU ratio (plain CPU seconds over
# audited ones, rows being equal) does not; it leaves out waits (the commit's
# WAL flush) and the work of other processes (WAL writer, checkpointer).
# The rows: the typical tool call of bench/run.sh, 100 tenants in turn.
#   bench/copy.sh [rows (default 1000000)] [rounds (default 3)]
# TA_BENCH_FLOOR=1: one more load a round, the same COPY into bench_chained
# (bench/chain_floor.sql: the plain table plus the chain's columns and unique
# index, filled with no audit work), the ceiling for any design that stores
# the chain in the row.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROWS=${1:-1000000}
ROUNDS=${2:-3}
bench_cluster "synchronous_commit = on" "shared_buffers = 512MB" "max_wal_size = 32GB" \
    "checkpoint_timeout = 1d"
FLOOR=${TA_BENCH_FLOOR:-}
cp "$TA_ROOT"/bench/setup.sql "$TA_ROOT"/bench/chain_floor.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/setup.sql"
if [ -n "$FLOOR" ]; then "${PSQL[@]}" -f "$WORK/chain_floor.sql"; fi
COLS="tool_name, conversation_id, turn_number, user_id, user_role, model, tenant_id, arguments, result_summary, duration_ms"
ROW="'update_order_status', 'conv_' || i, 3, 'usr_98765', 'support_agent', 'gpt-4.1', 'tenant_' || (i % 100),
     '{\"order_id\": \"ORD-54321\", \"status\": \"shipped\", \"customer\": {\"id\": \"C-123\", \"email\": \"jane@example.com\"}, \"note\": \"customer asked twice\", \"api_key\": \"sk-abcdefghijklmnopqrstuvwx\"}'::jsonb,
     '{\"order_id\": \"ORD-54321\", \"status\": \"shipped\", \"tracking\": \"1Z999\", \"items\": [1, 2, 3]}'::jsonb, 145.2"
"${PSQL[@]}" -c "COPY (SELECT $ROW FROM generate_series(1, $ROWS) i) TO '$WORK/rows.csv' (FORMAT csv)"
# the batch file, table name TBL: one INSERT of 1,000 rows per statement
"${PSQL[@]}" -At -o "$WORK/batch.sql" -c "
    SELECT 'INSERT INTO TBL ($COLS) VALUES ' || string_agg(format('(%L, %L, %s, %L, %L, %L, %L, %L, %L, %s)',
               tool_name, conversation_id, turn_number, user_id, user_role, model, tenant_id,
               arguments, result_summary, duration_ms), ', ') || ';'
      FROM (SELECT i, $ROW FROM generate_series(1, $ROWS) i)
           AS r (i, tool_name, conversation_id, turn_number, user_id, user_role, model, tenant_id,
                 arguments, result_summary, duration_ms)
     GROUP BY (i - 1) / 1000 ORDER BY (i - 1) / 1000"
sed 's/^INSERT INTO TBL/INSERT INTO bench_plain/' "$WORK/batch.sql" >"$WORK/batch_plain.sql"
sed 's/^INSERT INTO TBL/INSERT INTO tool_audit.tool_calls/' "$WORK/batch.sql" >"$WORK/batch_audited.sql"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -c "CHECKPOINT"

# the CPU time of this session's backend so far, in clock ticks
TICKS="SELECT f[12]::bigint + f[13]::bigint
         FROM (SELECT string_to_array(split_part(pg_read_file('/proc/' || pg_backend_pid() || '/stat'), ') ', 2), ' ')) AS s (f)"
HZ=$(getconf CLK_TCK)
rate() {   # psql ARGS...: "rows per second, backend CPU seconds" of one load
    local t0 t1 out
    t0=$(date +%s.%N)
    out=$("${PSQL[@]}" -At -c "$TICKS" "$@" -c "$TICKS")
    t1=$(date +%s.%N)
    awk -v n="$ROWS" -v a="$t0" -v b="$t1" -v c0="$(echo "$out" | head -1)" -v c1="$(echo "$out" | tail -1)" \
        -v hz="$HZ" 'BEGIN {printf "%.0f,%.2f", n / (b - a), (c1 - c0) / hz}'
}
col() { tr ' ' '\n' | grep . | cut -d, -f"$1" | tr '\n' ' '; }   # field 1 (rows/s) or 2 (CPU s)

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores (load $(cut -d' ' -f1-3 /proc/loadavg) before), $ROWS rows per load, $ROUNDS interleaved rounds, synchronous_commit = on"
cp_p="" cp_a="" cp_f="" b_p="" b_a=""
for round in $(seq 1 "$ROUNDS"); do
    cp_p="$cp_p $(rate -c "COPY bench_plain ($COLS) FROM '$WORK/rows.csv' (FORMAT csv)")"
    cp_a="$cp_a $(rate -c "COPY tool_audit.tool_calls ($COLS) FROM '$WORK/rows.csv' (FORMAT csv)")"
    if [ -n "$FLOOR" ]; then cp_f="$cp_f $(rate -c "COPY bench_chained ($COLS) FROM '$WORK/rows.csv' (FORMAT csv)")"; fi
    b_p="$b_p $(rate -f "$WORK/batch_plain.sql")"
    b_a="$b_a $(rate -f "$WORK/batch_audited.sql")"
    echo "round $round rows/s (backend CPU s): COPY plain $(echo $cp_p | awk '{print $NF}' | tr , ' ') audited $(echo $cp_a | awk '{print $NF}' | tr , ' ') | batch INSERT plain $(echo $b_p | awk '{print $NF}' | tr , ' ') audited $(echo $b_a | awk '{print $NF}' | tr , ' ')${FLOOR:+ | COPY floor $(echo $cp_f | awk '{print $NF}' | tr , ' ')}"
done
echo "COPY:         plain $(echo $cp_p | col 1 | median) rows/s, tool_calls $(echo $cp_a | col 1 | median) rows/s, ratio $(ratios "$(echo $cp_a | col 1)" "$(echo $cp_p | col 1)" | median); CPU ratio $(ratios "$(echo $cp_p | col 2)" "$(echo $cp_a | col 2)" | median)"
if [ -n "$FLOOR" ]; then
    echo "COPY floor:   bench_chained $(echo $cp_f | col 1 | median) rows/s, ratio $(ratios "$(echo $cp_f | col 1)" "$(echo $cp_p | col 1)" | median); CPU ratio $(ratios "$(echo $cp_p | col 2)" "$(echo $cp_f | col 2)" | median)"
fi
echo "batch INSERT: plain $(echo $b_p | col 1 | median) rows/s, tool_calls $(echo $b_a | col 1 | median) rows/s, ratio $(ratios "$(echo $b_a | col 1)" "$(echo $b_p | col 1)" | median); CPU ratio $(ratios "$(echo $b_p | col 2)" "$(echo $b_a | col 2)" | median)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"${PSQL[@]}" -At -F ' ' -c "SELECT 'check: audited rows', count(*), 'redacted', count(*) FILTER (WHERE arguments->>'api_key' = '***REDACTED***'), 'chains', count(DISTINCT chain_id) FROM tool_audit.tool_calls"
"${PSQL[@]}" -At -F ' ' -c "SELECT 'verify() problems', count(*) FROM tool_audit.verify()"
