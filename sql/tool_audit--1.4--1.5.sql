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

-- ---- calls that survive rollback (issue 14) ----

-- 1.5: a call recorded in two halves (begin_call(), end_call()): the started
-- row has no outcome yet (success NULL, and only there); the ended row names
-- the started row in call_event_id, found through this index (one end per
-- call: insert.c serializes on the value and looks, as for event_id)
ALTER TABLE tool_audit.tool_calls
    ALTER COLUMN success DROP NOT NULL,
    ADD CONSTRAINT success_null_only_when_started
        CHECK ((success IS NULL) = (call_phase IS NOT DISTINCT FROM 'started'));
CREATE INDEX tool_calls_call_event_id
    ON tool_audit.tool_calls (call_event_id) WHERE call_event_id IS NOT NULL;

-- 1.5: calls that survive the caller's rollback.  Both write autonomously
-- (a background worker commits the row before the function returns:
-- doc/recording.md); begin_call() sets tool_audit.call for the rest of the
-- caller's transaction, end_call() clears it when it names that call
CREATE FUNCTION tool_audit.begin_call(
    tool_name text,
    arguments jsonb,
    context   jsonb DEFAULT '{}')
RETURNS uuid
    AS 'MODULE_PATHNAME', 'begin_call' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.begin_call(text, jsonb, jsonb) IS
    'Records, autonomously (it survives the caller''s rollback), that a tool call started; returns its event_id and sets tool_audit.call to it for the rest of the transaction';

CREATE FUNCTION tool_audit.end_call(
    call        uuid,
    result      jsonb,
    duration_ms double precision DEFAULT NULL)
RETURNS tool_audit.tool_calls
    AS 'MODULE_PATHNAME', 'end_call' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.end_call(uuid, jsonb, double precision) IS
    'Records, autonomously, how a call begun by begin_call() ended (duration NULL: from its start to now); returns the stored ended row';

