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
    # (under set -e a failing stop, as after postgres --single, would skip the rm)
    trap 'ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
    ta_init_cluster "$WORK" "$PORT" "$@"
    ta_start_cluster "$WORK"
    PSQL=(ta_as_user "$BINDIR/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
}

# bench_load FROM TO BATCH: rows FROM..TO through the audit trigger, written
# by the caller's insert_sql LO HI (one INSERT ... SELECT of rows LO..HI), in
# batches of BATCH rows spread over one session per core, then VACUUM
# ANALYZE (the insert trigger is CPU-bound: one session per core keeps them busy)
bench_load() {
    local from=$1 to=$2 batch=$3 sessions s b lo hi pids=()
    local nb=$(( (to - from + batch) / batch ))
    sessions=$(nproc)
    for s in $(seq 0 $((sessions - 1))); do
        for b in $(seq "$s" "$sessions" $((nb - 1))); do
            lo=$(( from + b * batch ))
            hi=$(( lo + batch - 1 < to ? lo + batch - 1 : to ))
            insert_sql "$lo" "$hi"
        done | "${PSQL[@]}" >/dev/null &
        pids+=($!)
    done
    for s in "${pids[@]}"; do wait "$s"; done
    "${PSQL[@]}" -c "VACUUM ANALYZE tool_audit.tool_calls"
}
