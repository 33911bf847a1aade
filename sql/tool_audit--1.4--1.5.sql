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
-- ---------------------------------------------------------------------------
-- data_changes (1.5): what tool calls did to the application's rows.  One row
-- per INSERT, UPDATE or DELETE of a row of a tracked table, linked to the
-- tool call in progress; append-only, sanitized, hashed and chained like the
-- other audit tables by its C insert trigger.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.data_changes_before_insert() RETURNS trigger
    AS 'MODULE_PATHNAME', 'data_changes_before_insert' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.data_changes_before_insert() IS
    'Insert trigger of data_changes: gives the row its id, time, recorder and transaction, then sanitizes, hashes and chains it';

CREATE SEQUENCE tool_audit.data_changes_id_seq;

-- row_key, old_values and new_values are objects keyed by column name, so the
-- sanitizing rules that apply to a tool's arguments (by key) apply to them:
-- a tracked ssn column is pseudonymized like an ssn argument.  An INSERT has
-- no old values ({}), a DELETE no new ones ({}); an UPDATE has the changed
-- columns only.
CREATE TABLE tool_audit.data_changes (
    id               bigint PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    recorded_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tenant_id        text,
    table_name       text NOT NULL CONSTRAINT table_name_not_empty CHECK (table_name <> ''),
    operation        text NOT NULL
                     CONSTRAINT operation_is_known
                     CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
    row_key          jsonb NOT NULL DEFAULT '{}',
    old_values       jsonb NOT NULL DEFAULT '{}',
    new_values       jsonb NOT NULL DEFAULT '{}',
    call_event_id    uuid,
    txid             bigint,
    application_name text,
    recorded_by      text NOT NULL,
    row_hash         bytea,
    chain_id         bigint,
    chain_lane       integer,
    chain_seq        bigint,
    chain_hash       bytea,
    retention_policy text,
    expires_at       timestamptz
);
ALTER SEQUENCE tool_audit.data_changes_id_seq OWNED BY tool_audit.data_changes.id;
COMMENT ON TABLE tool_audit.data_changes IS 'One row per change of a row of a tracked application table, linked to the tool call in progress; append-only, sanitized on insert';
COMMENT ON COLUMN tool_audit.data_changes.table_name IS 'The tracked table, schema-qualified as regclass prints it';
COMMENT ON COLUMN tool_audit.data_changes.row_key IS 'The changed row''s primary key: {column: value}, sanitized';
COMMENT ON COLUMN tool_audit.data_changes.old_values IS 'The changed tracked columns before the change ({} for an INSERT), sanitized';
COMMENT ON COLUMN tool_audit.data_changes.new_values IS 'The changed tracked columns after the change ({} for a DELETE), sanitized';
COMMENT ON COLUMN tool_audit.data_changes.call_event_id IS 'The tool call in progress when the row changed (tool_audit.call); NULL: made outside any tool call';
COMMENT ON COLUMN tool_audit.data_changes.txid IS 'The transaction that made the change, set by the insert trigger';
COMMENT ON COLUMN tool_audit.data_changes.row_hash IS 'SHA-256 of the row''s canonical encoding (doc/canonical-encoding.md)';
COMMENT ON COLUMN tool_audit.data_changes.chain_hash IS 'SHA-256 link over the previous row of the same chain and lane';

CREATE UNIQUE INDEX data_changes_chain_position
    ON tool_audit.data_changes (chain_id, chain_lane, chain_seq);

CREATE TRIGGER data_changes_before_insert
    BEFORE INSERT ON tool_audit.data_changes
    FOR EACH ROW EXECUTE FUNCTION tool_audit.data_changes_before_insert();
CREATE TRIGGER data_changes_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.data_changes
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
CREATE TRIGGER data_changes_append_only_row
    BEFORE UPDATE OR DELETE ON tool_audit.data_changes
    FOR EACH ROW EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.data_changes
    ENABLE ALWAYS TRIGGER data_changes_before_insert,
    ENABLE ALWAYS TRIGGER data_changes_append_only,
    ENABLE ALWAYS TRIGGER data_changes_append_only_row;

