#!/usr/bin/env bash
# Instructions per single-row UPDATE of the three variants bench/track.sh
# times (untracked, tracked, PL/pgSQL jsonb trigger), counted by callgrind in
# a single-user server (postgres --single: each statement its own transaction,
# no client, no network, no wait for the disk), so that the CPU each variant
# costs shows without the noise of a shared 2-core machine's disk and
# neighbours.  The tracked statements run inside a tool call (tool_audit.call
# set, its tool_calls row logged), as in bench/track.sh.
#   bench/track_callgrind.sh [statements (default 2000)]
# Prints, per variant, the instructions per statement and, for the tracked
# one, those of its trigger (track_change, the insert into data_changes and
# that table's insert trigger included).  A warm-up of a tenth as many
# statements is counted too: the figures are the totals over all statements.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-2000}
WARM=$((N / 10))
command -v callgrind_annotate >/dev/null || ta_die "valgrind is not installed (apt-get install valgrind)"
bench_cluster
cp "$TA_ROOT"/bench/track_setup.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/track_setup.sql" >/dev/null
ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -w stop >/dev/null   # postgres --single takes over

printf '%-10s %14s %14s\n' variant "instr/stmt" "trigger/stmt"
for v in plain tracked plpgsql; do
    {
        echo "SET tool_audit.call = '0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b'"
        for i in $(seq 1 $((N + WARM))); do
            echo "UPDATE bench_acct_$v SET balance = balance + 1, updated_at = now() WHERE id = $(( (i * 7919) % 100000 + 1 ))"
        done
    } >"$WORK/$v.stmts"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/$v.stmts"
    ta_as_user valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/$v.out" \
        "$BINDIR/postgres" --single -D "$WORK/data" postgres <"$WORK/$v.stmts" >/dev/null 2>"$WORK/$v.log" \
        || ta_die "$v: postgres --single failed (see $WORK/$v.log)"
    callgrind_annotate --inclusive=yes "$WORK/$v.out" 2>/dev/null | awk -v s="$v" -v n=$((N + WARM + 1)) '
        function count(x) { gsub(",", "", x); return x + 0 }
        /PROGRAM TOTALS/ { total = count($1) }
        /[^_]track_change \[/ && !trig { trig = count($1) }
        /bench_audit_row|plpgsql_exec_trigger \[/ && !trig { trig = count($1) }
        END { printf "%-10s %14d %14s\n", s, total / n, trig ? sprintf("%d", trig / n) : "-" }'
done
