#!/usr/bin/env bash
# verify() walked by parallel workers against the serial walk of the same rows
# (issue 16: "clearly less than the serial scan" on a 2-core machine), on a
# throwaway cluster filled with realistic audited rows over many tenants
# (each tenant a chain: the unit a worker takes).  verify() must report no
# problem either way.
#   bench/verify_parallel.sh [rows (default 2000000)] [rounds (default 3)] [workers (default 2)]
# Rounds are interleaved (serial, parallel, serial, ...), each query in a
# fresh session; times are medians; ratio = serial time / parallel time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROWS=${1:-2000000}
ROUNDS=${2:-3}
WORKERS=${3:-2}
TENANTS=${TA_BENCH_TENANTS:-64}
bench_cluster "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 4GB"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"

VERIFY_Q="SELECT count(*) FROM tool_audit.verify()"
BATCH=2000

# insert_sql FROM TO: as bench/verify.sh, over $TENANTS tenants
insert_sql() { realistic_rows_sql "$1" "$2" "$TENANTS"; }

# measure WORKERS: verify() in a fresh session with that many workers; prints
# "ms problems launched" (the workers launched for tool_calls, from the DEBUG line)
measure() {
    "${PSQL[@]}" -At 2>&1 <<SQL | awk '/^Time: / {ms = $2}
        /verification of tool_calls: .* parallel workers launched/ {for (i = 1; i <= NF; i++) if ($i == "parallel") w = $(i - 1)}
        !/^Time: / && !/DEBUG/ && NF {res = $1} END {print ms, res, w + 0}'
SET tool_audit.verify_parallel_workers = $1;
SET client_min_messages = debug1;
\timing on
$VERIFY_Q;
SQL
}

FAILED=0
t0=$(date +%s)
bench_load 1 "$ROWS" "$BATCH"
load_s=$(( $(date +%s) - t0 ))
size=$("${PSQL[@]}" -At -c "SELECT pg_size_pretty(pg_total_relation_size('tool_audit.tool_calls'))")
echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, load average before the rounds: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rows: $ROWS over $TENANTS tenants ($size, loaded in ${load_s}s); verify: $VERIFY_Q"
echo "median of $ROUNDS interleaved rounds, fresh session per query; serial: tool_audit.verify_parallel_workers = 0"
"${PSQL[@]}" -At -c "SELECT count(*) FROM tool_audit.tool_calls" >/dev/null   # warm-up
measure 0 >/dev/null
st="" pt=""
for r in $(seq 1 "$ROUNDS"); do
    read -r m res w < <(measure 0)
    st="$st $m"
    [ "$res" = 0 ] || { echo "serial verify() reported $res problems (round $r)"; FAILED=1; }
    read -r m res w < <(measure "$WORKERS")
    pt="$pt $m"
    [ "$res" = 0 ] || { echo "parallel verify() reported $res problems (round $r)"; FAILED=1; }
    [ "$w" = "$WORKERS" ] || { echo "$w workers launched for tool_calls, not $WORKERS (round $r)"; FAILED=1; }
    echo "round $r: serial $(echo "$st" | awk '{print $NF}') ms, $WORKERS workers $(echo "$pt" | awk '{print $NF}') ms ($w launched)"
done
awk -v s="$(echo $st | median)" -v p="$(echo $pt | median)" -v w="$WORKERS" \
    'BEGIN { printf "%-10s %10s %12s %8s\n", "rows", "serial ms", w " workers ms", "ratio";
             printf "%-10s %10.0f %12.0f %8.2f   (serial / parallel)\n", "'"$ROWS"'", s, p, s / p }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$FAILED"
