#!/usr/bin/env bash
# The whole test suite, on clusters it starts itself:
#   pg_regress three times (plain, with shared_preload_libraries = 'tool_audit',
#   and with a signing key configured, as `make installcheck` may meet),
#   then each pg_regress file alone on a fresh instance, plain and preloaded
#   (test/regress_each.sh),
#   the isolation tests, and the TAP tests.
# Installs missing Debian packages when run as root, builds and installs the
# extension, and ends with one line "N passed, N failed"; exits 1 on any
# failure.  Nothing is left running.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

ta_require_packages
ta_require_node
ta_build_install

BINDIR=$(ta_bindir)
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/..
PG_REGRESS=$PGXS_DIR/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS_DIR/test/isolation/pg_isolation_regress
WORK=$(ta_scratch_dir)
# TA_KEEP_WORK=1 keeps the copy, its outputs and logs for inspection.
if [ -n "${TA_KEEP_WORK:-}" ]; then ta_log "work directory: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

# The tests write results next to their inputs: give the test user a copy.
tar -C "$TA_ROOT" --exclude=.git --exclude=node_modules --exclude='*.o' --exclude='*.so' --exclude=verifier/tool_audit_verify -cf - . | tar -C "$WORK" -xf -
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$WORK"
REGRESS=$(make -s -C "$TA_ROOT" PG_CONFIG="$PG_CONFIG" print-regress)
ISOLATION=$(make -s -C "$TA_ROOT" PG_CONFIG="$PG_CONFIG" print-isolation)

passed=0
failed=0
LOGS=$WORK/logs
ta_as_user mkdir -p "$LOGS"

# count_results LOG STATUS: add a pg_regress-style log's "... ok"/"... FAILED" lines.
count_results() {
    local log=$1 status=$2 ok bad
    ok=$(grep -cE '\.\.\. ok|^ok [0-9]+ ' "$log")
    # a TAP file that died before its plan counts as one failure
    bad=$(grep -cE '\.\.\. FAILED|\.\.\. failed|^not ok [0-9]+ |Parse errors: No plan found' "$log")
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi   # the runner itself failed
    passed=$((passed + ok))
    failed=$((failed + bad))
}

show_diffs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] && { echo "---- $f"; head -n 300 "$f"; }
    done
}

run_regress() {   # NAME EXTRA-OPTIONS...
    local name=$1; shift
    ta_log "pg_regress ($name)"
    ( cd "$WORK" && ta_as_user "$PG_REGRESS" --temp-instance="$WORK/tmp_$name" \
        --bindir="$BINDIR" --inputdir="$WORK/test" --outputdir="$WORK/out_$name" \
        --load-extension=tool_audit "$@" $REGRESS ) >"$LOGS/$name.log" 2>&1
    local st=$?
    cat "$LOGS/$name.log"
    count_results "$LOGS/$name.log" $st
    [ $st -ne 0 ] && show_diffs "$WORK/out_$name/regression.diffs"
}

ta_as_user mkdir -p "$WORK/out_plain" "$WORK/out_preload"
run_regress plain
run_regress preload --temp-config="$WORK/test/preload.conf"
# what `make installcheck` meets on a server set up as doc/tamper-evidence.md
# says: tool_audit.signing_key_file names a key (digests are signed); the
# tests must hold there too
ta_as_user openssl genpkey -algorithm ed25519 -out "$WORK/signing_key.pem" 2>/dev/null &&
    ta_as_user chmod 600 "$WORK/signing_key.pem"
printf "tool_audit.signing_key_file = '%s'\n" "$WORK/signing_key.pem" | ta_as_user tee "$WORK/signed.conf" >/dev/null
ta_as_user mkdir -p "$WORK/out_signed"
run_regress signed --temp-config="$WORK/signed.conf"

for mode in plain preload; do
    ta_log "pg_regress ($mode), each file alone on a fresh instance (test/regress_each.sh)"
    conf=""; [ $mode = preload ] && conf="$TA_ROOT/test/preload.conf"
    TA_REGRESS_CONF=$conf "$TA_ROOT/test/regress_each.sh" >"$LOGS/alone_$mode.log" 2>&1
    st=$?
    cat "$LOGS/alone_$mode.log"
    count_results "$LOGS/alone_$mode.log" $st
done

# plain, then preloaded (the guards' hooks, the lane head hints in shared
# memory: src/lane_hint.c); the expected outputs are the same
for mode in plain preload; do
    ta_log "isolation tests ($mode)"
    conf=""; [ $mode = preload ] && conf="--temp-config=$WORK/test/preload.conf"
    ta_as_user mkdir -p "$WORK/out_isolation_$mode"
    ( cd "$WORK" && ta_as_user "$PG_ISOLATION_REGRESS" --temp-instance="$WORK/tmp_isolation_$mode" \
        $conf --bindir="$BINDIR" --inputdir="$WORK/test/isolation" --outputdir="$WORK/out_isolation_$mode" \
        --load-extension=tool_audit $ISOLATION ) >"$LOGS/isolation_$mode.log" 2>&1
    st=$?
    cat "$LOGS/isolation_$mode.log"
    count_results "$LOGS/isolation_$mode.log" $st
    [ $st -ne 0 ] && show_diffs "$WORK/out_isolation_$mode/regression.diffs"
