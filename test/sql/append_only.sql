-- Append-only: no UPDATE, DELETE, TRUNCATE, MERGE or upsert, for any role,
-- with or without session_replication_role = replica.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
-- rows of this file's own, so that there is something to lose
SELECT count(tool_audit.log_call('kept_' || g, '{}', '{}', 1, '{"conversation_id": "conv_append_only"}')) AS calls_logged
  FROM generate_series(1, 3) g;
SELECT event_type FROM tool_audit.log_event('policy.update', 'append_only', '{}', '{}');
SELECT count(*) AS calls FROM tool_audit.tool_calls \gset
SELECT count(*) AS events FROM tool_audit.admin_events \gset

-- as the owner (a superuser)
SELECT regress_try($$UPDATE tool_audit.tool_calls SET success = true$$);
SELECT regress_try($$UPDATE tool_audit.tool_calls SET success = true WHERE false$$);
SELECT regress_try($$DELETE FROM tool_audit.tool_calls$$);
SELECT regress_try($$DELETE FROM tool_audit.tool_calls WHERE id = -1$$);
SELECT regress_try($$TRUNCATE tool_audit.tool_calls$$);
SELECT regress_try($$TRUNCATE ONLY tool_audit.tool_calls$$);
SELECT regress_try($$TRUNCATE tool_audit.tool_calls, tool_audit.admin_events CASCADE$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES ('x')
                     ON CONFLICT (event_id) DO UPDATE SET success = false$$);
SELECT regress_try($$MERGE INTO tool_audit.tool_calls t USING (SELECT 1 AS id) s ON t.id = s.id
                     WHEN MATCHED THEN DELETE$$);
SELECT regress_try($$UPDATE tool_audit.admin_events SET actor = 'someone else'$$);
SELECT regress_try($$DELETE FROM tool_audit.admin_events$$);
SELECT regress_try($$TRUNCATE tool_audit.admin_events$$);

-- the triggers fire in replica mode too (ENABLE ALWAYS)
SET session_replication_role = replica;
SELECT regress_try($$UPDATE tool_audit.tool_calls SET success = true$$);
SELECT regress_try($$DELETE FROM tool_audit.tool_calls$$);
SELECT regress_try($$TRUNCATE tool_audit.tool_calls$$);
SELECT regress_try($$DELETE FROM tool_audit.admin_events$$);
-- and inserts are still sanitized
SELECT arguments FROM tool_audit.log_call('replica_mode', '{"password": "p"}', '{}', 1, '{"conversation_id": "conv_replica"}');
RESET session_replication_role;

-- a function that rewrites the row cannot get around it either
CREATE FUNCTION regress_sneaky_delete() RETURNS void LANGUAGE sql AS
  $$ DELETE FROM tool_audit.tool_calls WHERE tool_name = 'replica_mode' $$;
SELECT regress_try('SELECT regress_sneaky_delete()');
DROP FUNCTION regress_sneaky_delete();

-- nothing was lost: one row added (the replica-mode insert)
SELECT count(*) - :calls AS calls_added FROM tool_audit.tool_calls;
SELECT count(*) - :events AS events_added FROM tool_audit.admin_events;
