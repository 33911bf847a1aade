
-- ---------------------------------------------------------------------------
-- Erasure (1.4): a data subject's personal fields in audit rows replaced by
-- markers, the stored row hashes and links kept (doc/retention.md, Erasure)
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.erase_subject(subject_id text, reason text, legal_basis text)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'erase_subject' LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.erase_subject(text, text, text) IS
    'Replaces the personal fields of every audit row naming the subject by markers (rows under a legal hold kept), records one erasures row per row and a tool_audit.retention.erase event, and returns what it did';

-- Every erasure entry with the event it belongs to.  event_type is
-- tool_audit.retention.erase for an entry erase_subject() wrote; verify()
-- checks that the event commits to the entry (its "erasures_hash").
CREATE VIEW tool_audit.erasure_log AS
SELECT e.erase_event_id,
       a.event_id AS erase_event_uuid,
       a.event_type,
       a.occurred_at AS erased_at,
       a.actor AS erased_by,
       a.reason,
       a.payload ->> 'legal_basis' AS legal_basis,
       e.table_name,
       e.row_id,
       e.erased_columns,
       e.row_hash_after
  FROM tool_audit.erasures e
  LEFT JOIN tool_audit.admin_events a ON a.id = e.erase_event_id;
COMMENT ON VIEW tool_audit.erasure_log IS
    'Every erased audit row with its tool_audit.retention.erase event (who, when, reason, legal basis); verify() tells an erasure from tampering';

-- The reports check the rows they cover with check_row(): from 1.4 it takes
-- the row hash through accepted_row_hash(), so that a row as a verified
-- erasure left it is accepted there as verify() accepts it.  (Redefined here,
-- after accepted_row_hash(), rather than in 60_verification.sql.)
CREATE INDEX erasures_by_event ON tool_audit.erasures (erase_event_id);
CREATE FUNCTION tool_audit.accepted_row_hash(tool_audit.tool_calls) RETURNS bytea
    AS 'MODULE_PATHNAME', 'accepted_row_hash' LANGUAGE C STRICT STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.accepted_row_hash(tool_audit.tool_calls) IS
    'The row hash recomputed from a tool_calls row, or its stored row_hash when the row is as a verified erasure left it';
CREATE FUNCTION tool_audit.accepted_row_hash(tool_audit.admin_events) RETURNS bytea
    AS 'MODULE_PATHNAME', 'accepted_row_hash' LANGUAGE C STRICT STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.accepted_row_hash(tool_audit.admin_events) IS
    'The row hash recomputed from an admin_events row, or its stored row_hash when the row is as a verified erasure left it';
CREATE OR REPLACE FUNCTION tool_audit.check_row(r tool_audit.tool_calls) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.accepted_row_hash(r),
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

CREATE OR REPLACE FUNCTION tool_audit.check_row(r tool_audit.admin_events) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.chain_problem(
        r.chain_id, r.chain_lane, r.chain_seq, r.row_hash, r.chain_hash, tool_audit.accepted_row_hash(r),
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
