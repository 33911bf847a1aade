# Shared by the benchmarks: a throwaway cluster with tool_audit preloaded.
# shellcheck shell=bash
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

# bench_cluster SETTING...: install what is missing, build and install the
# extension, start a throwaway cluster with these postgresql.conf lines (it
# is stopped and removed on exit); sets BINDIR, WORK, PORT and PSQL (psql as
# the superuser, stopping at the first error).
# TA_BENCH_HUGE_PAGES=N (root only): reserve N huge pages (vm.nr_hugepages)
# for the run and start the cluster with huge_pages = on, so that it fails
# to start rather than run without them; the reservation before the run is
# put back on exit.  HUGE_PAGES says what the run had, for its header.
bench_cluster() {
    ta_require_packages
    ta_build_install
    BINDIR=$(ta_bindir)
    WORK=$(ta_scratch_dir)
    PORT=$(ta_free_port)
    trap bench_cleanup EXIT
    local huge=()
    HUGE_PAGES="huge pages off"
    if [ -n "${TA_BENCH_HUGE_PAGES:-}" ]; then
        [ "$(id -u)" -eq 0 ] || ta_die "TA_BENCH_HUGE_PAGES needs root (it sets vm.nr_hugepages)"
        HUGE_BEFORE=$(cat /proc/sys/vm/nr_hugepages)
        echo "$TA_BENCH_HUGE_PAGES" >/proc/sys/vm/nr_hugepages
        [ "$(cat /proc/sys/vm/nr_hugepages)" -ge "$TA_BENCH_HUGE_PAGES" ] ||
            ta_die "could not reserve $TA_BENCH_HUGE_PAGES huge pages (free memory?)"
        huge=("huge_pages = on")
        HUGE_PAGES="huge_pages = on ($TA_BENCH_HUGE_PAGES pages of $(awk '/^Hugepagesize/ {print $2 " " $3}' /proc/meminfo) reserved)"
    fi
    ta_init_cluster "$WORK" "$PORT" "$@" "${huge[@]}"
    ta_start_cluster "$WORK"
    PSQL=(ta_as_user "$BINDIR/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
}

# What bench_cluster's EXIT trap does: stop and remove the cluster, put the
# huge page reservation back (under set -e a failing stop, as after postgres
# --single, would skip the rest).
bench_cleanup() {
    ta_as_user "$BINDIR/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
    if [ -n "${HUGE_BEFORE:-}" ]; then echo "$HUGE_BEFORE" >/proc/sys/vm/nr_hugepages || true; fi
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

# realistic_rows_sql FROM TO [TENANTS (default 8)]: one INSERT ... SELECT of
# audited rows FROM..TO, as the verification benchmarks load them: TENANTS
# tenants in turn, conversations of a dozen turns, five tools; arguments of
# 300-400 bytes with a nested customer (the email is sanitized), an item list
# and now and then an api_key (redacted); a failure every 17th call.
realistic_rows_sql() {
    cat <<SQL
INSERT INTO tool_audit.tool_calls
    (tenant_id, conversation_id, turn_number, user_id, user_role, model, tool_name, tool_call_id,
     call_trigger, purpose, arguments, result_summary, success, error, duration_ms, client_ip,
     user_agent, session_metadata)
SELECT 'tenant_' || (i % ${3:-8}),
       'conv_' || (i / 12), i % 12,
       'usr_' || (i % 5000),
       (ARRAY['support_agent', 'analyst', 'billing', 'customer'])[1 + i % 4],
       (ARRAY['gpt-4.1', 'claude-sonnet-4', 'gemini-2.5-pro'])[1 + i % 3],
       (ARRAY['update_order_status', 'lookup_customer', 'send_email', 'refund_payment', 'search_kb'])[1 + i % 5],
       'call_' || md5(i::text),
       (ARRAY['user_request', 'proactive', 'retry', 'follow_up'])[1 + i % 4]::tool_audit.call_trigger,
       'order support',
       jsonb_build_object(
           'order_id', 'ORD-' || (100000 + i),
           'status', (ARRAY['pending', 'shipped', 'delivered', 'returned'])[1 + i % 4],
           'customer', jsonb_build_object('id', 'C-' || (i % 5000), 'email', 'user' || (i % 5000) || '@example.com',
                                          'tier', (ARRAY['free', 'pro', 'enterprise'])[1 + i % 3]),
           'items', jsonb_build_array(
               jsonb_build_object('sku', 'SKU-' || (i % 977), 'qty', 1 + i % 3, 'price', round((i % 10000) / 100.0, 2)),
               jsonb_build_object('sku', 'SKU-' || (i % 541), 'qty', 1 + i % 5, 'price', round((i % 7000) / 100.0, 2))),
           'note', 'customer asked about the delivery window for order ' || i || ', second contact this week')
       || CASE WHEN i % 10 = 0 THEN jsonb_build_object('api_key', 'sk-' || md5(i::text)) ELSE '{}' END,
       jsonb_build_object('order_id', 'ORD-' || (100000 + i), 'updated', i % 17 <> 0,
                          'tracking', '1Z' || lpad((i % 999999)::text, 6, '0'), 'items', jsonb_build_array(1, 2, 3)),
       i % 17 <> 0,
       CASE WHEN i % 17 = 0 THEN 'upstream timeout after 30s' END,
       (i % 5000) / 10.0,
       ('10.' || (i % 256) || '.' || (i / 256 % 256) || '.7')::inet,
       'agent-runtime/2.3 (python 3.12)',
       jsonb_build_object('session', 'sess_' || (i / 40), 'region', 'eu-west-1')
  FROM generate_series($1, $2) i;
SQL
}

# median: the median of the numbers on standard input, separated by spaces or
# newlines (echo $times | median)
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# ratios "A1 A2 ..." "B1 B2 ...": A1/B1 A2/B2 ..., the ratios of the rounds
# (echo $(ratios "$audited" "$plain") | median)
ratios() { paste -d' ' <(echo $1 | tr ' ' '\n') <(echo $2 | tr ' ' '\n') | awk '{printf "%s ", $1 / $2}'; }
# r "N1 N2 ...": the numbers rounded, for the per-round lines
r() { echo $1 | awk '{for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " " : ""), $i}'; }
