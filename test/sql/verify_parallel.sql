-- The parallel walk (1.5, issue 16): verify(), verify_digest() and
-- verify_since() walk a large audit table with parallel workers, each taking
-- whole chains (verify_parallel.c).  Here every table is "large"
-- (tool_audit.verify_parallel_min_pages = 0) and each run is compared with
-- the serial walk of the same rows (tool_audit.verify_parallel_workers = 0):
-- the same problems, in the same order, over many tenants' chains tampered
-- with as a superuser can: an altered row, a row missing, a forged link, a
-- row written without the insert trigger, a digest whose head is past its
-- lane's end (the last lane: its problem comes after the rows with no chain
-- id, as in the serial walk) or of a lane that never was; for a tenant-bound
-- reader too.  The DEBUG lines show the workers launched: without them this
-- test fails (TAP 041 shows that the workers take parts).
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- only a superuser sets them
SET ROLE regress_admin;
SELECT regress_try($$SET tool_audit.verify_parallel_workers = 4$$) AS admin_sets_workers,
       regress_try($$SET tool_audit.verify_parallel_min_pages = 0$$) AS admin_sets_threshold;
RESET ROLE;
SHOW tool_audit.verify_parallel_workers;
SHOW tool_audit.verify_parallel_min_pages;

-- whatever the earlier tests left in this database (run alone: little), the
-- serial and the parallel walk report the same problems
SET tool_audit.verify_parallel_workers = 0;
CREATE TEMP TABLE here_serial AS SELECT * FROM tool_audit.verify();
SET tool_audit.verify_parallel_workers = 2;
SET tool_audit.verify_parallel_min_pages = 0;
CREATE TEMP TABLE here_parallel AS SELECT * FROM tool_audit.verify();
SELECT (SELECT count(*) FROM (SELECT * FROM here_serial EXCEPT ALL SELECT * FROM here_parallel) x) AS only_serial,
       (SELECT count(*) FROM (SELECT * FROM here_parallel EXCEPT ALL SELECT * FROM here_serial) x) AS only_parallel;
RESET tool_audit.verify_parallel_workers;
RESET tool_audit.verify_parallel_min_pages;

-- In a database of its own, on rows of its own.
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_verify_par;
CREATE DATABASE regress_tool_audit_verify_par TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_verify_par
\set VERBOSITY terse
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_vp_reader') THEN
        CREATE ROLE regress_vp_reader IN ROLE tool_audit_reader;
    END IF;
END $$;
RESET client_min_messages;
SET ROLE regress_admin;
SELECT tool_audit.bind_tenant('regress_vp_reader', 'vp_03');
RESET ROLE;

-- twelve tenants, each its own chain, in both tables, and rows of no tenant
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
SELECT 'call_' || i, 'vp_' || lpad(t::text, 2, '0'), true
  FROM generate_series(1, 12) t, generate_series(1, 20) i;
INSERT INTO tool_audit.tool_calls (tool_name, success) SELECT 'untenanted_' || i, true FROM generate_series(1, 5) i;
SELECT count(tool_audit.log_event('policy.update', 'a', '{}', jsonb_build_object('tenant_id', 'vp_' || lpad(t::text, 2, '0'))))
  FROM generate_series(1, 12) t;
SELECT tool_audit.digest() AS d1 \gset
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
SELECT 'later_' || i, 'vp_' || lpad(t::text, 2, '0'), true
  FROM generate_series(1, 12) t, generate_series(1, 3) i;

