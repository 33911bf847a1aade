#!/usr/bin/env bash
# Many tenants, many connections (issue 16): CLIENTS pgbench clients (default
# 48) each writing, statement after statement, for a tenant drawn at random
# among TENANTS (`\set t random(1, N)`, the tenant in the row), through an
# audited INSERT into tool_audit.tool_calls and through log_call(), against
# the plain INSERT of the same rows into bench_plain (bench/setup.sql), in one
# run on a throwaway cluster (preloaded, synchronous_commit = on, fsync on).
# Directly, and through PgBouncer in transaction pooling mode (started by this
# script on a local port with a config generated in the cluster's directory,
# stopped at the end) against plain through the same PgBouncer.
#   bench/tenants.sh [seconds per measurement (default 10)] [rounds (default 3)]
# Environment: TA_BENCH_TENANTS (default 1000), TA_BENCH_CLIENTS (default 48),
# TA_BENCH_POOLER ("none", "pgbouncer" or "both", default "both"),
# TA_BENCH_POOL_SIZE (PgBouncer's default_pool_size, default 20: the 48
# clients share 20 server sessions, so each session writes for any tenant),
# TA_BENCH_SETTING (one more postgresql.conf line, e.g. "wal_compression = lz4"),
# TA_BENCH_HUGE_PAGES=N (bench/lib.sh: N huge pages reserved, huge_pages = on),
# TA_BENCH_FLOOR=1 (one more variant: the same INSERT into bench_chained,
# bench/chain_floor.sql, the plain table plus the chain's columns and index,
# filled with no audit work: the ceiling for any design that stores the
# chain in the row).
# The variants run interleaved, round after round, as in bench/run.sh; tps are
# medians over the rounds, each ratio the median of the ratios of the rounds
# (each variant against the plain run of its own round).  Each measurement
# also takes the CPU time the server used a row: the ticks the machine's CPUs
# were busy over the run (/proc/stat) less pgbench's own CPU (bash's times)
# and PgBouncer's (/proc/PID/stat), over the rows; every PostgreSQL process is
# in it (backends, WAL writer, autovacuum), waits are not, and neither is
# CPU time the hypervisor gave to others.  Its ratios (plain's CPU a row over
# the variant's, median of the rounds) are to the tps ratios what the cost is
# to its effect on a saturated machine.  The run ends with
# verify()'s count of problems and the number of chains and lanes.
# TA_BENCH_PROFILE=DIR: in the first round of the direct path, while each
# variant runs, sample the client backends' wait events every 100 ms
# (DIR/VARIANT.waits) and record their CPU profile with perf's cpu-clock
# event (DIR/VARIANT.perf.txt: self time by library, then the top symbols), as
# doc/performance.md reports them; and WAL records, bytes and full-page
# images and buffer hits a row (DIR/VARIANT.wal, from pg_stat_wal and
# pg_stat_database around the run).  TA_BENCH_PROFILE_ROUND=N profiles round N
# instead of the first (the tables are larger by then).
# The profiled round's CPU a row includes the profiler's (perf, the wait sampling).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SECS=${1:-10}
ROUNDS=${2:-3}
TENANTS=${TA_BENCH_TENANTS:-1000}
CLIENTS=${TA_BENCH_CLIENTS:-48}
POOLER=${TA_BENCH_POOLER:-both}
POOL_SIZE=${TA_BENCH_POOL_SIZE:-20}
case $POOLER in none|pgbouncer|both) ;; *) ta_die "TA_BENCH_POOLER: none, pgbouncer or both" ;; esac
if [ "$POOLER" != none ] && ! command -v pgbouncer >/dev/null; then
    ta_die "pgbouncer not found (Debian package pgbouncer)"
fi
bench_cluster "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 32GB" \
    "checkpoint_timeout = 1d" "max_connections = $((CLIENTS + 20))" ${TA_BENCH_SETTING:+"$TA_BENCH_SETTING"}
