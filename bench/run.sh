#!/usr/bin/env bash
# Insert throughput of audited rows against a plain INSERT of the same columns
# into a table with the same indexes and no triggers, and against a hash chain
# written in PL/pgSQL with pgcrypto (what a user would do without the
# extension), measured in one run on a throwaway cluster (synchronous_commit =
# on, fsync on), printed as ratios.
#   bench/run.sh [seconds per measurement (default 10)] [client counts (default "1 8")] [rounds (default 3)]
# All clients write for the same tenant.  The four variants run interleaved,
# round after round; tps figures are medians over the rounds, and each ratio
# is the median of the ratios within a round (each variant against the plain
# run of its own round, minutes apart at most), so that drift (tables
# growing, the machine's neighbours, the disk's latency) cancels out.  No
# checkpoint runs during the measurements (one is taken before them).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SECS=${1:-10}
CLIENTS=${2:-"1 8"}
ROUNDS=${3:-3}
bench_cluster "synchronous_commit = on" "shared_buffers = 256MB" "max_wal_size = 32GB" \
    "checkpoint_timeout = 1d"
cp "$TA_ROOT"/bench/*.sql "$WORK/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -f "$WORK/setup.sql"

tps() {   # SCRIPT CLIENTS
    ta_as_user "$BINDIR/pgbench" -n -h "$WORK" -p "$PORT" -U postgres -c "$2" -j "$2" -T "$SECS" \
        -f "$WORK/$1" postgres 2>/dev/null | awk '/^tps = / {print $3}'
}

# ratios A B: the ratios of the rounds, A[i] / B[i]
# r TPS...: the tps of the rounds, rounded

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, ${SECS}s per measurement, median of $ROUNDS interleaved rounds, synchronous_commit = on"
# tps columns, then ratios: audited over plain (targets >= 0.85 at 1 client,
# >= 0.8 at 8) and audited over the pgcrypto chain (target >= 3 at 8 clients)
printf '%-7s   %-37s | %-19s | %-19s\n' "" "tps (audited: INSERT, log_call)" "audited / plain" "audited / pgcrypto"
printf '%-7s %9s %9s %9s %9s | %9s %9s | %9s %9s\n' clients plain INSERT log_call pgcrypto \
    INSERT log_call INSERT log_call
for c in $CLIENTS; do
    tps plain_insert.sql "$c" >/dev/null   # warm-up
    "${PSQL[@]}" -c "CHECKPOINT"
    p_all="" i_all="" c_all="" g_all=""
    for _ in $(seq 1 "$ROUNDS"); do
        p_all="$p_all $(tps plain_insert.sql "$c")"
        i_all="$i_all $(tps audited_insert.sql "$c")"
        c_all="$c_all $(tps log_call.sql "$c")"
        g_all="$g_all $(tps pgcrypto_insert.sql "$c")"
    done
    awk -v c="$c" -v p="$(echo $p_all | median)" -v i="$(echo $i_all | median)" \
        -v l="$(echo $c_all | median)" -v g="$(echo $g_all | median)" \
        -v ip="$(ratios "$i_all" "$p_all" | median)" -v lp="$(ratios "$c_all" "$p_all" | median)" \
        -v ig="$(ratios "$i_all" "$g_all" | median)" -v lg="$(ratios "$c_all" "$g_all" | median)" \
        'BEGIN { printf "%-7s %9.0f %9.0f %9.0f %9.0f | %9.2f %9.2f | %9.2f %9.2f\n", c, p, i, l, g, ip, lp, ig, lg }'
    echo "        tps by round: plain $(r "$p_all") | INSERT $(r "$i_all") | log_call $(r "$c_all") | pgcrypto $(r "$g_all")"
done
"${PSQL[@]}" -At -c "SELECT 'check: ' || count(*) || ' audited rows, ' || count(*) FILTER (WHERE arguments->>'api_key' = '***REDACTED***') || ' with the api_key redacted' FROM tool_audit.tool_calls"
# The pgcrypto chain must have been correct under concurrency, or beating it
# means nothing: one row per predecessor (no fork), every predecessor an
# existing row (or the genesis), every hash recomputable from its row, and the
# head row pointing at the one row nobody follows.  The row's text is
# recomputed with the two hash columns (last, and holding no comma) emptied.
"${PSQL[@]}" -At <<'SQL'
WITH r AS (
    SELECT t.prev_hash, t.row_hash,
           digest(t.prev_hash || convert_to(regexp_replace(t::text, ',[^,]*,[^,]*\)$', ',,)'), 'UTF8'),
                  'sha256') = t.row_hash AS hash_ok
      FROM bench_pgcrypto t
), heads AS (   -- rows no other row follows: exactly one, the head row's
    SELECT a.row_hash FROM r a WHERE NOT EXISTS (SELECT FROM r b WHERE b.prev_hash = a.row_hash)
)
SELECT format('pgcrypto chain: %s rows, %s forks, %s broken links, %s bad hashes, %s heads (%s)',
              (SELECT count(*) FROM r),
              (SELECT count(*) - count(DISTINCT prev_hash) FROM r),
              (SELECT count(*) FROM r a WHERE a.prev_hash <> '\x'::bytea
                  AND NOT EXISTS (SELECT FROM r b WHERE b.row_hash = a.prev_hash)),
              (SELECT count(*) FILTER (WHERE NOT hash_ok) FROM r),
              (SELECT count(*) FROM heads),
              CASE WHEN (SELECT head FROM bench_pgcrypto_head) IN (SELECT row_hash FROM heads)
                   THEN 'head row matches' ELSE 'HEAD ROW DOES NOT MATCH' END);
SQL
