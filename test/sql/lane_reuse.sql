-- A session keeps lanes between its transactions only while it comes back
-- to their chains (chain.c, "Nor does a session keep lanes it would not
-- come back to"): a session writing for many tenants, each once, keeps
-- none (it used to keep the lanes of its last 32 chains, which others then
-- probed past); writing to one tenant again and again, it keeps that lane
-- again; a new session starts by keeping.  The chains stay whole.
\set VERBOSITY terse

CREATE FUNCTION pg_temp.kept_lanes() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_locks
     WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 21569  -- 0x5441
$$;

-- a new session keeps the lane of the chain it wrote to
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lr_first', 'lr_hot', true);
SELECT pg_temp.kept_lanes();

-- 40 tenants, a transaction each: none of their lanes is kept
DO $$
BEGIN
    FOR i IN 1 .. 40 LOOP
        INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
            VALUES ('lr_many', 'lr_t' || i, true);
        COMMIT;
    END LOOP;
END
$$;
SELECT pg_temp.kept_lanes();

-- not keeping, a rolled back write gives its lane back with its head as
-- it was: the next write takes it again at the next position, no hole
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lr_rolled_back', 'lr_t1', true);
ROLLBACK;
SELECT pg_temp.kept_lanes();
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lr_after', 'lr_t1', true);
SELECT chain_lane, chain_seq FROM tool_audit.tool_calls WHERE tenant_id = 'lr_t1' ORDER BY chain_seq;

-- the same tenant again and again: its lane is kept again
DO $$
BEGIN
    FOR i IN 1 .. 6 LOOP
        INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
            VALUES ('lr_again', 'lr_hot', true);
        COMMIT;
    END LOOP;
END
$$;
SELECT pg_temp.kept_lanes();

-- a lane given back is taken again where it was: one lane per chain here,
-- positions 1..n with no hole, and verify() finds nothing in these chains
-- (in the full schedule, earlier files leave problems of their own)
SELECT count(DISTINCT tenant_id) AS tenants, count(DISTINCT (chain_id, chain_lane)) AS lanes,
       count(*) AS rows
  FROM tool_audit.tool_calls WHERE tool_name LIKE 'lr\_%';
SELECT count(*) AS lanes_with_holes FROM (
    SELECT chain_id, chain_lane FROM tool_audit.tool_calls
     WHERE tenant_id LIKE 'lr\_%'
     GROUP BY 1, 2 HAVING min(chain_seq) <> 1 OR max(chain_seq) <> count(*)) s;
SELECT count(*) AS problems FROM tool_audit.verify() v
 WHERE v.table_name = 'tool_calls'
   AND split_part(v.chain, '/', 1) IN (SELECT DISTINCT chain_id::text FROM tool_audit.tool_calls
                                        WHERE tenant_id LIKE 'lr\_%');
