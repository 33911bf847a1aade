
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
-- The purge finds candidates through the time index, as for the others.
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
CREATE INDEX data_changes_recorded_at ON tool_audit.data_changes (recorded_at);

CREATE OR REPLACE FUNCTION tool_audit.set_retention_policy(policy_name text, retention_days integer,
                                                matches text[] DEFAULT NULL,
                                                applies_to text DEFAULT 'tool_calls',
                                                reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.retention_policies;
    after_row tool_audit.retention_policies;
    floor_days integer;
    dflt text;
BEGIN
    -- errors name the argument, never its value
    IF policy_name IS NULL OR policy_name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid value for argument "policy_name": expected a lowercase identifier of 1 to 63 characters'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF applies_to IS NULL OR applies_to NOT IN ('tool_calls', 'admin_events', 'data_changes') THEN
        RAISE EXCEPTION 'invalid value for argument "applies_to": expected tool_calls, admin_events or data_changes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention_days IS NULL OR retention_days <= 0 THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": expected a positive number of days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF matches IS NOT NULL AND (array_ndims(matches) > 1 OR
        EXISTS (SELECT FROM unnest(matches) m WHERE m IS NULL OR m = '')) THEN
        RAISE EXCEPTION 'invalid value for argument "matches": expected a list of tool names, event types or patterns (''*'': any characters), none empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE tool_audit.retention_policies IN SHARE ROW EXCLUSIVE MODE;
    SELECT f.floor_days INTO floor_days FROM tool_audit.retention_floor f;
    IF retention_days < floor_days THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": under the retention floor of % days', floor_days
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A superuser sets the floor with tool_audit.set_retention_floor().';
    END IF;
    SELECT * INTO before_row FROM tool_audit.retention_policies p
     WHERE p.policy_name = set_retention_policy.policy_name;
    IF FOUND THEN
        IF before_row.applies_to <> set_retention_policy.applies_to THEN
            RAISE EXCEPTION 'invalid value for argument "applies_to": the policy covers %', before_row.applies_to
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A policy covers one table; create another policy for the other.';
        END IF;
        UPDATE tool_audit.retention_policies p
           SET retention_days = set_retention_policy.retention_days,
               matches = coalesce(set_retention_policy.matches, p.matches),
               changed_at = now(), changed_by = tool_audit.acting_role()
         WHERE p.policy_name = set_retention_policy.policy_name
        RETURNING * INTO after_row;
        RETURN tool_audit.retention_event('policy', to_jsonb(before_row), to_jsonb(after_row), reason);
    END IF;
    IF coalesce(cardinality(matches), 0) = 0 THEN
        SELECT p.policy_name INTO dflt FROM tool_audit.retention_policies p
         WHERE p.applies_to = set_retention_policy.applies_to AND p.is_default;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid value for argument "matches": a new policy needs tool names or patterns, % already has a default policy (%)',
                    applies_to, dflt
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Change the default policy''s days instead, or list what the new policy covers.';
        END IF;
    END IF;
    INSERT INTO tool_audit.retention_policies
        (policy_name, applies_to, retention_days, matches, is_default, changed_by)
    VALUES (set_retention_policy.policy_name, set_retention_policy.applies_to,
            set_retention_policy.retention_days, coalesce(set_retention_policy.matches, '{}'),
            coalesce(cardinality(set_retention_policy.matches), 0) = 0, tool_audit.acting_role())
    RETURNING * INTO after_row;
    RETURN tool_audit.retention_event('policy', NULL, to_jsonb(after_row), reason);
END
$$;

