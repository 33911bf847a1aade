#!/usr/bin/env bash
# The demo: a support agent's conversation recorded by tool_audit.
#
#   scripts/demo.sh                 a throwaway cluster of its own (temporary
#                                   directory, free port), removed at the end
#   scripts/demo.sh "CONNINFO"      an existing database instead, e.g.
#   PGDATABASE=app scripts/demo.sh  "host=/var/run/postgresql dbname=app"
#
# Installs missing Debian packages when run as root, builds and installs the
# extension.  In an existing database the demo's rows stay: audit rows cannot
# be deleted.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ta_require_packages
ta_build_install
BINDIR=$(ta_bindir)

if [ $# -gt 0 ] || [ -n "${PGDATABASE:-}${PGHOST:-}${PGPORT:-}${PGSERVICE:-}" ]; then
    CONN=${1:-}
    ta_log "using the existing database ${CONN:-from PG* variables} (its audit rows are permanent)"
    PSQL=(psql)
else
    WORK=$(ta_scratch_dir)
    PORT=$(ta_free_port)
    cleanup() {
        ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$WORK"
    }
    trap cleanup EXIT
    ta_log "starting a throwaway cluster in $WORK on port $PORT"
    ta_init_cluster "$WORK" "$PORT"
    ta_start_cluster "$WORK"
    CONN="host=$WORK port=$PORT dbname=postgres user=postgres"
    PSQL=(ta_as_user "$BINDIR/psql")
fi

"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "$CONN" -f "$TA_ROOT/scripts/demo.sql"
