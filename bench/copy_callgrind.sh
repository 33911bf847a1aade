#!/usr/bin/env bash
# Instructions per row of a COPY into tool_audit.tool_calls against a COPY of
# the same file into the baseline bench_plain (bench/setup.sql), counted by
# callgrind in a single-user server (postgres --single, fsync off), so that
# the cost of bulk loading (issue 16, bench/copy.sh) can be compared without
# the noise of a shared machine.  The rows are bench/copy.sh's (the typical
# tool call of bench/run.sh, 100 tenants in turn).  Each COPY runs on its own
# copy of one data directory, in which both tables already hold WARM rows
# (loaded by a plain COPY and an audited one), so that both start from the
# same state with warm indexes and lanes of every chain already there.
#   bench/copy_callgrind.sh [rows (default 20000)] [warm rows (default 100000)]
# Prints instructions per row of the whole COPY and of its parts: the insert
# trigger (ExecBRInsertTriggers), index insertion (ExecInsertIndexTuples),
# reading the input (NextCopyFrom: parsing, and for the baseline its column
# defaults) and the heap insert.  Counts leave out what waits for memory:
# perf on the native server weighs index insertion more (doc/performance.md).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-20000}
WARM=${2:-100000}
command -v callgrind_annotate >/dev/null || ta_die "valgrind is not installed (apt-get install valgrind)"
bench_cluster "shared_buffers = 512MB" "max_wal_size = 32GB" "checkpoint_timeout = 1d"
cp "$TA_ROOT"/bench/setup.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/setup.sql" >/dev/null
# the rows of bench/copy.sh
COLS="tool_name, conversation_id, turn_number, user_id, user_role, model, tenant_id, arguments, result_summary, duration_ms"
ROW="'update_order_status', 'conv_' || i, 3, 'usr_98765', 'support_agent', 'gpt-4.1', 'tenant_' || (i % 100),
     '{\"order_id\": \"ORD-54321\", \"status\": \"shipped\", \"customer\": {\"id\": \"C-123\", \"email\": \"jane@example.com\"}, \"note\": \"customer asked twice\", \"api_key\": \"sk-abcdefghijklmnopqrstuvwx\"}'::jsonb,
     '{\"order_id\": \"ORD-54321\", \"status\": \"shipped\", \"tracking\": \"1Z999\", \"items\": [1, 2, 3]}'::jsonb, 145.2"
"${PSQL[@]}" -c "COPY (SELECT $ROW FROM generate_series(1, $WARM) i) TO '$WORK/warm.csv' (FORMAT csv)"
"${PSQL[@]}" -c "COPY (SELECT $ROW FROM generate_series(1, $N) i) TO '$WORK/rows.csv' (FORMAT csv)"
"${PSQL[@]}" -c "COPY bench_plain ($COLS) FROM '$WORK/warm.csv' (FORMAT csv)"
"${PSQL[@]}" -c "COPY tool_audit.tool_calls ($COLS) FROM '$WORK/warm.csv' (FORMAT csv)"
"${PSQL[@]}" -c "VACUUM ANALYZE"
ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -w stop >/dev/null   # postgres --single takes over

printf '%-12s %10s %10s %10s %10s %10s\n' "instr/row" COPY trigger indexes input heap
for t in bench_plain tool_audit.tool_calls; do
    ta_as_user cp -a "$WORK/data" "$WORK/data_$t"
    echo "COPY $t ($COLS) FROM '$WORK/rows.csv' (FORMAT csv);" >"$WORK/$t.sql"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/$t.sql"
    ta_as_user valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/$t.out" \
        "$BINDIR/postgres" --single -D "$WORK/data_$t" -c fsync=off postgres <"$WORK/$t.sql" \
        >/dev/null 2>"$WORK/$t.log" || ta_die "$t: postgres --single failed (see $WORK/$t.log)"
    rm -rf "$WORK/data_$t"
    callgrind_annotate --inclusive=yes "$WORK/$t.out" 2>/dev/null | awk -v t="$t" -v n="$N" '
        function count(x) { gsub(",", "", x); return x + 0 }
        function fn(s) { if (match(s, /:[A-Za-z_0-9]+ \[/)) return substr(s, RSTART + 1, RLENGTH - 3); return "" }
        { f = fn($0) }
        f != "" && !(f in v) { v[f] = count($1) }
        END { printf "%-12s %10d %10d %10d %10d %10d\n", t == "bench_plain" ? "plain" : "tool_calls",
                     v["CopyFrom"] / n, v["ExecBRInsertTriggers"] / n, v["ExecInsertIndexTuples"] / n,
                     v["NextCopyFrom"] / n, v["heap_insert"] / n }'
done
