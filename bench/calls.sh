#!/usr/bin/env bash
# Calls that survive rollback (issue 14): latency per call at 1 client and
# throughput at 8 of
#   log_call    one log_call() in the caller's transaction (the reference)
#   begin_end   begin_call() + end_call() in one transaction (two autonomous writes)
#   autonomous  one log_call() with "autonomous": true (one autonomous write)
#   dblink      the same log_call() through a dblink loopback, a new connection
#               per call (dblink() with a connection string)
#   dblink_kept the same, over a connection kept open by each client
# on a throwaway cluster (synchronous_commit = on, fsync on), the variants
# interleaved round after round; figures are medians over the rounds, ratios
# against log_call within each round.
#   bench/calls.sh [seconds per measurement (default 5)] [client counts (default "1 8")] [rounds (default 3)]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SECS=${1:-5}
CLIENTS=${2:-"1 8"}
ROUNDS=${3:-3}
bench_cluster "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 32GB" \
    "checkpoint_timeout = 1d" "max_worker_processes = 32"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit" -c "CREATE EXTENSION dblink"

ARGS="'update_order_status', '{\"order_id\": \"ORD-54321\", \"status\": \"shipped\", \"api_key\": \"sk-abcdefghijklmnopqrstuvwx\"}'"
RESULT="'{\"order_id\": \"ORD-54321\", \"status\": \"shipped\"}'"
CTX='"conversation_id": "conv_bench", "turn_number": 3, "user_id": "usr_98765", "model": "gpt-4.1", "tenant_id": "acme"'
CONN="host=$WORK port=$PORT dbname=postgres user=postgres"
LOGCALL="SELECT 1 FROM tool_audit.log_call($ARGS, $RESULT, 145.2, '{$CTX}');"
cat >"$WORK/c_log_call.sql" <<SQL
$LOGCALL
SQL
cat >"$WORK/c_begin_end.sql" <<SQL
BEGIN;
SELECT 1 FROM tool_audit.end_call(tool_audit.begin_call($ARGS, '{$CTX}'), $RESULT, 145.2);
COMMIT;
SQL
cat >"$WORK/c_autonomous.sql" <<SQL
SELECT 1 FROM tool_audit.log_call($ARGS, $RESULT, 145.2, '{$CTX, "autonomous": true}');
SQL
cat >"$WORK/c_dblink.sql" <<SQL
SELECT x FROM dblink('$CONN', \$q\$$LOGCALL\$q\$) AS t(x int);
SQL
cat >"$WORK/c_dblink_kept.sql" <<SQL
SELECT dblink_connect('kept', '$CONN') WHERE NOT coalesce('kept' = ANY (dblink_get_connections()), false);
SELECT x FROM dblink('kept', \$q\$$LOGCALL\$q\$) AS t(x int);
SQL
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"

run() {   # SCRIPT CLIENTS: "tps latency_ms"
    ta_as_user "$BINDIR/pgbench" -n -h "$WORK" -p "$PORT" -U postgres -c "$2" -j "$2" -T "$SECS" \
        -f "$WORK/c_$1.sql" postgres >"$WORK/pgbench.out" 2>&1 ||
        { echo "pgbench failed on $1:" >&2; grep -m5 -i "error\|abort" "$WORK/pgbench.out" >&2; exit 1; }
    awk '/^latency average/ {l = $4} /^tps = / {t = $3} END {print t, l}' "$WORK/pgbench.out"
}

VARIANTS="log_call begin_end autonomous dblink dblink_kept"
echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, ${SECS}s per measurement, median of $ROUNDS interleaved rounds, synchronous_commit = on"
printf '%-7s %-12s %10s %12s %14s\n' clients variant tps latency_ms "tps/log_call"
for c in $CLIENTS; do
    run log_call "$c" >/dev/null   # warm-up
    "${PSQL[@]}" -c "CHECKPOINT"
    declare -A T=() L=() R=()
    for _ in $(seq 1 "$ROUNDS"); do
        base=""
        for v in $VARIANTS; do
            read -r t l <<<"$(run "$v" "$c")"
            [ "$v" = log_call ] && base=$t
            T[$v]="${T[$v]:-} $t"; L[$v]="${L[$v]:-} $l"
            R[$v]="${R[$v]:-} $(awk -v a="$t" -v b="$base" 'BEGIN {printf "%.4f", a / b}')"
        done
    done
    for v in $VARIANTS; do
        printf '%-7s %-12s %10.0f %12.2f %14.3f\n' "$c" "$v" "$(echo ${T[$v]} | median)" \
            "$(echo ${L[$v]} | median)" "$(echo ${R[$v]} | median)"
    done
    unset T L R
done
"${PSQL[@]}" -At -c "SELECT 'check: ' || count(*) FILTER (WHERE call_phase = 'started') || ' started, ' || count(*) FILTER (WHERE call_phase = 'ended') || ' ended, ' || count(*) FILTER (WHERE call_phase IS NULL AND caller_txid IS NOT NULL) || ' autonomous one-row calls; ' || (SELECT count(*) FROM tool_audit.verify()) || ' verify() problems' FROM tool_audit.tool_calls"
