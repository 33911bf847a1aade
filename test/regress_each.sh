#!/usr/bin/env bash
# test/regress_each.sh [FILE...]: every pg_regress file (by default the
# Makefile's REGRESS) alone, each on a fresh instance of its own: proof that no
# file depends on another having run first.  What a file needs it makes itself
# or includes from test/fixtures.sql.
#
# initdb runs once; each file gets a copy of that pristine data directory (a
# fresh instance, without paying initdb each time), listening only on a socket
# in the work directory, where pg_regress (as for installcheck) runs the file.
# The extension must be installed for $PG_CONFIG (scripts/test.sh does that
# and runs this too).  TA_REGRESS_CONF=FILE adds FILE's settings to every
# instance (e.g. test/preload.conf).  Prints pg_regress's result line for each
# file (and its diffs when it fails); exits 1 if any file failed.
# TA_KEEP_WORK=1 keeps the outputs.
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/..
PG_REGRESS=$PGXS_DIR/test/regress/pg_regress
BINDIR=$(ta_bindir)
if [ $# -gt 0 ]; then
    FILES="$*"
else
    FILES=$(make -s -C "$TA_ROOT" PG_CONFIG="$PG_CONFIG" print-regress)
fi

WORK=$(ta_scratch_dir)
PORT=$(ta_free_port)
stop_instance() {
    [ -f "$WORK/data/postmaster.pid" ] && ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$WORK/data"
}
trap 'stop_instance; [ -n "${TA_KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
[ -n "${TA_KEEP_WORK:-}" ] && ta_log "work directory: $WORK"
# the test user's copy of test/ (the server reads test/vectors from it)
tar -C "$TA_ROOT" --exclude=node_modules -cf - test | tar -C "$WORK" -xf -
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
ta_as_user "$BINDIR/initdb" -D "$WORK/pristine" -U postgres -A trust --no-sync --no-instructions >/dev/null ||
    ta_die "initdb failed"
{
    echo "port = $PORT"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$WORK'"
    echo "fsync = off"
    [ -n "${TA_REGRESS_CONF:-}" ] && cat "$TA_REGRESS_CONF"
} >>"$WORK/pristine/postgresql.conf"

failed=0
for f in $FILES; do
    ta_as_user cp -a "$WORK/pristine" "$WORK/data"
    if ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/$f.server.log" -w start >/dev/null; then
        ( cd "$WORK" && ta_as_user "$PG_REGRESS" --host="$WORK" --port="$PORT" --user=postgres \
            --bindir="$BINDIR" --inputdir="$WORK/test" --outputdir="$WORK/out_$f" \
            --load-extension=tool_audit "$f" ) >"$WORK/$f.log" 2>&1
    else
        cat "$WORK/$f.server.log" >"$WORK/$f.log"; false
    fi
    st=$?
    # pg_regress's own line for the file ("test NAME ... ok"), marked as run alone
    line=$(grep -E '^(test|ok|not ok) .*\.\.\. ' "$WORK/$f.log" | sed 's/$/  (alone)/')
    echo "${line:-test $f ... FAILED (pg_regress did not run it; exit status $st)}"
    if [ $st -ne 0 ]; then
        failed=$((failed + 1))
        [ -z "$line" ] && tail -n 20 "$WORK/$f.log"
        [ -s "$WORK/out_$f/regression.diffs" ] && head -n 200 "$WORK/out_$f/regression.diffs"
    fi
    stop_instance
done
[ "$failed" -eq 0 ]
