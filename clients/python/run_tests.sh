#!/usr/bin/env bash
# clients/python/run_tests.sh: install the package offline into a virtual
# environment (Debian's psycopg, setuptools and wheel through
# --system-site-packages; no package index), then run its tests against a
# cluster they start themselves. Prints TAP; exits 1 on any failure.
# Needs PG_CONFIG (or pg_config on PATH) with tool_audit installed, and a
# user initdb accepts (not root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}
venv=$(mktemp -d "${TMPDIR:-/tmp}/ta_pyvenv.XXXXXX")
# the tests' clusters live in here too: one a run interrupted left running is
# stopped on the way out
cleanup() {
    local pid
    for pid in "$venv"/ta_client_*/data/postmaster.pid; do
        [ -f "$pid" ] && "$("${PG_CONFIG:-pg_config}" --bindir)/pg_ctl" \
            -D "$(dirname "$pid")" -m immediate stop >/dev/null 2>&1
    done
    rm -rf "$venv"
}
trap cleanup EXIT
export TMPDIR=$venv
"$python" -m venv --system-site-packages "$venv"
# pip builds in the source tree (build/, *.egg-info): it must be writable
"$venv/bin/pip" install --quiet --no-index --no-build-isolation --disable-pip-version-check \
    --no-cache-dir "$here" >"$venv/pip.log" 2>&1 || { cat "$venv/pip.log"; exit 1; }
cd "$venv"      # import the installed package, not the source tree
"$venv/bin/python" "$here/tests/run_tap.py"
