-- Attacks on verify_since(digest) (1.5): can a writer, a bound reader, an
-- admin or a superuser make the incremental walk skip a row it should check,
-- or report clean where verify() reports a problem, other than the documented
-- case (a row before the row preceding a head)?  doc/tamper-evidence.md,
-- "Incremental verification".  In a database of its own.  The superuser's
-- edits are UPDATEs with the append-only triggers switched off in the
-- catalog: with tool_audit preloaded they are refused (expected output
-- verify_since_attacks_1.out).
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_vs_attack;
CREATE DATABASE regress_tool_audit_vs_attack TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_vs_attack
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;

CREATE FUNCTION regress_settle() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..2000 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_locks l
                               WHERE l.locktype = 'advisory' AND l.pid <> pg_backend_pid()
                                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()));
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
CREATE FUNCTION regress_add(tenant text, n int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
    SELECT 'call_' || i, tenant, true FROM generate_series(1, n) i;
$$;
-- the problems of a run, with the lane's tenant
CREATE FUNCTION regress_problems(rows_of text) RETURNS TABLE (tenant text, pos bigint, problem text)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT (SELECT t.tenant_id FROM tool_audit.tool_calls t
                 WHERE t.chain_id = split_part(v.chain, '/', 1)::bigint LIMIT 1),
               v."position", v.problem
          FROM (%s) v WHERE v.problem NOT LIKE 'digest signature%%' ORDER BY 1, 2, 3$q$, rows_of);
END $$;

-- va: 3 rows, vb: 2, digest d0, as many more, digest d1 (heads at 6 and 4)
SELECT regress_add('va', 3), regress_add('vb', 2);
SELECT tool_audit.digest() AS d0 \gset
\c -
SELECT regress_settle() \gset
SELECT regress_add('va', 3), regress_add('vb', 2);
SELECT tool_audit.digest() AS d1 \gset
SELECT tenant_id, chain_seq, chain_lane FROM tool_audit.tool_calls ORDER BY 1, 2;
SELECT count(*) AS problems FROM tool_audit.verify();

-- 1. superuser: the content of the row just before d1's head (position 5)
-- changed, hashes left as they were, the triggers switched back on.  verify()
-- names it; so does verify_since(d1), which resumes two rows before the head
-- and checks the row before it as verify() does (it used to take that row's
-- stored link on trust and report nothing here)
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
UPDATE tool_audit.tool_calls SET tool_name = 'edited' WHERE tenant_id = 'va' AND chain_seq = 5;
UPDATE pg_trigger SET tgenabled = 'A'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
SELECT * FROM regress_problems('SELECT * FROM tool_audit.verify()');
SELECT * FROM regress_problems($$SELECT * FROM tool_audit.verify_since('$$ || :'d1' || $$')$$);

-- 2. superuser: the same row changed with its row hash recomputed, its link
-- left: the link from the row before it no longer matches (verify_since(d1)
-- used to report nothing); recomputing the link too moves d1's head
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
UPDATE tool_audit.tool_calls t SET tool_name = 'edited' WHERE tenant_id = 'va' AND chain_seq = 5;
UPDATE tool_audit.tool_calls t SET row_hash = tool_audit.compute_row_hash(t) WHERE tenant_id = 'va' AND chain_seq = 5;
UPDATE pg_trigger SET tgenabled = 'A'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
SELECT * FROM regress_problems('SELECT * FROM tool_audit.verify()');
SELECT * FROM regress_problems($$SELECT * FROM tool_audit.verify_since('$$ || :'d1' || $$')$$);
-- and with its link recomputed as well: d1's head no longer matches
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
UPDATE tool_audit.tool_calls t
   SET chain_hash = tool_audit.chain_link(t.chain_id, t.chain_lane, t.chain_seq,
                        (SELECT p.chain_hash FROM tool_audit.tool_calls p
                          WHERE p.chain_id = t.chain_id AND p.chain_lane = t.chain_lane AND p.chain_seq = 4),
                        t.row_hash)
 WHERE tenant_id = 'va' AND chain_seq = 5;
UPDATE pg_trigger SET tgenabled = 'A'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
SELECT * FROM regress_problems($$SELECT * FROM tool_audit.verify_since('$$ || :'d1' || $$')$$);
SELECT * FROM regress_problems('SELECT * FROM tool_audit.verify()');

-- 3. the documented limit: vb's row two before d1's head (position 2)
-- changed, hashes left: verify_since(d1) does not look at it, verify() does,
-- and so does verify_since() of an older digest (d0, vb's head at 2: "asked
-- to re-check")
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
UPDATE tool_audit.tool_calls SET tool_name = 'edited_2' WHERE tenant_id = 'vb' AND chain_seq = 2;
UPDATE pg_trigger SET tgenabled = 'A'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
SELECT * FROM regress_problems($$SELECT * FROM tool_audit.verify_since('$$ || :'d1' || $$')$$) WHERE tenant = 'vb';
SELECT * FROM regress_problems('SELECT * FROM tool_audit.verify()') WHERE tenant = 'vb';
-- 4. replaying an older digest only widens the walk: d0 re-checks position 2
SELECT * FROM regress_problems($$SELECT * FROM tool_audit.verify_since('$$ || :'d0' || $$')$$) WHERE tenant = 'vb';
SELECT regress_settle() \gset

-- 5. a writer cannot place a row out of the walk: the chain columns it
-- brings are replaced by the insert trigger, and it may not restore
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, chain_id, chain_lane, chain_seq, chain_hash)
  VALUES ('w', 'va', true, 1, NULL, NULL, '\x00');
SELECT regress_try('SET tool_audit.restoring = on');
RESET ROLE;
SELECT chain_lane IS NOT NULL AND chain_seq IS NOT NULL AND chain_id <> 1 AS chained
  FROM tool_audit.tool_calls WHERE tool_name = 'w';

-- 6. a bound reader may not run verify_since() (nor the admin's digest check);
-- the admin runs it but writes no rows and keeps no mark in the database
SELECT tool_audit.bind_tenant('regress_reader_acme', 'va');
SET ROLE regress_reader_acme;
SELECT regress_try($$SELECT count(*) FROM tool_audit.verify_since('{}')$$);
RESET ROLE;
SET ROLE regress_admin;
SELECT regress_try($$UPDATE tool_audit.tool_calls SET tool_name = 'x' WHERE false$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('a', true)$$);
RESET ROLE;
SELECT tool_audit.unbind_tenant('regress_reader_acme', 'va');

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_vs_attack;