FLOOR=${TA_BENCH_FLOOR:-}
cp "$TA_ROOT"/bench/setup.sql "$TA_ROOT"/bench/chain_floor.sql "$WORK/"
# the row of bench/plain_insert.sql, audited_insert.sql and log_call.sql,
# its tenant drawn at random
ARGS='{"order_id": "ORD-54321", "status": "shipped", "customer": {"id": "C-123", "email": "jane@example.com"}, "note": "customer asked twice", "api_key": "sk-abcdefghijklmnopqrstuvwx"}'
RES='{"order_id": "ORD-54321", "status": "shipped", "tracking": "1Z999", "items": [1, 2, 3]}'
COLS="tool_name, conversation_id, turn_number, user_id, user_role, model, tenant_id, arguments, result_summary, duration_ms"
VALS="'update_order_status', 'conv_bench', 3, 'usr_98765', 'support_agent', 'gpt-4.1', 'tenant_' || :t, '$ARGS', '$RES', 145.2"
printf '\\set t random(1, %d)\nINSERT INTO bench_plain (%s) VALUES (%s);\n' "$TENANTS" "$COLS" "$VALS" >"$WORK/t_plain.sql"
printf '\\set t random(1, %d)\nINSERT INTO bench_chained (%s) VALUES (%s);\n' "$TENANTS" "$COLS" "$VALS" >"$WORK/t_floor.sql"
printf '\\set t random(1, %d)\nINSERT INTO tool_audit.tool_calls (%s) VALUES (%s);\n' "$TENANTS" "$COLS" "$VALS" >"$WORK/t_insert.sql"
printf '\\set t random(1, %d)\nSELECT 1 FROM tool_audit.log_call('"'"'update_order_status'"'"', '"'"'%s'"'"', '"'"'%s'"'"', 145.2, ('"'"'{"conversation_id": "conv_bench", "turn_number": 3, "user_id": "usr_98765", "user_role": "support_agent", "model": "gpt-4.1", "tenant_id": "tenant_'"'"' || :t || '"'"'"}'"'"')::jsonb);\n' \
    "$TENANTS" "$ARGS" "$RES" >"$WORK/t_log_call.sql"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/setup.sql"
if [ -n "$FLOOR" ]; then "${PSQL[@]}" -f "$WORK/chain_floor.sql"; fi

PB_PORT=""
if [ "$POOLER" != none ]; then
    # PgBouncer listens on a Unix socket only, in the cluster's directory
    PB_PORT=$((PORT + 1))
    cat >"$WORK/pgbouncer.ini" <<INI
[databases]
postgres = host=$WORK port=$PORT dbname=postgres user=postgres
[pgbouncer]
listen_addr =
listen_port = $PB_PORT
unix_socket_dir = $WORK
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $((CLIENTS + 20))
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
INI
    echo '"postgres" ""' >"$WORK/userlist.txt"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
    ta_as_user pgbouncer -d -q "$WORK/pgbouncer.ini"
    # stop PgBouncer, then what bench_cluster's trap does
    trap 'kill "$(cat "$WORK/pgbouncer.pid" 2>/dev/null)" 2>/dev/null || true; bench_cleanup' EXIT
    for _ in $(seq 1 50); do [ -S "$WORK/.s.PGSQL.$PB_PORT" ] && break; sleep 0.1; done
fi

PROFILE=${TA_BENCH_PROFILE:-}
if [ -n "$PROFILE" ]; then
    mkdir -p "$PROFILE"
    # the wait events of the other client backends, N samples 100 ms apart
    "${PSQL[@]}" <<'SQL'
CREATE FUNCTION bench_waits(n int) RETURNS TABLE (wait text, samples bigint) LANGUAGE plpgsql AS $f$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS bench_wait_samples (wait text);
    TRUNCATE bench_wait_samples;
    FOR i IN 1 .. n LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO bench_wait_samples
            SELECT CASE WHEN a.state <> 'active' THEN 'not active (' || a.state || ')'
                        ELSE coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU (no wait event)') END
              FROM pg_stat_activity a
             WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid();
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN QUERY SELECT s.wait, count(*) FROM bench_wait_samples s GROUP BY 1 ORDER BY 2 DESC;
END
$f$;
SQL
fi