-- xact_status(txid): pg_xact_status() of a caller_txid, or NULL when it
-- cannot be known: too old for the commit log, or not of this cluster (a
-- transaction id past the current one: rows restored from a dump)
CREATE FUNCTION tool_audit.xact_status(txid bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN $1 IS NULL OR $1 < 0 THEN NULL
                WHEN $1::text::xid8 >= pg_snapshot_xmax(pg_current_snapshot()) THEN NULL
                ELSE pg_xact_status($1::text::xid8) END
$$;
COMMENT ON FUNCTION tool_audit.xact_status(bigint) IS
    'committed, aborted or in progress for a caller_txid; NULL when it cannot be known (too old, or from another cluster)';

CREATE VIEW tool_audit.calls WITH (security_invoker = true) AS
SELECT t.event_id AS call_id, t.id, t.tenant_id, t.conversation_id, t.turn_number,
       t.user_id, t.user_role, t.model, t.tool_name, t.tool_call_id, t.call_trigger,
       t.purpose, t.subject_id, t.arguments,
       t.recorded_at AS started_at,
       CASE WHEN t.call_phase IS NULL THEN t.recorded_at ELSE e.recorded_at END AS ended_at,
       CASE WHEN t.call_phase IS NULL THEN t.success ELSE e.success END AS success,
       CASE WHEN t.call_phase IS NULL THEN t.result_summary ELSE e.result_summary END AS result_summary,
       CASE WHEN t.call_phase IS NULL THEN t.error ELSE e.error END AS error,
       CASE WHEN t.call_phase IS NULL THEN t.duration_ms ELSE e.duration_ms END AS duration_ms,
       CASE WHEN t.call_phase IS NULL THEN 'one_row'
            WHEN e.id IS NOT NULL THEN 'ended'
            WHEN tool_audit.xact_status(t.caller_txid) = 'in progress' THEN 'in_progress'
            ELSE 'never_ended' END AS state,
       CASE WHEN t.caller_txid IS NULL THEN true
            ELSE CASE tool_audit.xact_status(t.caller_txid)
                      WHEN 'committed' THEN true WHEN 'aborted' THEN false END
            END AS caller_committed,
       t.caller_txid, t.recorded_by, e.event_id AS end_event_id
  FROM tool_audit.tool_calls t
  LEFT JOIN tool_audit.tool_calls e
         ON t.call_phase = 'started' AND e.call_phase = 'ended' AND e.call_event_id = t.event_id
 WHERE t.call_phase IS DISTINCT FROM 'ended';
COMMENT ON VIEW tool_audit.calls IS
    'One row per tool call: a call recorded in one row, or the started and ended rows of begin_call() and end_call() paired (state ended, in_progress or never_ended), with whether the caller''s transaction committed when that can be known';

CREATE OR REPLACE FUNCTION tool_audit.conversation_timeline(conversation_id text) RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
    SELECT format('[Turn %s] %s %s(%s) %s %s [%sms]',
                  coalesce(c.turn_number::text, '?'),
                  tool_audit.report_mark(CASE WHEN c.success THEN 'ok' ELSE 'failed' END),
                  c.tool_name, c.arguments::text, tool_audit.report_mark('arrow'),
                  CASE c.state WHEN 'never_ended' THEN '(never ended)'
                               WHEN 'in_progress' THEN '(in progress)'
                               ELSE c.result_summary::text END,
                  coalesce(c.duration_ms::text, '?'))
      FROM tool_audit.calls c
     WHERE c.conversation_id = tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY c.turn_number, c.started_at, c.id
$$;
COMMENT ON FUNCTION tool_audit.conversation_timeline(text) IS
    'A conversation as one line of text per tool call (a call begun and ended: one line): turn, outcome, tool, arguments, result summary and duration';

CREATE OR REPLACE FUNCTION tool_audit.access_report(subject_id text, start_time timestamptz, end_time timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    report jsonb;
    protections jsonb;
BEGIN
    PERFORM tool_audit.required_arg(access_report.subject_id, 'subject_id');
    PERFORM tool_audit.check_period(start_time, end_time);

    SELECT coalesce(jsonb_agg(jsonb_build_object('table', p.table_name, 'problem', p.problem)
                              ORDER BY p.table_name, p.problem), '[]')
      INTO protections
      FROM tool_audit.verify_protections() p;

    WITH covered AS MATERIALIZED (
        -- a call begun and ended is one access (its started row), with the
        -- ended row's outcome; both rows are verified
        SELECT t, tool_audit.check_row(t) AS problem,
               t.call_phase IS DISTINCT FROM 'ended' AS access,
               CASE WHEN t.call_phase = 'started' THEN
                   (SELECT e.success FROM tool_audit.tool_calls e
                     WHERE e.call_event_id = t.event_id AND e.call_phase = 'ended') END AS ended_success
          FROM tool_audit.tool_calls t
         WHERE t.subject_id = access_report.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at <= end_time
    )
    SELECT jsonb_build_object(
        'subject_id', access_report.subject_id,
        'report_period', jsonb_build_object('start', tool_audit.iso8601_utc(start_time),
                                            'end', tool_audit.iso8601_utc(end_time)),
        'total_accesses', count(*) FILTER (WHERE c.access),
        'unique_users', count(DISTINCT (c.t).user_id) FILTER (WHERE c.access),
        'accesses', coalesce(jsonb_agg(jsonb_build_object(
                'timestamp', tool_audit.iso8601_utc((c.t).recorded_at),
                'accessed_by', (c.t).user_id,
                'role', (c.t).user_role,
                'tool', (c.t).tool_name,
                'purpose', (c.t).purpose,
                'success', CASE WHEN (c.t).call_phase IS NULL THEN (c.t).success ELSE c.ended_success END,
                'break_glass', tool_audit.is_break_glass(c.t),
                'call_id', (c.t).id,
                'model', (c.t).model,
                'conversation_id', (c.t).conversation_id,
                'tenant_id', (c.t).tenant_id)
                || CASE WHEN (c.t).call_phase = 'started'
                        THEN jsonb_build_object('call_state', CASE WHEN c.ended_success IS NULL
                                                                   THEN 'not_ended' ELSE 'ended' END)
                        ELSE '{}' END
            ORDER BY (c.t).recorded_at, (c.t).id) FILTER (WHERE c.access), '[]'),
        'break_glass_accesses', count(*) FILTER (WHERE c.access AND tool_audit.is_break_glass(c.t)),
        'integrity_verified', count(c.problem) = 0 AND protections = '[]',
        'integrity', jsonb_build_object(
            'rows_checked', count(*),
            'row_problems', coalesce(jsonb_agg(jsonb_build_object('call_id', (c.t).id, 'problem', c.problem)
                                               ORDER BY (c.t).id) FILTER (WHERE c.problem IS NOT NULL), '[]'),
            'protection_problems', protections,
            'method', 'each row''s hash recomputed, its links to the rows before and after it in its chain checked, and the audit tables'' protections checked',
            'scope', 'the rows of this report: a row deleted elsewhere in a chain is found by tool_audit.verify(), rows cut off the newest end by tool_audit.verify_digest()'))
      INTO report
      FROM covered c;
    RETURN report;
END
$$;
COMMENT ON FUNCTION tool_audit.access_report(text, timestamptz, timestamptz) IS
    'Every access to a subject''s data in a period, with the break-glass accesses and a verification of the rows, as JSON';

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
            'chain_hash', encode(t.chain_hash, 'hex'))
            -- 1.5: the halves of a call begun and ended (absent otherwise)
            || jsonb_strip_nulls(jsonb_build_object('call_phase', t.call_phase,
                   'call_event_id', t.call_event_id, 'caller_txid', t.caller_txid)) AS doc
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
    ) x
    ORDER BY x.at, x.tab, x.id;
