#!/usr/bin/env bash
# The exports against reading every row: export_jsonl(), export_fhir() and a
# COPY of the tool_calls_csv view, each timed against a query that reads and
# renders every row of tool_calls (count(t::text)), in one run on a
# throwaway cluster filled with realistic audited rows (bench/lib.sh:
# sanitized, hashed, chained through the trigger).  Each export's ratio is
# the median of its time over the read's time, round by round; the queries
# run interleaved, each in a fresh session, serially (no parallel workers).
#   bench/exports.sh [rows (default 200000)] [rounds (default 3)]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROWS=${1:-200000}
ROUNDS=${2:-3}
bench_cluster "synchronous_commit = off" "shared_buffers = 512MB" "max_wal_size = 4GB" \
    "max_parallel_workers_per_gather = 0"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"
insert_sql() { realistic_rows_sql "$1" "$2" 8; }

PERIOD="'2000-01-01', '2100-01-01'"
READ_Q="SELECT count(t::text) FROM tool_audit.tool_calls t"
JSONL_Q="SELECT count(*) FROM tool_audit.export_jsonl($PERIOD)"
FHIR_Q="SELECT count(*) FROM tool_audit.export_fhir($PERIOD)"
CSV_Q="COPY (SELECT * FROM tool_audit.tool_calls_csv) TO '/dev/null' (FORMAT csv, HEADER)"

# ms QUERY: the query's time in a fresh session, in milliseconds
ms() { "${PSQL[@]}" -At -c '\timing on' -c "$1" | awk '/^Time: / {print $2}'; }

t0=$(date +%s)
bench_load 1 "$ROWS" 2000
echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, $ROWS rows (loaded in $(( $(date +%s) - t0 )) s), median of $ROUNDS interleaved rounds, fresh session per query, no parallel workers"
echo "read:  $READ_Q"
ms "$READ_Q" >/dev/null   # warm-up: the table into shared buffers
r_all="" j_all="" f_all="" c_all=""
for _ in $(seq 1 "$ROUNDS"); do
    r_all="$r_all $(ms "$READ_Q")"
    j_all="$j_all $(ms "$JSONL_Q")"
    f_all="$f_all $(ms "$FHIR_Q")"
    c_all="$c_all $(ms "$CSV_Q")"
done
printf '%-40s %10s %12s %10s\n' query "ms" "per row µs" "/ read"
line() {   # NAME TIMES
    awk -v n="$1" -v t="$(echo $2 | median)" -v rows="$ROWS" -v q="$(ratios "$2" "$r_all" | median)" \
        'BEGIN { printf "%-40s %10.0f %12.1f %10.2f\n", n, t, t * 1000 / rows, q }'
}
line "read (count(t::text))" "$r_all"
line "export_jsonl()" "$j_all"
line "export_fhir()" "$f_all"
line "COPY tool_calls_csv (FORMAT csv)" "$c_all"
echo "ms by round: read $r_all | jsonl $j_all | fhir $f_all | csv $c_all"
