#!/usr/bin/env bash
# Instructions per single-row UPDATE of the three variants bench/track.sh
# times (untracked, tracked, PL/pgSQL jsonb trigger), counted by callgrind in
# a single-user server (postgres --single: no client, no network, no wait for
# the disk), so that the CPU each variant costs shows without the noise of a
# shared 2-core machine's disk and neighbours.  The tracked statements run
# inside a tool call (tool_audit.call set, its tool_calls row logged), as in
# bench/track.sh.  Two shapes, as bench/track.sh: each UPDATE its own
# transaction, and ten UPDATEs per transaction (BEGIN ... COMMIT).
#   bench/track_callgrind.sh [statements (default 2000)]
#   TA_CALLGRIND_KEEP=DIR bench/track_callgrind.sh   (keeps the profiles, for callgrind_annotate)
# Prints, per variant and shape, the instructions per statement and, for the
# triggers, those of the trigger: for the tracked one track_change (the
# insert into data_changes and that table's insert trigger included) plus
# the closing of data_changes at commit (track_write.c keeps it open for the
# transaction); for the PL/pgSQL one the function's execution.  A warm-up of
# a tenth as many statements is counted too: the figures are the totals over
# all statements.
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

printf '%-10s %-6s %14s %14s\n' variant "xact" "instr/stmt" "trigger/stmt"
for per in 1 10; do
    for v in plain tracked plpgsql; do
        {
            echo "SET tool_audit.call = '0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b'"
            for i in $(seq 1 $((N + WARM))); do
                if [ "$per" -gt 1 ] && [ $(( (i - 1) % per )) -eq 0 ]; then echo "BEGIN"; fi
                echo "UPDATE bench_acct_$v SET balance = balance + 1, updated_at = now() WHERE id = $(( (i * 7919) % 100000 + 1 ))"
                if [ "$per" -gt 1 ] && { [ $(( i % per )) -eq 0 ] || [ "$i" -eq $((N + WARM)) ]; }; then echo "COMMIT"; fi
            done
        } >"$WORK/$v.stmts"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/$v.stmts"
        ta_as_user valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/$v.$per.out" \
            "$BINDIR/postgres" --single -D "$WORK/data" postgres <"$WORK/$v.stmts" >/dev/null 2>"$WORK/$v.log" \
            || ta_die "$v: postgres --single failed (see $WORK/$v.log)"
        # per UPDATE: the statements, the SET, and the BEGIN and COMMIT of each transaction
        callgrind_annotate --inclusive=yes "$WORK/$v.$per.out" 2>/dev/null | awk -v s="$v" -v p="$per" -v n=$((N + WARM)) '
            function count(x) { gsub(",", "", x); return x + 0 }
            /PROGRAM TOTALS/ { total = count($1) }
            /[^_]track_change \[/ && !tc { tc = count($1) }
            /track_write_xact_callback \[/ && !cb { cb = count($1) }
            /bench_audit_row|plpgsql_exec_trigger \[/ && !pl { pl = count($1) }
            END { trig = tc ? tc + cb : pl
                  printf "%-10s %-6s %14d %14s\n", s, p " upd", total / n, trig ? sprintf("%d", trig / n) : "-" }'
        if [ -n "${TA_CALLGRIND_KEEP:-}" ]; then cp "$WORK/$v.$per.out" "$TA_CALLGRIND_KEEP/"; fi
    done
done
