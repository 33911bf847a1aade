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
    # digests are signed with an Ed25519 key only the server can read
    ta_as_user openssl genpkey -algorithm ed25519 -out "$WORK/digest_key.pem" 2>/dev/null
    chmod 600 "$WORK/digest_key.pem"
    ta_init_cluster "$WORK" "$PORT" "tool_audit.signing_key_file = '$WORK/digest_key.pem'"
    ta_start_cluster "$WORK"
    CONN="host=$WORK port=$PORT dbname=postgres user=postgres"
    PSQL=(ta_as_user "$BINDIR/psql")
fi

"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "$CONN" -f "$TA_ROOT/scripts/demo.sql"

# reports: the access report for one patient, the timeline of one conversation
reports() {
    "${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "$CONN" -v h1="== $1. $3" -v h2="== $2. $4" \
        -f "$TA_ROOT/scripts/demo_reports.sql"
}

# Part two needs a cluster of our own: it tampers with the rows.
if [ -z "${WORK:-}" ]; then
    reports 9 10 "The access report for patient P-1001, its integrity verified row by row" \
        "The timeline of the support conversation, and who is accountable"
    exit 0
fi

echo
echo "== 9. A signed digest and the public key are saved outside the database"
"${PSQL[@]}" -X -At -d "$CONN" -c "SELECT tool_audit.digest()" >"$WORK/digest.json"
"${PSQL[@]}" -X -At -d "$CONN" -c "SELECT tool_audit.signing_public_key()" >"$WORK/digest_pub.pem"
make -s -C "$TA_ROOT/verifier" PG_CONFIG="$PG_CONFIG" >/dev/null || ta_die "could not build the verifier"
VERIFY=(ta_as_user "$TA_ROOT/verifier/tool_audit_verify" --digest "$WORK/digest.json" --public-key "$WORK/digest_pub.pem")
echo "external verifier, connected as a read-only role (tool_audit_verifier):"
"${PSQL[@]}" -X -q -d "$CONN" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_verifier') THEN CREATE ROLE demo_verifier LOGIN IN ROLE tool_audit_verifier; END IF; END \$\$"
"${VERIFY[@]}" "$CONN user=demo_verifier" || ta_die "the untouched database did not verify"

# Without the preload hooks, a superuser can switch the triggers off.
ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w restart \
    -o "-c shared_preload_libraries=''" >/dev/null
"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "$CONN" -v digest="$(cat "$WORK/digest.json")" \
    -f "$TA_ROOT/scripts/demo_tamper.sql"

echo
echo "== 12. The external verifier, with its own implementation of the hashes, says the same"
set +e
"${VERIFY[@]}" --all "$CONN user=demo_verifier"
status=$?
set -e
echo "(exit status $status: 1 means problems found)"
[ $status -eq 1 ] || ta_die "the verifier should have found the tampering"

reports 13 14 "The access report for patient P-1001 now: not verified, and it names the rewritten access" \
    "The timeline of the support conversation shows the forged success; its row check does not"

# alerts: what the rows and the verifications above raised
"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "$CONN" -f "$TA_ROOT/scripts/demo_alerts.sql"

# dual approval: an application's own sensitive action needs a second person
# (two login roles: the person behind a request is its login)
echo
echo "A kill switch needs two people: the billing bot asks, an admin approves, the bot uses it once"
"${PSQL[@]}" -X -q -d "$CONN" -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_billing_bot') THEN
        CREATE ROLE demo_billing_bot LOGIN IN ROLE tool_audit_writer; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_approver') THEN
        CREATE ROLE demo_approver LOGIN IN ROLE tool_audit_admin; END IF; END \$\$"
BOT="$CONN user=demo_billing_bot"
REQ=$("${PSQL[@]}" -X -At -d "$BOT" -c "SELECT tool_audit.request_approval('killswitch.engage', '{\"agent\": \"refund_bot\"}', 'refunds looping')")
echo "request $REQ by demo_billing_bot; used before approval:"
{ "${PSQL[@]}" -X -q -v VERBOSITY=terse -d "$BOT" \
    -c "SELECT tool_audit.consume_approval('killswitch.engage', '{\"agent\": \"refund_bot\"}')" 2>&1 || true; } | sed 's/^psql:[^ ]* //'
"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "$CONN user=demo_approver" \
    -c "SELECT tool_audit.approve($REQ, 'confirmed with on-call') IS NULL AS approved" \
    -c "SELECT request_id, state, requested_by, decided_by AS approved_by FROM tool_audit.approval_requests WHERE request_id = $REQ"
"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "$BOT" \
    -c "SELECT tool_audit.consume_approval('killswitch.engage', '{\"agent\": \"refund_bot\"}') AS used_request"
echo "used a second time:"
{ "${PSQL[@]}" -X -q -v VERBOSITY=terse -d "$BOT" \
    -c "SELECT tool_audit.consume_approval('killswitch.engage', '{\"agent\": \"refund_bot\"}')" 2>&1 || true; } | sed 's/^psql:[^ ]* //'

# Part three: retention and erasure, in a database of its own marked as a test
# database (rows are born old with the test clock; the purge uses the real one)
"${PSQL[@]}" -X -q -d "$CONN" -c "CREATE DATABASE demo_retention" \
    -c "ALTER DATABASE demo_retention SET tool_audit.test_database = on"
"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d "${CONN/dbname=postgres/dbname=demo_retention}" \
    -f "$TA_ROOT/scripts/demo_retention.sql"
