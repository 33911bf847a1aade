
-- ---------------------------------------------------------------------------
-- (1.5) Which audit tables have ever committed a row.  The insert trigger
-- writes a table's mark in the transaction of a row it stores (trail_mark.c),
-- so the mark commits only with a row: a new database whose inserts were all
-- rolled back has none, while a trail emptied afterwards (a restore whose
-- rows were refused: the marks are dumped with the configuration) still has
-- it.  verify() reports an empty table whose id sequence has handed out ids
-- only when the table is marked.  No unique index: a writer never waits for
-- another's uncommitted mark (an autonomous worker must never wait for its
-- caller), and a second mark of the same table is harmless.
-- ---------------------------------------------------------------------------
CREATE TABLE tool_audit.trail_marks (
    table_name text NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX trail_marks_table ON tool_audit.trail_marks (table_name);
REVOKE ALL ON tool_audit.trail_marks FROM PUBLIC;
GRANT SELECT ON tool_audit.trail_marks TO tool_audit_admin, tool_audit_verifier;
CREATE TRIGGER trail_marks_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.trail_marks
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.trail_marks ENABLE ALWAYS TRIGGER trail_marks_append_only;
COMMENT ON TABLE tool_audit.trail_marks IS
    'The audit tables that have committed a row (written by the insert trigger): verify() reports an empty table whose id sequence has handed out ids only when it is marked.';
SELECT pg_catalog.pg_extension_config_dump('tool_audit.trail_marks', '');
