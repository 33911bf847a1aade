-- Tenant verification: a reader (or a verifier role) bound to a tenant
-- verifies its tenant's chains, takes and checks digests of them, and learns
-- nothing of the other tenants; admins' runs are unchanged.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_tv_acme') THEN
        CREATE ROLE regress_tv_acme IN ROLE tool_audit_reader;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_tv_globex') THEN
        CREATE ROLE regress_tv_globex IN ROLE tool_audit_reader;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_tv_verifier') THEN
        CREATE ROLE regress_tv_verifier IN ROLE tool_audit_verifier;
    END IF;
END $$;
RESET client_min_messages;
SET ROLE regress_admin;
SELECT tool_audit.bind_tenant('regress_tv_acme', 'tv_acme'),
       tool_audit.bind_tenant('regress_tv_globex', 'tv_globex'),
       tool_audit.bind_tenant('regress_tv_verifier', 'tv_acme');
RESET ROLE;

-- rows of two tenants and of none, in both tables
SELECT count(tool_audit.log_call('tv_lookup', jsonb_build_object('n', g), '{}', 1,
                                 jsonb_build_object('tenant_id', t, 'conversation_id', 'conv_tv')))
  FROM unnest(ARRAY['tv_acme', 'tv_globex']) t, generate_series(1, 3) g;
SELECT count(tool_audit.log_call('tv_lookup', '{}', '{}', 1, '{"conversation_id": "conv_tv_none"}'));
SELECT count(tool_audit.log_event('policy.update', 'a', '{}', jsonb_build_object('tenant_id', t, 'reason', 'tv')))
  FROM unnest(ARRAY['tv_acme', 'tv_globex']) t;

-- the admin's digest lists every tenant, as before
SELECT tool_audit.digest() AS full_digest \gset
SELECT :'full_digest'::jsonb ? 'scope' AS full_is_scoped,
       (SELECT array_agg(DISTINCT h->>'tenant' ORDER BY h->>'tenant')
          FROM jsonb_array_elements(:'full_digest'::jsonb->'heads') h
         WHERE h->>'tenant' LIKE 'tv_%') AS tv_tenants_in_full_digest;

-- a bound reader verifies: nothing wrong in its tenant
SET ROLE regress_tv_acme;
SELECT * FROM tool_audit.verify();
-- its digest covers its tenant's chains only, and names no other tenant
SELECT tool_audit.digest() AS acme_digest \gset
SELECT :'acme_digest'::jsonb->>'scope' AS scope,
       :'acme_digest'::jsonb->>'format' AS format,
       (SELECT array_agg(DISTINCT coalesce(h->>'tenant', '(none)'))
          FROM jsonb_array_elements(:'acme_digest'::jsonb->'heads') h) AS tenants,
       (SELECT array_agg(DISTINCT h->>'table' ORDER BY h->>'table')
          FROM jsonb_array_elements(:'acme_digest'::jsonb->'heads') h) AS tables,
       strpos(:'acme_digest', 'tv_globex') AS globex_mentioned;