-- the tampering, as a superuser can even with tool_audit preloaded: rows
-- inserted with the insert trigger switched off in the catalog (a new
-- session: relcache keeps triggers).  forge(tenant, kind): a row after the
-- tenant's lane head, linked as the trigger would link it; 'altered': its
-- row hash is the row before's, so its content does not match it; 'gap': one
-- position further on; 'link': with a forged link
CREATE FUNCTION regress_forge(tenant text, kind text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t tool_audit.tool_calls;
    f tool_audit.tool_calls;
BEGIN
    SELECT * INTO t FROM tool_audit.tool_calls
     WHERE tenant_id = tenant ORDER BY chain_lane, chain_seq DESC LIMIT 1;
    f := jsonb_populate_record(t, jsonb_build_object(
        'id', nextval('tool_audit.tool_calls_id_seq'), 'event_id', gen_random_uuid(),
        'tool_name', 'forged', 'chain_seq', t.chain_seq + CASE kind WHEN 'gap' THEN 2 ELSE 1 END));
    IF kind <> 'altered' THEN
        f.row_hash := tool_audit.compute_row_hash(f);
    END IF;
    f.chain_hash := CASE WHEN kind = 'link' THEN sha256('forged'::bytea)
                    ELSE tool_audit.chain_link(t.chain_id, t.chain_lane, f.chain_seq, t.chain_hash, f.row_hash) END;
    INSERT INTO tool_audit.tool_calls SELECT f.*;
    RETURN f.chain_seq;
END $$;
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert';
\c -
-- an altered row, a row missing, a forged link, a row without chain position
SELECT regress_forge('vp_03', 'altered') AS altered, regress_forge('vp_05', 'gap') AS gap,
       regress_forge('vp_07', 'link') AS forged_link;
INSERT INTO tool_audit.tool_calls
SELECT (jsonb_populate_record(t, jsonb_build_object(
        'id', nextval('tool_audit.tool_calls_id_seq'), 'event_id', gen_random_uuid(), 'tool_name', 'no_trigger',
        'chain_id', NULL, 'chain_lane', NULL, 'chain_seq', NULL))).*
  FROM tool_audit.tool_calls t WHERE tenant_id = 'vp_09' AND chain_seq = 1;
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert';
\c -
\set VERBOSITY terse
-- rows after the forged ones, through the trigger
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
SELECT 'after_' || i, 'vp_' || lpad(t::text, 2, '0'), true FROM generate_series(1, 12) t, generate_series(1, 2) i;
-- and a digest that says more than there is: a head past the end of the
-- lane of the highest chain id (the last the walk meets, after the rows with
-- no chain id), and a lane that never was
SELECT jsonb_set(:'d1', '{heads}',
       (SELECT jsonb_agg(CASE WHEN h->>'chain' = m.chain
                              THEN jsonb_set(h, '{position}', to_jsonb((h->>'position')::int + 30)) ELSE h END)
          FROM jsonb_array_elements(:'d1'::jsonb->'heads') h,
               (SELECT max(chain_id)::text AS chain FROM tool_audit.tool_calls) m)
       || (SELECT jsonb_agg(jsonb_set(h, '{lane}', '5')) FROM jsonb_array_elements(:'d1'::jsonb->'heads') h
            WHERE h->>'tenant' = 'vp_03' AND h->>'table' = 'tool_calls')) AS d1 \gset

-- serial, then parallel: each run's rows with their order (verify(since)
-- too: a time before every row, so that it reports what verify() does)
CREATE FUNCTION regress_runs(run text) RETURNS TABLE (n bigint, table_name text, chain text, "position" bigint,
                                                                  row_id bigint, problem text)
LANGUAGE sql AS $$
    SELECT o, t, c, p, r, pr FROM tool_audit.verify() WITH ORDINALITY v(t, c, p, r, pr, o) WHERE run = 'verify'
    UNION ALL
    SELECT o, t, c, p, r, pr FROM tool_audit.verify(now() - interval '1 day') WITH ORDINALITY v(t, c, p, r, pr, o)
     WHERE run = 'verify_since_time'
    UNION ALL
    SELECT o, t, c, p, r, pr FROM tool_audit.verify_digest(current_setting('regress.d1')::jsonb)
           WITH ORDINALITY v(t, c, p, r, pr, o) WHERE run = 'digest'
    UNION ALL
    SELECT o, t, c, p, r, pr FROM tool_audit.verify_since(current_setting('regress.d1')::jsonb)
           WITH ORDINALITY v(t, c, p, r, pr, o) WHERE run = 'since'
