#!/usr/bin/env bash
# Instructions per audited INSERT with the default alert rules on and with
# every rule disabled, counted by callgrind in a single-user server (as
# bench/callgrind.sh: no client, no network, no disk noise).
#   bench/alerts_callgrind.sh [statements (default 2000)]
# The row is bench/alerts_insert.sql's, its user cycling over 100 and its
# subject over 10,000 values, so that every row takes the same_subject
# rule's index probe.  Prints instructions per statement, those of the
# insert trigger's work (ta_record_tool_call) and of the rules' evaluation
# (ta_alerts_tool_call).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-2000}
WARM=$((N / 10))
command -v callgrind_annotate >/dev/null || ta_die "valgrind is not installed (apt-get install valgrind)"
bench_cluster
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
for db in rules_on rules_off; do
    "${PSQL[@]}" -c "CREATE DATABASE $db"
    "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION tool_audit"
done
"${PSQL[@]}" -d rules_off -c "UPDATE tool_audit.alert_rules SET enabled = false"
ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -w stop >/dev/null   # postgres --single takes over

for i in $(seq 1 $((N + WARM))); do
    echo "INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, turn_number, user_id, user_role, model, tenant_id, subject_id, arguments, result_summary, duration_ms) VALUES ('update_order_status', 'conv_bench', 3, 'usr_$((i % 100))', 'support_agent', 'gpt-4.1', 'acme', 'pat_$(( (i * 7919) % 10000 ))', '{\"order_id\": \"ORD-54321\", \"status\": \"shipped\", \"customer\": {\"id\": \"C-123\", \"email\": \"jane@example.com\"}, \"note\": \"customer asked twice\", \"api_key\": \"sk-abcdefghijklmnopqrstuvwx\"}', '{\"order_id\": \"ORD-54321\", \"status\": \"shipped\", \"tracking\": \"1Z999\", \"items\": [1, 2, 3]}', 145.2);"
done >"$WORK/stmts"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/stmts"

printf '%-10s %14s %14s %14s\n' database "instr/stmt" "trigger/stmt" "alerts/stmt"
for db in rules_on rules_off; do
    ta_as_user valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/$db.out" \
        "$BINDIR/postgres" --single -D "$WORK/data" "$db" <"$WORK/stmts" >/dev/null 2>"$WORK/$db.log" \
        || ta_die "$db: postgres --single failed (see $WORK/$db.log)"
    callgrind_annotate --inclusive=yes "$WORK/$db.out" 2>/dev/null | awk -v s="$db" -v n=$((N + WARM)) '
        function count(x) { gsub(",", "", x); return x + 0 }
        /PROGRAM TOTALS/ { total = count($1) }
        /ta_record_tool_call \[/ && !trig { trig = count($1) }
        /ta_alerts_tool_call \[/ && !al { al = count($1) }
        END { printf "%-10s %14d %14s %14s\n", s, total / n, trig ? sprintf("%d", trig / n) : "-", al ? sprintf("%d", al / n) : "-" }'
done
