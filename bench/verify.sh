#!/usr/bin/env bash
# Time and memory of tool_audit.verify() against a scan that reads every row
# (the issue's target: within 3x, memory flat), on a throwaway cluster filled
# with realistic audited rows.  verify() must report no problem.
#   bench/verify.sh [rows (default 1000000)] [rounds (default 3)]
# Measured twice, at rows/4 and at rows, so that memory can be seen not to grow
# with the table.  At each size the queries run interleaved, round after
# round, each in a fresh session; times are medians, memory the highest peak.
# Memory is the backend's private memory (RssAnon in /proc/<pid>/status,
# sampled every 20 ms while the query runs): RSS and VmHWM also count the
# shared buffers a backend touches, which grow with the table for any query
# reading through shared_buffers and say nothing about the query's own memory.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROWS=${1:-1000000}
ROUNDS=${2:-3}
bench_cluster "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 4GB"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"

VERIFY_Q="SELECT count(*) FROM tool_audit.verify()"
# The issue's baseline, measured as written.  But the planner drops the unused
# t::text of the subquery and counts the primary key with an index-only scan,
# reading no row at all (the plans are printed at the end); so the same again
# in a form that does read and render every row, which is what was meant,
# in one process as verify() (PARALLEL UNSAFE) runs: on two cores a parallel
# scan would compare two cores with one, and its workers' memory would not
# be sampled.
SCAN_Q="SELECT count(*) FROM (SELECT t::text FROM tool_audit.tool_calls t) s"
READ_Q="SELECT count(t::text) FROM tool_audit.tool_calls t"
READ_SET="SET max_parallel_workers_per_gather = 0"
# Rows per INSERT (and transaction): enough to make commits cheap, and few
# enough for the lock table: the insert trigger takes a transaction-level lock
# per row (on its event_id), so with the default max_locks_per_transaction a
# transaction of 20000 rows fails with "out of shared memory".
BATCH=2000

# insert_sql FROM TO: one INSERT ... SELECT of rows FROM..TO.  Eight tenants,
# conversations of a dozen turns, five tools; arguments of 300-400 bytes with a
# nested customer (the email is sanitized), an item list and now and then an
# api_key (redacted); a failure every 17th call.
insert_sql() { realistic_rows_sql "$1" "$2" 8; }

# A sleep without a fork per sample: read with a timeout on a pipe nobody writes.
exec {SLEEPFD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEPFD" _ || true; }

# measure QUERY [SETTING]: runs QUERY in a fresh session (after SETTING) and
# prints "ms result peak_rss_anon_kB".
# The session writes its backend's pid to a file and pauses, so that sampling
# starts before the query does.
measure() {
    local pidf="$WORK/backend.pid" out="$WORK/measure.out" psql_pid bpid="" peak=0 k v _
    rm -f "$pidf"
    "${PSQL[@]}" -At >"$out" <<SQL &
SELECT pg_backend_pid() \g $pidf
SELECT pg_sleep(0.3) \g /dev/null
${2:-};
\timing on
$1;
SQL
    psql_pid=$!
    while [ -z "$bpid" ] && kill -0 "$psql_pid" 2>/dev/null; do
        [ -s "$pidf" ] && read -r bpid <"$pidf"
        nap 0.01
    done
    while kill -0 "$psql_pid" 2>/dev/null; do
        # the backend may be gone already: then the redirect fails
        if ! { while read -r k v _; do
                   if [ "$k" = RssAnon: ] && [ "$v" -gt "$peak" ]; then peak=$v; fi
               done <"/proc/$bpid/status"; } 2>/dev/null; then break; fi
        nap 0.02
    done
    wait "$psql_pid"
    awk -v peak="$peak" '/^Time: / {ms = $2} !/^Time: / && NF {res = $1} END {print ms, res, peak}' "$out"
}

max() { tr ' ' '\n' | sort -n | tail -1; }

# report ROWS LOAD-SECONDS: the interleaved rounds at the current size, one table line
report() {
    local n=$1 load_s=$2 vt="" st="" rt="" vm="" sm="" rm="" r m res peak failed=0
    measure "$READ_Q" "$READ_SET" >/dev/null     # warm-up: the table into the page cache
    for r in $(seq 1 "$ROUNDS"); do
        read -r m res peak < <(measure "$VERIFY_Q")
        vt="$vt $m" vm="$vm $peak"
        [ "$res" = 0 ] || { echo "verify() reported $res problems (round $r)"; failed=1; }
        read -r m res peak < <(measure "$SCAN_Q")
        st="$st $m" sm="$sm $peak"
        [ "$res" = "$n" ] || { echo "the scan counted $res rows, expected $n"; failed=1; }
        read -r m res peak < <(measure "$READ_Q" "$READ_SET")
        rt="$rt $m" rm="$rm $peak"
        [ "$res" = "$n" ] || { echo "the read counted $res rows, expected $n"; failed=1; }
    done
    awk -v n="$n" -v l="$load_s" -v size="$(table_size)" \
        -v v="$(echo $vt | median)" -v s="$(echo $st | median)" -v r="$(echo $rt | median)" \
        -v vm="$(echo $vm | max)" -v sm="$(echo $sm | max)" -v rm="$(echo $rm | max)" \
        'BEGIN { printf "%-8s %6.0f %7s | %9.0f %9.0f %6.2f %9.0f %6.2f | %7.1f %7.1f %7.1f\n",
                        n, l, size, v, s, v / s, r, v / r, vm / 1024, sm / 1024, rm / 1024 }'
    if [ "$failed" -ne 0 ]; then
        "${PSQL[@]}" -c "SELECT * FROM tool_audit.verify() LIMIT 20"
        FAILED=1
    fi
}
table_size() { "${PSQL[@]}" -At -c "SELECT pg_size_pretty(pg_total_relation_size('tool_audit.tool_calls'))" | tr -d ' '; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }

FAILED=0
QUARTER=$(( ROWS / 4 ))
echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, median of $ROUNDS interleaved rounds, fresh session per query"
echo "verify:   $VERIFY_Q"
echo "scan:     $SCAN_Q   (the issue's)"
echo "read:     $READ_Q   (after $READ_SET)"
echo "load:     $(nproc) parallel sessions, INSERT ... SELECT of $BATCH rows each, through the audit trigger, then VACUUM ANALYZE"
printf '%-8s %6s %7s | %9s %9s %6s %9s %6s | %7s %7s %7s\n' "" "" "" "" "" verify/ "" verify/ verify scan read
printf '%-8s %6s %7s | %9s %9s %6s %9s %6s | %7s %7s %7s\n' rows "load s" size "verify ms" "scan ms" scan "read ms" read MB MB MB
t0=$(now); bench_load 1 "$QUARTER" "$BATCH"; report "$QUARTER" "$(secs "$t0" "$(now)")"
t0=$(now); bench_load $((QUARTER + 1)) "$ROWS" "$BATCH"; report "$ROWS" "$(secs "$t0" "$(now)")"
echo "(load s: to add the rows since the line above; ms: medians; MB: peak private memory (RssAnon)"
echo " of the backend while the query ran, highest of the rounds; target: verify within 3x the scan)"
plan() { "${PSQL[@]}" -At -c "${2:-SELECT}" -c "EXPLAIN (COSTS OFF) $1" | sed 's/^ *//; s/ *-> */-> /' | paste -sd ' '; }
echo "scan plan: $(plan "$SCAN_Q")"
echo "read plan: $(plan "$READ_Q" "$READ_SET")"
exit "$FAILED"
