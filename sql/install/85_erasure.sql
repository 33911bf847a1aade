
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
