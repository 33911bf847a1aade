#!/usr/bin/env bash
# Throughput of a single-row UPDATE on a typical application table (10
# columns, 2 indexes, 100,000 rows): untracked, tracked by tool_audit.track()
# (its C trigger into data_changes) and audited by a PL/pgSQL AFTER ROW
# trigger writing to_jsonb(OLD) and to_jsonb(NEW) into a plain table (the
# supa_audit / pgMemento way), measured in one run on a throwaway cluster
# (tool_audit preloaded, synchronous_commit = on, fsync on), printed as ratios.
#   bench/track.sh [seconds per measurement (default 10)] [client counts (default "1 8")] [rounds (default 3)]
# Two shapes: one UPDATE per transaction (commit flushes dominate), and ten
# UPDATEs per transaction (what the trigger itself costs shows more).  Every
# session runs inside a tool call (tool_audit.call set through PGOPTIONS, for
# the three variants alike) whose tool_calls row exists, so the tracked
# variant also looks up the call's tenant once per transaction.  Variants run
# interleaved, round after round; figures are medians over the rounds, each
# ratio the median of the within-round ratios (as bench/run.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CLIENTS=${2:-"1 8"}
ROUNDS=${3:-3}
bench_cluster "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 32GB" \
    "checkpoint_timeout = 1d"
cp "$TA_ROOT"/bench/track_*.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/track_setup.sql" >/dev/null

tps() {   # SCRIPT CLIENTS
    ta_as_user env PGOPTIONS="-c tool_audit.call=0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b" \
        "$BINDIR/pgbench" -n -h "$WORK" -p "$PORT" -U postgres -c "$2" -j "$2" -T "$SECS" \
        -f "$WORK/$1" postgres 2>/dev/null | awk '/^tps = / {print $3}'
}

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, ${SECS}s per measurement, median of $ROUNDS interleaved rounds, synchronous_commit = on"
printf '%-14s %-7s %9s %9s %9s | %17s | %17s\n' shape clients untracked tracked plpgsql "tracked/untracked" "tracked/plpgsql"
for shape in update update10; do
    for c in $CLIENTS; do
        tps track_${shape}_plain.sql "$c" >/dev/null   # warm-up
        "${PSQL[@]}" -c "CHECKPOINT"
        u_all="" t_all="" p_all=""
        for _ in $(seq 1 "$ROUNDS"); do
            u_all="$u_all $(tps track_${shape}_plain.sql "$c")"
            t_all="$t_all $(tps track_${shape}_tracked.sql "$c")"
            p_all="$p_all $(tps track_${shape}_plpgsql.sql "$c")"
        done
        awk -v s="$shape" -v c="$c" -v u="$(echo $u_all | median)" -v t="$(echo $t_all | median)" \
            -v p="$(echo $p_all | median)" -v tu="$(ratios "$t_all" "$u_all" | median)" \
            -v tp="$(ratios "$t_all" "$p_all" | median)" \
            'BEGIN { printf "%-14s %-7s %9.0f %9.0f %9.0f | %17.2f | %17.2f\n", s, c, u, t, p, tu, tp }'
        echo "        tps by round: untracked $(r "$u_all") | tracked $(r "$t_all") | plpgsql $(r "$p_all")"
    done
done
# the tracked updates were recorded, linked to the call, with its tenant
# (not the 5,000 rows of each audit table the setup wrote, which changed notes)
"${PSQL[@]}" -At -c "SELECT format('check: %s change rows, %s linked to the call with its tenant; %s PL/pgSQL audit rows',
    count(*), count(*) FILTER (WHERE call_event_id = '0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b' AND tenant_id = 'bench'),
    (SELECT count(*) FROM bench_audit_log WHERE new_record ->> 'balance' IS DISTINCT FROM old_record ->> 'balance'))
    FROM tool_audit.data_changes WHERE new_values ? 'balance'"
