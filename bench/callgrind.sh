#!/usr/bin/env bash
# Instructions per statement of the three insert paths bench/run.sh times,
# counted by callgrind in a single-user server (postgres --single: each
# statement is its own transaction, no client, no network), so that a change
# to the insert path can be measured without the noise of a 2-core VM's disk.
#   bench/callgrind.sh [statements (default 2000)]
# Prints, for the plain INSERT, the audited INSERT and log_call(), the
# instructions per statement and, for the audited two, those of the insert
# trigger's work (ta_record_tool_call).  A warm-up of a tenth as many
# statements is counted too (caches filled, plans made): the figures are the
# program's totals divided by all statements run.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-2000}
WARM=$((N / 10))
command -v callgrind_annotate >/dev/null || ta_die "valgrind is not installed (apt-get install valgrind)"
bench_cluster
cp "$TA_ROOT"/bench/*.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/setup.sql" >/dev/null
ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -w stop >/dev/null   # postgres --single takes over

printf '%-16s %14s %14s\n' statement "instr/stmt" "trigger/stmt"
for s in plain_insert audited_insert log_call; do
    for _ in $(seq 1 $((N + WARM))); do cat "$WORK/$s.sql"; done >"$WORK/$s.stmts"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/$s.stmts"
    ta_as_user valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/$s.out" \
        "$BINDIR/postgres" --single -D "$WORK/data" postgres <"$WORK/$s.stmts" >/dev/null 2>"$WORK/$s.log" \
        || ta_die "$s: postgres --single failed (see $WORK/$s.log)"
    callgrind_annotate --inclusive=yes "$WORK/$s.out" 2>/dev/null | awk -v s="$s" -v n=$((N + WARM)) '
        function count(x) { gsub(",", "", x); return x + 0 }
        /PROGRAM TOTALS/ { total = count($1) }
        /ta_record_tool_call \[/ && !trig { trig = count($1) }
        END { printf "%-16s %14d %14s\n", s, total / n, trig ? sprintf("%d", trig / n) : "-" }'
done