-- as sql/install/90_privileges.sql does for every table and function
REVOKE ALL ON TABLE tool_audit.data_changes FROM PUBLIC;
REVOKE ALL ON FUNCTION tool_audit.data_changes_before_insert() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- FHIR (issue 15): the subject typed by its kind, break-the-glass as a
-- purpose of use, the identifier labelled by what it holds, admin events as
-- AuditEvents (the same definitions as sql/install/80_exports.sql)
-- ---------------------------------------------------------------------------
-- fhir_subject_entity(subject_id, subject_type): the AuditEvent entity for
-- the data subject a row is about, typed by the kind of subject its context
-- named (the context key subject_type, kept in session_metadata; for an
-- admin event, its payload's subject_type): FHIR R4's audit-entity-type
-- (http://hl7.org/fhir/ValueSet/audit-entity-type) and object-role
-- (http://hl7.org/fhir/ValueSet/object-role) codes.  A patient is a Person in
-- the Patient role, a customer a Person in the Customer role, and so on; a
-- subject of no stated kind is a Person (a data subject is one) in no role;
-- an organization is an Organization; any other stated kind is Other.  NULL
-- without a subject.
CREATE FUNCTION tool_audit.fhir_subject_entity(subject_id text, subject_type text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN tool_audit.fhir_code(subject_id) IS NOT NULL THEN jsonb_strip_nulls(jsonb_build_object(
        'what', jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(subject_id))),
        'type', jsonb_build_object('system', 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
                                   'code', k.type_code, 'display', k.type_display),
        'role', CASE WHEN k.role_code IS NOT NULL
                     THEN jsonb_build_object('system', 'http://terminology.hl7.org/CodeSystem/object-role',
                                             'code', k.role_code, 'display', k.role_display) END,
        'detail', CASE WHEN k.kind IS NOT NULL
                       THEN jsonb_build_array(jsonb_build_object('type', 'subject_type',
                                                                 'valueString', tool_audit.fhir_code(subject_type))) END))
    END
      FROM (SELECT lower(tool_audit.fhir_code(subject_type)) AS kind) s,
           LATERAL (SELECT s.kind,
                CASE WHEN s.kind IS NULL OR s.kind IN ('patient', 'customer', 'user', 'employee', 'doctor',
                                                       'practitioner', 'provider', 'subscriber', 'guarantor')
                          THEN '1' WHEN s.kind = 'organization' THEN '3' ELSE '4' END AS type_code,
                CASE WHEN s.kind IS NULL OR s.kind IN ('patient', 'customer', 'user', 'employee', 'doctor',
                                                       'practitioner', 'provider', 'subscriber', 'guarantor')
                          THEN 'Person' WHEN s.kind = 'organization' THEN 'Organization' ELSE 'Other' END AS type_display,
                CASE s.kind WHEN 'patient' THEN '1' WHEN 'customer' THEN '19' WHEN 'user' THEN '6'
                            WHEN 'employee' THEN '6' WHEN 'doctor' THEN '8' WHEN 'practitioner' THEN '15'
                            WHEN 'provider' THEN '15' WHEN 'subscriber' THEN '9' WHEN 'guarantor' THEN '10'
                END AS role_code,
                CASE s.kind WHEN 'patient' THEN 'Patient' WHEN 'customer' THEN 'Customer' WHEN 'user' THEN 'User'
                            WHEN 'employee' THEN 'User' WHEN 'doctor' THEN 'Doctor' WHEN 'practitioner' THEN 'Provider'
                            WHEN 'provider' THEN 'Provider' WHEN 'subscriber' THEN 'Subscriber'
                            WHEN 'guarantor' THEN 'Guarantor'
                END AS role_display) k
$$;
COMMENT ON FUNCTION tool_audit.fhir_subject_entity(text, text) IS
    'The FHIR AuditEvent entity for a data subject, typed and given its role (audit-entity-type, object-role) by the kind of subject; NULL without a subject';

-- fhir_purpose(purpose, break_glass): AuditEvent.purposeOfEvent: the
-- purpose as text and, for a break-the-glass access, the v3 ActReason code
-- BTG ("break the glass")
CREATE FUNCTION tool_audit.fhir_purpose(purpose text, break_glass boolean) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN tool_audit.fhir_string(purpose) IS NOT NULL OR break_glass THEN
        jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'coding', CASE WHEN break_glass THEN
                '[{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]'::jsonb END,
            'text', tool_audit.fhir_string(purpose))))
    END
$$;
COMMENT ON FUNCTION tool_audit.fhir_purpose(text, boolean) IS
    'FHIR AuditEvent.purposeOfEvent: the purpose as text and, for a break-the-glass access, the v3 ActReason code BTG';