END
$$;
COMMENT ON FUNCTION tool_audit.export_jsonl(timestamptz, timestamptz) IS
    'Both audit tables'' rows in a period as JSON documents with their hashes and chain positions, to check outside the database';

-- a started row (success NULL) has no outcome yet: FHIR omits it, OpenTelemetry says UNSET
CREATE OR REPLACE FUNCTION tool_audit.fhir_audit_event(r tool_audit.tool_calls) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'resourceType', 'AuditEvent',
        'id', r.event_id::text,
        'type', CASE WHEN tool_audit.fhir_code(r.subject_id) IS NOT NULL
                     THEN '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record"}'::jsonb
                     ELSE '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100", "display": "Application Activity"}'::jsonb END,
        'subtype', jsonb_build_array(jsonb_build_object(
            'system', 'urn:tool_audit:tool',
            'code', coalesce(tool_audit.fhir_code(r.tool_name), 'unnamed'),
            'display', tool_audit.fhir_string(r.tool_name))),
        'action', tool_audit.fhir_action(r.tool_name),
        'recorded', tool_audit.iso8601_utc(r.recorded_at),
        'outcome', CASE WHEN r.success THEN '0' WHEN NOT r.success THEN '4' END,
        'outcomeDesc', tool_audit.fhir_string(r.error),
        'purposeOfEvent', CASE WHEN tool_audit.fhir_string(r.purpose) IS NOT NULL
                               THEN jsonb_build_array(jsonb_build_object('text', tool_audit.fhir_string(r.purpose))) END,
        'agent', jsonb_build_array(
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb,
                'who', CASE WHEN tool_audit.fhir_string(r.user_id) IS NOT NULL
                            THEN jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.user_id)))
                            ELSE '{"display": "unknown"}'::jsonb END,
                'role', CASE WHEN tool_audit.fhir_string(r.user_role) IS NOT NULL
                             THEN jsonb_build_array(jsonb_build_object('text', tool_audit.fhir_string(r.user_role))) END,
                'requestor', true,
                'network', CASE WHEN r.client_ip IS NOT NULL
                                THEN jsonb_build_object('address', host(r.client_ip), 'type', '2') END),
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "dataprocessor", "display": "data processor"}]}'::jsonb,
                'who', jsonb_build_object('display', coalesce(tool_audit.fhir_string(r.model), 'unknown model')),
                'requestor', false)),
        'source', jsonb_build_object(
            'site', tool_audit.fhir_string(r.tenant_id),
            'observer', jsonb_build_object('display', tool_audit.fhir_string('tool_audit@' || current_database())),
            'type', '[{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]'::jsonb),
        'entity', (SELECT jsonb_agg(e ORDER BY n) FROM (VALUES
            (1, CASE WHEN tool_audit.fhir_code(r.subject_id) IS NOT NULL THEN jsonb_build_object(
                'what', jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.subject_id))),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"}'::jsonb)
             END),
            (2, jsonb_build_object(
                'what', jsonb_build_object('identifier', jsonb_build_object(
                    'system', 'urn:tool_audit:tool_call_id',
                    'value', coalesce(tool_audit.fhir_string(r.tool_call_id), r.event_id::text))),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}'::jsonb,
                'name', tool_audit.fhir_string(r.tool_name),
                'detail', (SELECT jsonb_agg(jsonb_build_object('type', d.k, 'valueString', d.v) ORDER BY d.n)
                             FROM (VALUES (1, 'arguments', tool_audit.fhir_string(r.arguments::text)),
                                          (2, 'result_summary', tool_audit.fhir_string(r.result_summary::text)),
                                          (3, 'conversation_id', tool_audit.fhir_string(r.conversation_id)),
                                          (4, 'turn_number', r.turn_number::text),
                                          (5, 'call_trigger', r.call_trigger::text),
                                          (6, 'duration_ms', r.duration_ms::text),
                                          (7, 'row_hash', encode(r.row_hash, 'hex')),
                                          (8, 'chain', r.chain_id || '/' || r.chain_lane || '/' || r.chain_seq))
                                  AS d(n, k, v)
                            WHERE d.v IS NOT NULL)))
            ) AS x(n, e) WHERE e IS NOT NULL)))
