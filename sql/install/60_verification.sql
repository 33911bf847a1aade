
-- ---------------------------------------------------------------------------
-- Verification and digests.  doc/canonical-encoding.md says what is hashed,
-- byte by byte; each audit table holds one chain per tenant (chain_id is
-- derived from the two), in lanes.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.canonical_json(document jsonb) RETURNS text
    AS 'MODULE_PATHNAME', 'canonical_json' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.canonical_json(jsonb) IS
    'The canonical JSON text a row hash covers for a jsonb value (doc/canonical-encoding.md)';

CREATE FUNCTION tool_audit.verify(since timestamptz DEFAULT NULL)
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.verify(timestamptz) IS
    'Checks every row''s hash and chain links and the audit tables'' protections: one row per problem found, none if intact';

CREATE FUNCTION tool_audit.digest() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'digest' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.digest() IS
    'The head of every chain lane with the time, signed with Ed25519 when a signing key is configured';

CREATE FUNCTION tool_audit.verify_digest(digest jsonb)
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify_digest' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.verify_digest(jsonb) IS
    'The problems verify() finds, plus rows an earlier digest covered that are missing or changed, and a bad signature';

CREATE FUNCTION tool_audit.verify_since(digest jsonb)
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify_since' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.verify_since(jsonb) IS
    'Incremental verify_digest(): only the rows after the digest''s heads, each head checked against the digest''s hash, and a bad signature';

CREATE FUNCTION tool_audit.signing_public_key() RETURNS text
    AS 'MODULE_PATHNAME', 'signing_public_key' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.signing_public_key() IS
    'The PEM public key that checks digest signatures, or NULL when no signing key is configured';