-- fhir_audit_event(row): its comment and privileges are kept
CREATE OR REPLACE FUNCTION tool_audit.fhir_audit_event(r tool_audit.tool_calls) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'resourceType', 'AuditEvent',
        'id', r.event_id::text,
        'type', CASE WHEN tool_audit.fhir_code(r.subject_id) IS NOT NULL
                      AND lower(tool_audit.fhir_code(r.session_metadata->>'subject_type')) = 'patient'
                     THEN '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record"}'::jsonb
                     ELSE '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100", "display": "Application Activity"}'::jsonb END,
        'subtype', jsonb_build_array(jsonb_build_object(
            'system', 'urn:tool_audit:tool',
            'code', coalesce(tool_audit.fhir_code(r.tool_name), 'unnamed'),
            'display', tool_audit.fhir_string(r.tool_name))),
        'action', tool_audit.fhir_action(r.tool_name),
        'recorded', tool_audit.iso8601_utc(r.recorded_at),
        'outcome', CASE WHEN r.success THEN '0' ELSE '4' END,
        'outcomeDesc', tool_audit.fhir_string(r.error),
        'purposeOfEvent', tool_audit.fhir_purpose(r.purpose,
                                                  coalesce(r.break_glass, false) OR tool_audit.is_break_glass(r)),
        'agent', jsonb_build_array(
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb,
                'who', CASE WHEN tool_audit.fhir_string(r.user_id) IS NOT NULL
                            THEN jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.user_id)))
                            ELSE '{"display": "unknown"}'::jsonb END,
                'role', CASE WHEN tool_audit.fhir_string(r.user_role) IS NOT NULL
                             THEN jsonb_build_array(jsonb_build_object('text', tool_audit.fhir_string(r.user_role))) END,
                'requestor', tool_audit.fhir_string(r.impersonated_by) IS NULL,
                'network', CASE WHEN r.client_ip IS NOT NULL
                                THEN jsonb_build_object('address', host(r.client_ip), 'type', '2') END),
            jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "dataprocessor", "display": "data processor"}]}'::jsonb,
                'who', jsonb_build_object('display', coalesce(tool_audit.fhir_string(r.model), 'unknown model')),
                'requestor', false))
            || CASE WHEN tool_audit.fhir_string(r.impersonated_by) IS NOT NULL THEN jsonb_build_array(jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb,
                'who', jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.impersonated_by))),
                'role', '[{"text": "impersonator"}]'::jsonb,
                'requestor', true)) ELSE '[]'::jsonb END,
        'source', jsonb_build_object(
            'site', tool_audit.fhir_string(r.tenant_id),
            'observer', jsonb_build_object('display', tool_audit.fhir_string('tool_audit@' || current_database())),
            'type', '[{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]'::jsonb),
        'entity', (SELECT jsonb_agg(e ORDER BY n) FROM (VALUES
            (1, tool_audit.fhir_subject_entity(r.subject_id, r.session_metadata->>'subject_type')),
            (2, jsonb_build_object(
                'what', jsonb_build_object('identifier', CASE WHEN tool_audit.fhir_string(r.tool_call_id) IS NOT NULL
                    THEN jsonb_build_object('system', 'urn:tool_audit:tool_call_id', 'value', tool_audit.fhir_string(r.tool_call_id))
                    ELSE jsonb_build_object('system', 'urn:tool_audit:event_id', 'value', r.event_id::text) END),
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

-- fhir_admin_event(row): one FHIR R4 AuditEvent resource for an admin
-- event: the actor as the requesting agent (a person or, for a service, an
-- application), the event type as subtype, the action its last word implies
-- (prompt.update: U), the reason as purpose, the data subject of its payload
-- (payload subject_id, typed by payload subject_type) and the event itself
-- with its payload and hashes as entities
CREATE FUNCTION tool_audit.fhir_admin_event(r tool_audit.admin_events) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'resourceType', 'AuditEvent',
        'id', r.event_id::text,
        'type', '{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100", "display": "Application Activity"}'::jsonb,
        'subtype', jsonb_build_array(jsonb_build_object(
            'system', 'urn:tool_audit:event_type',
            'code', r.event_type,
            'display', r.event_type)),
        'action', tool_audit.fhir_action(substring(r.event_type FROM '[^.]+$')),
        'recorded', tool_audit.iso8601_utc(r.occurred_at),
        'outcome', '0',
        'purposeOfEvent', tool_audit.fhir_purpose(r.reason, false),
        'agent', jsonb_build_array(jsonb_build_object(
                'type', CASE WHEN r.actor_type = 'service'
                    THEN '{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]}'::jsonb
                    ELSE '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb END,
                'who', CASE WHEN tool_audit.fhir_string(r.actor) IS NOT NULL
                            THEN jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.actor)))
                            ELSE '{"display": "unknown"}'::jsonb END,
                'requestor', tool_audit.fhir_string(r.impersonated_by) IS NULL,
                'network', CASE WHEN r.source_ip IS NOT NULL
                                THEN jsonb_build_object('address', host(r.source_ip), 'type', '2') END))
            || CASE WHEN tool_audit.fhir_string(r.impersonated_by) IS NOT NULL THEN jsonb_build_array(jsonb_build_object(
                'type', '{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]}'::jsonb,
                'who', jsonb_build_object('identifier', jsonb_build_object('value', tool_audit.fhir_string(r.impersonated_by))),
                'role', '[{"text": "impersonator"}]'::jsonb,
                'requestor', true)) ELSE '[]'::jsonb END,
        'source', jsonb_build_object(
            'site', tool_audit.fhir_string(r.tenant_id),
            'observer', jsonb_build_object('display', tool_audit.fhir_string('tool_audit@' || current_database())),
            'type', '[{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]'::jsonb),
        'entity', (SELECT jsonb_agg(e ORDER BY n) FROM (VALUES
            (1, tool_audit.fhir_subject_entity(CASE WHEN jsonb_typeof(r.payload) = 'object' THEN r.payload->>'subject_id' END,
                                               CASE WHEN jsonb_typeof(r.payload) = 'object' THEN r.payload->>'subject_type' END)),
            (2, jsonb_build_object(
                'what', jsonb_build_object('identifier', jsonb_build_object(
                    'system', 'urn:tool_audit:event_id', 'value', r.event_id::text)),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}'::jsonb,
                'name', r.event_type,
                'detail', (SELECT jsonb_agg(jsonb_build_object('type', d.k, 'valueString', d.v) ORDER BY d.n)
                             FROM (VALUES (1, 'payload', tool_audit.fhir_string(r.payload::text)),
                                          (2, 'metadata', tool_audit.fhir_string(nullif(r.metadata, '{}')::text)),
                                          (3, 'row_hash', encode(r.row_hash, 'hex')),
                                          (4, 'chain', r.chain_id || '/' || r.chain_lane || '/' || r.chain_seq))
                                  AS d(n, k, v)
                            WHERE d.v IS NOT NULL)))
            ) AS x(n, e) WHERE e IS NOT NULL)))
