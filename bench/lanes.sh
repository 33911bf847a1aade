#!/usr/bin/env bash
# Lanes and digest size after many writer connections (doc/performance.md,
# "Lanes under many connections"): N pgbench connections (default 500) each
# write one row for the same tenant and stay connected (a 3 s sleep) while
# the others write, as idle pooled connections do.  Prints the rows, the
# lanes of the chain, the digest's size and verify()'s count of problems.
#   bench/lanes.sh [connections (default 500)]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${1:-500}
bench_cluster "max_connections = $((N + 20))" "shared_buffers = 64MB"
cat > "$WORK/lanes.sql" <<'SQL'
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('t', 'acme', true);
\sleep 3 s
SQL
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
"${PSQL[@]}" -c "CREATE EXTENSION tool_audit"
ta_as_user "$BINDIR/pgbench" -n -h "$WORK" -p "$PORT" -U postgres -c "$N" -j 4 -t 1 \
    -f "$WORK/lanes.sql" postgres >/dev/null
"${PSQL[@]}" -At -F ' ' -c "SELECT 'connections $N: rows', count(*), 'lanes', count(DISTINCT chain_lane),
       'digest bytes', length(tool_audit.digest()::text)
  FROM tool_audit.tool_calls"
"${PSQL[@]}" -At -F ' ' -c "SELECT 'verify() problems', count(*) FROM tool_audit.verify()"
