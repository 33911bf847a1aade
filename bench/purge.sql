-- Fixtures of bench/purge.sh (after the audited table is loaded):
--   bench_plain:  a plain copy of tool_audit.tool_calls (same columns, the
--                 same indexes, no trigger): the batched DELETE + VACUUM
--                 baseline, what the purge costs without its bookkeeping;
--   bench_parted: the same rows in a plain table partitioned by month of
--                 recorded_at (unique indexes extended by recorded_at, as
--                 partitioning requires): the drop-whole-partitions option;
--   bench_writer(label, target): the concurrent writer, one row per
--                 transaction (INSERT + COMMIT), about 100 a second, each
--                 timed, until a row appears in bench_stop; its latencies go
--                 to bench_latency.
CREATE EXTENSION IF NOT EXISTS pg_freespacemap;
CREATE TABLE bench_stop (stop boolean);
CREATE TABLE bench_latency (label text, at timestamptz, ms float8);
CREATE SEQUENCE bench_copy_id START 1000000000000;

CREATE TABLE bench_plain (LIKE tool_audit.tool_calls INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE TABLE bench_parted (LIKE tool_audit.tool_calls INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (recorded_at);
DO $build$
DECLARE
    m timestamptz;
    i record;
BEGIN
    -- monthly partitions from the oldest row's month to next month
    FOR m IN SELECT generate_series(date_trunc('month', min(recorded_at)),
                                    date_trunc('month', now()) + interval '1 month', interval '1 month')
               FROM tool_audit.tool_calls
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF bench_parted FOR VALUES FROM (%L) TO (%L)',
                       'bench_parted_' || to_char(m, 'YYYY_MM'), m, m + interval '1 month');
    END LOOP;
    -- the audited table's indexes; a unique one must include the partition key
    FOR i IN SELECT x.indexname, x.indexdef, ix.indisunique
               FROM pg_indexes x
               JOIN pg_class c ON c.relname = x.indexname AND c.relnamespace = 'tool_audit'::regnamespace
               JOIN pg_index ix ON ix.indexrelid = c.oid
              WHERE x.schemaname = 'tool_audit' AND x.tablename = 'tool_calls'
    LOOP
        EXECUTE regexp_replace(
            replace(replace(i.indexdef, ' ON tool_audit.tool_calls ', ' ON bench_parted '),
                    'INDEX ' || i.indexname || ' ', 'INDEX bench_parted_' || i.indexname || ' '),
            CASE WHEN i.indisunique THEN '\)( WHERE .*)?$' ELSE '$^' END, ', recorded_at)\1');
    END LOOP;
END
$build$;

-- one recent row, the writer's template for the two copies
CREATE TABLE bench_template AS SELECT * FROM tool_audit.tool_calls ORDER BY id DESC LIMIT 1;

CREATE PROCEDURE bench_writer(label text, target text)
LANGUAGE plpgsql AS $$
DECLARE
    rest text;
    ins text;
    t0 timestamptz;
    n bigint := 0;
    ats timestamptz[] := '{}';
    mss float8[] := '{}';
BEGIN
    IF target = 'audited' THEN
        ins := $i$INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, turn_number, user_id,
                      user_role, model, tenant_id, arguments, result_summary, duration_ms)
                  VALUES ('get_patient_record', 'conv_writer', 1, 'usr_writer', 'physician', 'gpt-4.1',
                          'tenant_' || ($1 % 20), '{"patient_id": "pat_1", "note": "writer"}',
                          '{"success": true}', 12.5)$i$;
    ELSE
        -- the template row with a new id, event_id, time and (negative) position
        SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum)
          INTO rest
          FROM pg_attribute a
         WHERE a.attrelid = 'bench_template'::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname NOT IN ('id', 'event_id', 'recorded_at', 'chain_seq');
        ins := format('INSERT INTO %I (id, event_id, recorded_at, chain_seq, %s) '
                      'SELECT nextval(''bench_copy_id''), gen_random_uuid(), clock_timestamp(), '
                      '-currval(''bench_copy_id''), %s FROM bench_template WHERE $1 IS NOT NULL',
                      target, rest, rest);
    END IF;
    LOOP
        EXIT WHEN EXISTS (SELECT FROM bench_stop);
        n := n + 1;
        t0 := clock_timestamp();
        EXECUTE ins USING n;
        COMMIT;
        ats := ats || t0;
        mss := mss || extract(epoch FROM clock_timestamp() - t0)::float8 * 1000;
        PERFORM pg_sleep(0.01);
    END LOOP;
    INSERT INTO bench_latency SELECT label, a, m FROM unnest(ats, mss) AS u(a, m);
    COMMIT;
END
$$;

-- heap and index sizes in MB (a partitioned table: its partitions'), and the
-- free space VACUUM recorded in the heap's free space map
CREATE FUNCTION bench_leaves(rel regclass) RETURNS SETOF regclass LANGUAGE sql AS $$
    SELECT p.relid FROM pg_partition_tree(rel) p WHERE p.isleaf
    UNION
    SELECT rel WHERE (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) = 'r'
$$;
CREATE FUNCTION bench_size(rel regclass) RETURNS text LANGUAGE sql AS $$
    SELECT format('heap %s MB, indexes %s MB, free in heap %s MB',
                  round(sum(pg_relation_size(l)) / 1048576.0),
                  round(sum(pg_indexes_size(l)) / 1048576.0),
                  round(coalesce(sum((SELECT sum(f.avail) FROM pg_freespace(l) f)), 0) / 1048576.0))
      FROM bench_leaves(rel) l
$$;
CREATE FUNCTION bench_heap_mb(rel regclass) RETURNS numeric LANGUAGE sql AS $$
    SELECT round(sum(pg_relation_size(l)) / 1048576.0) FROM bench_leaves(rel) l
$$;

-- bench_new_rows(target, n): n new rows in a copy: copies of its newest rows
-- with new ids, event ids, times and (negative) chain positions
CREATE FUNCTION bench_new_rows(target regclass, n bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rest text;
BEGIN
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum)
      INTO rest
      FROM pg_attribute a
     WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname NOT IN ('id', 'event_id', 'recorded_at', 'chain_seq');
    EXECUTE format('INSERT INTO %s (id, event_id, recorded_at, chain_seq, %s) '
                   'SELECT s.new_id, gen_random_uuid(), now(), -s.new_id, %s '
                   '  FROM (SELECT nextval(''bench_copy_id'') AS new_id, t.* FROM %s t '
                   '         ORDER BY t.id DESC LIMIT %s) s',
                   target, rest, rest, target, n);
END
$$;