$$;
COMMENT ON FUNCTION tool_audit.fhir_admin_event(tool_audit.admin_events) IS
    'One admin event as a FHIR R4 AuditEvent resource';

-- export_fhir_admin_events(start, end, subject_id): the admin events in
-- [start, end) as AuditEvents; given a subject, those whose payload names it
-- (payload subject_id, as legal holds read it)
CREATE FUNCTION tool_audit.export_fhir_admin_events(start_time timestamptz, end_time timestamptz,
                                                    subject_id text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    RETURN QUERY
    SELECT tool_audit.fhir_admin_event(e) FROM tool_audit.admin_events e
     WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
       AND (export_fhir_admin_events.subject_id IS NULL
            OR e.payload ->> 'subject_id' = export_fhir_admin_events.subject_id)
     ORDER BY e.occurred_at, e.id;
END
$$;
COMMENT ON FUNCTION tool_audit.export_fhir_admin_events(timestamptz, timestamptz, text) IS
    'The admin events in a period, of one subject (payload subject_id) if given, as FHIR R4 AuditEvent resources';

REVOKE ALL ON FUNCTION tool_audit.fhir_subject_entity(text, text), tool_audit.fhir_purpose(text, boolean),
    tool_audit.fhir_admin_event(tool_audit.admin_events),
    tool_audit.export_fhir_admin_events(timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    tool_audit.fhir_subject_entity(text, text),
    tool_audit.fhir_purpose(text, boolean),
    tool_audit.fhir_admin_event(tool_audit.admin_events),
    tool_audit.export_fhir_admin_events(timestamptz, timestamptz, text)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
