#!/usr/bin/env bash
# Instructions per statement of an audited INSERT written for many tenants at
# random against one tenant, each against the plain INSERT of the same rows
# into the baseline bench_plain (bench/setup.sql), counted by callgrind in a
# single-user server (postgres --single, fsync off: each statement its own
# transaction, one backend, no client, no disk wait), so that the cost of
# many tenants, and what the lane head hints (src/lane_hint.c) save of it,
# show without the noise of a shared machine (bench/tenants.sh times it).
#   bench/tenants_callgrind.sh [statements (default 2000)] [tenants (default 1000)]
#   TA_CALLGRIND_KEEP=DIR bench/tenants_callgrind.sh   (keeps the profiles, for callgrind_annotate)
# The rows are those of bench/plain_insert.sql and bench/audited_insert.sql,
# the tenant 'tenant_K', K drawn by a fixed pseudo-random sequence (the same
# in every case).  Eight cases: plain and audited, for 1 tenant and for
# TENANTS at random, preloaded (the cluster's shared_preload_libraries =
# 'tool_audit') and not (-c shared_preload_libraries=: no hints, every lane
# taken has its head read from the chain position index).  Each case starts
# from a copy of one data directory and writes a warm-up first: TENANTS rows
# (tenant_1 .. tenant_TENANTS in turn; all tenant_1 for one tenant), then a
# tenth of STATEMENTS at random, so that every chain has rows and, preloaded,
# every lane given back has left its head in shared memory (which a server
# loses when it stops: the warm-up must be in the process measured).  Each
# case runs twice, warm-up only and warm-up then STATEMENTS: the figures are
# the difference divided by STATEMENTS (the server's start and the warm-up
# cancel out).
# Why this exercises the hints: a session keeps at most 32 chains' lanes
# (src/chain.c, MAX_SESSION_LANES, evicting down to 16), and one whose writes
# seldom find a chain it remembers (under a quarter of them, REUSE_KEEP) gives
# back at the end of each transaction every lane it wrote: at random over
# 1,000 tenants every audited statement takes a lane and gives it back.
# Printed per statement: instructions of the whole statement, of the insert
# trigger (ta_record_tool_call), of ta_chain_append (the row's place: the
# lane taken, its head known, the link hashed), of chain_xact_callback (the
# lanes at transaction end: given back, the hint left) and of the hint calls
# (ta_lane_hint_take + ta_lane_hint_put); calls a statement: lanes taken
# (ta_lane_hint_take, called preloaded or not), lanes given back
# (ta_lane_hint_put) and heads read from the index (ta_anchor_head, called
# only by that read); then plain / audited for each case.  The script fails if
# a preloaded case did not make the hints' shared memory (hint_shmem_startup
# not called: single-user mode ignored shared_preload_libraries), if a case
# not preloaded did, if a statement failed, or if at TENANTS preloaded fewer
# than half of the audited statements took a lane, gave it back and used a
# hint.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-2000}
T=${2:-1000}
WARM=$((N / 10))
command -v callgrind_annotate >/dev/null || ta_die "valgrind is not installed (apt-get install valgrind)"
bench_cluster
cp "$TA_ROOT"/bench/setup.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/setup.sql" >/dev/null
ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -w stop >/dev/null   # postgres --single takes over

# the tenant of each statement: warm-up then measured, for T tenants (Park-Miller
# generator, seed 1: the same sequence whatever awk) and for one
awk -v t="$T" -v w="$WARM" -v n="$N" 'BEGIN {
    x = 1
    for (i = 1; i <= t; i++) print i
    for (i = 1; i <= w + n; i++) { x = (x * 16807) % 2147483647; print 1 + int(t * (x - 1) / 2147483646) } }' \
    >"$WORK/tenants.$T"
