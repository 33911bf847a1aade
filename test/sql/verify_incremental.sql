-- verify_since(digest) (1.5, issue 16): incremental verification.  It checks
-- the rows after the digest's heads (and that the row at each head still
-- links to the digest's hash), so that a row tampered with after the digest
-- is found, whatever the table's size; a change before the heads is found
-- only by a full check (verify(), verify_digest() of an older digest), and a
-- forged "already verified" position (a digest edited to move a head past a
-- tampered row) is caught by the digest's signature or by its head hash.
-- Rows are tampered with as a superuser can even with tool_audit preloaded:
-- an INSERT with the insert trigger switched off in the catalog, of a row
-- whose link is consistent but whose content does not match its row hash.
-- In a database of its own, so that no other test's rows are walked.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_verify_inc;
CREATE DATABASE regress_tool_audit_verify_inc TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_verify_inc
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
SELECT tool_audit.signing_public_key() IS NOT NULL AS signing_key \gset

-- forge(tenant), with the insert trigger switched off in the catalog (and a
-- new session, as relcache keeps triggers): a row after the tenant's lane
-- head, linked as the insert trigger would link it, but whose row hash is the
-- row before's, so its content does not match it (what tool_audit cannot
-- refuse: a superuser writing past the trigger)
CREATE FUNCTION regress_forge(tenant text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t tool_audit.tool_calls;
    f tool_audit.tool_calls;
BEGIN
    SELECT * INTO t FROM tool_audit.tool_calls
     WHERE tenant_id = tenant ORDER BY chain_lane, chain_seq DESC LIMIT 1;
    f := jsonb_populate_record(t, jsonb_build_object(
        'id', nextval('tool_audit.tool_calls_id_seq'), 'event_id', gen_random_uuid(),
        'tool_name', 'forged', 'chain_seq', t.chain_seq + 1,
        'chain_hash', tool_audit.chain_link(t.chain_id, t.chain_lane, t.chain_seq + 1, t.chain_hash, t.row_hash)));
    INSERT INTO tool_audit.tool_calls SELECT f.*;
    RETURN f.chain_seq;
END $$;
-- settle(): after \c -, wait until the session before has let go of its
-- lanes (it exits in the background), so that this one writes to lane 0
CREATE FUNCTION regress_settle() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..2000 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_locks l
                               WHERE l.locktype = 'advisory' AND l.pid <> pg_backend_pid()
                                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()));
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
-- add(tenant, n): n rows through the insert trigger, in a new session so that
-- the lane head is read from the table
CREATE FUNCTION regress_add(tenant text, n int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
    SELECT 'call_' || i, tenant, true FROM generate_series(1, n) i;
$$;

-- two tenants, then the digest that marks what was verified
SELECT regress_add('vi_a', 5), regress_add('vi_b', 5);
SELECT count(*) AS problems FROM tool_audit.verify();
SELECT tool_audit.digest() AS d1 \gset

-- nothing since: nothing to report; rows added since (and a new tenant's
-- lane the digest does not know) are checked and fine
SELECT * FROM tool_audit.verify_since(:'d1');
SELECT regress_add('vi_a', 3), regress_add('vi_b', 2), regress_add('vi_c', 2);
SELECT * FROM tool_audit.verify_since(:'d1');

-- a row tampered with after the digest is found, with verify() and verify_digest()
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
SELECT regress_forge('vi_a') AS forged_a \gset
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
SELECT :forged_a AS forged_position;
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem FROM tool_audit.verify_since(:'d1');
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem FROM tool_audit.verify();
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem FROM tool_audit.verify_digest(:'d1');
-- and in a new lane, unknown to the digest: walked from its start
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
SELECT regress_forge('vi_c') AS forged_c \gset
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem FROM tool_audit.verify_since(:'d1')
 ORDER BY "position";

-- rows written after the forged ones, then a new digest: the forged rows are
-- now before its heads.  verify_since() does not look again at vi_a's, two
-- rows before its head (only the row before each head, the head and what
-- follows); it does check vi_c's, the row just before its head (its content
-- against its row hash, so that the head's link alone does not vouch for
-- it); a full check finds both
SELECT regress_add('vi_a', 2), regress_add('vi_c', 1);
SELECT tool_audit.digest() AS d2 \gset
SELECT * FROM tool_audit.verify_since(:'d2');
SELECT count(*) AS found_by_verify FROM tool_audit.verify() WHERE problem LIKE 'row altered%';
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem FROM tool_audit.verify_digest(:'d1')
 ORDER BY "position";
-- nothing after the heads is missed: the first row after a head, and the
-- last of a lane, forged
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
SELECT regress_forge('vi_b') AS forged_b \gset
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
SELECT :forged_b AS forged_position;
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem FROM tool_audit.verify_since(:'d2');

