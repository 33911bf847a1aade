# Shared by scripts/demo.sh and scripts/test.sh: find PostgreSQL 15, install
# what is missing (as root, from Debian's packages), build and install the
# extension, and run commands as an unprivileged user (initdb refuses root).
# shellcheck shell=bash

TA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TA_PG_MAJOR=${TA_PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$TA_PG_MAJOR/bin/pg_config}
TA_PACKAGES="postgresql-$TA_PG_MAJOR postgresql-server-dev-$TA_PG_MAJOR postgresql-$TA_PG_MAJOR-cron postgresql-$TA_PG_MAJOR-wal2json
libssl-dev libpq-dev libyajl-dev libipc-run-perl openssl make gcc perl python3-psycopg"

ta_log() { printf '==> %s\n' "$*" >&2; }
ta_die() { printf 'error: %s\n' "$*" >&2; exit 2; }

ta_missing_packages() {
    local p missing=""
    for p in $TA_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    echo "$missing"
}

ta_require_packages() {
    local missing
    missing=$(ta_missing_packages)
    if [ -n "$missing" ]; then
        if [ "$(id -u)" -ne 0 ]; then
            ta_die "missing Debian packages:$missing (run this script as root, or: sudo apt-get install$missing)"
        fi
        ta_log "installing Debian packages:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || ta_die "apt-get update failed"
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null || ta_die "apt-get install failed"
    fi
    ta_require_pg_cron
}

# pg_cron (postgresql-15-cron, installed above) must be in the PostgreSQL
# PG_CONFIG names: the TAP test of the scheduled purge preloads it.  A copy of
# the installation made before the package was installed lacks it.
ta_require_pg_cron() {
    local lib share
    lib=$("$PG_CONFIG" --pkglibdir) share=$("$PG_CONFIG" --sharedir)
    [ -f "$lib/pg_cron.so" ] && [ -f "$share/extension/pg_cron.control" ] && return 0
    ta_die "pg_cron is not installed for $PG_CONFIG (no $lib/pg_cron.so or $share/extension/pg_cron.control): install postgresql-$TA_PG_MAJOR-cron, or copy its files into this installation (dpkg -L postgresql-$TA_PG_MAJOR-cron)"
}

# Node and npm, for test tooling only (the FHIR schema validator): Debian's
# packages when they are missing and we are root.
ta_require_node() {
    command -v node >/dev/null && command -v npm >/dev/null && return 0
    [ "$(id -u)" -eq 0 ] || ta_die "node and npm are missing (sudo apt-get install nodejs npm)"
    ta_log "installing Debian packages: nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || ta_die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || ta_die "apt-get install failed"
}

ta_bindir() { "$PG_CONFIG" --bindir; }

ta_build_install() {
    ta_log "building tool_audit with $("$PG_CONFIG" --version)"
    make -s -C "$TA_ROOT" PG_CONFIG="$PG_CONFIG" >/dev/null || ta_die "build failed"
    if [ -w "$("$PG_CONFIG" --pkglibdir)" ] && [ -w "$("$PG_CONFIG" --sharedir)/extension" ]; then
        make -s -C "$TA_ROOT" PG_CONFIG="$PG_CONFIG" install >/dev/null || ta_die "make install failed"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo make -s -C "$TA_ROOT" PG_CONFIG="$PG_CONFIG" install >/dev/null || ta_die "make install failed"
    else
        ta_die "cannot write to $("$PG_CONFIG" --pkglibdir): run as root"
    fi
}

# The user that runs servers and tests: postgres when we are root.
ta_test_user() {
    if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# ta_as_user CMD...: run CMD as the test user, environment preserved.
ta_as_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- env "PATH=$PATH" "$@"
    else
        "$@"
    fi
}

# A scratch directory the test user owns.
ta_scratch_dir() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/tool_audit.XXXXXX")
    [ "$(id -u)" -eq 0 ] && chown postgres: "$d"
    chmod 700 "$d"
    echo "$d"
}

# A TCP port nobody listens on.
ta_free_port() {
    local p
    for p in $(seq 54320 54399); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    ta_die "no free port in 54320-54399"
}

# ta_init_cluster DIR PORT [SETTING...]: initdb in DIR/data (superuser
# "postgres", trust auth), listening only on a socket in DIR at PORT, with
# tool_audit preloaded and any further postgresql.conf lines given.
ta_init_cluster() {
    local dir=$1 port=$2 line
    shift 2
    ta_as_user "$(ta_bindir)/initdb" -D "$dir/data" -U postgres -A trust --no-instructions >/dev/null
    {
        echo "port = $port"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = 'tool_audit'"
        for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"
}

# ta_start_cluster DIR: start the cluster ta_init_cluster made, wait for it.
ta_start_cluster() {
    ta_as_user "$(ta_bindir)/pg_ctl" -D "$1/data" -l "$1/server.log" -w start >/dev/null
}

# clients (issue 15): the Python client's dependencies come from Debian (the
# package index is not reachable): psycopg 3, and setuptools, wheel and venv
# to install it offline (clients/python/run_tests.sh); the package step
# above installs them with the rest.
TA_PACKAGES="$TA_PACKAGES python3-psycopg python3-setuptools python3-wheel python3-venv"

# ta_client_npm_ci DIR: npm ci in DIR (a copy of clients/typescript the test
# user owns), from its committed package-lock.json.
ta_client_npm_ci() {
    ( cd "$1" && ta_as_user env npm_config_cache="$1/.npm-cache" npm_config_update_notifier=false \
        npm ci --no-audit --no-fund --loglevel=error )
}

# the HTML access report (issue 15): its test renders the page in headless
# Chromium through chromedriver (tools/test_access_report_html.py), with
# Debian's packages; installed by the package step with the rest.
TA_PACKAGES="$TA_PACKAGES chromium chromium-driver python3-selenium"
