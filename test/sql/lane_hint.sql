-- The head of a lane given back is left in shared memory for the next taker
-- (lane_hint.c, preloaded only; without preload every head is read from the
-- chain position index, and this file must give the same output).  A hint
-- must be exactly the committed head: a wrong one forks (a unique violation)
-- or leaves a hole (a chain that does not start at 1 or skips a position).
-- Writing for many tenants, a session gives every lane back at each commit,
-- so each write below takes its lane again, from a hint when preloaded.
\set VERBOSITY terse

CREATE PROCEDURE pg_temp.lh_write(pass text, n int, tenants int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
            VALUES ('lh_' || pass, 'lh_t' || (i % tenants), true);
        COMMIT;
    END LOOP;
END
$$;

CREATE FUNCTION pg_temp.lh_lanes(OUT lanes bigint, OUT rows bigint, OUT lanes_with_holes bigint)
LANGUAGE sql AS $$
    SELECT count(*), sum(n), count(*) FILTER (WHERE lo <> 1 OR hi <> n)
      FROM (SELECT chain_id, chain_lane, count(*) AS n, min(chain_seq) AS lo, max(chain_seq) AS hi
              FROM tool_audit.tool_calls WHERE tenant_id LIKE 'lh\_t%' GROUP BY 1, 2) s
$$;

CALL pg_temp.lh_write('first', 120, 40);
SELECT * FROM pg_temp.lh_lanes();

-- a transaction that took a lane (from its hint) and rolled back gives it
-- back with its head as it was: the next write goes to the next position
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lh_rolled_back', 'lh_t1', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lh_rolled_back', 'lh_t1', true);
ROLLBACK;
-- a savepoint rolled back after the lane was taken, then a write kept
BEGIN;
SAVEPOINT s;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lh_savepoint', 'lh_t2', true);
ROLLBACK TO SAVEPOINT s;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lh_savepoint', 'lh_t2', true);
COMMIT;
-- an error after the lane was taken (the row is refused by a CHECK, after
-- the insert trigger placed it)
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, duration_ms)
    VALUES ('lh_refused', 'lh_t3', true, -1);
CALL pg_temp.lh_write('second', 120, 40);
SELECT * FROM pg_temp.lh_lanes();
SELECT tool_name, chain_seq FROM tool_audit.tool_calls WHERE tenant_id IN ('lh_t1', 'lh_t2', 'lh_t3')
 ORDER BY tenant_id, chain_seq;

-- a purge between the passes moves the epoch: heads are read again
-- (nothing here is expired, so nothing is purged)
SELECT tool_audit.purge_expired() IS NOT NULL AS purged;
CALL pg_temp.lh_write('third', 80, 40);
SELECT * FROM pg_temp.lh_lanes();
SELECT count(*) AS problems FROM tool_audit.verify() v
 WHERE v.table_name = 'tool_calls'
   AND split_part(v.chain, '/', 1) IN (SELECT DISTINCT chain_id::text FROM tool_audit.tool_calls
                                        WHERE tenant_id LIKE 'lh\_t%');
