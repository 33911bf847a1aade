#!/usr/bin/env bash
# Paging the audit trail out with export_since() (issue 16) against exporting
# it in one call with export_jsonl(), the same rows, in the same run: ROWS
# tool calls over TENANTS tenants (a chain each, so about TENANTS lanes, each
# of which a page probes).  Interleaved round after round, each in a fresh
# session, each copying the lines into an unlogged table (what a loader
# stores):
#   one export_jsonl('-infinity', 'infinity') call            the baseline
#   export_since() from '{}', pages of PAGE rows until a short page, each page
#     stored with a COMMIT, as a loader does (a procedure)
#   one page of 1,000 rows after the cursor of the whole table (no row left:
#     what a loader pays to find that nothing is new, or a little)
# The paged copy must hold every row once (checked), and the ratio is
# export_jsonl ms / paged ms.  Times are medians.
#   bench/export_since.sh [rows (default 300000)] [tenants (default 100000)] [page rows (default 10000)] [rounds (default 3)]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROWS=${1:-300000}
TENANTS=${2:-100000}
PAGE=${3:-10000}
ROUNDS=${4:-3}
# a batch of 500 rows writes up to 500 chains in one transaction: two lane
# locks each (doc/performance.md, "Memory per backend with many tenants")
bench_cluster "synchronous_commit = off" "shared_buffers = 256MB" "max_wal_size = 4GB" \
    "max_locks_per_transaction = 256"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit" -c "SELECT tool_audit.rotate_pseudonym_key()" >/dev/null
insert_sql() { realistic_rows_sql "$1" "$2" "$TENANTS"; }

"${PSQL[@]}" <<'SQL'
CREATE UNLOGGED TABLE bench_copy (line jsonb, next_cursor jsonb);
-- a loader: pages of max_rows until a short page, each stored and committed;
-- the cursor of the last page in bench_cursor
CREATE UNLOGGED TABLE bench_cursor (c jsonb);
CREATE PROCEDURE bench_page_all(max_rows int) LANGUAGE plpgsql AS $$
DECLARE
    c jsonb := '{}';
    nc jsonb;
    got int;
BEGIN
    LOOP
        WITH p AS (SELECT * FROM tool_audit.export_since(c, max_rows)),
             ins AS (INSERT INTO bench_copy SELECT * FROM p)
        SELECT count(*), (array_agg(p.next_cursor) FILTER (WHERE p.next_cursor IS NOT NULL))[1]
          INTO got, nc FROM p;
        c := coalesce(nc, c);
        COMMIT;
        EXIT WHEN got < max_rows;
    END LOOP;
    TRUNCATE bench_cursor;
    INSERT INTO bench_cursor VALUES (c);
END $$;
SQL

# measure SQL: the ms of the last statement of SQL, in a fresh session
measure() {
    "${PSQL[@]}" -At <<SQL | awk '/^Time: / {ms = $2} END {print ms}'
TRUNCATE bench_copy;
\timing on
$1;
SQL
}

echo "PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}'), $(nproc) cores, median of $ROUNDS interleaved rounds, fresh session each"
bench_load 1 "$ROWS" 500
echo "table:    $ROWS tool_calls, $("${PSQL[@]}" -At -c "SELECT count(DISTINCT chain_id) || ' chains, ' || count(DISTINCT (chain_id, chain_lane)) || ' lanes, ' || pg_size_pretty(pg_total_relation_size('tool_audit.tool_calls'))
  FROM tool_audit.tool_calls")"
JSONL_Q="INSERT INTO bench_copy SELECT doc, NULL FROM tool_audit.export_jsonl('-infinity', 'infinity') doc"
PAGED_Q="CALL bench_page_all($PAGE)"
TAIL_Q="INSERT INTO bench_copy SELECT * FROM tool_audit.export_since((SELECT c FROM bench_cursor), 1000)"
jt="" pt="" tt="" FAILED=0
for r in $(seq 1 "$ROUNDS"); do
    jt="$jt $(measure "$JSONL_Q")"
    pt="$pt $(measure "$PAGED_Q")"
    # every row once: the table's rows, and the pages' own reads but the last
    read -r lines distinct calls pages cursor_kb < <("${PSQL[@]}" -At -F ' ' -c "
        SELECT count(*), count(DISTINCT (line->>'table', line->>'id')),
               count(*) FILTER (WHERE line->>'table' = 'tool_calls'),
               count(next_cursor), (SELECT octet_length(c::text) / 1024 FROM bench_cursor)
          FROM bench_copy")
    if [ "$lines" != "$distinct" ] || [ "$calls" != "$ROWS" ]; then
        echo "round $r: the paged copy has $lines lines, $distinct distinct, $calls tool calls (expected $ROWS)"; FAILED=1
    fi
    tt="$tt $(measure "$TAIL_Q")"
done
j=$(echo $jt | median) p=$(echo $pt | median) t=$(echo $tt | median)
awk -v j="$j" -v p="$p" -v t="$t" -v pg="$PAGE" -v pages="$pages" -v kb="$cursor_kb" 'BEGIN {
    printf "%-52s %10s\n", "", "ms"
    printf "%-52s %10.0f\n", "export_jsonl(), one call", j
    printf "%-52s %10.0f   (%d pages, %.0f ms a page)\n", "export_since(), pages of " pg " rows", p, pages, p / pages
    printf "%-52s %10.0f   (cursor %d kB)\n", "export_since(), 1,000 rows after the whole table", t, kb
    printf "export_jsonl() / paged export_since(): %.2f\n", j / p }'
exit "$FAILED"
