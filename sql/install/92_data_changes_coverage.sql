
-- ---------------------------------------------------------------------------
-- data_changes as a full audit table (1.5): retention, purge and erasure,
-- tenant row-level security, the row checks, the exports, privileges and
-- pg_dump, as the other two audit tables have them.  verify(), digest(),
-- verify_digest(), the DDL guard and the external verifier cover it in C.
-- (One file, appended word for word to the 1.4 -> 1.5 upgrade script.)
-- ---------------------------------------------------------------------------

-- Retention: a policy may cover row changes, matched by the tracked table's
-- name as regclass prints it (e.g. 'public.orders', or 'billing.*'); the
-- seeded default keeps them as long as the general policy keeps tool calls.
-- The purge and export_jsonl() find rows by time through a BRIN index: rows
-- come in recorded_at order and are never updated, so block-range summaries
-- find them as well as a btree would, and a change row, the hot path of
-- tracking, does not pay for a btree entry (doc/performance.md).
ALTER TABLE tool_audit.retention_policies
    DROP CONSTRAINT applies_to_is_audit_table,
    ADD CONSTRAINT applies_to_is_audit_table
        CHECK (applies_to IN ('tool_calls', 'admin_events', 'data_changes'));
ALTER TABLE tool_audit.purge_anchors
    DROP CONSTRAINT table_name_is_audit_table,
    ADD CONSTRAINT table_name_is_audit_table
        CHECK (table_name IN ('tool_calls', 'admin_events', 'data_changes'));
ALTER TABLE tool_audit.erasures
    DROP CONSTRAINT table_name_is_audit_table,
    ADD CONSTRAINT table_name_is_audit_table
        CHECK (table_name IN ('tool_calls', 'admin_events', 'data_changes'));
-- (not over a policy of that name an administrator made before 1.5: the
-- restore trigger would turn that one into the seed)
INSERT INTO tool_audit.retention_policies
    (policy_name, applies_to, retention_days, matches, is_default, description, changed_by)
SELECT 'row_changes', 'data_changes', 365, '{}', true,
       'Row changes of every tracked table: one year', 'tool_audit'
 WHERE NOT EXISTS (SELECT FROM tool_audit.retention_policies p WHERE p.policy_name = 'row_changes');
CREATE INDEX data_changes_recorded_at ON tool_audit.data_changes USING brin (recorded_at);

-- (1.5: set_retention_policy() covers data_changes: see its definition in sql/install)

-- hold_report(): row changes too; a hold covers a change through the tool
-- call it was made in (subject, user, conversation, tool) and by the
-- change's own tenant and time, as purge_expired() and erase_subject() read it
-- (1.5: hold_report() covers data_changes: see its definition in sql/install)

-- Row-level security: readers read their tenants' changes, admins and the
-- verifier read all.  No writer policy and no INSERT privilege: change rows
-- are written by the tracking trigger as the table's owner.
ALTER TABLE tool_audit.data_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.data_changes
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY reader_tenant ON tool_audit.data_changes
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));
CREATE POLICY verifier_read ON tool_audit.data_changes
    FOR SELECT TO tool_audit_verifier USING (true);

-- Checking one row, as for the other tables (60_verification.sql, 85_erasure.sql)
CREATE FUNCTION tool_audit.compute_row_hash(tool_audit.data_changes) RETURNS bytea
    AS 'MODULE_PATHNAME', 'compute_row_hash' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.compute_row_hash(tool_audit.data_changes) IS
    'The row hash of a data_changes row, recomputed from its columns';
CREATE FUNCTION tool_audit.accepted_row_hash(tool_audit.data_changes) RETURNS bytea
    AS 'MODULE_PATHNAME', 'accepted_row_hash' LANGUAGE C STRICT STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.accepted_row_hash(tool_audit.data_changes) IS
    'The row hash recomputed from a data_changes row, or its stored row_hash when the row is as a verified erasure left it';
CREATE FUNCTION tool_audit.check_row(r tool_audit.data_changes) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.accepted_row_hash(r),
        coalesce(p.chain_hash, CASE WHEN r.chain_seq > 1 AND r.chain_seq < 9223372036854775807 THEN
                 tool_audit.purged_link('data_changes', r.chain_id, r.chain_lane, r.chain_seq - 1) END),
        n.chain_seq, n.row_hash, n.chain_hash,
        n.chain_seq IS NULL AND r.chain_seq < 9223372036854775807
        AND tool_audit.purge_link_before('data_changes', r.chain_id, r.chain_lane, r.chain_seq + 1)
            IS DISTINCT FROM r.chain_hash
        AND EXISTS (
            SELECT FROM tool_audit.data_changes x
             WHERE x.chain_id = r.chain_id AND x.chain_lane = r.chain_lane
               AND x.chain_seq > r.chain_seq AND x.chain_seq <> r.chain_seq + 1))
    FROM (SELECT) AS one
    LEFT JOIN tool_audit.data_changes p
           ON r.chain_seq > 1 AND r.chain_seq < 9223372036854775807
              AND p.chain_id = r.chain_id AND p.chain_lane = r.chain_lane AND p.chain_seq = r.chain_seq - 1
    LEFT JOIN tool_audit.data_changes n
           ON r.chain_seq >= 1 AND r.chain_seq < 9223372036854775807
              AND n.chain_id = r.chain_id AND n.chain_lane = r.chain_lane AND n.chain_seq = r.chain_seq + 1
$$;
COMMENT ON FUNCTION tool_audit.check_row(tool_audit.data_changes) IS
    'NULL if the data_changes row matches its row hash and links to its neighbours in its chain, else the problem';

-- Exports: change rows in the JSONL export (after the other tables' rows of
-- the same instant), and a CSV view like the other tables'
-- (1.5: export_jsonl() covers data_changes: see its definition in sql/install)
COMMENT ON FUNCTION tool_audit.export_jsonl(timestamptz, timestamptz) IS
    'The audit tables'' rows in a period (tool calls, admin events, row changes) as JSON documents with their hashes and chain positions, to check outside the database';

CREATE VIEW tool_audit.data_changes_csv WITH (security_invoker = true) AS
SELECT d.id, d.event_id, d.recorded_at, d.tenant_id, d.table_name, d.operation,
       d.row_key::text AS row_key, d.old_values::text AS old_values,
       d.new_values::text AS new_values, d.call_event_id, d.txid, d.application_name,
       d.recorded_by, d.retention_policy, d.expires_at, encode(d.row_hash, 'hex') AS row_hash,
       d.chain_id, d.chain_lane, d.chain_seq, encode(d.chain_hash, 'hex') AS chain_hash
  FROM tool_audit.data_changes d;
COMMENT ON VIEW tool_audit.data_changes_csv IS 'data_changes with JSON as text and hashes as hex, for COPY ... (FORMAT csv, HEADER)';

-- Privileges, as 90_privileges.sql gives the other tables': readers, admins
-- and the verifier read (row-level security decides which rows); writers
-- get nothing here
REVOKE ALL ON TABLE tool_audit.data_changes_csv FROM PUBLIC;
REVOKE ALL ON FUNCTION
    tool_audit.compute_row_hash(tool_audit.data_changes),
    tool_audit.accepted_row_hash(tool_audit.data_changes),
    tool_audit.check_row(tool_audit.data_changes)
    FROM PUBLIC;
GRANT SELECT ON tool_audit.data_changes
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.compute_row_hash(tool_audit.data_changes),
    tool_audit.accepted_row_hash(tool_audit.data_changes),
    tool_audit.check_row(tool_audit.data_changes)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT SELECT ON tool_audit.data_changes_csv
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