-- its tool_calls heads are exactly the full digest's heads of tv_acme
-- (admin_events moves on: every verify() and digest() is a recorded read)
CREATE FUNCTION pg_temp.call_heads(d jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(h ORDER BY h->>'chain', (h->>'lane')::int)
      FROM jsonb_array_elements(d->'heads') h
     WHERE h->>'table' = 'tool_calls' AND h->>'tenant' LIKE 'tv\_%'
$$;
GRANT EXECUTE ON FUNCTION pg_temp.call_heads(jsonb) TO PUBLIC;
SELECT pg_temp.call_heads(:'acme_digest') =
       (SELECT jsonb_agg(h) FROM jsonb_array_elements(pg_temp.call_heads(:'full_digest')) h
         WHERE h->>'tenant' = 'tv_acme') AS same_heads_as_full_digest,
       jsonb_array_length(pg_temp.call_heads(:'acme_digest')) AS acme_call_heads;
-- both digests check: no false alarm for the rows it cannot see
SELECT * FROM tool_audit.verify_digest(:'acme_digest');
SELECT * FROM tool_audit.verify_digest(:'full_digest');
-- it cannot ask for another tenant's digest, nor derive one
SELECT regress_try($$SELECT tool_audit.tenant_digest('tv_globex')$$);
SELECT regress_try(format('SELECT tool_audit.derive_tenant_digest(%L, %L)', :'full_digest', 'tv_globex'));
RESET ROLE;

-- an admin takes one tenant's digest: the same heads as the bound reader's
SET ROLE regress_admin;
SELECT tool_audit.tenant_digest('tv_acme') AS admin_acme_digest \gset
SELECT pg_temp.call_heads(:'admin_acme_digest') = pg_temp.call_heads(:'acme_digest') AS admin_tenant_digest_same_heads,
       :'admin_acme_digest'::jsonb->>'scope' AS scope;
-- or derives it later from the full digest it kept: that digest's heads of
-- tv_acme and its time, nothing of the others
SELECT tool_audit.derive_tenant_digest(:'full_digest', 'tv_acme') AS derived_digest \gset
SELECT :'derived_digest'::jsonb->>'scope' AS scope,
       :'derived_digest'::jsonb->'taken_at' = :'full_digest'::jsonb->'taken_at' AS same_time,
       :'derived_digest'::jsonb->'heads' =
       (SELECT jsonb_agg(h) FROM jsonb_array_elements(:'full_digest'::jsonb->'heads') h
         WHERE h->>'tenant' = 'tv_acme') AS same_heads,
       :'derived_digest'::jsonb->'security_state' = :'full_digest'::jsonb->'security_state' AS same_security_state,
       strpos(:'derived_digest', 'tv_globex') AS globex_mentioned,
       length(:'derived_digest'::jsonb->>'derived_from') AS derived_from_length;
-- not from a digest whose signature does not check, nor from something else
SELECT regress_try(format('SELECT tool_audit.derive_tenant_digest(%L, %L)',
                          jsonb_set(:'full_digest', '{signature}', to_jsonb(repeat('0', 128))), 'tv_acme'));
SELECT regress_try($$SELECT tool_audit.derive_tenant_digest('{"heads": []}', 'tv_acme')$$);
RESET ROLE;

-- a verifier role bound to the tenant is limited the same way
SET ROLE regress_tv_verifier;
SELECT pg_temp.call_heads(tool_audit.digest()) = pg_temp.call_heads(:'acme_digest') AS bound_verifier_same_heads;
SELECT * FROM tool_audit.verify_digest(:'acme_digest');
SELECT * FROM tool_audit.verify_digest(:'derived_digest');
SELECT regress_try($$SELECT tool_audit.tenant_digest('tv_globex')$$);
SELECT regress_try(format('SELECT tool_audit.derive_tenant_digest(%L, %L)', :'full_digest', 'tv_globex'));
SELECT pg_temp.call_heads(tool_audit.tenant_digest('tv_acme')) = pg_temp.call_heads(:'acme_digest') AS own_tenant_digest;
RESET ROLE;

-- a digest a bound reader crafts with another tenant's chain id under its
-- own tenant's name learns nothing: the lane is "gone" whether or not it exists
SET ROLE regress_tv_acme;
SELECT problem FROM tool_audit.verify_digest(jsonb_set(:'acme_digest', '{heads}',
    (SELECT jsonb_agg(jsonb_set(h, '{chain}', to_jsonb(g->>'chain')))
       FROM jsonb_array_elements(:'acme_digest'::jsonb->'heads') WITH ORDINALITY a(h, i),
            LATERAL (SELECT g FROM jsonb_array_elements(:'full_digest'::jsonb->'heads') g
                      WHERE g->>'tenant' = 'tv_globex' AND g->>'table' = h->>'table' LIMIT 1) b
      WHERE i = 1)))
 WHERE problem NOT LIKE 'digest%';
RESET ROLE;

-- tampering: a superuser edits one row of each tenant and deletes one
-- admin event of tv_globex (the triggers switched off through the catalog,
-- in a new session that has not loaded the library: with the library
-- preloaded its guards refuse this, test/expected/tenant_verify_1.out)
\c
BEGIN;
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
UPDATE tool_audit.tool_calls SET arguments = '{"n": 99}'
 WHERE conversation_id = 'conv_tv' AND arguments = '{"n": 2}';
DELETE FROM tool_audit.admin_events WHERE reason = 'tv' AND tenant_id = 'tv_globex';
UPDATE pg_trigger SET tgenabled = 'A'
 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
COMMIT;
\c

-- (the admin's runs see every tenant, also what earlier test files left:
-- its results are shown for this file's chains)
SELECT array_agg(DISTINCT h->>'chain') AS tv_chains
  FROM jsonb_array_elements(:'full_digest'::jsonb->'heads') h WHERE h->>'tenant' LIKE 'tv\_%' \gset
-- the admin sees every problem, as before (the deleted head: against the digest)
SELECT table_name, problem FROM tool_audit.verify()
 WHERE split_part(chain, '/', 1) = ANY (:'tv_chains') ORDER BY 1, 2;
SELECT table_name, problem FROM tool_audit.verify_digest(:'full_digest')
 WHERE split_part(chain, '/', 1) = ANY (:'tv_chains') ORDER BY 1, 2;
-- the bound reader sees its tenant's problem only, naming no other tenant
SET ROLE regress_tv_acme;
SELECT table_name, problem FROM tool_audit.verify() ORDER BY 1, 2;
SELECT table_name, problem FROM tool_audit.verify_digest(:'acme_digest') ORDER BY 1, 2;
-- with the full digest too: its own tenant's heads only (no alarm for the
-- admin event of tv_globex that is gone)
SELECT table_name, problem FROM tool_audit.verify_digest(:'full_digest') ORDER BY 1, 2;
RESET ROLE;
SET ROLE regress_tv_globex;
SELECT table_name, problem FROM tool_audit.verify() ORDER BY 1, 2;
-- the acme digest checks no head of globex: its own row's problem only
SELECT table_name, problem FROM tool_audit.verify_digest(:'acme_digest') ORDER BY 1, 2;
RESET ROLE;
-- the admin checking the acme digest: every row's problem, acme's heads
SELECT table_name, problem FROM tool_audit.verify_digest(:'acme_digest')
 WHERE split_part(chain, '/', 1) = ANY (:'tv_chains') ORDER BY 1, 2;

-- unbound readers may not verify, as before (they have the reports)
SET ROLE regress_reader;
SELECT regress_try($$SELECT * FROM tool_audit.verify()$$);
SELECT regress_try($$SELECT tool_audit.digest()$$);
SELECT regress_try(format('SELECT * FROM tool_audit.verify_digest(%L)', :'acme_digest'));
RESET ROLE;
-- the unbound verifier is not limited
SET ROLE tool_audit_verifier;
SELECT count(*) AS unbound_verifier_problems FROM tool_audit.verify()
 WHERE split_part(chain, '/', 1) = ANY (:'tv_chains');
RESET ROLE;
-- writers and roles without a tool_audit role may not verify
SET ROLE regress_writer;
SELECT regress_try($$SELECT * FROM tool_audit.verify()$$);
SELECT regress_try($$SELECT tool_audit.digest()$$);
RESET ROLE;
SET ROLE regress_nobody;
SELECT regress_try($$SELECT tool_audit.tenant_digest('tv_acme')$$);
RESET ROLE;

-- a binding of another tenant inserted by hand: an admin's verify() names it,
-- a bound reader's says one changed without naming the role or the tenant
BEGIN;
INSERT INTO tool_audit.tenant_bindings VALUES ('regress_reader', 'tv_secret_tenant');
SELECT problem FROM tool_audit.verify() WHERE problem LIKE '%tenant binding%';
SET ROLE regress_tv_acme;
SELECT problem FROM tool_audit.verify() WHERE problem LIKE '%tenant binding%';
RESET ROLE;
ROLLBACK;