# profile SCRIPT: wait events and perf profile of a run of SCRIPT (started
# by the caller) into $PROFILE
profile() {
    local n=$(( (SECS - 2) * 10 )) pids
    sleep 1
    pids=$("${PSQL[@]}" -At -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
                                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
    if command -v perf >/dev/null; then
        perf record -q -e cpu-clock -g -p "$pids" -o "$PROFILE/${1%.sql}.perf" -- sleep $((SECS - 2)) \
            >/dev/null 2>&1 &
    fi
    "${PSQL[@]}" -At -F ' ' -c "SELECT samples, wait FROM bench_waits($n)" >"$PROFILE/${1%.sql}.waits"
    wait
    if [ -f "$PROFILE/${1%.sql}.perf" ]; then
        { perf report -q -i "$PROFILE/${1%.sql}.perf" -g none --no-children --sort dso 2>/dev/null | head -6
          perf report -q -i "$PROFILE/${1%.sql}.perf" -g none --no-children --sort dso,symbol 2>/dev/null | head -40
        } | grep -v '^$' >"$PROFILE/${1%.sql}.perf.txt" || true
    fi
}

# ticks the machine's CPUs have been busy (user, nice, system, irq, softirq)
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# ticks of CPU PgBouncer has used (0 without it)
pooler_ticks() {
    if [ -n "$PB_PORT" ]; then awk '{print $14 + $15}' "/proc/$(cat "$WORK/pgbouncer.pid")/stat"; else echo 0; fi
}
HZ=$(getconf CLK_TCK)
m3() { awk '{printf "%.3f", $1}'; }
# run_pgbench SCRIPT PORT: pgbench's output, then "cpu BUSY POOLER" (ticks
# over the run) and bash's times, whose second line is pgbench's own CPU
run_pgbench() {
    local b0 g0
    b0=$(busy_ticks)
    g0=$(pooler_ticks)
    ta_as_user "$BINDIR/pgbench" -n -h "$WORK" -p "$2" -U postgres -c "$CLIENTS" -j "$(nproc)" -T "$SECS" \
        -f "$WORK/$1" postgres 2>/dev/null
    echo "cpu $(( $(busy_ticks) - b0 )) $(( $(pooler_ticks) - g0 ))"
    times
}
# "TPS CPU" of run_pgbench's output: CPU the server used a row, in ms (the
# machine's busy time less pgbench's and PgBouncer's)
tps_cpu() {
    awk -v hz="$HZ" 'function sec(s, a) { split(s, a, /[ms]/); return a[1] * 60 + a[2] }
        /^tps = / {t = $3}
        /^number of transactions actually processed/ {n = $NF}
        /^cpu / {b = $2; g = $3}
        /^[0-9]+m[0-9.]+s [0-9]+m[0-9.]+s$/ {c = sec($1) + sec($2)}
        END { printf "%s %.4f\n", t, ((b - g) / hz - c) * 1000 / n }'
}

tps() {   # SCRIPT PORT [profile]: "TPS CPU" (tps_cpu)
    if [ -n "$PROFILE" ] && [ "${3:-}" = profile ]; then
        # WAL and buffer hits a transaction (one row each), from the
        # cumulative statistics before and after the run
        local q="SELECT w.wal_records, w.wal_fpi, w.wal_bytes, d.blks_hit, d.blks_read, b.buffers_backend
                 FROM pg_stat_wal w, pg_stat_database d, pg_stat_bgwriter b WHERE d.datname = current_database()"
        local before after n out
        local io="SELECT relid::regclass::text AS rel, heap_blks_read + coalesce(toast_blks_read, 0) AS rd,
                         heap_blks_hit + coalesce(toast_blks_hit, 0) AS hit FROM pg_statio_all_tables
                  UNION ALL SELECT indexrelid::regclass::text, idx_blks_read, idx_blks_hit FROM pg_statio_all_indexes"
        "${PSQL[@]}" -c "SELECT pg_stat_force_next_flush()" >/dev/null
        # blocks read and hit by relation, for DIR/VARIANT.io
        "${PSQL[@]}" -q -c "SET client_min_messages = warning; DROP TABLE IF EXISTS bench_io; CREATE UNLOGGED TABLE bench_io AS $io" >/dev/null
        before=$("${PSQL[@]}" -At -F ' ' -c "$q")
        profile "$1" &
        local pp=$!
        out=$(run_pgbench "$1" "$2")
        wait "$pp"
        sleep 1
        after=$("${PSQL[@]}" -At -F ' ' -c "$q")
        n=$(echo "$out" | awk '/^number of transactions actually processed/ {print $NF}')
        echo "$before $after $n" | awk '{n = $13; printf "per row: %.2f WAL records, %.0f WAL bytes, %.4f full-page images, %.1f buffer hits, %.3f buffer reads, %.3f buffers written by backends (%d rows)\n",
            ($7 - $1) / n, ($9 - $3) / n, ($8 - $2) / n, ($10 - $4) / n, ($11 - $5) / n, ($12 - $6) / n, n}' >"$PROFILE/${1%.sql}.wal"
        "${PSQL[@]}" -At -F ' ' -c "SELECT 'blocks a row, read / hit:', a.rel, round((a.rd - b.rd)::numeric / $n, 3),
                                           round((a.hit - b.hit)::numeric / $n, 2),
                                           pg_size_pretty(pg_relation_size(a.rel::regclass))
                                      FROM ($io) a JOIN bench_io b USING (rel)
                                     WHERE a.rd > b.rd OR a.hit > b.hit ORDER BY a.rd - b.rd DESC, a.hit - b.hit DESC LIMIT 12" \
            >"$PROFILE/${1%.sql}.io"
        echo "$out" | tps_cpu
        return
    fi
    run_pgbench "$1" "$2" | tps_cpu
}

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores (load $(cut -d' ' -f1-3 /proc/loadavg) before), $CLIENTS clients, $TENANTS tenants, ${SECS}s per measurement, median of $ROUNDS interleaved rounds, synchronous_commit = on, $HUGE_PAGES"
printf '%-10s %9s %9s %9s | %9s %9s' path plain INSERT log_call INSERT/p log_call/p
if [ -n "$FLOOR" ]; then printf ' | %9s %9s' chained chained/p; fi
echo
paths="direct"
[ "$POOLER" = pgbouncer ] && paths="pgbouncer"
[ "$POOLER" = both ] && paths="direct pgbouncer"
tps t_plain.sql "$PORT" >/dev/null   # warm-up
"${PSQL[@]}" -c "CHECKPOINT"
for path in $paths; do
    port=$PORT
    [ "$path" = pgbouncer ] && port=$PB_PORT
    p_all="" i_all="" c_all="" f_all="" p_cpu="" i_cpu="" c_cpu="" f_cpu=""
    for round in $(seq 1 "$ROUNDS"); do
        prof=""
        [ "$path" = direct ] && [ "$round" = "${TA_BENCH_PROFILE_ROUND:-1}" ] && prof=profile
        read -r t c < <(tps t_plain.sql "$port" $prof); p_all="$p_all $t"; p_cpu="$p_cpu $c"
        if [ -n "$FLOOR" ]; then
            read -r t c < <(tps t_floor.sql "$port" $prof); f_all="$f_all $t"; f_cpu="$f_cpu $c"
        fi
        read -r t c < <(tps t_insert.sql "$port" $prof); i_all="$i_all $t"; i_cpu="$i_cpu $c"
        read -r t c < <(tps t_log_call.sql "$port" $prof); c_all="$c_all $t"; c_cpu="$c_cpu $c"
    done
    awk -v n="$path" -v p="$(echo $p_all | median)" -v i="$(echo $i_all | median)" \
        -v l="$(echo $c_all | median)" \
        -v ip="$(ratios "$i_all" "$p_all" | median)" -v lp="$(ratios "$c_all" "$p_all" | median)" \
        'BEGIN { printf "%-10s %9.0f %9.0f %9.0f | %9.2f %9.2f", n, p, i, l, ip, lp }'
    if [ -n "$FLOOR" ]; then
        awk -v f="$(echo $f_all | median)" -v fp="$(ratios "$f_all" "$p_all" | median)" \
            'BEGIN { printf " | %9.0f %9.2f", f, fp }'
    fi
    echo
    echo "           tps by round: plain $(r "$p_all") | INSERT $(r "$i_all") | log_call $(r "$c_all")${FLOOR:+ | chained $(r "$f_all")}"
    # the server's CPU a row: plain's over the variant's, as the tps ratios
    cpu_line="server CPU ms a row: plain $(echo $p_cpu | median | m3) INSERT $(echo $i_cpu | median | m3) log_call $(echo $c_cpu | median | m3)"
    cpu_line="$cpu_line | plain/INSERT $(ratios "$p_cpu" "$i_cpu" | median | awk '{printf "%.2f", $1}')"
    cpu_line="$cpu_line plain/log_call $(ratios "$p_cpu" "$c_cpu" | median | awk '{printf "%.2f", $1}')"
    if [ -n "$FLOOR" ]; then
        cpu_line="$cpu_line plain/chained $(ratios "$p_cpu" "$f_cpu" | median | awk '{printf "%.2f", $1}') (chained $(echo $f_cpu | median | m3))"
    fi
    echo "           $cpu_line"
    echo "           CPU ms a row by round: plain${p_cpu} | INSERT${i_cpu} | log_call${c_cpu}${FLOOR:+ | chained${f_cpu}}"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"${PSQL[@]}" -At -F ' ' -c "SELECT 'check: audited rows', count(*), 'tenants', count(DISTINCT tenant_id), 'lanes', count(DISTINCT (chain_id, chain_lane)) FROM tool_audit.tool_calls"
"${PSQL[@]}" -At -F ' ' -c "SELECT 'verify() problems', count(*) FROM tool_audit.verify()"