$$;
SET regress.d1 = :'d1';
CREATE TEMP TABLE runs (mode text, run text, n bigint, table_name text, chain text, "position" bigint,
                        row_id bigint, problem text);
SET tool_audit.verify_parallel_workers = 0;
INSERT INTO runs SELECT 'serial', r, x.* FROM unnest(ARRAY['verify', 'verify_since_time', 'digest', 'since']) r, regress_runs(r) x;
SET tool_audit.verify_parallel_workers = 2;
SET tool_audit.verify_parallel_min_pages = 0;
INSERT INTO runs SELECT 'parallel', r, x.* FROM unnest(ARRAY['verify', 'verify_since_time', 'digest', 'since']) r, regress_runs(r) x;

-- what the serial walk finds (the chain ids are hashes: not shown; with a
-- signing key, the edited digest's signature is reported first: not shown)
CREATE TEMP VIEW shown AS
SELECT mode, run, row_number() OVER (PARTITION BY mode, run ORDER BY n) AS n, table_name, "position", problem
  FROM runs WHERE problem NOT LIKE 'row recorded at%' AND problem <> 'digest signature invalid';
SELECT run, n, table_name, "position", problem FROM shown WHERE mode = 'serial' ORDER BY run, n;
-- the parallel walk finds the same, in the same order
SELECT run, count(*) FILTER (WHERE mode = 'serial') AS serial, count(*) FILTER (WHERE mode = 'parallel') AS parallel
  FROM shown GROUP BY run ORDER BY run;
SELECT s.run, s.n, s.problem AS serial, p.problem AS parallel
  FROM (SELECT * FROM runs WHERE mode = 'serial') s
  FULL JOIN (SELECT * FROM runs WHERE mode = 'parallel') p USING (run, n)
 WHERE (s.table_name, s.chain, s."position", s.row_id, s.problem)
       IS DISTINCT FROM (p.table_name, p.chain, p."position", p.row_id, p.problem);

-- a reader bound to tenant vp_03 sees its tenant's problems only, either way
GRANT SELECT ON runs TO regress_vp_reader;
GRANT INSERT ON runs TO regress_vp_reader;
SET tool_audit.verify_parallel_workers = 0;
SET ROLE regress_vp_reader;
INSERT INTO runs SELECT 'reader_serial', 'verify', x.* FROM tool_audit.verify() WITH ORDINALITY v(t, c, p, r, pr, o),
       LATERAL (SELECT o, t, c, p, r, pr) x;
RESET ROLE;
SET tool_audit.verify_parallel_workers = 2;
SET ROLE regress_vp_reader;
SET client_min_messages = debug1;
INSERT INTO runs SELECT 'reader_parallel', 'verify', x.* FROM tool_audit.verify() WITH ORDINALITY v(t, c, p, r, pr, o),
       LATERAL (SELECT o, t, c, p, r, pr) x;
RESET client_min_messages;
RESET ROLE;
SELECT n, table_name, "position", problem FROM runs WHERE mode = 'reader_serial' ORDER BY n;
SELECT count(*) AS differences
  FROM (SELECT * FROM runs WHERE mode = 'reader_serial') s
  FULL JOIN (SELECT * FROM runs WHERE mode = 'reader_parallel') p USING (run, n)
 WHERE (s.table_name, s.chain, s."position", s.row_id, s.problem)
       IS DISTINCT FROM (p.table_name, p.chain, p."position", p.row_id, p.problem);

-- the workers really ran: one line a table (none with the serial walk)
SET client_min_messages = debug1;
SELECT count(*) AS problems FROM tool_audit.verify();
SET tool_audit.verify_parallel_workers = 0;
SELECT count(*) AS problems FROM tool_audit.verify();
SET tool_audit.verify_parallel_workers = 2;
-- in a serializable transaction too
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) AS problems FROM tool_audit.verify();
COMMIT;
RESET client_min_messages;

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_verify_par;
RESET client_min_messages;
