# Shared by the benchmarks: a throwaway cluster with tool_audit preloaded.
# shellcheck shell=bash
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

# bench_cluster SETTING...: install what is missing, build and install the
# extension, start a throwaway cluster with these postgresql.conf lines (it
# is stopped and removed on exit); sets BINDIR, WORK, PORT and PSQL (psql as
# the superuser, stopping at the first error).
bench_cluster() {
    ta_require_packages
    ta_build_install
    BINDIR=$(ta_bindir)
    WORK=$(ta_scratch_dir)
    PORT=$(ta_free_port)
    trap 'ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
    ta_init_cluster "$WORK" "$PORT" "$@"
    ta_start_cluster "$WORK"
    PSQL=(ta_as_user "$BINDIR/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
}