-- (1.5) tenant verification: a caller bound to tenants verifies and takes
-- digests of its tenants' chains only (src/tenant_verify.c); an admin takes
-- one tenant's digest for that tenant's auditor
CREATE FUNCTION tool_audit.tenant_digest(tenant text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'tenant_digest' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.tenant_digest(text) IS
    'The digest of one tenant''s chains only (as digest() gives a caller bound to that tenant), signed like digest()';
CREATE FUNCTION tool_audit.derive_tenant_digest(digest jsonb, tenant text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'derive_tenant_digest' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.derive_tenant_digest(jsonb, text) IS
    'One tenant''s digest derived from a digest kept earlier whose signature checks: its heads of that tenant, its time, signed again';

-- ---------------------------------------------------------------------------
-- Checking rows: the primitives of section 2 and 4 of doc/canonical-encoding.md
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.compute_row_hash(tool_audit.tool_calls) RETURNS bytea
    AS 'MODULE_PATHNAME', 'compute_row_hash' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.compute_row_hash(tool_audit.tool_calls) IS
    'The row hash of a tool_calls row, recomputed from its columns';
CREATE FUNCTION tool_audit.compute_row_hash(tool_audit.admin_events) RETURNS bytea
    AS 'MODULE_PATHNAME', 'compute_row_hash' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.compute_row_hash(tool_audit.admin_events) IS
    'The row hash of an admin_events row, recomputed from its columns';

CREATE FUNCTION tool_audit.chain_link(chain_id bigint, chain_lane integer, chain_seq bigint,
                                      previous bytea, row_hash bytea) RETURNS bytea
    AS 'MODULE_PATHNAME', 'chain_link' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.chain_link(bigint, integer, bigint, bytea, bytea) IS
    'The chain_hash a row at this chain position must store, from the previous row''s link and the row hash';

CREATE FUNCTION tool_audit.verify_protections()
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify_protections' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.verify_protections() IS
    'The checks verify() makes of triggers, logging, rules and indexes, without the walk over the rows';

-- chain_problem(...): what is wrong with a row's place in its chain, from
-- the row's chain columns, its recomputed row hash and its two neighbours'
-- (prev_*: the row before it in its lane, next_*: the row after it, NULL
-- when absent; later_exists: a row further on in the lane exists); NULL if
-- nothing is.  check_row() feeds it for either table.
CREATE FUNCTION tool_audit.chain_problem(
    chain_id bigint, chain_lane integer, chain_seq bigint, row_hash bytea, chain_hash bytea,
    computed_hash bytea, prev_hash bytea, next_seq bigint, next_row_hash bytea,
    next_chain_hash bytea, later_exists boolean)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN chain_id IS NULL OR chain_lane IS NULL OR chain_seq IS NULL OR chain_hash IS NULL
            THEN 'row not in a chain'
        WHEN chain_seq < 1 OR chain_seq = 9223372036854775807
            THEN 'invalid chain position'
        WHEN row_hash IS DISTINCT FROM computed_hash
            THEN 'row altered: its content does not match its row hash'
        WHEN chain_seq > 1 AND prev_hash IS NULL
            THEN 'the row before this one in its lane is missing'
        WHEN chain_seq > 1 AND octet_length(prev_hash) <> 32
            THEN 'chain link broken: the previous row''s link is malformed'
        WHEN chain_hash IS DISTINCT FROM
             tool_audit.chain_link(chain_id, chain_lane, chain_seq,
                                   CASE WHEN chain_seq = 1 THEN decode(repeat('00', 32), 'hex')
                                        ELSE prev_hash END, row_hash)
            THEN 'chain link broken: row reordered, inserted or its link edited'
        WHEN next_seq IS NOT NULL AND (octet_length(next_row_hash) IS DISTINCT FROM 32 OR
             next_chain_hash IS DISTINCT FROM
             tool_audit.chain_link(chain_id, chain_lane, chain_seq + 1, chain_hash, next_row_hash))
            THEN 'chain link broken: the next row does not link to this one'
        WHEN next_seq IS NULL AND later_exists
            THEN 'the row after this one in its lane is missing'
    END
$$;
COMMENT ON FUNCTION tool_audit.chain_problem(bigint, integer, bigint, bytea, bytea, bytea, bytea, bigint, bytea, bytea, boolean) IS
    'What is wrong with a row''s place in its chain, from the values check_row() gathers, or NULL if nothing is';

-- check_row(row): NULL when the row matches its row hash and links to the
-- rows before and after it in its lane (and no row after it is missing),
-- else what is wrong.  It reads the neighbours as the caller, through
-- row-level security: they are in the same chain, so of the same tenant, as
-- the row.  (The later-row probe runs only when the next row is missing.)
-- Since 1.4 a neighbour a purge removed is stood in for by its anchor: the
-- link it kept before the row, or the span that follows the row.
CREATE FUNCTION tool_audit.check_row(r tool_audit.tool_calls) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.compute_row_hash(r),
        coalesce(p.chain_hash, CASE WHEN r.chain_seq > 1 AND r.chain_seq < 9223372036854775807 THEN
                 tool_audit.purged_link('tool_calls', r.chain_id, r.chain_lane, r.chain_seq - 1) END),
        n.chain_seq, n.row_hash, n.chain_hash,
        n.chain_seq IS NULL AND r.chain_seq < 9223372036854775807
        AND tool_audit.purge_link_before('tool_calls', r.chain_id, r.chain_lane, r.chain_seq + 1)
            IS DISTINCT FROM r.chain_hash
        AND EXISTS (
            SELECT FROM tool_audit.tool_calls x
             WHERE x.chain_id = r.chain_id AND x.chain_lane = r.chain_lane
               AND x.chain_seq > r.chain_seq AND x.chain_seq <> r.chain_seq + 1))
    FROM (SELECT) AS one
    LEFT JOIN tool_audit.tool_calls p
           ON r.chain_seq > 1 AND r.chain_seq < 9223372036854775807
              AND p.chain_id = r.chain_id AND p.chain_lane = r.chain_lane AND p.chain_seq = r.chain_seq - 1
    LEFT JOIN tool_audit.tool_calls n
           ON r.chain_seq >= 1 AND r.chain_seq < 9223372036854775807
              AND n.chain_id = r.chain_id AND n.chain_lane = r.chain_lane AND n.chain_seq = r.chain_seq + 1
$$;
COMMENT ON FUNCTION tool_audit.check_row(tool_audit.tool_calls) IS
    'NULL if the tool_calls row matches its row hash and links to its neighbours in its chain, else the problem';

CREATE FUNCTION tool_audit.check_row(r tool_audit.admin_events) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.compute_row_hash(r),
        coalesce(p.chain_hash, CASE WHEN r.chain_seq > 1 AND r.chain_seq < 9223372036854775807 THEN
                 tool_audit.purged_link('admin_events', r.chain_id, r.chain_lane, r.chain_seq - 1) END),
        n.chain_seq, n.row_hash, n.chain_hash,
        n.chain_seq IS NULL AND r.chain_seq < 9223372036854775807
        AND tool_audit.purge_link_before('admin_events', r.chain_id, r.chain_lane, r.chain_seq + 1)
            IS DISTINCT FROM r.chain_hash
        AND EXISTS (
            SELECT FROM tool_audit.admin_events x
             WHERE x.chain_id = r.chain_id AND x.chain_lane = r.chain_lane
               AND x.chain_seq > r.chain_seq AND x.chain_seq <> r.chain_seq + 1))
    FROM (SELECT) AS one
    LEFT JOIN tool_audit.admin_events p
           ON r.chain_seq > 1 AND r.chain_seq < 9223372036854775807
              AND p.chain_id = r.chain_id AND p.chain_lane = r.chain_lane AND p.chain_seq = r.chain_seq - 1
    LEFT JOIN tool_audit.admin_events n
           ON r.chain_seq >= 1 AND r.chain_seq < 9223372036854775807
              AND n.chain_id = r.chain_id AND n.chain_lane = r.chain_lane AND n.chain_seq = r.chain_seq + 1
$$;
COMMENT ON FUNCTION tool_audit.check_row(tool_audit.admin_events) IS
    'NULL if the admin_events row matches its row hash and links to its neighbours in its chain, else the problem';
