#!/usr/bin/env bash
# Audited insert throughput with the default alert rules on against the same
# inserts with every rule disabled, measured in one run on a throwaway
# cluster (synchronous_commit = on, fsync on), printed as ratios.
#   bench/alerts.sh [seconds per measurement (default 10)] [client counts (default "1 8")] [rounds (default 3)]
# Two databases of one cluster, "rules_on" (the rules as installed) and
# "rules_off" (UPDATE alert_rules SET enabled = false), written by the same
# pgbench script (bench/alerts_insert.sql: the row of bench/audited_insert.sql
# with a user among 100 and a subject among 10,000, so that every row takes
# the same_subject rule's index probe, and rarely fires it), interleaved
# round after round; the ratio is the median of the ratios within a round.
# Two scripts: one row per transaction (what applications do; the commit's
# WAL flush dominates), and 50 rows per transaction (bench/alerts_batch.sql:
# the insert path's CPU dominates, so the rules' cost shows more), in rows/s.
# Both databases have the rate rules' indexes (they are part of 1.5): the
# ratio is the cost of matching the rules and probing, not of the indexes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CLIENTS=${2:-"1 8"}
ROUNDS=${3:-3}
bench_cluster "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 32GB" \
    "checkpoint_timeout = 1d"
cp "$TA_ROOT"/bench/alerts_insert.sql "$TA_ROOT"/bench/alerts_batch.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
for db in rules_on rules_off; do
    "${PSQL[@]}" -c "CREATE DATABASE $db"
    "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION tool_audit"
done
"${PSQL[@]}" -d rules_off -c "UPDATE tool_audit.alert_rules SET enabled = false"

tps() {   # DATABASE CLIENTS SCRIPT ROWS-PER-TRANSACTION: rows per second
    ta_as_user "$BINDIR/pgbench" -n -h "$WORK" -p "$PORT" -U postgres -c "$2" -j "$2" -T "$SECS" \
        -f "$WORK/$3" "$1" 2>/dev/null | awk -v n="$4" '/^tps = / {print $3 * n}'
}

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, ${SECS}s per measurement, median of $ROUNDS interleaved rounds, synchronous_commit = on; figures in audited rows per second"
echo "enabled rules in rules_on: $("${PSQL[@]}" -d rules_on -At -c "SELECT string_agg(rule_name, ', ' ORDER BY rule_name) FROM tool_audit.alert_rules WHERE enabled")"
# target: rules on / rules off >= 0.9 at 1 and 8 clients
printf '%-7s %-6s %12s %12s | %s\n' clients rows/tx "rules on" "rules off" "on / off"
for c in $CLIENTS; do
  for mode in "alerts_insert.sql 1" "alerts_batch.sql 50"; do
    set -- $mode
    script=$1 per=$2
    tps rules_off "$c" "$script" "$per" >/dev/null   # warm-up
    tps rules_on "$c" "$script" "$per" >/dev/null
    "${PSQL[@]}" -c "CHECKPOINT"
    on_all="" off_all=""
    for _ in $(seq 1 "$ROUNDS"); do
        off_all="$off_all $(tps rules_off "$c" "$script" "$per")"
        on_all="$on_all $(tps rules_on "$c" "$script" "$per")"
    done
    awk -v c="$c" -v per="$per" -v on="$(echo $on_all | median)" -v off="$(echo $off_all | median)" \
        -v ratio="$(ratios "$on_all" "$off_all" | median)" \
        'BEGIN { printf "%-7s %-6s %12.0f %12.0f | %8.2f\n", c, per, on, off, ratio }'
    echo "        rows/s by round: on $(r "$on_all") | off $(r "$off_all")"
  done
done
for db in rules_on rules_off; do
    "${PSQL[@]}" -d "$db" -At -c "SELECT '$db: ' || (SELECT count(*) FROM tool_audit.tool_calls) || ' audited rows, ' || count(*) || ' alerts, ' || coalesce(sum(count), 0) || ' rows in them' FROM tool_audit.alerts"
done