done

ta_log "external verifier"
# its own implementation of doc/canonical-encoding.md, checked against the
# test vectors here and against the extension's rows in the TAP tests
( ta_as_user make -s -C "$WORK/verifier" PG_CONFIG="$PG_CONFIG" &&
  ta_as_user "$WORK/verifier/tool_audit_verify" --vectors "$WORK/test/vectors" ) >"$LOGS/verifier.log" 2>&1
st=$?
cat "$LOGS/verifier.log"
if [ $st -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

ta_log "FHIR R4 schema validator (npm ci in test/fhir)"
# test/t/009_reports.pl validates export_fhir() with it; it fails there if this did
( cd "$WORK/test/fhir" && ta_as_user env npm_config_cache="$WORK/npm-cache" npm_config_update_notifier=false \
    npm ci --no-audit --no-fund --loglevel=error ) >"$LOGS/npm.log" 2>&1 ||
    { cat "$LOGS/npm.log"; echo "npm ci failed"; failed=$((failed + 1)); }

ta_log "TAP tests"
( cd "$WORK" && ta_as_user env TESTDIR="$WORK" PG_REGRESS="$PG_REGRESS" \
    PATH="$BINDIR:$PATH" PG_CONFIG="$PG_CONFIG" TA_VERIFIER="$WORK/verifier/tool_audit_verify" \
    prove -v -I "$PGXS_DIR/test/perl" -I "$WORK/test/t" test/t/*.pl ) >"$LOGS/tap.log" 2>&1
st=$?
cat "$LOGS/tap.log"
count_results "$LOGS/tap.log" $st
if [ $st -ne 0 ]; then
    for f in "$WORK"/tmp_check/log/*.log; do [ -f "$f" ] && { echo "---- $f"; tail -n 50 "$f"; }; done
fi

ta_log "the demo (scripts/demo.sh), end to end"
# the README's first command: it must run, catch the tampering, and end with
# the patient's access report and the conversation's timeline
"$TA_ROOT/scripts/demo.sh" >"$LOGS/demo.log" 2>&1
st=$?
if [ $st -eq 0 ] && grep -q '"integrity_verified": false' "$LOGS/demo.log" &&
   grep -q 'row altered: its content does not match its row hash' "$LOGS/demo.log" &&
   grep -q '^ \[Turn 3\] .* update_order_status(' "$LOGS/demo.log"; then
    echo "ok - the demo ran to its end ($(grep -c '^== ' "$LOGS/demo.log") steps)"
    passed=$((passed + 1))
else
    tail -n 60 "$LOGS/demo.log"
    echo "not ok - the demo (exit status $st)"
    failed=$((failed + 1))
fi

# clients (issue 15): the Python and TypeScript client helpers, each against
# a cluster its tests start (clients/*/test*), TAP lines counted
ta_log "Python client (clients/python/run_tests.sh: offline pip install, then its tests)"
( cd "$WORK" && ta_as_user env PG_CONFIG="$PG_CONFIG" TMPDIR="$WORK" "$WORK/clients/python/run_tests.sh" ) \
    >"$LOGS/client_python.log" 2>&1
st=$?
cat "$LOGS/client_python.log"
count_results "$LOGS/client_python.log" $st

ta_log "TypeScript client (npm ci, npm test in clients/typescript)"
if ta_client_npm_ci "$WORK/clients/typescript" >"$LOGS/client_ts_npm.log" 2>&1; then
    ( cd "$WORK/clients/typescript" && ta_as_user env PG_CONFIG="$PG_CONFIG" TMPDIR="$WORK" \
        npm_config_cache="$WORK/clients/typescript/.npm-cache" npm_config_update_notifier=false \
        npm test --silent ) >"$LOGS/client_typescript.log" 2>&1
    st=$?
    cat "$LOGS/client_typescript.log"
    count_results "$LOGS/client_typescript.log" $st
else
    cat "$LOGS/client_ts_npm.log"; echo "npm ci failed in clients/typescript"; failed=$((failed + 1))
fi

ta_log "HTML access report (tools/test_access_report_html.py: rendered in headless Chromium)"
( cd "$WORK" && ta_as_user env PG_CONFIG="$PG_CONFIG" TMPDIR="$WORK" \
    /usr/bin/python3 "$WORK/tools/test_access_report_html.py" ) >"$LOGS/access_report_html.log" 2>&1
st=$?
cat "$LOGS/access_report_html.log"
count_results "$LOGS/access_report_html.log" $st

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