$$;
COMMENT ON FUNCTION tool_audit.fhir_audit_event(tool_audit.tool_calls) IS
    'One tool call as a FHIR R4 AuditEvent resource';

CREATE OR REPLACE VIEW tool_audit.otel_tool_spans WITH (security_invoker = true) AS
SELECT 'execute_tool ' || t.tool_name AS "span.name",
       t.recorded_at - make_interval(secs => coalesce(t.duration_ms, 0) / 1000) AS start_time,
       t.recorded_at AS end_time,
       CASE WHEN t.success THEN 'OK' WHEN NOT t.success THEN 'ERROR' ELSE 'UNSET' END AS "status.code",
       t.error AS "status.message",
       'execute_tool'::text AS "gen_ai.operation.name",
       t.tool_name AS "gen_ai.tool.name",
       t.tool_call_id AS "gen_ai.tool.call.id",
       'function'::text AS "gen_ai.tool.type",
       t.conversation_id AS "gen_ai.conversation.id",
       t.model AS "gen_ai.request.model",
       t.user_id AS "user.id",
       CASE WHEN t.user_role IS NOT NULL THEN ARRAY[t.user_role] END AS "user.roles",
       CASE WHEN NOT t.success THEN '_OTHER'::text END AS "error.type",
       t.client_ip AS "client.address",
       t.user_agent AS "user_agent.original",
       t.tenant_id AS "tool_audit.tenant_id",
       t.turn_number AS "tool_audit.turn_number",
       t.call_trigger::text AS "tool_audit.call_trigger",
       t.purpose AS "tool_audit.purpose",
       t.subject_id AS "tool_audit.subject_id",
       t.arguments AS "tool_audit.arguments",
       t.result_summary AS "tool_audit.result_summary",
       t.duration_ms AS "tool_audit.duration_ms",
       t.id AS "tool_audit.call_id",
       t.event_id AS "tool_audit.event_id",
       encode(t.row_hash, 'hex') AS "tool_audit.row_hash"
  FROM tool_audit.tool_calls t;
COMMENT ON VIEW tool_audit.otel_tool_spans IS 'Tool calls as OpenTelemetry GenAI execute_tool spans';

REVOKE ALL ON FUNCTION tool_audit.begin_call(text, jsonb, jsonb),
    tool_audit.end_call(uuid, jsonb, double precision), tool_audit.xact_status(bigint) FROM PUBLIC;
-- (1.5) calls that survive rollback: writers begin and end calls; readers,
-- admins and the verifier read them paired (row-level security of
-- tool_calls applies: the view is security_invoker)
GRANT EXECUTE ON FUNCTION
    tool_audit.begin_call(text, jsonb, jsonb),
    tool_audit.end_call(uuid, jsonb, double precision)
    TO tool_audit_writer;
GRANT EXECUTE ON FUNCTION tool_audit.xact_status(bigint)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT SELECT ON tool_audit.calls TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