awk -v t="$T" -v w="$WARM" -v n="$N" 'BEGIN { for (i = 1; i <= t + w + n; i++) print 1 }' >"$WORK/tenants.1"
for table in plain audited; do
    sql=$(cat "$TA_ROOT/bench/${table}_insert.sql")
    [ "$(grep -o "'acme'" <<<"$sql" | wc -l)" -eq 1 ] || ta_die "bench/${table}_insert.sql: expected one 'acme'"
    for tn in 1 "$T"; do
        PRE=${sql%%"'acme'"*} SUF=${sql#*"'acme'"} awk '{ print ENVIRON["PRE"] "'"'"'tenant_" $1 "'"'"'" ENVIRON["SUF"] }' \
            "$WORK/tenants.$tn" >"$WORK/$table.$tn.all"
        head -n $((T + WARM)) "$WORK/$table.$tn.all" >"$WORK/$table.$tn.warm"
    done
done
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"

# measure NAME STATEMENTS_FILE PRELOAD(yes/no): "key value" lines in
# $WORK/NAME.vals: the program's total, inclusive counts and calls of the
# functions below
FUNCS="ta_record_tool_call ta_chain_append chain_xact_callback ta_lane_hint_take ta_lane_hint_put ta_anchor_head hint_shmem_startup"
measure() {
    local name=$1 in=$2 opts=(-c fsync=off)
    [ "$3" = no ] && opts+=(-c "shared_preload_libraries=")
    ta_as_user cp -a "$WORK/data" "$WORK/data_$name"
    if ! ta_as_user valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/$name.out" \
            "$BINDIR/postgres" --single -D "$WORK/data_$name" "${opts[@]}" postgres <"$in" \
            >"$WORK/$name.stdout" 2>"$WORK/$name.log" \
       || grep -q -E "(ERROR|FATAL|PANIC):  " "$WORK/$name.log" "$WORK/$name.stdout"; then
        grep -h -m 5 -E "(ERROR|FATAL|PANIC):  " "$WORK/$name.log" "$WORK/$name.stdout" >&2 || tail -n 5 "$WORK/$name.log" >&2
        ta_die "$name: postgres --single failed"
    fi
    rm -rf "$WORK/data_$name"
    {
        callgrind_annotate --inclusive=yes --threshold=100 "$WORK/$name.out" 2>/dev/null | awk -v funcs="$FUNCS" '
            function count(x) { gsub(",", "", x); return x + 0 }
            function fn(s) { if (match(s, /:[A-Za-z_0-9]+ \[/)) return substr(s, RSTART + 1, RLENGTH - 3); return "" }
            BEGIN { split(funcs, a, " "); for (i in a) want[a[i]] = 1 }
            /PROGRAM TOTALS/ { print "total", count($1) }
            { f = fn($0) }
            f in want && !(f in seen) { seen[f] = 1; print "incl:" f, count($1) }'
        # calls: the "calls=" lines after each "cfn=" in the profile (names
        # compressed: "(id) name" the first time, "(id)" after)
        awk -v funcs="$FUNCS" '
            BEGIN { split(funcs, a, " "); for (i in a) want[a[i]] = 1 }
            /^c?fn=\(/ { match($0, /\([0-9]+\)/); id = substr($0, RSTART, RLENGTH)
                         if (length($0) > RSTART + RLENGTH) name[id] = substr($0, RSTART + RLENGTH + 1)
                         if ($0 ~ /^cfn=/) callee = name[id]
                         next }
            /^calls=/ { split($1, c, "="); if (callee in want) calls[callee] += c[2] }
            END { for (f in want) print "calls:" f, calls[f] + 0 }' "$WORK/$name.out"
    } >"$WORK/$name.vals"
    if [ -n "${TA_CALLGRIND_KEEP:-}" ]; then cp "$WORK/$name.out" "$TA_CALLGRIND_KEEP/"; fi
    rm -f "$WORK/$name.out"
}
val() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$WORK/$1.vals"; }
# per NAME KEY: (warm-up then statements) - (warm-up only), a statement
per() { echo "$(val "$1.all" "$2") $(val "$1.warm" "$2")" | awk -v n="$N" '{ printf "%.0f", ($1 - $2) / n }'; }
perc() { echo "$(val "$1.all" "$2") $(val "$1.warm" "$2")" | awk -v n="$N" '{ printf "%.2f", ($1 - $2) / n }'; }

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(valgrind --version), postgres --single, fsync = off;" \
     "per statement: $N statements after a warm-up of $((T + WARM)), minus the warm-up alone"
printf '%-8s %-9s %-8s %10s %9s %7s %7s %7s %6s %6s %6s\n' \
    tenants preloaded table statement trigger chain end hints takes backs reads
for c in "1 yes" "$T yes" "1 no" "$T no"; do
    read -r tn pl <<<"$c"
    for table in plain audited; do
        name=$table.$tn.$pl
        for part in warm all; do measure "$name.$part" "$WORK/$table.$tn.$part" "$pl"; done
        for part in warm all; do
            started=$(val "$name.$part" calls:hint_shmem_startup)
            if [ "$pl" = yes ] && [ "$started" -eq 0 ]; then
                ta_die "$name.$part: hint_shmem_startup not called: postgres --single did not preload tool_audit"
            elif [ "$pl" = no ] && [ "$started" -ne 0 ]; then
                ta_die "$name.$part: hint_shmem_startup called without shared_preload_libraries"
            fi
        done
        hints=$(( $(per "$name" incl:ta_lane_hint_take) + $(per "$name" incl:ta_lane_hint_put) ))
        if [ "$table" = plain ]; then
            printf '%-8s %-9s %-8s %10s %9s %7s %7s %7s %6s %6s %6s\n' "$tn" "$pl" "$table" "$(per "$name" total)" - - - - - - -
        else
            printf '%-8s %-9s %-8s %10s %9s %7s %7s %7s %6s %6s %6s\n' "$tn" "$pl" "$table" "$(per "$name" total)" \
                "$(per "$name" incl:ta_record_tool_call)" "$(per "$name" incl:ta_chain_append)" \
                "$(per "$name" incl:chain_xact_callback)" "$hints" \
                "$(perc "$name" calls:ta_lane_hint_take)" "$(perc "$name" calls:ta_lane_hint_put)" \
                "$(perc "$name" calls:ta_anchor_head)"
        fi
    done
done
echo "(trigger: ta_record_tool_call; chain: ta_chain_append; end: chain_xact_callback, the lanes at transaction end;"
echo " hints: ta_lane_hint_take + ta_lane_hint_put;"
echo " calls a statement: takes = lanes taken, backs = lanes given back, reads = heads read from the index)"

# the T-tenant preloaded audited case must have taken, given back and used hints
awk -v t="$(perc "audited.$T.yes" calls:ta_lane_hint_take)" -v b="$(perc "audited.$T.yes" calls:ta_lane_hint_put)" \
    -v r="$(perc "audited.$T.yes" calls:ta_anchor_head)" 'BEGIN { exit !(t >= 0.5 && b >= 0.5 && t - r >= 0.5) }' \
    || ta_die "at $T tenants, preloaded: fewer than half the statements took a lane, gave it back and used a hint (more tenants?)"

tot() { per "$1" total; }
for c in "1 yes" "$T yes" "1 no" "$T no"; do
    read -r tn pl <<<"$c"
    awk -v t="$tn" -v pl="$pl" -v p="$(tot "plain.$tn.$pl")" -v a="$(tot "audited.$tn.$pl")" \
        'BEGIN { printf "%s tenant%s, %s: plain / audited %.3f, audited - plain %d\n",
                 t, t == 1 ? "" : "s", pl == "yes" ? "preloaded" : "not preloaded", p / a, a - p }'
done
lane() { echo $(( $(per "$1" incl:ta_chain_append) + $(per "$1" incl:chain_xact_callback) )); }
gap() { echo $(( $(tot "audited.$1") - $(tot "plain.$1") )); }
awk -v t="$T" -v y1="$(gap 1.yes)" -v yt="$(gap "$T.yes")" -v n1="$(gap 1.no)" -v nt="$(gap "$T.no")" \
    -v ly1="$(lane audited.1.yes)" -v lyt="$(lane "audited.$T.yes")" -v ln1="$(lane audited.1.no)" -v lnt="$(lane "audited.$T.no")" '
    BEGIN { printf "%d tenants against 1, audited - plain: %d more a statement preloaded, %d more not preloaded\n",
                   t, yt - y1, nt - n1
            printf "lane work (chain + end) a statement, 1 tenant -> %d: preloaded %d -> %d, not preloaded %d -> %d\n",
                   t, ly1, lyt, ln1, lnt }'