-- hold_report(): row changes too; a hold covers a change through the tool
-- call it was made in (subject, user, conversation, tool) and by the
-- change's own tenant and time, as purge_expired() and erase_subject() read it
CREATE OR REPLACE FUNCTION tool_audit.hold_report()
RETURNS TABLE (hold_id bigint, scope jsonb, reason text, placed_by text, placed_at timestamptz,
               table_name text, rows_covered bigint, first_at timestamptz, last_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h.hold_id, h.scope, h.reason, h.placed_by, h.placed_at, c.table_name, c.n, c.first_at, c.last_at
      FROM tool_audit.legal_holds h
     CROSS JOIN LATERAL (
        SELECT 'admin_events'::text, count(*), min(e.occurred_at), max(e.occurred_at)
          FROM tool_audit.admin_events e
         WHERE tool_audit.hold_covers(h.scope, e.tenant_id, e.payload ->> 'subject_id', e.actor,
                                      e.payload ->> 'conversation_id', e.payload ->> 'tool_name',
                                      e.occurred_at)
        UNION ALL
        SELECT 'data_changes'::text, count(*), min(d.recorded_at), max(d.recorded_at)
          FROM tool_audit.data_changes d
          LEFT JOIN tool_audit.tool_calls k ON k.event_id = d.call_event_id
         WHERE tool_audit.hold_covers(h.scope, d.tenant_id, k.subject_id, k.user_id,
                                      k.conversation_id, k.tool_name, d.recorded_at)
        UNION ALL
        SELECT 'tool_calls'::text, count(*), min(t.recorded_at), max(t.recorded_at)
          FROM tool_audit.tool_calls t
         WHERE tool_audit.hold_covers(h.scope, t.tenant_id, t.subject_id, t.user_id,
                                      t.conversation_id, t.tool_name, t.recorded_at)) AS c(table_name, n, first_at, last_at)
     WHERE h.released_at IS NULL
     ORDER BY h.hold_id, c.table_name
$$;

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
CREATE OR REPLACE FUNCTION tool_audit.export_jsonl(start_time timestamptz, end_time timestamptz)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    RETURN QUERY
    SELECT x.doc FROM (
        SELECT t.recorded_at AS at, 1 AS tab, t.id, jsonb_build_object(
            'table', 'tool_calls',
            'id', t.id, 'event_id', t.event_id, 'recorded_at', tool_audit.iso8601_utc(t.recorded_at),
            'tenant_id', t.tenant_id, 'conversation_id', t.conversation_id,
            'turn_number', t.turn_number, 'user_id', t.user_id, 'user_role', t.user_role,
            'model', t.model, 'tool_name', t.tool_name, 'tool_call_id', t.tool_call_id,
            'call_trigger', t.call_trigger, 'purpose', t.purpose, 'subject_id', t.subject_id,
            'arguments', t.arguments, 'result_summary', t.result_summary, 'success', t.success,
            'error', t.error, 'duration_ms', t.duration_ms, 'client_ip', abbrev(t.client_ip),
            'user_agent', t.user_agent, 'session_metadata', t.session_metadata,
            'recorded_by', t.recorded_by,
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex')) AS doc
          FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
        UNION ALL
        SELECT e.occurred_at, 0, e.id, jsonb_build_object(
            'table', 'admin_events',
            'id', e.id, 'event_id', e.event_id, 'occurred_at', tool_audit.iso8601_utc(e.occurred_at),
            'event_type', e.event_type, 'actor', e.actor, 'actor_type', e.actor_type,
            'tenant_id', e.tenant_id, 'payload', e.payload, 'reason', e.reason,
            'source_ip', abbrev(e.source_ip), 'metadata', e.metadata, 'recorded_by', e.recorded_by,
            'row_hash', encode(e.row_hash, 'hex'), 'chain_id', e.chain_id::text,
            'chain_lane', e.chain_lane, 'chain_seq', e.chain_seq,
            'chain_hash', encode(e.chain_hash, 'hex'))
          FROM tool_audit.admin_events e
         WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
        UNION ALL
        SELECT d.recorded_at, 2, d.id, jsonb_build_object(
            'table', 'data_changes',
            'id', d.id, 'event_id', d.event_id, 'recorded_at', tool_audit.iso8601_utc(d.recorded_at),
            'tenant_id', d.tenant_id, 'table_name', d.table_name, 'operation', d.operation,
            'row_key', d.row_key, 'old_values', d.old_values, 'new_values', d.new_values,
            'call_event_id', d.call_event_id, 'txid', d.txid::text,
            'application_name', d.application_name, 'recorded_by', d.recorded_by,
            'retention_policy', d.retention_policy, 'expires_at', tool_audit.iso8601_utc(d.expires_at),
            'row_hash', encode(d.row_hash, 'hex'), 'chain_id', d.chain_id::text,
            'chain_lane', d.chain_lane, 'chain_seq', d.chain_seq,
            'chain_hash', encode(d.chain_hash, 'hex'))
          FROM tool_audit.data_changes d
         WHERE d.recorded_at >= start_time AND d.recorded_at < end_time
    ) x
    ORDER BY x.at, x.tab, x.id;
END
$$;
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
