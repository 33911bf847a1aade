#!/usr/bin/env bash
# Incremental verification against a full one (issue 16): BASE rows verified
# and marked by a digest, then NEW rows added; in the same run, interleaved
# round after round, each in a fresh session:
#   verify()                  every row from the first
#   verify_digest(d)          the same walk, also checking the digest's heads
#   verify_since(d)           the rows after the digest's heads only
# Each must report no problem.  Times are medians.
#   bench/verify_incremental.sh [base rows (default 10000000)] [new rows (default 1000000)] [rounds (default 3)]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BASE=${1:-10000000}
NEW=${2:-1000000}
ROUNDS=${3:-3}
bench_cluster "synchronous_commit = off" "shared_buffers = 256MB" "max_wal_size = 4GB"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"
BATCH=2000

# insert_sql FROM TO: the rows of bench/verify.sh (eight tenants, realistic
# arguments with a nested customer, a failure every 17th call)
insert_sql() { realistic_rows_sql "$1" "$2" 8; }

# measure QUERY: ms and result of QUERY in a fresh session (the digest in :d)
measure() {
    "${PSQL[@]}" -At -v d="$(cat "$WORK/d.json")" <<SQL | awk '/^Time: / {ms = $2} !/^Time: / && NF {res = $1} END {print ms, res}'
\timing on
$1;
SQL
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }

FULL_Q="SELECT count(*) FROM tool_audit.verify()"
DIGEST_Q="SELECT count(*) FROM tool_audit.verify_digest(:'d')"
SINCE_Q="SELECT count(*) FROM tool_audit.verify_since(:'d')"
echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, median of $ROUNDS interleaved rounds, fresh session per query"
t0=$(now); bench_load 1 "$BASE" "$BATCH"; echo "load:     $BASE rows in $(secs "$t0" "$(now)") s ($(nproc) sessions, INSERT ... SELECT of $BATCH rows, through the audit trigger)"
"${PSQL[@]}" -At -c "SELECT tool_audit.digest()" >"$WORK/d.json"
echo "digest:   $("${PSQL[@]}" -At -c "SELECT jsonb_array_length('$(cat "$WORK/d.json")'::jsonb->'heads')") lane heads"
t0=$(now); bench_load $((BASE + 1)) $((BASE + NEW)) "$BATCH"; echo "load:     $NEW new rows in $(secs "$t0" "$(now)") s"
echo "table:    $("${PSQL[@]}" -At -c "SELECT pg_size_pretty(pg_total_relation_size('tool_audit.tool_calls'))")"
measure "SELECT count(t::text) FROM tool_audit.tool_calls t" >/dev/null    # warm-up: the table into the page cache
ft="" dt="" st="" FAILED=0
for r in $(seq 1 "$ROUNDS"); do
    read -r m res < <(measure "$FULL_Q"); ft="$ft $m"; [ "$res" = 0 ] || { echo "verify() reported $res problems"; FAILED=1; }
    read -r m res < <(measure "$DIGEST_Q"); dt="$dt $m"; [ "$res" = 0 ] || { echo "verify_digest() reported $res problems"; FAILED=1; }
    read -r m res < <(measure "$SINCE_Q"); st="$st $m"; [ "$res" = 0 ] || { echo "verify_since() reported $res problems"; FAILED=1; }
done
f=$(echo $ft | median) d=$(echo $dt | median) s=$(echo $st | median)
awk -v b="$BASE" -v n="$NEW" -v f="$f" -v d="$d" -v s="$s" 'BEGIN {
    printf "%-28s %10s %12s\n", "", "ms", "rows/s"
    printf "%-28s %10.0f %12.0f\n", "verify()", f, (b + n) / f * 1000
    printf "%-28s %10.0f %12.0f\n", "verify_digest(d)", d, (b + n) / d * 1000
    printf "%-28s %10.0f %12.0f   (new rows only)\n", "verify_since(d)", s, n / s * 1000
    printf "verify() / verify_since(d): %.1fx; the new rows are %.1f%% of the table\n", f / s, 100 * n / (b + n) }'
exit "$FAILED"
