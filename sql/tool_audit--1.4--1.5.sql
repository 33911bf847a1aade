/* tool_audit--1.4--1.5.sql: calls that survive rollback and row changes
   linked to them (issue 14); alerts, audited reads, impersonation, dual
   approval and break-the-glass (issue 13) */

\echo Use "ALTER EXTENSION tool_audit UPDATE TO '1.5'" to load this file. \quit

-- Every object below is also in sql/install/*.sql, word for word:
-- test/t/010_fresh_vs_upgraded.pl compares a fresh and an upgraded database.
-- The new columns are nullable and NULL on older rows (a NULL column is not
-- hashed, so their row hashes do not change).

ALTER TABLE tool_audit.tool_calls
    ADD COLUMN call_phase text CONSTRAINT call_phase_is_known CHECK (call_phase IN ('started', 'ended')),
    ADD COLUMN call_event_id uuid,
    ADD COLUMN caller_txid bigint,
    ADD COLUMN impersonated_by text,
    ADD COLUMN break_glass boolean;
ALTER TABLE tool_audit.admin_events
    ADD COLUMN impersonated_by text;
COMMENT ON COLUMN tool_audit.tool_calls.call_phase IS 'NULL: a call recorded in one row; started or ended: one half of a call recorded by begin_call() and end_call()';
COMMENT ON COLUMN tool_audit.tool_calls.call_event_id IS 'On an ended row: the event_id of the started row it closes';
COMMENT ON COLUMN tool_audit.tool_calls.caller_txid IS 'On a row written autonomously: the caller''s transaction id, so that whether the caller committed can be known';
COMMENT ON COLUMN tool_audit.tool_calls.impersonated_by IS 'The admin impersonating user_id when the call was made (NULL: no impersonation)';
COMMENT ON COLUMN tool_audit.tool_calls.break_glass IS 'true: an emergency (break-the-glass) access, with its reason in session_metadata';
COMMENT ON COLUMN tool_audit.admin_events.impersonated_by IS 'The admin impersonating the actor when the event was recorded (NULL: no impersonation)';
