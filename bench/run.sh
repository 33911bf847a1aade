#!/usr/bin/env bash
# Insert throughput of audited rows against a plain INSERT of the same columns
# into a table with the same indexes and no triggers, measured in one run on a
# throwaway cluster (synchronous_commit = on, fsync on), printed as ratios.
#   bench/run.sh [seconds per measurement (default 10)] [client counts (default "1 8")] [rounds (default 3)]
# All clients write for the same tenant.  The three variants run interleaved,
# round after round, and each figure is the median of its rounds, so that
# drift (tables growing, the machine's neighbours) touches all alike.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
SECS=${1:-10}
CLIENTS=${2:-"1 8"}
ROUNDS=${3:-3}
ta_require_packages
ta_build_install
BINDIR=$(ta_bindir)
WORK=$(ta_scratch_dir)
PORT=$(ta_free_port)
trap 'ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
cp "$TA_ROOT"/bench/*.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
ta_init_cluster "$WORK" "$PORT" "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 4GB"
ta_start_cluster "$WORK"
PSQL=(ta_as_user "$BINDIR/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
"${PSQL[@]}" -f "$WORK/setup.sql"

tps() {   # SCRIPT CLIENTS
    ta_as_user "$BINDIR/pgbench" -n -h "$WORK" -p "$PORT" -U postgres -c "$2" -j "$2" -T "$SECS" \
        -f "$WORK/$1" postgres 2>/dev/null | awk '/^tps = / {print $3}'
}

median() { tr ' ' '\n' | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, ${SECS}s per measurement, median of $ROUNDS interleaved rounds, synchronous_commit = on"
printf '%-8s %14s %16s %14s %16s %14s\n' clients "plain tps" "audited INSERT" ratio "log_call()" ratio
for c in $CLIENTS; do
    tps plain_insert.sql "$c" >/dev/null   # warm-up
    p_all="" i_all="" c_all=""
    for _ in $(seq 1 "$ROUNDS"); do
        p_all="$p_all $(tps plain_insert.sql "$c")"
        i_all="$i_all $(tps audited_insert.sql "$c")"
        c_all="$c_all $(tps log_call.sql "$c")"
    done
    plain=$(echo $p_all | median)
    ins=$(echo $i_all | median)
    call=$(echo $c_all | median)
    awk -v c="$c" -v p="$plain" -v i="$ins" -v l="$call" \
        'BEGIN { printf "%-8s %14.0f %16.0f %14.2f %16.0f %14.2f\n", c, p, i, i / p, l, l / p }'
done
"${PSQL[@]}" -At -c "SELECT 'check: ' || count(*) || ' audited rows, ' || count(*) FILTER (WHERE arguments->>'api_key' = '***REDACTED***') || ' with the api_key redacted' FROM tool_audit.tool_calls"