-- a forged mark: the digest edited to say that vi_a was verified up to its
-- last row, with that row's stored link (what a superuser can read), hiding
-- the forged row before it.  With a signing key the signature no longer
-- holds; without one the edited digest is as good as the operator's copy is
-- (doc/tamper-evidence.md: keep it where the database's superuser cannot write)
SELECT jsonb_set(:'d1', '{heads}',
       (SELECT jsonb_agg(CASE WHEN h->>'tenant' = 'vi_a' THEN
                   jsonb_set(jsonb_set(h, '{position}', to_jsonb(t.chain_seq)), '{hash}',
                             to_jsonb(encode(t.chain_hash, 'hex')))
                   ELSE h END)
          FROM jsonb_array_elements(:'d1'::jsonb->'heads') h,
               LATERAL (SELECT chain_seq, chain_hash FROM tool_audit.tool_calls
                         WHERE tenant_id = 'vi_a' ORDER BY chain_seq DESC LIMIT 1) t)) AS forged_mark \gset
SELECT count(*) FILTER (WHERE problem = 'digest signature invalid') = :'signing_key'::boolean::int AS caught_by_signature,
       count(*) FILTER (WHERE problem LIKE 'row altered%' AND table_name = 'tool_calls' AND "position" = :forged_a) AS forged_a_reported
  FROM tool_audit.verify_since(:'forged_mark');
-- a mark whose head hash is not the row's link at that position (a head moved
-- to a position with a hash from elsewhere, or rows rewritten since): the head
-- no longer matches
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem
  FROM tool_audit.verify_since(jsonb_set(:'d2', '{heads}',
       (SELECT jsonb_agg(CASE WHEN h->>'tenant' = 'vi_c'
                              THEN jsonb_set(h, '{hash}', to_jsonb(repeat('0', 64))) ELSE h END)
          FROM jsonb_array_elements(:'d2'::jsonb->'heads') h)))
 WHERE NOT (:'signing_key'::boolean AND problem = 'digest signature invalid');
-- a head beyond the lane's end: rows the digest covered are missing
SELECT table_name, split_part(chain, '/', 2) AS lane, "position", problem
  FROM tool_audit.verify_since(jsonb_set(:'d2', '{heads}',
       (SELECT jsonb_agg(CASE WHEN h->>'tenant' = 'vi_c'
                              THEN jsonb_set(h, '{position}', to_jsonb((h->>'position')::bigint + 3)) ELSE h END)
          FROM jsonb_array_elements(:'d2'::jsonb->'heads') h)))
 WHERE NOT (:'signing_key'::boolean AND problem = 'digest signature invalid');
-- the signature as verify_digest() checks it
SELECT problem = CASE WHEN :'signing_key'::boolean THEN 'digest signature invalid'
                      ELSE 'digest signature not checked: tool_audit.signing_key_file is not set' END AS expected_problem
  FROM tool_audit.verify_since(jsonb_set(:'d2', '{signature}', to_jsonb(repeat('00', 64))))
 WHERE table_name = '';
-- not a digest: an error, as for verify_digest()
SELECT regress_try($$SELECT * FROM tool_audit.verify_since('{"format": "tool_audit digest 1"}')$$);
SELECT * FROM tool_audit.verify_since(NULL);

-- the run is recorded as a read of the audit trail
SELECT e.payload->>'function' AS function, e.payload->'arguments' ? 'digest_taken_at' AS names_digest
  FROM tool_audit.admin_events e WHERE e.event_type = 'audit.read' ORDER BY e.id DESC LIMIT 1;

-- who may: the verifier and admins, not writers or readers
SELECT regress_try($$SET ROLE regress_writer; SELECT count(*) FROM tool_audit.verify_since('{}')$$);
RESET ROLE;
SELECT regress_try($$SET ROLE regress_reader; SELECT count(*) FROM tool_audit.verify_since('{}')$$);
RESET ROLE;
SET ROLE regress_admin;
SELECT "position", regexp_replace(problem, 'event \d+', 'event N') AS admin_sees FROM tool_audit.verify_since(:'d2');
RESET ROLE;

-- purges between two digests: rows born old (restored with their time and
-- expiry), then rows of today; vi_p's expired rows end before its head, all
-- of vi_q's rows up to its head expired
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, success, retention_policy, expires_at)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', t, 'old', true,
         'general', now() - interval '435 days'
    FROM (VALUES ('vi_p'), ('vi_q')) v(t), generate_series(1, 4) g;
RESET tool_audit.restoring;
\c -
SELECT regress_settle() \gset
SELECT regress_add('vi_p', 2);
SELECT tool_audit.digest() AS d3 \gset
SELECT (tool_audit.purge_expired())->'rows' AS purged;
\c -
SELECT regress_settle() \gset
SELECT regress_add('vi_p', 1), regress_add('vi_q', 2);
SELECT tenant_id, first_seq, last_seq FROM tool_audit.purge_anchors ORDER BY 1;
-- spans purged before a head are behind it (named as purged since the
-- digest, as verify_digest() names them); a head purged makes the lane be
-- walked from its start, named as verify_digest() names it; and vi_b's
-- head, the forged row, is checked again
SELECT (SELECT tenant_id FROM tool_audit.tool_calls t WHERE t.chain_id = split_part(chain, '/', 1)::bigint LIMIT 1) AS tenant,
       "position", regexp_replace(problem, 'event \d+', 'event N') AS problem
  FROM tool_audit.verify_since(:'d3') ORDER BY 1, 2, 3;
-- verify_digest() says the same of these lanes, and finds vi_a's and vi_c's
-- forged rows before the heads
SELECT (SELECT tenant_id FROM tool_audit.tool_calls t WHERE t.chain_id = split_part(chain, '/', 1)::bigint LIMIT 1) AS tenant,
       "position", regexp_replace(problem, 'event \d+', 'event N') AS problem
  FROM tool_audit.verify_digest(:'d3') ORDER BY 1, 2, 3;

-- a row in no chain at all (written past the insert trigger): the
-- incremental walk reads those too
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
INSERT INTO tool_audit.tool_calls (id, event_id, tool_name, success, recorded_by)
  VALUES (nextval('tool_audit.tool_calls_id_seq'), gen_random_uuid(), 'unchained', true, 'regress');
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert';
\c -
SELECT regress_settle() \gset
SELECT table_name, chain, problem FROM tool_audit.verify_since(:'d3') WHERE chain IS NULL;

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_verify_inc;
