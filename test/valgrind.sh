#!/usr/bin/env bash
# The pg_regress suite against a server running under valgrind memcheck
# (preloaded, so the hooks and the autonomous worker pool run too).  Prints
# memcheck errors whose stack passes through tool_audit.so, and exits 1 if
# there is any.  test/valgrind.supp suppresses PostgreSQL's and valgrind's
# own (each entry says why).
#   test/valgrind.sh        (as root or as a user that can run initdb)
#   TA_VALGRIND_TESTS="setup calls track" test/valgrind.sh   (a subset)
#   TA_VALGRIND_PLAIN=1 test/valgrind.sh   (not preloaded, as the plain
#       pg_regress run: the library loads at first use, one-shot workers)
#   PG_CONFIG=/path/to/pg_config test/valgrind.sh   (another installation)
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
ta_require_packages
ta_build_install
command -v valgrind >/dev/null || ta_die "valgrind is not installed (apt-get install valgrind)"
BINDIR=$(ta_bindir)
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/..
WORK=$(ta_scratch_dir)
PORT=$(ta_free_port)
trap 'ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1; [ -n "${TA_KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

tar -C "$TA_ROOT" --exclude=.git -cf - test/sql test/expected test/vectors test/fixtures.sql test/fhir_reference.sql | tar -C "$WORK" -xf -
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
# the schedule's expected files are shared with the plain run: keep its role
# grants out of the trail as test/preload.conf does (TAP 025 tests the recording)
if [ -n "${TA_VALGRIND_PLAIN:-}" ]; then
    # the later line wins over ta_init_cluster's shared_preload_libraries
    ta_init_cluster "$WORK" "$PORT" "max_connections = 20" "shared_preload_libraries = ''"
else
    ta_init_cluster "$WORK" "$PORT" "max_connections = 20" "tool_audit.record_role_changes = off"
fi
ta_log "starting postgres under valgrind (slow)"
cp "$TA_ROOT/test/valgrind.supp" "$WORK/valgrind.supp"
ta_as_user valgrind --quiet --trace-children=no --track-origins=yes --num-callers=30 \
    --error-limit=no --suppressions="$WORK/valgrind.supp" --log-file="$WORK/valgrind.%p.log" \
    "$BINDIR/postgres" -D "$WORK/data" >"$WORK/server.log" 2>&1 &
for _ in $(seq 1 120); do
    ta_as_user "$BINDIR/pg_isready" -q -h "$WORK" -p "$PORT" && break
    sleep 1
done
# TA_VALGRIND_TESTS="setup calls ..." runs those files only (setup first)
REGRESS=${TA_VALGRIND_TESTS:-$(make -s -C "$TA_ROOT" PG_CONFIG="$PG_CONFIG" print-regress)}
( cd "$WORK" && ta_as_user "$PGXS_DIR/test/regress/pg_regress" \
    --host="$WORK" --port="$PORT" --user=postgres --bindir="$BINDIR" \
    --inputdir="$WORK/test" --outputdir="$WORK" --dbname=valgrind_regress \
    --load-extension=tool_audit $REGRESS )
regress=$?
ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1
sleep 2
# each memcheck error block runs from "==PID== <message>" to a blank "==PID==" line;
# a frame of ours reads "(in .../tool_audit.so)" without debug information, and
# "(chain.c:123)" with it (the usual build): match both
srcs=$(cd "$TA_ROOT/src" && ls *.c | sed 's/\.c$//' | paste -sd'|')
ours=$(cat "$WORK"/valgrind.*.log 2>/dev/null | awk -v re="tool_audit\\.so|\\(($srcs)\\.c:[0-9]+\\)" '
    /^==[0-9]+== $/ { if (block ~ re) { print block; n++ } block = ""; next }
    { block = block $0 "\n" }
    END { if (block ~ re) { print block; n++ } print n + 0 > "/dev/stderr" }' 2>"$WORK/count")
count=$(cat "$WORK/count")
total=$(grep -c "^==[0-9]*== [A-Z]" "$WORK"/valgrind.*.log 2>/dev/null | awk -F: '{s += $2} END {print s + 0}')
[ -n "$ours" ] && printf '%s\n' "$ours"
echo "valgrind${TA_VALGRIND_PLAIN:+ (not preloaded)}: $count error blocks through tool_audit.so ($total memcheck lines in all); pg_regress exit $regress"
[ "$count" -eq 0 ] && [ "$regress" -eq 0 ]
