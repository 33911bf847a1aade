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
ALTER TABLE tool_audit.tool_calls
    ADD COLUMN started_at timestamptz;
COMMENT ON COLUMN tool_audit.tool_calls.call_phase IS 'NULL: a call recorded in one row; started or ended: one half of a call recorded by begin_call() and end_call()';
COMMENT ON COLUMN tool_audit.tool_calls.call_event_id IS 'On an ended row: the event_id of the started row it closes';
COMMENT ON COLUMN tool_audit.tool_calls.caller_txid IS 'On a row written autonomously: the caller''s transaction id, so that whether the caller committed can be known';
COMMENT ON COLUMN tool_audit.tool_calls.impersonated_by IS 'The admin impersonating user_id when the call was made (NULL: no impersonation)';
COMMENT ON COLUMN tool_audit.tool_calls.break_glass IS 'true: an emergency (break-the-glass) access, with its reason in session_metadata';
COMMENT ON COLUMN tool_audit.tool_calls.started_at IS 'When the call began, as the client said (its clock; recorded_at is the server''s); hashed, not a chain or report period key';
COMMENT ON COLUMN tool_audit.admin_events.impersonated_by IS 'The admin impersonating the actor when the event was recorded (NULL: no impersonation)';
-- iso8601_utc(ts): 2026-11-22T17:45:55.123456Z whatever TimeZone and DateStyle say.
-- No SET clause, so that the planner inlines it into the reports and exports
-- that call it for every row (1.5: a call took about 1.9 us, inlined 0.7);
-- its functions are named with their schema instead (AT TIME ZONE is
-- pg_catalog.timezone(), the cast to text is no function lookup)
CREATE OR REPLACE FUNCTION tool_audit.iso8601_utc(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.isfinite(ts)
                THEN pg_catalog.to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                ELSE ts::text END
$$;
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
-- fhir_string(value): a FHIR string: the R4 schema's string pattern
-- (^[ \r\n\t\S]+$, in JavaScript) admits no whitespace but space, tab, CR
-- and LF, so the others (vertical tab, form feed, no-break and other Unicode
-- spaces) become spaces; an empty string becomes NULL (FHIR has none).
-- In C since 1.5 (src/fhir_text.c): a dozen calls a row of export_fhir()
CREATE OR REPLACE FUNCTION tool_audit.fhir_string(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'ta_fhir_string' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.fhir_string(text) IS
    'The text as a valid FHIR string: whitespace the R4 schema refuses becomes a space, an empty string NULL';

-- fhir_code(value): a FHIR code: a FHIR string with no leading, trailing or
-- repeated whitespace (C since 1.5, src/fhir_text.c)
CREATE OR REPLACE FUNCTION tool_audit.fhir_code(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'ta_fhir_code' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.fhir_code(text) IS
    'The text as a valid FHIR code: trimmed, inner whitespace collapsed, an empty string NULL';

-- fhir_action(tool_name): the AuditEvent action a tool's leading verb
-- implies (get_order, searchPatients, DELETE_NOTE: the first word)
-- No SET clause (1.5), so that the planner inlines it into the queries that
-- call it per row (a function with SET is not inlined, and one called from
-- inside another SQL function is parsed and planned again at every call).
-- Instead every function, operator and type it names is schema-qualified,
-- so that no caller's search_path reaches it (test fhir_helpers shadows them)
CREATE OR REPLACE FUNCTION tool_audit.fhir_action(tool_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce('{"get": "R", "read": "R", "list": "R", "search": "R", "find": "R", "lookup": "R",
                      "fetch": "R", "query": "R", "view": "R", "show": "R", "check": "R",
                      "create": "C", "add": "C", "insert": "C", "new": "C",
                      "update": "U", "set": "U", "modify": "U", "edit": "U", "change": "U", "patch": "U",
                      "delete": "D", "remove": "D", "purge": "D", "erase": "D"}'::pg_catalog.jsonb
                    OPERATOR(pg_catalog.->>) pg_catalog.lower(coalesce(substring(tool_name FROM '^[A-Z]+(?![a-z])'),
                                                                       substring(tool_name FROM '^[A-Za-z][a-z]*'))),
                    'E')
$$;
COMMENT ON FUNCTION tool_audit.fhir_action(text) IS
    'The FHIR AuditEvent action code (C, R, U, D or E) that a tool name''s leading verb implies';

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
-- No SET clause (1.5): inlined per row, as fhir_action() above
CREATE FUNCTION tool_audit.fhir_subject_entity(subject_id text, subject_type text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN tool_audit.fhir_code(subject_id) IS NOT NULL THEN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'what', pg_catalog.jsonb_build_object('identifier', pg_catalog.jsonb_build_object('value', tool_audit.fhir_string(subject_id))),
        -- audit-entity-type 1 (Person): no kind stated, or a person's; 3: an organization; 4 (Other): any other
        'type', '{"1": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
                  "3": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "3", "display": "Organization"},
                  "4": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "4", "display": "Other"}}'::pg_catalog.jsonb
                OPERATOR(pg_catalog.->) (CASE WHEN tool_audit.fhir_code(subject_type) IS NULL THEN '1'
                    ELSE coalesce('{"patient": "1", "customer": "1", "user": "1", "employee": "1", "doctor": "1",
                                    "practitioner": "1", "provider": "1", "subscriber": "1", "guarantor": "1",
                                    "organization": "3"}'::pg_catalog.jsonb
                                  OPERATOR(pg_catalog.->>) pg_catalog.lower(tool_audit.fhir_code(subject_type)), '4') END),
        'role', '{"patient": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
                  "customer": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "19", "display": "Customer"},
                  "user": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "6", "display": "User"},
                  "employee": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "6", "display": "User"},
                  "doctor": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "8", "display": "Doctor"},
                  "practitioner": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "15", "display": "Provider"},
                  "provider": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "15", "display": "Provider"},
                  "subscriber": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "9", "display": "Subscriber"},
                  "guarantor": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "10", "display": "Guarantor"}}'::pg_catalog.jsonb
                OPERATOR(pg_catalog.->) pg_catalog.lower(tool_audit.fhir_code(subject_type)),
        'detail', CASE WHEN tool_audit.fhir_code(subject_type) IS NOT NULL
                       THEN pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('type', 'subject_type',
                                                                                       'valueString', tool_audit.fhir_code(subject_type))) END))
    END
$$;
COMMENT ON FUNCTION tool_audit.fhir_subject_entity(text, text) IS
    'The FHIR AuditEvent entity for a data subject, typed and given its role (audit-entity-type, object-role) by the kind of subject; NULL without a subject';

-- fhir_purpose(purpose, break_glass): AuditEvent.purposeOfEvent: the
-- purpose as text and, for a break-the-glass access, the v3 ActReason code
-- BTG ("break the glass")
-- No SET clause (1.5): inlined per row, as fhir_action() above
CREATE FUNCTION tool_audit.fhir_purpose(purpose text, break_glass boolean) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN break_glass THEN
                pg_catalog.jsonb_build_array(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                    'coding', '[{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]'::pg_catalog.jsonb,
                    'text', tool_audit.fhir_string(purpose))))
                WHEN tool_audit.fhir_string(purpose) IS NOT NULL THEN
                pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('text', tool_audit.fhir_string(purpose)))
    END
$$;
COMMENT ON FUNCTION tool_audit.fhir_purpose(text, boolean) IS
    'FHIR AuditEvent.purposeOfEvent: the purpose as text and, for a break-the-glass access, the v3 ActReason code BTG';

-- fhir_audit_event(row) uses them: it is replaced once, with its final text,
-- at the end of this script (later 1.5 changes alter it too); its comment
-- and privileges are kept

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
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    RETURN QUERY
    SELECT tool_audit.fhir_admin_event(e) FROM tool_audit.admin_events e
     WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
       AND (export_fhir_admin_events.subject_id IS NULL
            OR e.payload ->> 'subject_id' = export_fhir_admin_events.subject_id)
     ORDER BY e.occurred_at, e.id;
    -- recorded as every export is (record_read(): an audit.read event)
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_fhir_admin_events',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time),
                                                      'subject_id', export_fhir_admin_events.subject_id), n);
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

-- ---------------------------------------------------------------------------
-- Dual approval and break-the-glass (issue 13): sql/install/86_dual_approval.sql
-- and 87_break_glass.sql, word for word
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- Dual approval (1.5, doc/governance.md): a request for an action with its
-- payload, approved by another person holding tool_audit_admin, used once
-- by its requester within its lifetime.  With tool_audit.require_dual_approval
-- on, the extension's own sensitive operations need one; applications call
-- consume_approval() for their own actions.  Every step is a tool_audit.approval.*
-- admin event with the request before and after.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.approval_person() RETURNS text
    AS 'MODULE_PATHNAME', 'approval_person' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.approval_person() IS
    'The person behind the session: its login role, which SET ROLE and SET SESSION AUTHORIZATION do not change';
CREATE FUNCTION tool_audit.approval_same_person(a text, b text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'approval_same_person' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.approval_same_person(text, text) IS
    'True if two login roles are one person: the same role, or either a member of the other (superuser status aside)';
CREATE FUNCTION tool_audit.dual_approval_required() RETURNS boolean
    AS 'MODULE_PATHNAME', 'dual_approval_required' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.dual_approval_required() IS
    'The setting tool_audit.require_dual_approval, read with the library loaded';
CREATE FUNCTION tool_audit.approval_lifetime() RETURNS interval
    AS 'MODULE_PATHNAME', 'approval_lifetime' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.approval_lifetime() IS
    'The setting tool_audit.approval_lifetime: how long a new approval request stays open';

CREATE SEQUENCE tool_audit.approval_requests_request_id_seq;
CREATE TABLE tool_audit.approval_requests (
    request_id      bigint PRIMARY KEY DEFAULT nextval('tool_audit.approval_requests_request_id_seq'),
    action          text NOT NULL,
    payload         jsonb NOT NULL CONSTRAINT payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    payload_digest  bytea NOT NULL,
    digest_key_id   text NOT NULL,
    reason          text NOT NULL,
    tenant_id       text,
    state           text NOT NULL DEFAULT 'pending'
                    CONSTRAINT state_is_known CHECK (state IN ('pending', 'approved', 'rejected', 'consumed')),
    requested_by    text NOT NULL,
    requested_login text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at      timestamptz NOT NULL,
    decided_by      text,
    decided_login   text,
    decided_at      timestamptz,
    decision_note   text,
    consumed_by     text,
    consumed_at     timestamptz
);
ALTER SEQUENCE tool_audit.approval_requests_request_id_seq
    OWNED BY tool_audit.approval_requests.request_id;
CREATE INDEX approval_requests_open ON tool_audit.approval_requests (action, requested_by)
    WHERE state IN ('pending', 'approved');
COMMENT ON TABLE tool_audit.approval_requests IS
    'Dual approval requests: pending, approved (until used or expired), rejected or consumed; changed only by the approval functions';
COMMENT ON COLUMN tool_audit.approval_requests.payload IS
    'The payload as shown: sanitized, and for tool_audit.erase_subject the subject id pseudonymized';
COMMENT ON COLUMN tool_audit.approval_requests.payload_digest IS
    'SHA-256 of the pseudonymization key digest_key_id and the canonical action and payload: what an operation''s own payload must match';
COMMENT ON COLUMN tool_audit.approval_requests.requested_by IS
    'The role the requester acted as (after SET ROLE); requested_login: the login role (the person)';

-- row-level security as on the audit tables: admins read all, a writer its
-- own requests, a reader its tenants'
ALTER TABLE tool_audit.approval_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.approval_requests
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY writer_own ON tool_audit.approval_requests
    FOR SELECT TO tool_audit_writer USING (requested_by = CURRENT_USER);
CREATE POLICY reader_tenant ON tool_audit.approval_requests
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));

-- governance_event(): an admin event of dual approval or break-the-glass
-- review ("tool_audit." and the type), with the caller's note as its
-- reason; callable only by the owner (its own functions).  Returns its id.
CREATE FUNCTION tool_audit.governance_event(event_type text, payload jsonb, reason text,
                                            tenant_id text)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('tool_audit.' || governance_event.event_type, tool_audit.acting_role(), 'user',
            governance_event.tenant_id, governance_event.payload, governance_event.reason)
    RETURNING id
$$;
COMMENT ON FUNCTION tool_audit.governance_event(text, jsonb, text, text) IS
    'Records a dual approval step or a break-the-glass review as a "tool_audit." admin event; callable only by the owner (its own functions)';

-- approval_payload(action, payload): the payload checked and completed for
-- the extension's own actions (the keys each takes, their JSON types, the
-- defaults of the operation's arguments), as given for any other action.
-- Errors name the key, never its value.
CREATE FUNCTION tool_audit.approval_payload(action text, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec jsonb;
    k text;
    t text;
    v jsonb;
BEGIN
    IF payload IS NULL OR jsonb_typeof(payload) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'invalid value for argument "payload": expected a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- key: JSON type; "?" after it: optional (null when absent)
    spec := CASE action
        WHEN 'tool_audit.retention.set_policy' THEN
            '{"policy_name": "string", "retention_days": "number", "matches": "array?", "applies_to": "string?"}'
        WHEN 'tool_audit.retention.set_override' THEN
            '{"tenant_id": "string", "policy_name": "string", "retention_days": "number"}'
        WHEN 'tool_audit.hold.release' THEN '{"hold_id": "number"}'
        WHEN 'tool_audit.erase_subject' THEN '{"subject_id": "string"}'
        WHEN 'tool_audit.pseudonym_key.rotate' THEN '{"key_id": "string?"}'
        WHEN 'tool_audit.untrack' THEN '{"table": "string"}'
        WHEN 'tool_audit.alert_rule.disable' THEN '{"rule_name": "string"}'
        WHEN 'tool_audit.alert_checks.unschedule' THEN '{}'
        WHEN 'tool_audit.retention.unschedule' THEN '{}'
        END::jsonb;
    IF spec IS NULL THEN
        RETURN payload;
    END IF;
    FOR k IN SELECT jsonb_object_keys(payload) LOOP
        IF NOT spec ? k THEN
            RAISE EXCEPTION 'invalid value for argument "payload": % takes the keys %', action,
                    coalesce((SELECT string_agg(s, ', ' ORDER BY s) FROM jsonb_object_keys(spec) s), 'none')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOR k, t IN SELECT e.key, e.value #>> '{}' FROM jsonb_each(spec) e LOOP
        v := payload -> k;
        IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
            IF right(t, 1) <> '?' THEN
                RAISE EXCEPTION 'invalid value for argument "payload": key "%" is missing', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            payload := payload || jsonb_build_object(k, CASE WHEN action = 'tool_audit.retention.set_policy'
                                                              AND k = 'applies_to' THEN 'tool_calls' END);
        ELSIF jsonb_typeof(v) <> rtrim(t, '?')
              OR (t = 'number' AND (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric)) THEN
            RAISE EXCEPTION 'invalid value for argument "payload": key "%" must be a JSON %', k,
                    CASE WHEN t = 'number' THEN 'integer' ELSE rtrim(t, '?') END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    RETURN payload;
END
$$;
COMMENT ON FUNCTION tool_audit.approval_payload(text, jsonb) IS
    'A request''s payload checked and completed for the extension''s own actions (keys, JSON types, defaults); as given for other actions';

-- approval_digest(action, payload, key_id): what a request commits to,
-- keyed so that a payload holding little-varying personal data (a subject
-- id) cannot be found from the digest by trying values
CREATE FUNCTION tool_audit.approval_digest(action text, payload jsonb, key_id text) RETURNS bytea
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(k.key || convert_to(approval_digest.action || E'\n' ||
                                      tool_audit.canonical_json(approval_digest.payload), 'UTF8'))
      FROM tool_audit.pseudonym_keys k
     WHERE k.key_id = approval_digest.key_id
$$;
COMMENT ON FUNCTION tool_audit.approval_digest(text, jsonb, text) IS
    'SHA-256 of a pseudonymization key and the canonical action and payload of a request; callable only by the owner';

CREATE FUNCTION tool_audit.request_approval(action text, payload jsonb, reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    full_payload jsonb;
    shown jsonb;
    key_id text;
    r tool_audit.approval_requests;
BEGIN
    -- errors name the argument, never its value
    IF action IS NULL OR action !~ '^[A-Za-z][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION 'invalid value for argument "action": expected a name of 1 to 128 letters, digits, "_", ".", ":" or "-", starting with a letter'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'invalid value for argument "reason": must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF action LIKE 'tool\_audit.%' AND NOT pg_has_role(tool_audit.acting_role()::name, 'tool_audit_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only tool_audit_admin can request approval for the extension''s own actions'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    full_payload := tool_audit.approval_payload(action, coalesce(payload, '{}'));
    -- what the table shows is sanitized as the audit tables' rows are
    shown := tool_audit.sanitize(full_payload);
    reason := tool_audit.sanitize_text(reason);
    IF action = 'tool_audit.erase_subject' THEN
        IF strpos(reason, full_payload ->> 'subject_id') > 0 THEN
            RAISE EXCEPTION 'argument "reason" contains the subject id'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The request and its event keep the reason, and must not name the subject.',
                      HINT = 'The value is not shown: the subject id is personal data.';
        END IF;
        shown := jsonb_build_object('subject_id', tool_audit.pseudonymize(full_payload ->> 'subject_id'));
    END IF;
    SELECT k.key_id INTO key_id FROM tool_audit.pseudonym_keys k WHERE k.active;
    INSERT INTO tool_audit.approval_requests
        (action, payload, payload_digest, digest_key_id, reason, tenant_id, requested_by,
         requested_login, expires_at)
    VALUES (request_approval.action, shown, tool_audit.approval_digest(request_approval.action, full_payload, key_id),
            key_id, request_approval.reason,
            CASE WHEN jsonb_typeof(full_payload -> 'tenant_id') = 'string' THEN full_payload ->> 'tenant_id' END,
            tool_audit.acting_role(), tool_audit.approval_person(),
            now() + tool_audit.approval_lifetime())
    RETURNING * INTO r;
    PERFORM tool_audit.governance_event('approval.request',
        jsonb_build_object('request_id', r.request_id, 'action', r.action, 'before', NULL,
                           'after', to_jsonb(r) - 'payload_digest'),
        r.reason, r.tenant_id);
    RETURN r.request_id;
END
$$;
COMMENT ON FUNCTION tool_audit.request_approval(text, jsonb, text) IS
    'Asks for a second person''s approval of an action with its payload; returns the request id (a tool_audit.approval.request admin event)';

-- decide_approval(): approve() and reject() in one place
CREATE FUNCTION tool_audit.decide_approval(request_id bigint, decision text, note text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.approval_requests;
    after_row tool_audit.approval_requests;
    me text := tool_audit.acting_role();
    login text := tool_audit.approval_person();
BEGIN
    IF NOT pg_has_role(me::name, 'tool_audit_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only tool_audit_admin can % approval requests', decision
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF request_id IS NULL THEN
        RAISE EXCEPTION 'request_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO before_row FROM tool_audit.approval_requests a
     WHERE a.request_id = decide_approval.request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no approval request has this request_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF decision = 'approve' THEN
        IF before_row.state <> 'pending' THEN
            RAISE EXCEPTION 'approval request % is % and cannot be approved', before_row.request_id, before_row.state
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF before_row.expires_at <= clock_timestamp() THEN
            RAISE EXCEPTION 'approval request % has expired', before_row.request_id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'The requester asks again with tool_audit.request_approval().';
        END IF;
        -- another person: not the requester's login role, nor a login role
        -- that is a member of it or has it as a member; acting as another
        -- role (SET ROLE, SET SESSION AUTHORIZATION) changes nothing
        IF tool_audit.approval_same_person(login, before_row.requested_login) THEN
            RAISE EXCEPTION 'an approval request must be approved by another person than its requester'
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'The approver''s login role is, or is a member of or has as member, the requester''s.';
        END IF;
    ELSIF before_row.state NOT IN ('pending', 'approved') THEN
        RAISE EXCEPTION 'approval request % is % and cannot be rejected', before_row.request_id, before_row.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE tool_audit.approval_requests a
       SET state = CASE decision WHEN 'approve' THEN 'approved' ELSE 'rejected' END,
           decided_by = me, decided_login = login, decided_at = now(),
           decision_note = tool_audit.sanitize_text(note)
     WHERE a.request_id = before_row.request_id
    RETURNING * INTO after_row;
    PERFORM tool_audit.governance_event('approval.' || decision,
        jsonb_build_object('request_id', after_row.request_id, 'action', after_row.action,
                           'before', to_jsonb(before_row) - 'payload_digest',
                           'after', to_jsonb(after_row) - 'payload_digest'),
        after_row.decision_note, after_row.tenant_id);
END
$$;
COMMENT ON FUNCTION tool_audit.decide_approval(bigint, text, text) IS
    'Approves or rejects an approval request (approve() and reject()); callable only by the owner';

CREATE FUNCTION tool_audit.approve(request_id bigint, note text DEFAULT NULL) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.decide_approval(approve.request_id, 'approve', approve.note)
$$;
COMMENT ON FUNCTION tool_audit.approve(bigint, text) IS
    'Approves a pending, unexpired approval request of another person (tool_audit_admin only; a tool_audit.approval.approve admin event)';

CREATE FUNCTION tool_audit.reject(request_id bigint, note text DEFAULT NULL) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.decide_approval(reject.request_id, 'reject', reject.note)
$$;
COMMENT ON FUNCTION tool_audit.reject(bigint, text) IS
    'Rejects a pending or approved, unused approval request; a requester may withdraw their own (tool_audit_admin only; a tool_audit.approval.reject admin event)';

-- consume_approval(action, payload): the caller's approved, unexpired,
-- unused request for exactly this action and payload is used, in the
-- caller's transaction (a rollback leaves it approved).  The operation's
-- caller must be the requester: the same login role acting as the same
-- role.  Without one: 42501, saying what was found instead.
CREATE FUNCTION tool_audit.consume_approval(action text, payload jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    full_payload jsonb;
    before_row tool_audit.approval_requests;
    after_row tool_audit.approval_requests;
    other text;
BEGIN
    IF action IS NULL THEN
        RAISE EXCEPTION 'invalid value for argument "action": must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    full_payload := tool_audit.approval_payload(action, coalesce(payload, '{}'));
    SELECT a.* INTO before_row FROM tool_audit.approval_requests a
     WHERE a.action = consume_approval.action
       AND a.requested_by = tool_audit.acting_role()
       AND a.requested_login = tool_audit.approval_person()
       AND a.state = 'approved' AND a.expires_at > clock_timestamp()
       AND a.payload_digest = tool_audit.approval_digest(consume_approval.action, full_payload, a.digest_key_id)
     ORDER BY a.request_id
     LIMIT 1
       FOR UPDATE;
    IF NOT FOUND THEN
        -- the newest matching request in another state says why
        SELECT CASE WHEN a.state = 'approved' THEN 'has expired'
                    WHEN a.state = 'pending' AND a.expires_at <= clock_timestamp() THEN 'expired unapproved'
                    WHEN a.state = 'pending' THEN 'is not approved yet'
                    ELSE 'was ' || a.state END
          INTO other
          FROM tool_audit.approval_requests a
         WHERE a.action = consume_approval.action
           AND a.requested_by = tool_audit.acting_role()
           AND a.requested_login = tool_audit.approval_person()
           AND a.payload_digest = tool_audit.approval_digest(consume_approval.action, full_payload, a.digest_key_id)
         ORDER BY a.request_id DESC
         LIMIT 1;
        RAISE EXCEPTION 'dual approval needed: no approved request of this role for this action and payload%',
                coalesce(' (the latest matching request ' || other || ')', '')
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = CASE WHEN action LIKE 'tool\_audit.%' THEN format('Action %s.', action)
                                ELSE 'The action and payload are not shown: they may hold secrets.' END,
                  HINT = 'Ask with tool_audit.request_approval(action, payload, reason), as the role that will act; another tool_audit_admin approves with tool_audit.approve(); each approval is used once.';
    END IF;
    UPDATE tool_audit.approval_requests a
       SET state = 'consumed', consumed_by = tool_audit.acting_role(), consumed_at = now()
     WHERE a.request_id = before_row.request_id
    RETURNING * INTO after_row;
    PERFORM tool_audit.governance_event('approval.consume',
        jsonb_build_object('request_id', after_row.request_id, 'action', after_row.action,
                           'before', to_jsonb(before_row) - 'payload_digest',
                           'after', to_jsonb(after_row) - 'payload_digest'),
        NULL, after_row.tenant_id);
    RETURN after_row.request_id;
END
$$;
COMMENT ON FUNCTION tool_audit.consume_approval(text, jsonb) IS
    'Uses the caller''s approved request for exactly this action and payload, once; raises 42501 when there is none (a tool_audit.approval.consume admin event)';

-- approval_gate(action, payload): consume_approval() when
-- tool_audit.require_dual_approval is on (returns the request id), nothing
-- when it is off (NULL).  What the extension's own sensitive operations
-- call; callable only by the owner (its own functions).
CREATE FUNCTION tool_audit.approval_gate(action text, payload jsonb) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN tool_audit.dual_approval_required()
                THEN tool_audit.consume_approval(approval_gate.action, approval_gate.payload) END
$$;
COMMENT ON FUNCTION tool_audit.approval_gate(text, jsonb) IS
    'With tool_audit.require_dual_approval on, consume_approval(); with it off, NULL; for the extension''s own functions';

-- ---------------------------------------------------------------------------
-- Break-the-glass (1.5, doc/governance.md): the insert trigger flags an
-- emergency access (tool_calls.break_glass, with "break_glass_reason" in
-- session_metadata, src/insert.c); a queue lists the flagged calls no
-- review has closed; review_break_glass() records a review, audited.
-- ---------------------------------------------------------------------------

-- the flagged calls only: the queue reads this index, not the table
CREATE INDEX tool_calls_break_glass ON tool_audit.tool_calls (id) WHERE break_glass;

CREATE SEQUENCE tool_audit.break_glass_reviews_review_id_seq;
CREATE TABLE tool_audit.break_glass_reviews (
    review_id      bigint PRIMARY KEY DEFAULT nextval('tool_audit.break_glass_reviews_review_id_seq'),
    call_id        bigint NOT NULL,
    call_event_id  uuid NOT NULL,
    tenant_id      text,
    outcome        text NOT NULL
                   CONSTRAINT outcome_is_known CHECK (outcome IN ('justified', 'unjustified', 'needs_followup')),
    note           text NOT NULL,
    reviewed_by    text NOT NULL,
    reviewed_login text NOT NULL,
    reviewed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    admin_event_id bigint NOT NULL
);
ALTER SEQUENCE tool_audit.break_glass_reviews_review_id_seq
    OWNED BY tool_audit.break_glass_reviews.review_id;
-- one closing review per call (needs_followup leaves it open)
CREATE UNIQUE INDEX break_glass_reviews_closed ON tool_audit.break_glass_reviews (call_id)
    WHERE outcome <> 'needs_followup';
CREATE INDEX break_glass_reviews_by_call ON tool_audit.break_glass_reviews (call_id, review_id);
COMMENT ON TABLE tool_audit.break_glass_reviews IS
    'Reviews of break-the-glass accesses: justified or unjustified close one, needs_followup keeps it in the queue; written only by review_break_glass()';

ALTER TABLE tool_audit.break_glass_reviews ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.break_glass_reviews
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY reader_tenant ON tool_audit.break_glass_reviews
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));

-- the queue: flagged calls without a closing review, oldest first; what a
-- reader sees of it is what row-level security lets it see of both tables
CREATE VIEW tool_audit.break_glass_queue WITH (security_invoker = true) AS
SELECT t.id AS call_id,
       t.event_id,
       t.recorded_at,
       t.tenant_id,
       t.user_id,
       t.user_role,
       t.tool_name,
       t.subject_id,
       t.purpose,
       t.session_metadata ->> 'break_glass_reason' AS reason,
       r.outcome AS last_outcome,
       r.reviewed_by AS last_reviewed_by,
       r.reviewed_at AS last_reviewed_at
  FROM tool_audit.tool_calls t
  LEFT JOIN LATERAL (
        SELECT b.outcome, b.reviewed_by, b.reviewed_at
          FROM tool_audit.break_glass_reviews b
         WHERE b.call_id = t.id
         ORDER BY b.review_id DESC
         LIMIT 1) r ON true
 WHERE t.break_glass
   AND r.outcome IS DISTINCT FROM 'justified' AND r.outcome IS DISTINCT FROM 'unjustified';
COMMENT ON VIEW tool_audit.break_glass_queue IS
    'Break-the-glass accesses not yet closed by a review (never reviewed, or last reviewed needs_followup)';

CREATE FUNCTION tool_audit.review_break_glass(call_id bigint, outcome text, note text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    me text := tool_audit.acting_role();
    login text := tool_audit.approval_person();
    c tool_audit.tool_calls;
    last_review tool_audit.break_glass_reviews;
    after_row tool_audit.break_glass_reviews;
    ev_id bigint;
BEGIN
    IF NOT pg_has_role(me::name, 'tool_audit_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only tool_audit_admin can review break-the-glass accesses'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF call_id IS NULL THEN
        RAISE EXCEPTION 'call_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF outcome IS NULL OR outcome NOT IN ('justified', 'unjustified', 'needs_followup') THEN
        RAISE EXCEPTION 'invalid value for argument "outcome": expected justified, unjustified or needs_followup'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF note IS NULL OR btrim(note) = '' THEN
        RAISE EXCEPTION 'invalid value for argument "note": must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    note := tool_audit.sanitize_text(note);
    -- one review at a time: the last review read below stays the last
    LOCK TABLE tool_audit.break_glass_reviews IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO c FROM tool_audit.tool_calls t WHERE t.id = review_break_glass.call_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no tool call has this call_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF c.break_glass IS NOT TRUE THEN
        RAISE EXCEPTION 'tool call % is not a break-the-glass access', c.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF tool_audit.approval_same_person(login, c.recorded_by) OR me = c.recorded_by THEN
        RAISE EXCEPTION 'a break-the-glass access must be reviewed by another person than the role that recorded it'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO last_review FROM tool_audit.break_glass_reviews b
     WHERE b.call_id = c.id ORDER BY b.review_id DESC LIMIT 1;
    IF FOUND AND last_review.outcome <> 'needs_followup' THEN
        RAISE EXCEPTION 'tool call % was already reviewed (%, review %)', c.id, last_review.outcome,
                last_review.review_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A review that closed an access is final; its event is in tool_audit.admin_events.';
    END IF;
    after_row := ROW(nextval('tool_audit.break_glass_reviews_review_id_seq'), c.id, c.event_id, c.tenant_id,
                     outcome, note, me, login, now(), NULL);
    ev_id := tool_audit.governance_event('break_glass.review',
        jsonb_build_object('call_id', c.id, 'call_event_id', c.event_id, 'outcome', outcome,
                           'before', CASE WHEN last_review.review_id IS NOT NULL THEN to_jsonb(last_review) END,
                           'after', to_jsonb(after_row) - 'admin_event_id'),
        note, c.tenant_id);
    after_row.admin_event_id := ev_id;
    INSERT INTO tool_audit.break_glass_reviews SELECT after_row.*;
    RETURN after_row.review_id;
END
$$;
COMMENT ON FUNCTION tool_audit.review_break_glass(bigint, text, text) IS
    'Records the review of a break-the-glass access (justified, unjustified: final; needs_followup: stays in the queue); tool_audit_admin only, by another person than the role that recorded it; a tool_audit.break_glass.review admin event';

-- (1.5) the extension's sensitive operations take an approved request when
-- tool_audit.require_dual_approval is on; is_break_glass() reads the flag
CREATE OR REPLACE FUNCTION tool_audit.rotate_pseudonym_key(key_id text DEFAULT NULL, key bytea DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_id text;
    new_id text;
BEGIN
    IF rotate_pseudonym_key.key IS NOT NULL AND length(rotate_pseudonym_key.key) < 32 THEN
        RAISE EXCEPTION 'pseudonymization keys must be at least 32 bytes'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The key given has %s bytes.', length(rotate_pseudonym_key.key));
    END IF;
    -- not quoted: a key passed as key_id by mistake must not reach the server log
    IF rotate_pseudonym_key.key_id !~ '^[A-Za-z0-9_-]{1,63}$' THEN
        RAISE EXCEPTION 'invalid value for argument "key_id": expected 1 to 63 letters, digits, "_" or "-"'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a key put in the wrong place. Key ids appear in every pseudonym.';
    END IF;
    -- (1.5) with tool_audit.require_dual_approval on, an approved request
    PERFORM tool_audit.approval_gate('tool_audit.pseudonym_key.rotate',
                                     jsonb_build_object('key_id', rotate_pseudonym_key.key_id));
    LOCK TABLE tool_audit.pseudonym_keys IN SHARE ROW EXCLUSIVE MODE;
    SELECT k.key_id INTO old_id FROM tool_audit.pseudonym_keys k WHERE k.active;
    new_id := coalesce(rotate_pseudonym_key.key_id,
                       'k' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS'));
    INSERT INTO tool_audit.pseudonym_keys (key_id, key, active)
    VALUES (new_id, coalesce(rotate_pseudonym_key.key, tool_audit.random_key(32)), true);
    PERFORM tool_audit.record_own_event('pseudonym_key.rotate',
                                        jsonb_build_object('before', old_id, 'after', new_id));
    RETURN new_id;
END
$$;
-- set_retention_policy() takes one as well: it is replaced once, with its
-- final text, at the end of this script (a later 1.5 change alters it too)
CREATE OR REPLACE FUNCTION tool_audit.set_retention_override(tenant_id text, policy_name text,
                                                  retention_days integer, reason text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.retention_overrides;
    after_row tool_audit.retention_overrides;
    policy_days integer;
    had_one boolean;
BEGIN
    IF tenant_id IS NULL OR tenant_id = '' THEN
        RAISE EXCEPTION 'invalid value for argument "tenant_id": expected a tenant id'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention_days IS NULL OR retention_days <= 0 THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": expected a positive number of days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE tool_audit.retention_policies IN SHARE ROW EXCLUSIVE MODE;
    SELECT p.retention_days INTO policy_days FROM tool_audit.retention_policies p
     WHERE p.policy_name = set_retention_override.policy_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid value for argument "policy_name": no such retention policy'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF retention_days < policy_days THEN
        RAISE EXCEPTION 'invalid value for argument "retention_days": under the policy''s % days', policy_days
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A tenant''s contract can only lengthen retention.';
    END IF;
    SELECT * INTO before_row FROM tool_audit.retention_overrides o
     WHERE o.tenant_id = set_retention_override.tenant_id
       AND o.policy_name = set_retention_override.policy_name;
    had_one := FOUND;
    -- (1.5) an override that shortens the tenant's retention
    IF had_one AND retention_days < before_row.retention_days THEN
        PERFORM tool_audit.approval_gate('tool_audit.retention.set_override',
            jsonb_build_object('tenant_id', tenant_id, 'policy_name', policy_name,
                               'retention_days', retention_days));
    END IF;
    INSERT INTO tool_audit.retention_overrides AS o
        (tenant_id, policy_name, retention_days, reason, changed_by)
    VALUES (set_retention_override.tenant_id, set_retention_override.policy_name,
            set_retention_override.retention_days, set_retention_override.reason,
            tool_audit.acting_role())
    ON CONFLICT ON CONSTRAINT retention_overrides_pkey DO UPDATE
       SET retention_days = excluded.retention_days, reason = excluded.reason,
           changed_at = now(), changed_by = excluded.changed_by
    RETURNING * INTO after_row;
    RETURN tool_audit.retention_event('override', CASE WHEN had_one THEN to_jsonb(before_row) END,
                                      to_jsonb(after_row), reason, tenant_id);
END
$$;
CREATE OR REPLACE FUNCTION tool_audit.release_hold(hold_id bigint, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h tool_audit.legal_holds;
BEGIN
    IF hold_id IS NULL THEN
        RAISE EXCEPTION 'hold_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO h FROM tool_audit.legal_holds l WHERE l.hold_id = release_hold.hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no legal hold has this hold_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF h.released_at IS NOT NULL THEN
        RAISE EXCEPTION 'this legal hold is already released'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- (1.5) with tool_audit.require_dual_approval on, an approved request
    PERFORM tool_audit.approval_gate('tool_audit.hold.release', jsonb_build_object('hold_id', h.hold_id));
    UPDATE tool_audit.legal_holds l
       SET released_at = now(), released_by = tool_audit.acting_role(),
           release_reason = release_hold.reason
     WHERE l.hold_id = h.hold_id;
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('tool_audit.hold.release', tool_audit.acting_role(), 'user', h.scope ->> 'tenant_id',
            jsonb_build_object('hold_id', h.hold_id, 'scope', h.scope), release_hold.reason);
END
$$;
-- No SET clause (1.5): inlined per row, as fhir_action() above
CREATE OR REPLACE FUNCTION tool_audit.is_break_glass(r tool_audit.tool_calls) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(r.break_glass, false)
        OR r.session_metadata OPERATOR(pg_catalog.@>) '{"break_glass": true}'::pg_catalog.jsonb
        OR coalesce(pg_catalog.lower(pg_catalog.btrim(r.purpose))
                    OPERATOR(pg_catalog.=) ANY ('{break_glass,break-glass,emergency}'::pg_catalog.text[]), false)
$$;
COMMENT ON FUNCTION tool_audit.is_break_glass(tool_audit.tool_calls) IS
    'True if the tool call was an emergency access: flagged break_glass, "break_glass": true in its context, or a break-glass or emergency purpose';

-- new functions: nothing for PUBLIC (the fresh install revokes it from all)
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tool_audit FROM PUBLIC;

-- (1.5) dual approval: writers and admins ask and use their approvals,
-- admins approve and reject; everyone reads the requests row-level
-- security lets them see; the rest is the owner's
GRANT SELECT ON tool_audit.approval_requests
    TO tool_audit_admin, tool_audit_reader, tool_audit_writer;
GRANT EXECUTE ON FUNCTION
    tool_audit.request_approval(text, jsonb, text),
    tool_audit.consume_approval(text, jsonb),
    tool_audit.dual_approval_required(),
    tool_audit.approval_lifetime(),
    tool_audit.approval_person()
    TO tool_audit_admin, tool_audit_writer;
GRANT EXECUTE ON FUNCTION
    tool_audit.approve(bigint, text),
    tool_audit.reject(bigint, text)
    TO tool_audit_admin;

-- (1.5) break-the-glass: admins review, admins and readers read the queue
-- and the reviews (readers: their tenants')
GRANT SELECT ON tool_audit.break_glass_reviews, tool_audit.break_glass_queue
    TO tool_audit_admin, tool_audit_reader;
GRANT EXECUTE ON FUNCTION tool_audit.review_break_glass(bigint, text, text) TO tool_audit_admin;

-- pg_dump keeps them (extension tables are otherwise not dumped)
-- (1.5) dual approval's requests and the break-the-glass reviews
SELECT pg_catalog.pg_extension_config_dump('tool_audit.approval_requests', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.approval_requests_request_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.break_glass_reviews', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.break_glass_reviews_review_id_seq', '');

-- ---------------------------------------------------------------------------
-- Impersonation and reads of the audit trail (issue 13): as in
-- sql/install/52_impersonation.sql and 58_read_audit.sql
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- Impersonation (1.5): an application's admin user (adm_7) acting as one of
-- its users (usr_1).  The application records it, as it records tool calls:
-- the admin and the user are the application's ids, not database roles, so
-- the writer role (the application) and the admin role may start and end
-- one.  While one is open, the insert triggers stamp impersonated_by on the
-- rows of that user in that tenant (src/impersonation.c); it stops by
-- itself at its expiry.  doc/governance.md.
-- ---------------------------------------------------------------------------
CREATE SEQUENCE tool_audit.impersonations_impersonation_id_seq;
CREATE TABLE tool_audit.impersonations (
    impersonation_id bigint PRIMARY KEY
                     DEFAULT nextval('tool_audit.impersonations_impersonation_id_seq'),
    tenant_id      text,
    admin_id       text NOT NULL,
    target_user    text NOT NULL,
    reason         text NOT NULL,
    started_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    started_by     text NOT NULL,
    start_event_id bigint NOT NULL,
    ended_at       timestamptz,
    ended_by       text,
    end_event_id   bigint,
    CONSTRAINT expires_after_start CHECK (expires_at > started_at)
);
ALTER SEQUENCE tool_audit.impersonations_impersonation_id_seq
    OWNED BY tool_audit.impersonations.impersonation_id;
COMMENT ON TABLE tool_audit.impersonations IS
    'Impersonations started with start_impersonation(); open (ended_at NULL) until end_impersonation() or, after expires_at, close_expired_impersonations()';

-- every backend drops its copy of the open impersonations at a change
CREATE TRIGGER impersonations_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.impersonations
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();
ALTER TABLE tool_audit.impersonations ENABLE ALWAYS TRIGGER impersonations_changed;

-- impersonation_event(): an impersonation.* admin event, the admin as its
-- actor; returns the stored row's id and time
CREATE FUNCTION tool_audit.impersonation_event(event_type text, admin text, tenant_id text,
                                               payload jsonb, reason text,
                                               OUT event_id bigint, OUT occurred_at timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('impersonation.' || impersonation_event.event_type, impersonation_event.admin, 'user',
            impersonation_event.tenant_id, impersonation_event.payload, impersonation_event.reason)
    RETURNING id, occurred_at
$$;
COMMENT ON FUNCTION tool_audit.impersonation_event(text, text, text, jsonb, text) IS
    'Records an "impersonation." admin event with the admin as actor; callable only by the owner (its own functions)';

-- close_expired_impersonations(): closes every open impersonation past its
-- expiry, each with an impersonation.expire event (the rows written after
-- the expiry were never stamped: this makes the end visible in the trail)
CREATE FUNCTION tool_audit.close_expired_impersonations() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i tool_audit.impersonations;
    e record;
    closed integer := 0;
BEGIN
    FOR i IN SELECT * FROM tool_audit.impersonations m
              WHERE m.ended_at IS NULL AND m.expires_at <= statement_timestamp()
              ORDER BY m.impersonation_id FOR UPDATE
    LOOP
        e := tool_audit.impersonation_event('expire', i.admin_id, i.tenant_id,
                 jsonb_build_object('impersonation_id', i.impersonation_id, 'target_user', i.target_user,
                                    'started_at', tool_audit.iso8601_utc(i.started_at),
                                    'expired_at', tool_audit.iso8601_utc(i.expires_at)),
                 NULL);
        UPDATE tool_audit.impersonations m
           SET ended_at = i.expires_at, ended_by = 'expired', end_event_id = e.event_id
         WHERE m.impersonation_id = i.impersonation_id;
        closed := closed + 1;
    END LOOP;
    RETURN closed;
END
$$;
COMMENT ON FUNCTION tool_audit.close_expired_impersonations() IS
    'Closes the impersonations past their expiry, each with an impersonation.expire admin event; returns how many';

-- impersonation_caller_check(tenant_id): a caller bound to tenants may act
-- in those only
CREATE FUNCTION tool_audit.impersonation_caller_check(tenant_id text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound text[] := tool_audit.bound_tenants();
BEGIN
    IF bound IS NOT NULL AND (tenant_id IS NULL OR NOT tenant_id = ANY (bound)) THEN
        RAISE EXCEPTION 'the caller is bound to other tenants than the impersonation''s'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A role bound with tool_audit.bind_tenant() impersonates in its own tenants only.';
    END IF;
END
$$;
COMMENT ON FUNCTION tool_audit.impersonation_caller_check(text) IS
    'Raises 42501 when the caller is bound to tenants and the given tenant is not one of them';

CREATE FUNCTION tool_audit.start_impersonation(admin text, target_user text, reason text,
                                               max_minutes integer, tenant_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clean_admin text;
    clean_target text;
    clean_tenant text;
    id bigint;
    e record;
BEGIN
    -- errors name the argument, never its value
    IF admin IS NULL OR admin = '' THEN
        RAISE EXCEPTION 'admin must not be null or empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF target_user IS NULL OR target_user = '' THEN
        RAISE EXCEPTION 'target_user must not be null or empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be null or empty'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Say why, for example the support ticket.';
    END IF;
    IF max_minutes IS NULL OR max_minutes < 1 OR max_minutes > 1440 THEN
        RAISE EXCEPTION 'invalid value for argument "max_minutes": expected 1 to 1440 minutes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tool_audit.impersonation_caller_check(tenant_id);
    -- the ids as the audit rows will hold them (the sanitizer's value rules:
    -- the trigger compares the sanitized row)
    clean_admin := tool_audit.sanitize_text(admin);
    clean_target := tool_audit.sanitize_text(target_user);
    clean_tenant := tool_audit.sanitize_text(tenant_id);
    IF clean_admin = clean_target THEN
        RAISE EXCEPTION 'invalid value for argument "target_user": an admin cannot impersonate itself'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE tool_audit.impersonations IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tool_audit.close_expired_impersonations();
    -- one open impersonation per user, tenant and starting role: another
    -- application's user of the same id is another user
    IF EXISTS (SELECT FROM tool_audit.impersonations m
                WHERE m.ended_at IS NULL AND m.target_user = clean_target
                  AND m.tenant_id IS NOT DISTINCT FROM clean_tenant
                  AND m.started_by = tool_audit.acting_role()) THEN
        RAISE EXCEPTION 'the user is already being impersonated'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'End that impersonation with tool_audit.end_impersonation() first.';
    END IF;
    id := nextval('tool_audit.impersonations_impersonation_id_seq');
    e := tool_audit.impersonation_event('start', clean_admin, clean_tenant,
             jsonb_build_object('impersonation_id', id, 'target_user', clean_target,
                                'max_minutes', max_minutes),
             reason);
    INSERT INTO tool_audit.impersonations
        (impersonation_id, tenant_id, admin_id, target_user, reason, started_at, expires_at,
         started_by, start_event_id)
    VALUES (id, clean_tenant, clean_admin, clean_target,
            tool_audit.sanitize_text(reason), e.occurred_at,
            e.occurred_at + make_interval(mins => max_minutes), tool_audit.acting_role(), e.event_id);
    RETURN id;
END
$$;
COMMENT ON FUNCTION tool_audit.start_impersonation(text, text, text, integer, text) IS
    'Starts an impersonation of an application user by an application admin in a tenant, for at most max_minutes, as an impersonation.start admin event; returns its id';

CREATE FUNCTION tool_audit.end_impersonation(admin text, target_user text, tenant_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i tool_audit.impersonations;
    e record;
    me text := tool_audit.acting_role();
    is_admin boolean := pg_has_role(tool_audit.acting_role()::name, 'tool_audit_admin', 'MEMBER');
BEGIN
    IF admin IS NULL OR target_user IS NULL THEN
        RAISE EXCEPTION 'admin and target_user must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM tool_audit.impersonation_caller_check(tenant_id);
    LOCK TABLE tool_audit.impersonations IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tool_audit.close_expired_impersonations();
    -- the caller's own impersonation (started_by); an admin may end
    -- another role's, its own first
    SELECT * INTO i FROM tool_audit.impersonations m
     WHERE m.ended_at IS NULL AND m.admin_id = tool_audit.sanitize_text(end_impersonation.admin)
       AND m.target_user = tool_audit.sanitize_text(end_impersonation.target_user)
       AND m.tenant_id IS NOT DISTINCT FROM tool_audit.sanitize_text(end_impersonation.tenant_id)
       AND (m.started_by = me OR is_admin)
     ORDER BY m.started_by = me DESC, m.impersonation_id
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    e := tool_audit.impersonation_event('end', i.admin_id, i.tenant_id,
             jsonb_build_object('impersonation_id', i.impersonation_id, 'target_user', i.target_user,
                                'started_at', tool_audit.iso8601_utc(i.started_at)),
             NULL);
    UPDATE tool_audit.impersonations m
       SET ended_at = e.occurred_at, ended_by = me, end_event_id = e.event_id
     WHERE m.impersonation_id = i.impersonation_id;
    RETURN i.impersonation_id;
END
$$;
COMMENT ON FUNCTION tool_audit.end_impersonation(text, text, text) IS
    'Ends the admin''s open impersonation of the user in the tenant started by the calling role (an admin: by any role), as an impersonation.end admin event; ended_by is the calling role; returns its id, or NULL if none was open';

-- ---------------------------------------------------------------------------
-- Reads of the audit trail (1.5): every report and export records who ran
-- it, with what arguments and how many rows it returned, as an audit.read
-- admin event in the same chains (written as the owner: the type is kept
-- for record_read(), like the reserved "tool_audit." types).  A read-only
-- transaction cannot write it: the report is refused (25006); a hot standby
-- too, unless its operator set tool_audit.unrecorded_standby_reads.
-- doc/governance.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.record_read(function_name text, arguments jsonb, row_count bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound text[];
    tenant text;
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        IF pg_is_in_recovery() AND coalesce(current_setting('tool_audit.unrecorded_standby_reads', true), 'off') = 'on' THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'tool_audit records every read of the audit trail, and a read-only transaction cannot record %()', function_name
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = CASE WHEN pg_is_in_recovery()
                              THEN 'Run it on the primary, or let this standby run reports unrecorded with tool_audit.unrecorded_standby_reads = on in its configuration.'
                              ELSE 'Run it in a read-write transaction.' END;
    END IF;
    bound := tool_audit.bound_tenants();
    tenant := nullif(current_setting('tool_audit.tenant', true), '');
    -- a bound reader names only its own tenants: one that set tool_audit.tenant
    -- to another read none of that tenant's rows, and its read is not written
    -- into that tenant's chain (where its role and tenants would show)
    IF tenant IS NOT NULL AND bound IS NOT NULL AND NOT (tenant = ANY (bound)) THEN
        tenant := NULL;
    END IF;
    IF tenant IS NULL AND cardinality(bound) = 1 THEN
        tenant := bound[1];
    END IF;
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload)
    VALUES ('audit.read', tool_audit.acting_role(), 'user', tenant,
            jsonb_build_object('function', function_name, 'arguments', coalesce(arguments, '{}'),
                               'rows', row_count)
            || CASE WHEN bound IS NOT NULL THEN jsonb_build_object('bound_tenants', to_jsonb(bound))
                    ELSE '{}' END);
END
$$;
COMMENT ON FUNCTION tool_audit.record_read(text, jsonb, bigint) IS
    'Records a read of the audit trail (function, arguments, rows returned) as an audit.read admin event of the caller; the reports and exports call it';

-- read_report(): who ran which report, with what arguments and how many
-- rows; of one subject (the reports given that subject_id, compared as the
-- sanitizer stores it) or all, since a time.  Read through row-level
-- security as the caller; itself recorded.
CREATE FUNCTION tool_audit.read_report(subject_id text DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS TABLE (occurred_at timestamptz, read_by text, function_name text, arguments jsonb,
               row_count bigint, tenant_id text, event_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    by_subject boolean := read_report.subject_id IS NOT NULL;
    stored_subject text;
    n bigint;
BEGIN
    IF by_subject THEN
        stored_subject := tool_audit.sanitize(jsonb_build_object('arguments',
                              jsonb_build_object('subject_id', read_report.subject_id)))->'arguments'->>'subject_id';
    END IF;
    RETURN QUERY
    SELECT e.occurred_at, e.actor, e.payload->>'function', e.payload->'arguments',
           (e.payload->>'rows')::bigint, e.tenant_id, e.id
      FROM tool_audit.admin_events e
     WHERE e.event_type = 'audit.read'
       AND e.occurred_at >= CASE WHEN since IS NULL THEN '-infinity'::timestamptz ELSE since END
       AND (NOT by_subject OR e.payload->'arguments'->>'subject_id' = stored_subject)
     ORDER BY e.occurred_at, e.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('read_report',
                                   jsonb_build_object('subject_id', read_report.subject_id,
                                                      'since', tool_audit.iso8601_utc(since)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.read_report(text, timestamptz) IS
    'Who read the audit trail: every audit.read event since a time, or those of reports of one subject';

-- log_event() refuses audit.read, which only the reports record
CREATE OR REPLACE FUNCTION tool_audit.log_event(
    event_type text,
    actor      text,
    payload    jsonb,
    context    jsonb DEFAULT '{}')
RETURNS tool_audit.admin_events
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ctx jsonb := coalesce(context, '{}');
    stored tool_audit.admin_events;
BEGIN
    IF jsonb_typeof(ctx) <> 'object' THEN
        RAISE EXCEPTION 'context must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is a JSON %s.', jsonb_typeof(ctx));
    END IF;
    IF event_type IS NULL OR actor IS NULL THEN
        RAISE EXCEPTION 'event_type and actor must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_path_exists(ctx, '$.keyvalue() ? ((@.value.type() == "object" || @.value.type() == "array") && (@.key == "tenant_id" || @.key == "reason" || @.key == "actor_type" || @.key == "source_ip" || @.key == "event_id"))') THEN
        RAISE EXCEPTION 'tenant_id, reason, actor_type, source_ip and event_id in context must be scalars'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Put structured context under another key: it goes to metadata, sanitized.';
    END IF;
    -- the errors below name the field, never its value: a secret passed in
    -- the wrong place must not reach the server log
    IF starts_with(event_type, 'tool_audit.') THEN
        RAISE EXCEPTION 'event types starting with "tool_audit." are reserved for tool_audit itself'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF event_type = 'audit.read' THEN
        RAISE EXCEPTION 'event type "audit.read" is recorded by tool_audit''s reports only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF event_type !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' THEN
        RAISE EXCEPTION 'invalid value for argument "event_type": expected a dotted lowercase name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'For example prompt.update, policy.update, impersonation.start, killswitch.enable.';
    END IF;
    IF coalesce(ctx->>'actor_type', 'user') NOT IN ('user', 'service') THEN
        RAISE EXCEPTION 'invalid value for context field "actor_type": expected user or service'
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;

    INSERT INTO tool_audit.admin_events
        (event_id, event_type, actor, actor_type, tenant_id, payload, reason, source_ip, metadata)
    VALUES
        (coalesce(tool_audit.typed_value(ctx->>'event_id', NULL::uuid, 'event_id'), gen_random_uuid()),
         log_event.event_type, log_event.actor, coalesce(ctx->>'actor_type', 'user'),
         ctx->>'tenant_id', log_event.payload, ctx->>'reason',
         tool_audit.typed_value(ctx->>'source_ip', NULL::inet, 'source_ip'),
         ctx - ARRAY['event_id', 'actor_type', 'tenant_id', 'reason', 'source_ip'])
    RETURNING * INTO stored;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit row for event "%" was not stored', event_type
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Something on tool_audit.admin_events discarded the insert.';
    END IF;
    RETURN stored;
END
$$;
COMMENT ON FUNCTION tool_audit.log_event(text, text, jsonb, jsonb) IS
    'Records one administrative event (sanitized, hashed and chained) and returns the stored admin_events row';

-- the reports and exports record their reads (VOLATILE now: they write);
-- attribution() and access_report() show an impersonation
CREATE OR REPLACE FUNCTION tool_audit.calls_by_conversation(conversation_id text)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.conversation_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('calls_by_conversation', jsonb_build_object('conversation_id', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.calls_by_conversation(text) IS
    'The tool calls of a conversation, by turn and then time';

CREATE OR REPLACE FUNCTION tool_audit.calls_by_user(user_id text, since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.user_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'user_id'::pg_catalog.text)
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $2 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $2 END
     ORDER BY t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('calls_by_user', jsonb_build_object('user_id', $1, 'since', tool_audit.iso8601_utc($2)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.calls_by_user(text, timestamptz) IS
    'The tool calls of a user since a time (all of them if NULL), by time';

CREATE OR REPLACE FUNCTION tool_audit.failures(since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE NOT t.success
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $1 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $1 END
     ORDER BY t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('failures', jsonb_build_object('since', tool_audit.iso8601_utc($1)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.failures(timestamptz) IS
    'The failed tool calls since a time (all of them if NULL), by time';

-- tool_stats() and conversation_timeline() record their reads too: they are
-- replaced once, with their final text, at the end of this script (later
-- 1.5 changes alter them too)

CREATE OR REPLACE FUNCTION tool_audit.attribution(call_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    line text;
BEGIN
    SELECT format('User %s (%s)%s %s %s %s %s [%s]',
                  coalesce(nullif(t.user_id, ''), 'unknown'), coalesce(nullif(t.user_role, ''), 'unknown'),
                  CASE WHEN t.impersonated_by IS NOT NULL THEN ' impersonated by ' || t.impersonated_by ELSE '' END,
                  tool_audit.report_mark('arrow'), coalesce(nullif(t.model, ''), 'unknown'),
                  tool_audit.report_mark('arrow'), t.tool_name, t.call_trigger)
      INTO line
      FROM tool_audit.tool_calls t
     WHERE t.id = tool_audit.required_arg($1, 'call_id'::pg_catalog.text);
    PERFORM tool_audit.record_read('attribution', jsonb_build_object('call_id', $1),
                                   CASE WHEN line IS NULL THEN 0 ELSE 1 END);
    RETURN line;
END
$$;
COMMENT ON FUNCTION tool_audit.attribution(bigint) IS
    'Who made a tool call, as one line of text: user, role, model, tool and what prompted it';

-- access_report() (which also shows an impersonation) and export_jsonl()
-- record their reads too: they are replaced once, with their final text, at
-- the end of this script

CREATE OR REPLACE FUNCTION tool_audit.export_fhir(start_time timestamptz, end_time timestamptz,
                                       subject_id text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    IF export_fhir.subject_id IS NULL THEN
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    ELSE
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.subject_id = export_fhir.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_fhir',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time),
                                                      'subject_id', export_fhir.subject_id), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_fhir(timestamptz, timestamptz, text) IS
    'The tool calls in a period, of one subject if given, as FHIR R4 AuditEvent resources';

REVOKE ALL ON FUNCTION
    tool_audit.impersonation_event(text, text, text, jsonb, text),
    tool_audit.close_expired_impersonations(),
    tool_audit.impersonation_caller_check(text),
    tool_audit.start_impersonation(text, text, text, integer, text),
    tool_audit.end_impersonation(text, text, text),
    tool_audit.record_read(text, jsonb, bigint),
    tool_audit.read_report(text, timestamptz)
    FROM PUBLIC;

-- (1.5) impersonation: the application (writer) records its admins'
-- impersonations, as it records their calls; admins may too, and read the
-- table; the extension's helpers are the owner's
GRANT SELECT ON tool_audit.impersonations TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION
    tool_audit.start_impersonation(text, text, text, integer, text),
    tool_audit.end_impersonation(text, text, text),
    tool_audit.close_expired_impersonations()
    TO tool_audit_writer, tool_audit_admin;

-- (1.5) reads of the audit trail: whoever may run a report records its read
-- (record_read() writes as the owner, and only the caller's own reads);
-- readers and admins list the reads their row-level security lets them see
GRANT EXECUTE ON FUNCTION tool_audit.record_read(text, jsonb, bigint)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION tool_audit.read_report(text, timestamptz)
    TO tool_audit_reader, tool_audit_admin;

-- pg_dump keeps the impersonations (after the 1.4 tables, as in 95_dump_and_guards.sql)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.impersonations', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.impersonations_impersonation_id_seq', '');

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
       t.recorded_at, t.started_at,
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

-- a call begun and ended is one line of conversation_timeline() and one
-- access of access_report() (with the ended row's outcome); export_jsonl()
-- carries call_phase, call_event_id and caller_txid; a started row
-- (success NULL) has no outcome yet: fhir_audit_event() omits it, the
-- otel_tool_spans view says UNSET.  Each is replaced once, with its final
-- text, at the end of this script.

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

-- idempotent retries and the client's time (issue 15): the column comes
-- earlier in this script, after the other new columns

-- a retry of a stored call (same tenant_id, conversation_id, tool_call_id and
-- call_phase) is found through this index and not stored again (the insert
-- trigger and log_call(), src/idempotency.c); not unique: databases created
-- before 1.5 may hold rows sharing a tool_call_id
CREATE INDEX tool_calls_tool_call_id
    ON tool_audit.tool_calls (tool_call_id) WHERE tool_call_id IS NOT NULL;

-- started_at in the reports and exports where a call's time is shown (the
-- other keys, lines and columns are unchanged for rows without one):
-- conversation_timeline(), access_report(), export_jsonl() and the
-- otel_tool_spans view are replaced once, with their final text, at the end
-- of this script
CREATE OR REPLACE VIEW tool_audit.tool_calls_csv WITH (security_invoker = true) AS
SELECT t.id, t.event_id, t.recorded_at, t.tenant_id, t.conversation_id, t.turn_number,
       t.user_id, t.user_role, t.model, t.tool_name, t.tool_call_id, t.call_trigger,
       t.purpose, t.subject_id, t.arguments::text AS arguments,
       t.result_summary::text AS result_summary, t.success, t.error, t.duration_ms,
       abbrev(t.client_ip) AS client_ip, t.user_agent, t.session_metadata::text AS session_metadata,
       t.recorded_by, encode(t.row_hash, 'hex') AS row_hash, t.chain_id, t.chain_lane,
       t.chain_seq, encode(t.chain_hash, 'hex') AS chain_hash, t.started_at
  FROM tool_audit.tool_calls t;

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

-- set_retention_policy() takes applies_to data_changes: it is replaced once,
-- with its final text, at the end of this script

-- hold_report(): row changes too; a hold covers a change through the tool
-- call it was made in (subject, user, conversation, tool) and by the
-- change's own tenant and time, as purge_expired() and erase_subject() read it
-- (hold_report() is replaced once, with its final text, at the end of this
-- script)

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
-- the same instant), and a CSV view like the other tables' (export_jsonl()
-- is replaced once, with its final text, at the end of this script)

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

-- ---------------------------------------------------------------------------
-- (1.5) pg_dump keeps the change rows and where their ids stand; after the
-- other tables' (95_dump_and_guards.sql), so that the extension's list of
-- configuration tables reads the same in a fresh and an upgraded database
-- ---------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('tool_audit.data_changes', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.data_changes_id_seq', '');

-- ---- alerts (issue 13): sql/install/75_alerts.sql, its grants and dumps ----

-- ---------------------------------------------------------------------------
-- Alerts (1.5): rules an admin edits through functions (each edit a
-- tool_audit.alert.rule admin event), matched by the insert triggers in C
-- from a per-backend copy (src/alerts.c), and the alerts they raise, in the
-- transaction of the row that fires them, with a NOTIFY tool_audit_alerts
-- delivered at commit.  doc/alerts.md.
-- ---------------------------------------------------------------------------

-- Rule kinds: on admin_events, event_type (event types or patterns, '*' any
-- characters); on tool_calls, tool_name, failure, break_glass (a row with
-- break_glass = true), and the rate rules same_subject (one user, one
-- subject, threshold or more rows within window_seconds), tool_failures
-- (more than threshold failures of a tool within window_seconds),
-- distinct_subjects (one user, more than threshold distinct subjects within
-- window_seconds) and business_hours (a call of the rule's tenant outside
-- params' hours); check: raised by the extension's own checks (verify(),
-- verify_digest(), run_alert_checks()), never by a row.  matches narrows
-- event_type, tool_name, failure, break_glass and the rate rules to event
-- types or tool names (empty: any); tenant_id to one tenant (NULL: any).
-- window_seconds is also how long a burst lasts: a row that fires a rule
-- within window_seconds of the last row of its open (unacknowledged) alert
-- updates that alert instead of raising another.
CREATE TABLE tool_audit.alert_rules (
    rule_name      text PRIMARY KEY
                   CONSTRAINT rule_name_is_identifier CHECK (rule_name ~ '^[a-z][a-z0-9_]{0,62}$'),
    kind           text NOT NULL
                   CONSTRAINT kind_is_known CHECK (kind IN ('event_type', 'tool_name', 'failure',
                       'break_glass', 'same_subject', 'tool_failures', 'distinct_subjects',
                       'business_hours', 'check')),
    severity       text NOT NULL
                   CONSTRAINT severity_is_known CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    enabled        boolean NOT NULL DEFAULT true,
    matches        text[] NOT NULL DEFAULT '{}',
    tenant_id      text,
    threshold      integer CONSTRAINT threshold_in_range CHECK (threshold BETWEEN 1 AND 10000),
    window_seconds integer NOT NULL DEFAULT 3600
                   CONSTRAINT window_seconds_positive CHECK (window_seconds > 0),
    params         jsonb NOT NULL DEFAULT '{}',
    description    text,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     text NOT NULL DEFAULT 'tool_audit'
);
COMMENT ON TABLE tool_audit.alert_rules IS
    'Alert rules, matched against every new audit row; changed by admins through set_alert_rule() and disable_alert_rule() only';

CREATE SEQUENCE tool_audit.alerts_alert_id_seq;
CREATE TABLE tool_audit.alerts (
    alert_id          bigint PRIMARY KEY DEFAULT nextval('tool_audit.alerts_alert_id_seq'),
    rule_name         text NOT NULL,
    kind              text NOT NULL,
    severity          text NOT NULL,
    tenant_id         text,
    burst_key         text NOT NULL DEFAULT '',
    first_at          timestamptz NOT NULL,
    last_at           timestamptz NOT NULL,
    count             bigint NOT NULL DEFAULT 1,
    tool_call_ids     bigint[] NOT NULL DEFAULT '{}',
    admin_event_ids   bigint[] NOT NULL DEFAULT '{}',
    detail            jsonb NOT NULL DEFAULT '{}',
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    acknowledged_note text
);
ALTER SEQUENCE tool_audit.alerts_alert_id_seq OWNED BY tool_audit.alerts.alert_id;
COMMENT ON TABLE tool_audit.alerts IS
    'Alerts raised by alert_rules: one row per burst, updated while it lasts; changed by the extension''s functions only';
COMMENT ON COLUMN tool_audit.alerts.burst_key IS
    'What a burst is about (event type, tool, user, user and subject); rows of one rule, tenant and key within its window update one alert';
COMMENT ON COLUMN tool_audit.alerts.tool_call_ids IS 'The first 100 tool_calls rows that fired the alert (count has them all)';
COMMENT ON COLUMN tool_audit.alerts.admin_event_ids IS 'The first 100 admin_events rows that fired the alert (count has them all)';
CREATE INDEX alerts_open ON tool_audit.alerts (rule_name, burst_key, last_at)
    WHERE acknowledged_at IS NULL;

-- the rate rules' index probes (src/alerts.c): one user's rows about one
-- subject, and one tool's failures, within a window
CREATE INDEX tool_calls_user_subject
    ON tool_audit.tool_calls (user_id, subject_id, recorded_at)
    WHERE user_id IS NOT NULL AND subject_id IS NOT NULL;
CREATE INDEX tool_calls_tool_failures
    ON tool_audit.tool_calls (tool_name, recorded_at) WHERE NOT success;

-- every backend drops its copy of the rules at a change (a relcache
-- invalidation of the table, as for the sanitizing rules)
CREATE TRIGGER alert_rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.alert_rules
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();

-- An alert is never deleted, and of a raised alert only the burst
-- (last_at, count, rows: growing) and, once, its acknowledgement change.
CREATE FUNCTION tool_audit.alerts_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (1.5) erase_subject() and purge_expired() change and remove alerts
    IF TG_LEVEL = 'ROW' AND tool_audit.in_sanctioned_change() THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION '% is not allowed on tool_audit.alerts', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Alerts are acknowledged with tool_audit.acknowledge_alert(); only purge_expired() and erase_subject() remove or change them.';
    END IF;
    IF NEW.alert_id <> OLD.alert_id OR NEW.rule_name <> OLD.rule_name OR NEW.kind <> OLD.kind
       OR NEW.severity <> OLD.severity OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
       OR NEW.burst_key <> OLD.burst_key OR NEW.first_at <> OLD.first_at
       OR NEW.last_at < OLD.last_at OR NEW.count < OLD.count
       OR NOT (OLD.tool_call_ids <@ NEW.tool_call_ids) OR NOT (OLD.admin_event_ids <@ NEW.admin_event_ids)
       OR (OLD.acknowledged_at IS NOT NULL AND
           (NEW.acknowledged_at IS DISTINCT FROM OLD.acknowledged_at
            OR NEW.acknowledged_by IS DISTINCT FROM OLD.acknowledged_by
            OR NEW.acknowledged_note IS DISTINCT FROM OLD.acknowledged_note)) THEN
        RAISE EXCEPTION 'an alert can only grow while its burst lasts, and be acknowledged once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION tool_audit.alerts_guard() IS
    'Trigger: refuses DELETE and TRUNCATE on alerts, and any UPDATE but a burst growing or a first acknowledgement';
CREATE TRIGGER alerts_guard
    BEFORE UPDATE OR DELETE ON tool_audit.alerts
    FOR EACH ROW EXECUTE FUNCTION tool_audit.alerts_guard();
CREATE TRIGGER alerts_guard_truncate
    BEFORE TRUNCATE ON tool_audit.alerts
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.alerts_guard();
ALTER TABLE tool_audit.alerts
    ENABLE ALWAYS TRIGGER alerts_guard,
    ENABLE ALWAYS TRIGGER alerts_guard_truncate;

-- A dump holds the seeded rules that were changed (changed_by <>
-- 'tool_audit'); restored into a database that has the seeds, the restored
-- row replaces the seed.
CREATE FUNCTION tool_audit.alert_rules_restore_seed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE tool_audit.alert_rules r
       SET kind = NEW.kind, severity = NEW.severity, enabled = NEW.enabled,
           matches = NEW.matches, tenant_id = NEW.tenant_id, threshold = NEW.threshold,
           window_seconds = NEW.window_seconds, params = NEW.params,
           description = NEW.description, changed_at = NEW.changed_at, changed_by = NEW.changed_by
     WHERE r.rule_name = NEW.rule_name;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION tool_audit.alert_rules_restore_seed() IS
    'Trigger: a rule inserted under the name of an existing one (a restore of a changed seed) updates that rule instead';
CREATE TRIGGER alert_rules_restore_seed
    BEFORE INSERT ON tool_audit.alert_rules
    FOR EACH ROW EXECUTE FUNCTION tool_audit.alert_rules_restore_seed();
ALTER TABLE tool_audit.alert_rules
    ENABLE ALWAYS TRIGGER alert_rules_changed,
    ENABLE ALWAYS TRIGGER alert_rules_restore_seed;

-- On at install (an admin changes or disables them, audited)
INSERT INTO tool_audit.alert_rules
    (rule_name, kind, severity, enabled, matches, threshold, window_seconds, description)
VALUES
    ('high_risk_events', 'event_type', 'high', true,
     '{prompt.update,impersonation.*,killswitch.*,policy.update,billing.*}', NULL, 3600,
     'A high-risk administrative action'),
    ('audit_changes', 'event_type', 'high', true,
     '{tool_audit.alert.rule,tool_audit.alert.schedule,tool_audit.sanitize_rule.*,tool_audit.pseudonym_key.*,tool_audit.retention.policy,tool_audit.retention.override,tool_audit.retention.floor,tool_audit.retention.schedule,tool_audit.hold.*,tool_audit.tenant_binding.*}',
     NULL, 3600,
     'A change to the audit trail''s alert rules, sanitizing rules, keys, retention policies, legal holds or tenant bindings'),
    ('break_glass', 'break_glass', 'high', true, '{}', NULL, 3600,
     'A break-the-glass (emergency) access'),
    ('extension_roles', 'event_type', 'high', true, '{tool_audit.role.*}', NULL, 3600,
     'A grant, revoke or rename of one of the extension''s roles (tool_audit_writer, _reader, _admin, _verifier), directly or through another role'),
    ('same_subject_hourly', 'same_subject', 'medium', true, '{}', 10, 3600,
     'One user accessed the same subject 10 or more times within an hour'),
    ('tool_failures', 'tool_failures', 'medium', false, '{}', 5, 600,
     'More than 5 failures of one tool within 10 minutes'),
    ('distinct_subjects_hourly', 'distinct_subjects', 'medium', false, '{}', 50, 3600,
     'One user touched more than 50 distinct subjects within an hour'),
    ('audit_integrity', 'check', 'critical', true, '{}', NULL, 86400,
     'verify() or verify_digest() found problems'),
    ('audit_protections', 'check', 'critical', true, '{}', NULL, 86400,
     'A protection of the audit trail is disabled (verify_protections())'),
    ('signing_key_missing', 'check', 'high', true, '{}', NULL, 86400,
     'tool_audit.signing_key_file is set but the key cannot be loaded'),
    ('tenant_silent', 'check', 'medium', true, '{}', 5, 21600,
     'A tenant that logged on at least 5 of the previous 7 days has logged nothing for 6 hours');

-- notify_alert(): queues NOTIFY tool_audit_alerts with the payload, sent
-- just before the commit (src/alerts.c): a NOTIFY made in the transaction
-- would stop it from being prepared (two-phase commit).  Owner only.
CREATE FUNCTION tool_audit.notify_alert(payload text) RETURNS void
    AS 'MODULE_PATHNAME', 'notify_alert' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.notify_alert(text) IS
    'Queues a NOTIFY tool_audit_alerts with the payload, sent at commit (none for a prepared transaction); callable only by the owner (raise_alert())';

-- raise_alert(): the one way alerts are raised, by the insert triggers (C,
-- as the owner), the extension's checks and other extension functions.  A
-- disabled or missing rule raises nothing (NULL).  Within the rule's window
-- of the last row of the open alert of the same rule, tenant and key, the
-- alert grows (count, last_at, rows) instead.  A transaction lock on the
-- burst keeps two transactions from growing one alert at once; it is only
-- tried, never waited for: a row whose burst another open transaction is
-- raising raises an alert of its own (writers never wait on each other).  NOTIFY
-- tool_audit_alerts carries the alert's id, rule, severity, count and
-- whether it is new, and no tenant or key: any role can LISTEN to any
-- channel, so a listener reads the alert itself, through row-level security.
-- Callable by the owner only.
CREATE FUNCTION tool_audit.raise_alert(rule_name text, tenant_id text DEFAULT NULL,
                                       burst_key text DEFAULT '', tool_call_id bigint DEFAULT NULL,
                                       admin_event_id bigint DEFAULT NULL, detail jsonb DEFAULT '{}',
                                       at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r tool_audit.alert_rules;
    t timestamptz := coalesce(at, clock_timestamp());
    k text := coalesce(burst_key, '');
    a tool_audit.alerts;
    is_new boolean := false;
BEGIN
    SELECT * INTO r FROM tool_audit.alert_rules ar WHERE ar.rule_name = raise_alert.rule_name;
    IF NOT FOUND OR (NOT r.enabled AND NOT coalesce(raise_alert.detail ? 'weakened_rule', false)) THEN
        RETURN NULL;
    END IF;
    IF raise_alert.detail ? 'weakened_rule' AND r.severity IN ('low', 'medium') THEN
        r.severity := 'high';
    END IF;
    -- never wait: a transaction still raising the same burst keeps it, and
    -- this row raises an alert of its own
    IF pg_try_advisory_xact_lock(hashtextextended(concat_ws(E'\x1f', 'tool_audit alert', r.rule_name,
                                                            raise_alert.tenant_id, k), 0)) THEN
    UPDATE tool_audit.alerts x
       SET last_at = greatest(x.last_at, t), count = x.count + 1,
           tool_call_ids = CASE WHEN raise_alert.tool_call_id IS NOT NULL AND cardinality(x.tool_call_ids) < 100
                                THEN x.tool_call_ids || raise_alert.tool_call_id ELSE x.tool_call_ids END,
           admin_event_ids = CASE WHEN raise_alert.admin_event_id IS NOT NULL AND cardinality(x.admin_event_ids) < 100
                                  THEN x.admin_event_ids || raise_alert.admin_event_id ELSE x.admin_event_ids END,
           detail = x.detail || coalesce(raise_alert.detail, '{}')
     WHERE x.alert_id = (SELECT o.alert_id FROM tool_audit.alerts o
                          WHERE o.rule_name = r.rule_name AND o.burst_key = k
                            AND o.tenant_id IS NOT DISTINCT FROM raise_alert.tenant_id
                            AND o.acknowledged_at IS NULL
                            AND o.last_at >= t - make_interval(secs => r.window_seconds)
                          ORDER BY o.alert_id DESC LIMIT 1)
    RETURNING * INTO a;
    is_new := NOT FOUND;
    ELSE
        is_new := true;
    END IF;
    IF is_new THEN
        INSERT INTO tool_audit.alerts (rule_name, kind, severity, tenant_id, burst_key, first_at, last_at,
                                       tool_call_ids, admin_event_ids, detail)
        VALUES (r.rule_name, r.kind, r.severity, raise_alert.tenant_id, k, t, t,
                CASE WHEN raise_alert.tool_call_id IS NULL THEN '{}'::bigint[]
                     ELSE ARRAY[raise_alert.tool_call_id] END,
                CASE WHEN raise_alert.admin_event_id IS NULL THEN '{}'::bigint[]
                     ELSE ARRAY[raise_alert.admin_event_id] END,
                coalesce(raise_alert.detail, '{}'))
        RETURNING * INTO a;
    END IF;
    PERFORM tool_audit.notify_alert(json_build_object(
        'alert_id', a.alert_id, 'rule_name', a.rule_name, 'severity', a.severity,
        'count', a.count, 'new', is_new)::text);
    RETURN a.alert_id;
END
$$;
COMMENT ON FUNCTION tool_audit.raise_alert(text, text, text, bigint, bigint, jsonb, timestamptz) IS
    'Raises an alert of a rule, or grows the open alert of its burst, and notifies tool_audit_alerts; callable only by the owner (the extension''s own code)';

-- alert_event(): the admin event of an alert rule change or acknowledgement
CREATE FUNCTION tool_audit.alert_event(event_type text, before jsonb, after jsonb,
                                       reason text, tenant_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH e AS (
        INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
        VALUES ('tool_audit.alert.' || alert_event.event_type, tool_audit.acting_role(), 'user',
                alert_event.tenant_id,
                jsonb_build_object('before', alert_event.before, 'after', alert_event.after),
                alert_event.reason)
        RETURNING id)
    SELECT jsonb_build_object('before', alert_event.before, 'after', alert_event.after,
                              'admin_event_id', e.id)
      FROM e
$$;
COMMENT ON FUNCTION tool_audit.alert_event(text, jsonb, jsonb, text, text) IS
    'Records an alert rule change or acknowledgement as a "tool_audit.alert." admin event with before/after; callable only by the owner (its own functions)';

-- set_alert_rule(): creates a rule or changes one; an argument left NULL
-- keeps an existing rule's value.  The kind of a rule never changes.
CREATE FUNCTION tool_audit.set_alert_rule(rule_name text, kind text DEFAULT NULL,
                                          severity text DEFAULT NULL, matches text[] DEFAULT NULL,
                                          threshold integer DEFAULT NULL,
                                          window_seconds integer DEFAULT NULL,
                                          tenant_id text DEFAULT NULL, params jsonb DEFAULT NULL,
                                          enabled boolean DEFAULT NULL, reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.alert_rules;
    after_row tool_audit.alert_rules;
    had_one boolean;
    k text;
    p jsonb;
    result jsonb;
BEGIN
    -- errors name the argument, never its value
    IF rule_name IS NULL OR rule_name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid value for argument "rule_name": expected a lowercase identifier of 1 to 63 characters'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    LOCK TABLE tool_audit.alert_rules IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO before_row FROM tool_audit.alert_rules r WHERE r.rule_name = set_alert_rule.rule_name;
    had_one := FOUND;
    IF had_one AND kind IS NOT NULL AND kind <> before_row.kind THEN
        RAISE EXCEPTION 'invalid value for argument "kind": the rule is of kind %', before_row.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Disable this rule and create another one of the other kind.';
    END IF;
    k := coalesce(kind, before_row.kind);
    IF k IS NULL OR k NOT IN ('event_type', 'tool_name', 'failure', 'break_glass', 'same_subject',
                              'tool_failures', 'distinct_subjects', 'business_hours', 'check') THEN
        RAISE EXCEPTION 'invalid value for argument "kind": expected event_type, tool_name, failure, break_glass, same_subject, tool_failures, distinct_subjects, business_hours or check'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(severity, before_row.severity) IS NULL
       OR coalesce(severity, before_row.severity) NOT IN ('low', 'medium', 'high', 'critical') THEN
        RAISE EXCEPTION 'invalid value for argument "severity": expected low, medium, high or critical'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF matches IS NOT NULL AND (array_ndims(matches) > 1 OR
        EXISTS (SELECT FROM unnest(matches) m WHERE m IS NULL OR m = '')) THEN
        RAISE EXCEPTION 'invalid value for argument "matches": expected a list of event types, tool names or patterns (''*'': any characters), none empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF k = 'event_type' AND coalesce(cardinality(coalesce(matches, before_row.matches)), 0) = 0 THEN
        RAISE EXCEPTION 'invalid value for argument "matches": an event_type rule needs event types or patterns'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF threshold IS NOT NULL AND (threshold <= 0 OR threshold > 10000) THEN
        RAISE EXCEPTION 'invalid value for argument "threshold": expected a number from 1 to 10000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF k IN ('same_subject', 'tool_failures', 'distinct_subjects')
       AND coalesce(threshold, before_row.threshold) IS NULL THEN
        RAISE EXCEPTION 'invalid value for argument "threshold": a % rule needs one', k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF window_seconds IS NOT NULL AND window_seconds <= 0 THEN
        RAISE EXCEPTION 'invalid value for argument "window_seconds": expected a positive number of seconds'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tenant_id = '' THEN
        RAISE EXCEPTION 'invalid value for argument "tenant_id": expected a tenant id or NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p := coalesce(params, before_row.params, '{}');
    IF k = 'business_hours' THEN
        IF coalesce(tenant_id, before_row.tenant_id) IS NULL THEN
            RAISE EXCEPTION 'invalid value for argument "tenant_id": a business_hours rule is for one tenant'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(p) <> 'object'
           OR coalesce(p->>'start', '') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
           OR coalesce(p->>'end', '') !~ '^([01][0-9]|2[0-4]):[0-5][0-9]$'
           OR (p ? 'days' AND (jsonb_typeof(p->'days') <> 'array' OR jsonb_array_length(p->'days') = 0
               OR EXISTS (SELECT FROM jsonb_array_elements(p->'days') d
                           WHERE jsonb_typeof(d) <> 'number' OR d::text NOT IN ('1','2','3','4','5','6','7'))))
           OR (p ? 'time_zone' AND (jsonb_typeof(p->'time_zone') <> 'string'
               OR NOT EXISTS (SELECT FROM pg_timezone_names z WHERE z.name = p->>'time_zone'))) THEN
            RAISE EXCEPTION 'invalid value for argument "params": expected {"start": "HH:MM", "end": "HH:MM", "days": [1..7, Monday 1], "time_zone": a time zone name}'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF jsonb_typeof(p) <> 'object' THEN
        RAISE EXCEPTION 'invalid value for argument "params": expected a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- disabling a rule needs a second admin's approval when
    -- tool_audit.require_dual_approval is on
    IF had_one AND before_row.enabled AND set_alert_rule.enabled IS FALSE THEN
        PERFORM tool_audit.approval_gate('tool_audit.alert_rule.disable',
                                         jsonb_build_object('rule_name', set_alert_rule.rule_name));
    END IF;
    IF had_one THEN
        UPDATE tool_audit.alert_rules r
           SET severity = coalesce(set_alert_rule.severity, r.severity),
               matches = coalesce(set_alert_rule.matches, r.matches),
               threshold = coalesce(set_alert_rule.threshold, r.threshold),
               window_seconds = coalesce(set_alert_rule.window_seconds, r.window_seconds),
               tenant_id = coalesce(set_alert_rule.tenant_id, r.tenant_id),
               params = p,
               enabled = coalesce(set_alert_rule.enabled, r.enabled),
               changed_at = now(), changed_by = tool_audit.acting_role()
         WHERE r.rule_name = set_alert_rule.rule_name
        RETURNING * INTO after_row;
    ELSE
        INSERT INTO tool_audit.alert_rules
            (rule_name, kind, severity, enabled, matches, tenant_id, threshold, window_seconds,
             params, changed_by)
        VALUES (set_alert_rule.rule_name, k, severity, coalesce(enabled, true),
                coalesce(matches, '{}'), set_alert_rule.tenant_id, set_alert_rule.threshold,
                coalesce(set_alert_rule.window_seconds, 3600), p, tool_audit.acting_role())
        RETURNING * INTO after_row;
    END IF;
    result := tool_audit.alert_event('rule', CASE WHEN had_one THEN to_jsonb(before_row) END,
                                     to_jsonb(after_row), reason);
    -- a rule disabled or weakened (it would fire less, or lower) raises a
    -- high alert, unless a rule already raised one for this event (as
    -- audit_changes does while it is on and unchanged)
    IF had_one AND before_row.enabled
       AND (NOT after_row.enabled
            OR array_position(ARRAY['low', 'medium', 'high', 'critical'], after_row.severity)
               < array_position(ARRAY['low', 'medium', 'high', 'critical'], before_row.severity)
            OR NOT (before_row.matches <@ after_row.matches)
            OR (cardinality(before_row.matches) = 0 AND cardinality(after_row.matches) > 0
                AND k <> 'event_type')
            OR after_row.threshold > before_row.threshold
            OR (k IN ('same_subject', 'tool_failures', 'distinct_subjects')
                AND after_row.window_seconds < before_row.window_seconds)
            OR after_row.tenant_id IS DISTINCT FROM before_row.tenant_id
            OR after_row.params IS DISTINCT FROM before_row.params)
       AND NOT EXISTS (SELECT FROM tool_audit.alerts a
                        WHERE a.admin_event_ids @> ARRAY[(result->>'admin_event_id')::bigint]
                          AND a.severity IN ('high', 'critical')) THEN
        PERFORM tool_audit.raise_alert('audit_changes', NULL, 'weakened:' || set_alert_rule.rule_name, NULL,
                                       (result->>'admin_event_id')::bigint,
                                       jsonb_build_object('weakened_rule', set_alert_rule.rule_name));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION tool_audit.set_alert_rule(text, text, text, text[], integer, integer, text, jsonb, boolean, text) IS
    'Creates or changes an alert rule (NULL arguments keep the rule''s values) and records it as a tool_audit.alert.rule admin event; disabling or weakening a rule raises a high alert, and disabling needs dual approval when it is required';

CREATE FUNCTION tool_audit.disable_alert_rule(rule_name text, reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.alert_rules;
    after_row tool_audit.alert_rules;
    result jsonb;
BEGIN
    SELECT * INTO before_row FROM tool_audit.alert_rules r
     WHERE r.rule_name = disable_alert_rule.rule_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid value for argument "rule_name": no such alert rule'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF before_row.enabled THEN
        PERFORM tool_audit.approval_gate('tool_audit.alert_rule.disable',
                                         jsonb_build_object('rule_name', disable_alert_rule.rule_name));
    END IF;
    UPDATE tool_audit.alert_rules r
       SET enabled = false, changed_at = now(), changed_by = tool_audit.acting_role()
     WHERE r.rule_name = disable_alert_rule.rule_name
    RETURNING * INTO after_row;
    result := tool_audit.alert_event('rule', to_jsonb(before_row), to_jsonb(after_row), reason);
    -- as set_alert_rule(): a rule switched off raises a high alert
    IF before_row.enabled
       AND NOT EXISTS (SELECT FROM tool_audit.alerts a
                        WHERE a.admin_event_ids @> ARRAY[(result->>'admin_event_id')::bigint]
                          AND a.severity IN ('high', 'critical')) THEN
        PERFORM tool_audit.raise_alert('audit_changes', NULL, 'weakened:' || disable_alert_rule.rule_name, NULL,
                                       (result->>'admin_event_id')::bigint,
                                       jsonb_build_object('weakened_rule', disable_alert_rule.rule_name));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION tool_audit.disable_alert_rule(text, text) IS
    'Disables an alert rule and records it as a tool_audit.alert.rule admin event; raises a high alert, and needs dual approval when it is required';

CREATE FUNCTION tool_audit.acknowledge_alert(id bigint, note text)
RETURNS tool_audit.alerts
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.alerts;
    after_row tool_audit.alerts;
    -- stored as the audit tables store free text: a secret pasted in the
    -- note is not kept in clear (the event's reason is sanitized by its
    -- insert trigger, the alerts row is not an audit row)
    clean_note text := tool_audit.sanitize_text(acknowledge_alert.note);
BEGIN
    SELECT * INTO before_row FROM tool_audit.alerts a WHERE a.alert_id = acknowledge_alert.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid value for argument "id": no such alert'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF before_row.acknowledged_at IS NOT NULL THEN
        RAISE EXCEPTION 'the alert is already acknowledged'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE tool_audit.alerts a
       SET acknowledged_by = tool_audit.acting_role(), acknowledged_at = now(),
           acknowledged_note = clean_note
     WHERE a.alert_id = acknowledge_alert.id
    RETURNING * INTO after_row;
    PERFORM tool_audit.alert_event('acknowledge',
        jsonb_build_object('alert_id', before_row.alert_id, 'rule_name', before_row.rule_name,
                           'count', before_row.count, 'first_at', before_row.first_at,
                           'last_at', before_row.last_at),
        jsonb_build_object('alert_id', after_row.alert_id, 'acknowledged_by', after_row.acknowledged_by,
                           'acknowledged_at', after_row.acknowledged_at),
        clean_note, before_row.tenant_id);
    RETURN after_row;
END
$$;
COMMENT ON FUNCTION tool_audit.acknowledge_alert(bigint, text) IS
    'Acknowledges an alert (once) with a note, recorded as a tool_audit.alert.acknowledge admin event; its burst then ends';

-- ---------------------------------------------------------------------------
-- The periodic checks: protections, the signing key, silent tenants.
-- "Normally logs": a tenant with tool_calls rows on at least threshold (5)
-- of the 7 days before today (UTC); silent: none of its rows in the last
-- window_seconds (6 hours) of rule tenant_silent.  The daily counts are kept
-- in tenant_activity, filled from the rows recorded since the last check (an
-- index range scan on recorded_at), so a check never reads a week of rows.
-- ---------------------------------------------------------------------------
CREATE TABLE tool_audit.tenant_activity (
    tenant_id text NOT NULL,
    day       date NOT NULL,
    calls     bigint NOT NULL,
    last_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
COMMENT ON TABLE tool_audit.tenant_activity IS
    'Calls per tenant and day (UTC) seen by run_alert_checks(), for the silent-tenant check; the last 30 days';
CREATE TABLE tool_audit.alert_check_mark (
    one_row     boolean PRIMARY KEY DEFAULT true CONSTRAINT one_row CHECK (one_row),
    recorded_at timestamptz NOT NULL,
    id          bigint NOT NULL
);
COMMENT ON TABLE tool_audit.alert_check_mark IS
    'The last tool_calls row run_alert_checks() counted in tenant_activity';

CREATE FUNCTION tool_audit.run_alert_checks()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mark tool_audit.alert_check_mark;
    last_row record;
    silent_rule tool_audit.alert_rules;
    problems jsonb;
    key_file text := current_setting('tool_audit.signing_key_file', true);
    key_problem text;
    raised jsonb := '[]';
    t record;
    id bigint;
BEGIN
    -- protections, and tracked tables whose triggers are gone or disabled
    SELECT jsonb_agg(x.problem) INTO problems
      FROM (SELECT jsonb_build_object('table', p.table_name, 'problem', p.problem) AS problem
              FROM tool_audit.verify_protections() p
            UNION ALL
            SELECT jsonb_build_object('table', s.table_name, 'problem', 'tracking: ' || s.status)
              FROM tool_audit.tracking_status() s
             WHERE s.status NOT IN ('ok', 'table renamed')) x;
    IF problems IS NOT NULL THEN
        id := tool_audit.raise_alert('audit_protections', NULL, 'verify_protections', NULL, NULL,
                                     jsonb_build_object('problems', problems));
        raised := raised || jsonb_build_object('rule', 'audit_protections', 'alert_id', id);
    END IF;
    -- the signing key, when one is configured
    IF coalesce(key_file, '') <> '' THEN
        BEGIN
            IF tool_audit.signing_public_key() IS NULL THEN
                key_problem := 'no key';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            key_problem := SQLSTATE;
        END;
        IF key_problem IS NOT NULL THEN
            id := tool_audit.raise_alert('signing_key_missing', NULL, 'signing_key_file', NULL, NULL,
                                         jsonb_build_object('sqlstate', key_problem));
            raised := raised || jsonb_build_object('rule', 'signing_key_missing', 'alert_id', id);
        END IF;
    END IF;
    -- silent tenants: count the rows since the last check, by tenant and day
    LOCK TABLE tool_audit.alert_check_mark IN EXCLUSIVE MODE;
    SELECT * INTO mark FROM tool_audit.alert_check_mark;
    SELECT c.recorded_at, c.id INTO last_row FROM tool_audit.tool_calls c
     ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1;
    IF last_row.id IS NOT NULL THEN
        INSERT INTO tool_audit.tenant_activity AS a (tenant_id, day, calls, last_at)
        SELECT c.tenant_id, (c.recorded_at AT TIME ZONE 'UTC')::date, count(*), max(c.recorded_at)
          FROM tool_audit.tool_calls c
         WHERE c.tenant_id IS NOT NULL
           AND c.recorded_at >= coalesce(mark.recorded_at, c.recorded_at)
           AND (mark.id IS NULL OR (c.recorded_at, c.id) > (mark.recorded_at, mark.id))
           AND (c.recorded_at, c.id) <= (last_row.recorded_at, last_row.id)
           AND c.recorded_at >= now() - interval '30 days'
         GROUP BY 1, 2
        ON CONFLICT (tenant_id, day) DO UPDATE
           SET calls = a.calls + excluded.calls, last_at = greatest(a.last_at, excluded.last_at);
        INSERT INTO tool_audit.alert_check_mark AS m (one_row, recorded_at, id)
        VALUES (true, last_row.recorded_at, last_row.id)
        ON CONFLICT (one_row) DO UPDATE SET recorded_at = excluded.recorded_at, id = excluded.id;
    END IF;
    DELETE FROM tool_audit.tenant_activity a WHERE a.day < (now() AT TIME ZONE 'UTC')::date - 30;
    SELECT * INTO silent_rule FROM tool_audit.alert_rules r WHERE r.rule_name = 'tenant_silent';
    IF FOUND AND silent_rule.enabled THEN
        FOR t IN
            SELECT a.tenant_id, max(a.last_at) AS last_at,
                   count(*) FILTER (WHERE a.day >= (now() AT TIME ZONE 'UTC')::date - 7
                                      AND a.day < (now() AT TIME ZONE 'UTC')::date) AS days
              FROM tool_audit.tenant_activity a
             GROUP BY a.tenant_id
            HAVING count(*) FILTER (WHERE a.day >= (now() AT TIME ZONE 'UTC')::date - 7
                                      AND a.day < (now() AT TIME ZONE 'UTC')::date)
                       >= coalesce(silent_rule.threshold, 5)
               AND max(a.last_at) < now() - make_interval(secs => silent_rule.window_seconds)
             ORDER BY a.tenant_id
        LOOP
            id := tool_audit.raise_alert('tenant_silent', t.tenant_id, 'silent', NULL, NULL,
                                         jsonb_build_object('last_call_at', t.last_at, 'active_days', t.days));
            raised := raised || jsonb_build_object('rule', 'tenant_silent', 'tenant_id', t.tenant_id,
                                                   'alert_id', id);
        END LOOP;
    END IF;
    RETURN raised;
END
$$;
COMMENT ON FUNCTION tool_audit.run_alert_checks() IS
    'The periodic alert checks: protections disabled, tracked tables whose triggers are gone or disabled, the signing key missing, tenants that normally log gone silent; returns the alerts raised';

-- (1.5) require_pg_cron()'s message names the alert checks as well as the purge
CREATE OR REPLACE FUNCTION tool_audit.require_pg_cron(statement text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    cron_version text;
BEGIN
    SELECT e.extversion INTO cron_version FROM pg_extension e WHERE e.extname = 'pg_cron';
    IF cron_version IS NOT NULL THEN
        IF to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NULL THEN
            RAISE EXCEPTION 'pg_cron % is too old: tool_audit needs cron.schedule_in_database() (pg_cron 1.4)', cron_version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Install pg_cron 1.4 or later, run ALTER EXTENSION pg_cron UPDATE; in this database, and call this function again.';
        END IF;
        RETURN;
    END IF;
    IF cron_db = current_database() THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'pg_cron is loaded, and this is its database (cron.database_name).',
                  HINT = 'Run CREATE EXTENSION pg_cron; in this database, and call this function again.';
    END IF;
    IF coalesce(cron_db, '') = '' THEN
        RAISE EXCEPTION 'pg_cron is not loaded on this server'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'tool_audit runs its scheduled work (the purge, the alert checks) as pg_cron jobs, scheduled from the database where pg_cron is installed (cron.database_name).',
                  HINT = format('Install pg_cron (Debian: postgresql-15-cron), set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L in postgresql.conf, restart, run CREATE EXTENSION pg_cron; in this database, and call this function again.',
                                current_database());
    END IF;
    RAISE EXCEPTION 'pg_cron is installed in database %, not in this one', quote_ident(cron_db)
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = 'pg_cron''s jobs are managed from its own database (cron.database_name); the job itself runs in this one.',
              HINT = format('In database %s, as a superuser, run: %s', quote_ident(cron_db), statement);
END
$$;
COMMENT ON FUNCTION tool_audit.require_pg_cron(text) IS
    'Raises 55000, with the command to run in pg_cron''s database, unless pg_cron is installed in this one';

-- The checks as a pg_cron job, as the retention job (48_retention_schedule.sql)
CREATE FUNCTION tool_audit.schedule_alert_checks(schedule text DEFAULT '*/15 * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit alert checks in ' || current_database();
    command constant text := 'SELECT tool_audit.run_alert_checks()';
    job_role constant text := tool_audit.acting_role();
    spec constant text := btrim(schedule);
    replaced jsonb;
    job_id bigint;
BEGIN
    IF spec IS NULL OR length(spec) > 100
       OR spec !~ '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9]{1,2} seconds?|[0-9A-Za-z*,/$-]+( +[0-9A-Za-z*,/$-]+){4})$' THEN
        RAISE EXCEPTION 'invalid value for argument "schedule": expected a cron schedule'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'Five fields, minute hour day-of-month month day-of-week, as in ''*/15 * * * *'' (every 15 minutes); or @hourly; pg_cron 1.5 and later also take ''N seconds''.';
    END IF;
    IF NOT coalesce((SELECT r.rolcanlogin FROM pg_roles r WHERE r.rolname = job_role), false) THEN
        RAISE EXCEPTION 'the alert check job runs as the role that schedules it, and role % cannot log in', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Call schedule_alert_checks() as a login role that is a member of tool_audit_admin.';
    END IF;
    IF NOT has_function_privilege(job_role, 'tool_audit.run_alert_checks()', 'EXECUTE') THEN
        RAISE EXCEPTION 'the alert check job runs as the role that schedules it, and role % may not execute tool_audit.run_alert_checks()', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Grant tool_audit_admin to that role, or schedule as one that has it.';
    END IF;
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.schedule_in_database(%L, %L, %L, %L, %L);',
               job_name, spec, command, current_database(), job_role));
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    SELECT jsonb_agg(jsonb_build_object('job_id', j.jobid, 'schedule', j.schedule, 'command', j.command,
                                        'username', j.username) ORDER BY j.jobid)
      INTO replaced FROM cron.job j WHERE j.jobname = job_name AND j.database = current_database();
    PERFORM cron.unschedule(j.jobid) FROM cron.job j
      WHERE j.jobname = job_name AND j.database = current_database();
    BEGIN
        job_id := cron.schedule_in_database(job_name, spec, command, current_database(), job_role);
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'invalid value for argument "schedule": pg_cron does not accept it'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END;
    PERFORM tool_audit.alert_event('schedule', replaced,
        jsonb_build_object('job_id', job_id, 'job_name', job_name, 'schedule', spec, 'command', command,
                           'database', current_database(), 'username', job_role), NULL);
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION tool_audit.schedule_alert_checks(text) IS
    'Schedules run_alert_checks() as this database''s pg_cron job, run as the calling role, replacing any earlier one; returns the job id';

CREATE FUNCTION tool_audit.unschedule_alert_checks()
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit alert checks in ' || current_database();
    removed jsonb;
BEGIN
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L AND j.database = %L;',
               job_name, current_database()));
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    SELECT jsonb_agg(jsonb_build_object('job_id', j.jobid, 'schedule', j.schedule, 'command', j.command,
                                        'username', j.username) ORDER BY j.jobid)
      INTO removed FROM cron.job j WHERE j.jobname = job_name AND j.database = current_database();
    IF removed IS NULL THEN
        RETURN false;
    END IF;
    PERFORM tool_audit.approval_gate('tool_audit.alert_checks.unschedule', '{}');
    PERFORM cron.unschedule(j.jobid) FROM cron.job j
      WHERE j.jobname = job_name AND j.database = current_database();
    PERFORM tool_audit.alert_event('schedule', removed, NULL, NULL);
    RETURN true;
END
$$;
COMMENT ON FUNCTION tool_audit.unschedule_alert_checks() IS
    'Removes this database''s pg_cron alert check job; true if there was one; needs dual approval when it is required';

-- ---------------------------------------------------------------------------
-- Who sees alerts: row-level security as on tool_calls.  Nobody but the
-- extension's functions (the owner) writes them.
-- ---------------------------------------------------------------------------
ALTER TABLE tool_audit.alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.alerts
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY verifier_read ON tool_audit.alerts
    FOR SELECT TO tool_audit_verifier USING (true);
CREATE POLICY reader_tenant ON tool_audit.alerts
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));

REVOKE ALL ON tool_audit.alert_rules, tool_audit.alerts, tool_audit.tenant_activity,
    tool_audit.alert_check_mark FROM PUBLIC;
REVOKE ALL ON FUNCTION
    tool_audit.alerts_guard(), tool_audit.alert_rules_restore_seed(), tool_audit.notify_alert(text),
    tool_audit.raise_alert(text, text, text, bigint, bigint, jsonb, timestamptz),
    tool_audit.alert_event(text, jsonb, jsonb, text, text),
    tool_audit.set_alert_rule(text, text, text, text[], integer, integer, text, jsonb, boolean, text),
    tool_audit.disable_alert_rule(text, text),
    tool_audit.acknowledge_alert(bigint, text),
    tool_audit.run_alert_checks(),
    tool_audit.schedule_alert_checks(text),
    tool_audit.unschedule_alert_checks()
    FROM PUBLIC;

-- (1.5) alerts: admins read the rules and change them through the
-- functions, acknowledge alerts and run or schedule the checks; readers
-- (row-level security: their tenants), admins and the verifier read the
-- alerts; nobody writes them but the extension's own code
GRANT SELECT ON tool_audit.alert_rules, tool_audit.tenant_activity TO tool_audit_admin;
GRANT SELECT ON tool_audit.alerts TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.set_alert_rule(text, text, text, text[], integer, integer, text, jsonb, boolean, text),
    tool_audit.disable_alert_rule(text, text),
    tool_audit.acknowledge_alert(bigint, text),
    tool_audit.run_alert_checks(),
    tool_audit.schedule_alert_checks(text),
    tool_audit.unschedule_alert_checks()
    TO tool_audit_admin;

-- (1.5) alerts, and the alert rules once changed (a restore's rules replace
-- the seeds: alert_rules_restore_seed)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alert_rules', 'WHERE changed_by <> ''tool_audit''');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alerts_alert_id_seq', '');

-- (1.5) the reports' lookups: one row's changes (row_history, row_as_of: a
-- hash index, as a key may be long), one call's (changes_by_call, the
-- timeline), a table's TRUNCATEs
CREATE INDEX data_changes_row_key
    ON tool_audit.data_changes USING hash (row_key);
CREATE INDEX data_changes_call
    ON tool_audit.data_changes (call_event_id, id) WHERE call_event_id IS NOT NULL;
CREATE INDEX data_changes_truncate
    ON tool_audit.data_changes (table_name, id) WHERE operation = 'TRUNCATE';


-- ---------------------------------------------------------------------------
-- Tracked tables (1.5): track() installs tool_audit.track_change() (C,
-- src/track.c) on an application table, which records each row change into
-- data_changes linked to the tool call in progress; untrack() removes it.
-- Both are audited admin events.  doc/changes.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.track_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'track_change' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.track_change() IS
    'Trigger that tool_audit.track() installs on an application table: records each INSERT, UPDATE and DELETE (and refuses or records TRUNCATE) into data_changes';

CREATE TABLE tool_audit.tracked_tables (
    table_oid   regclass PRIMARY KEY,
    table_name  text NOT NULL,
    options     jsonb NOT NULL,
    tracked_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tracked_by  text NOT NULL
);
COMMENT ON TABLE tool_audit.tracked_tables IS 'The application tables track() installed its trigger on, with their options; written by track() and untrack() only';
-- pg_dump keeps which tables are tracked (98_tracking_dump.sql)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tracked_tables', '');

-- track(): checks the options, then (re)creates the two triggers, always
-- enabled (session_replication_role = replica does not skip them).  The
-- trigger's arguments carry the options (src/track.c reads them).
CREATE FUNCTION tool_audit.track(table_name regclass, options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opts jsonb := coalesce(track.options, '{}');
    rel regclass := track.table_name;
    kind "char";
    nsp text;
    qualified text;
    mode text := 'all';
    cols text[] := '{}';
    tenant text := '';
    trunc text := 'refuse';
    col text;
    before_opts jsonb;
    args text;
    normalized jsonb;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'argument "table_name" must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(opts) <> 'object' THEN
        RAISE EXCEPTION 'invalid value for argument "options": expected a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM jsonb_object_keys(opts) k
                WHERE k NOT IN ('columns', 'exclude', 'tenant_column', 'truncate')) THEN
        RAISE EXCEPTION 'invalid value for argument "options": its keys are columns, exclude, tenant_column and truncate'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF opts ? 'columns' AND opts ? 'exclude' THEN
        RAISE EXCEPTION 'invalid value for argument "options": columns and exclude cannot both be given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF opts ? 'columns' OR opts ? 'exclude' THEN
        mode := CASE WHEN opts ? 'columns' THEN 'include' ELSE 'exclude' END;
        IF jsonb_typeof(opts -> (CASE mode WHEN 'include' THEN 'columns' ELSE 'exclude' END)) <> 'array'
           OR EXISTS (SELECT FROM jsonb_array_elements(opts -> (CASE mode WHEN 'include' THEN 'columns' ELSE 'exclude' END)) e
                       WHERE jsonb_typeof(e) <> 'string') THEN
            RAISE EXCEPTION 'invalid value for argument "options": columns and exclude are arrays of column names'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT coalesce(array_agg(DISTINCT e ORDER BY e), '{}') INTO cols
          FROM jsonb_array_elements_text(opts -> (CASE mode WHEN 'include' THEN 'columns' ELSE 'exclude' END)) e;
    END IF;
    IF opts ? 'tenant_column' THEN
        IF jsonb_typeof(opts -> 'tenant_column') <> 'string' THEN
            RAISE EXCEPTION 'invalid value for argument "options": tenant_column is a column name'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        tenant := opts ->> 'tenant_column';
    END IF;
    IF opts ? 'truncate' THEN
        IF (opts ->> 'truncate') IS NULL OR (opts ->> 'truncate') NOT IN ('refuse', 'record') THEN
            RAISE EXCEPTION 'invalid value for argument "options": truncate is refuse or record'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        trunc := opts ->> 'truncate';
    END IF;

    SELECT c.relkind, n.nspname, format('%I.%I', n.nspname, c.relname)
      INTO kind, nsp, qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = rel;
    IF nsp IN ('tool_audit', 'pg_catalog', 'information_schema') OR nsp LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION 'table % cannot be tracked: it belongs to tool_audit or to the system', qualified
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', qualified USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = rel AND contype = 'p') THEN
        RAISE EXCEPTION 'table % has no primary key', qualified
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A change row names the row it changed by its primary key.';
    END IF;
    FOREACH col IN ARRAY cols || CASE WHEN tenant = '' THEN '{}'::text[] ELSE ARRAY[tenant] END LOOP
        IF NOT EXISTS (SELECT FROM pg_attribute
                        WHERE attrelid = rel AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'column "%" of table % does not exist', col, qualified
                USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;

    normalized := jsonb_build_object('truncate', trunc)
        || CASE mode WHEN 'include' THEN jsonb_build_object('columns', to_jsonb(cols))
                     WHEN 'exclude' THEN jsonb_build_object('exclude', to_jsonb(cols))
                     ELSE '{}' END
        || CASE WHEN tenant = '' THEN '{}' ELSE jsonb_build_object('tenant_column', tenant) END;
    SELECT t.options INTO before_opts FROM tool_audit.tracked_tables t WHERE t.table_oid = rel;
    SELECT string_agg(quote_literal(a), ', ') INTO args
      FROM unnest(ARRAY[mode, tenant, trunc] || cols) a;
    FOR col IN SELECT tgname FROM pg_trigger
                WHERE tgrelid = rel AND tgname IN ('tool_audit_track', 'tool_audit_track_truncate') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', col, qualified);
    END LOOP;
    EXECUTE format('CREATE TRIGGER tool_audit_track AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION tool_audit.track_change(%s)', qualified, args);
    EXECUTE format('CREATE TRIGGER tool_audit_track_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.track_change(%s)', qualified, args);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER tool_audit_track, '
                   'ENABLE ALWAYS TRIGGER tool_audit_track_truncate', qualified);
    INSERT INTO tool_audit.tracked_tables AS t (table_oid, table_name, options, tracked_by)
    VALUES (rel, qualified, normalized, tool_audit.acting_role())
    ON CONFLICT (table_oid) DO UPDATE
       SET table_name = excluded.table_name, options = excluded.options,
           tracked_at = excluded.tracked_at, tracked_by = excluded.tracked_by;
    PERFORM tool_audit.record_own_event('track',
        jsonb_build_object('table', qualified, 'before', before_opts, 'after', normalized));
    RETURN jsonb_build_object('table', qualified, 'options', normalized);
END
$$;
COMMENT ON FUNCTION tool_audit.track(regclass, jsonb) IS
    'Records every row change of the table into data_changes, linked to the tool call in progress; options: columns or exclude, tenant_column, truncate (refuse or record); an audited admin event';

CREATE FUNCTION tool_audit.untrack(table_name regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass := untrack.table_name;
    qualified text;
    before_opts jsonb;
    had boolean;
    trg name;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'argument "table_name" must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT format('%I.%I', n.nspname, c.relname) INTO qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    DELETE FROM tool_audit.tracked_tables t WHERE t.table_oid = rel RETURNING t.options INTO before_opts;
    had := FOUND OR EXISTS (SELECT FROM pg_trigger
                             WHERE tgrelid = rel AND tgname IN ('tool_audit_track', 'tool_audit_track_truncate')
                               AND tgfoid = 'tool_audit.track_change()'::regprocedure);
    IF had THEN
        -- a second admin's approval when tool_audit.require_dual_approval is on
        PERFORM tool_audit.approval_gate('tool_audit.untrack', jsonb_build_object('table', qualified));
        FOR trg IN SELECT tgname FROM pg_trigger
                    WHERE tgrelid = rel AND tgname IN ('tool_audit_track', 'tool_audit_track_truncate')
                      AND tgfoid = 'tool_audit.track_change()'::regprocedure LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', trg, qualified);
        END LOOP;
        PERFORM tool_audit.record_own_event('untrack',
            jsonb_build_object('table', qualified, 'before', before_opts, 'after', NULL));
    END IF;
    RETURN had;
END
$$;
COMMENT ON FUNCTION tool_audit.untrack(regclass) IS
    'Stops recording the table''s row changes (removes track()''s triggers); true if it was tracked; an audited admin event; needs dual approval when it is required';

-- tracking_status(): what became of each tracked table's triggers.  A table
-- owner can drop or disable them (ALTER TABLE ... DISABLE TRIGGER): this
-- shows it, as verify() shows a broken chain.
CREATE FUNCTION tool_audit.tracking_status()
RETURNS TABLE (table_name text, options jsonb, tracked_at timestamptz, tracked_by text, status text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.table_name, t.options, t.tracked_at, t.tracked_by,
           CASE
               WHEN c.oid IS NULL THEN 'table dropped'
               WHEN format('%I.%I', n.nspname, c.relname) <> t.table_name THEN 'table renamed'
               WHEN count(g.oid) < 2 THEN 'trigger dropped'
               WHEN bool_or(g.tgenabled <> 'A') THEN 'trigger disabled'
               ELSE 'ok'
           END
      FROM tool_audit.tracked_tables t
      LEFT JOIN pg_class c ON c.oid = t.table_oid
      LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_trigger g ON g.tgrelid = t.table_oid
                            AND g.tgname IN ('tool_audit_track', 'tool_audit_track_truncate')
                            AND g.tgfoid = 'tool_audit.track_change()'::regprocedure
     GROUP BY t.table_oid, t.table_name, t.options, t.tracked_at, t.tracked_by, c.oid, n.nspname, c.relname
    UNION ALL
    SELECT format('%I.%I', pn.nspname, pc.relname),
           t.options || jsonb_build_object('partition_of', t.table_name), t.tracked_at, t.tracked_by,
           CASE
               WHEN count(g.oid) < 1 THEN 'trigger dropped'
               WHEN bool_or(g.tgenabled <> 'A') THEN 'trigger disabled'
               ELSE 'ok'
           END
      FROM tool_audit.tracked_tables t
      JOIN pg_class c ON c.oid = t.table_oid AND c.relkind = 'p'
      CROSS JOIN LATERAL pg_partition_tree(c.oid) p
      JOIN pg_class pc ON pc.oid = p.relid
      JOIN pg_namespace pn ON pn.oid = pc.relnamespace
      LEFT JOIN pg_trigger g ON g.tgrelid = p.relid AND g.tgname = 'tool_audit_track'
                            AND g.tgfoid = 'tool_audit.track_change()'::regprocedure
     WHERE p.level > 0
     GROUP BY t.table_oid, t.table_name, t.options, t.tracked_at, t.tracked_by, pn.nspname, pc.relname
     ORDER BY 1
$$;
COMMENT ON FUNCTION tool_audit.tracking_status() IS
    'Each tracked table, and each partition of a tracked partitioned table, with its options and whether its triggers are still there and always enabled (ok, trigger disabled, trigger dropped, table renamed, table dropped)';

-- (1.5) the conversation timeline shows under each call the rows it changed:
-- conversation_timeline() is replaced once, with its final text, at the end
-- of this script

-- ---------------------------------------------------------------------------
-- Reports on row changes (1.5).  SECURITY INVOKER, like every report: a
-- reader sees the changes of its tenants only.  Each records its read as
-- an audit.read event (record_read(), 58_read_audit.sql), so they are
-- VOLATILE PL/pgSQL like the reports of 70_reports.sql.  doc/changes.md.
-- ---------------------------------------------------------------------------

-- the name data_changes.table_name holds for a table (what track_change()
-- writes: schema and table, quoted as needed)
CREATE FUNCTION tool_audit.tracked_table_name(tbl regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tool_audit.required_arg($1, 'table_name'::pg_catalog.text)
$$;
COMMENT ON FUNCTION tool_audit.tracked_table_name(regclass) IS
    'The name a table has in data_changes.table_name: schema and table, quoted as needed';

-- who made a change, as one line: the call's attribution, or the role and
-- application outside any tool call
CREATE FUNCTION tool_audit.change_author(c tool_audit.data_changes) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN $1.call_event_id IS NULL THEN
            format('outside any tool call: role %s, application %s', $1.recorded_by,
                   coalesce(nullif($1.application_name, ''), 'unknown'))
        ELSE coalesce(
            (SELECT format('User %s (%s) %s %s %s %s [%s]',
                           coalesce(nullif(t.user_id, ''), 'unknown'), coalesce(nullif(t.user_role, ''), 'unknown'),
                           tool_audit.report_mark('arrow'), coalesce(nullif(t.model, ''), 'unknown'),
                           tool_audit.report_mark('arrow'), t.tool_name, t.call_trigger)
               FROM tool_audit.tool_calls t WHERE t.event_id = $1.call_event_id
              ORDER BY t.id LIMIT 1),
            format('call %s (no visible tool_calls row), role %s', $1.call_event_id, $1.recorded_by))
    END
$$;
COMMENT ON FUNCTION tool_audit.change_author(tool_audit.data_changes) IS
    'Who made a row change, as one line: user, role, model, tool and trigger of its call, or the database role and application_name outside any tool call';

CREATE FUNCTION tool_audit.changes_by_call(call uuid)
RETURNS TABLE (change_id bigint, recorded_at timestamptz, table_name text, operation text,
               row_key jsonb, old_values jsonb, new_values jsonb, recorded_by text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT c.id, c.recorded_at, c.table_name, c.operation, c.row_key, c.old_values, c.new_values,
           c.recorded_by
      FROM tool_audit.data_changes c
     WHERE c.call_event_id = tool_audit.required_arg($1, 'call'::pg_catalog.text)
     ORDER BY c.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('changes_by_call', jsonb_build_object('call', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.changes_by_call(uuid) IS
    'The row changes a tool call made (its event_id): table, operation, key, changed columns before and after';

-- the change rows of one application row, oldest first, with the table's
-- TRUNCATE rows (which end every row): the query of row_changes(),
-- row_history() and row_as_of(), each of which records its own read
-- (58_read_audit.sql), once.  Unrecorded itself, as a SELECT on data_changes
-- is: it returns nothing the caller could not select.
CREATE FUNCTION tool_audit.row_change_rows(tbl regclass, key jsonb) RETURNS SETOF tool_audit.data_changes
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM (
        SELECT * FROM tool_audit.data_changes d
         WHERE d.table_name = tool_audit.tracked_table_name($1)
           AND d.row_key = tool_audit.required_arg($2, 'key'::pg_catalog.text)
        UNION ALL
        SELECT * FROM tool_audit.data_changes d
         WHERE d.table_name = tool_audit.tracked_table_name($1) AND d.operation = 'TRUNCATE') c
     ORDER BY c.id
$$;
COMMENT ON FUNCTION tool_audit.row_change_rows(regclass, jsonb) IS
    'The change rows of one row of a tracked table and the table''s TRUNCATE rows, oldest first, unrecorded: the query of row_changes(), row_history() and row_as_of(), which record the read';

CREATE FUNCTION tool_audit.row_changes(tbl regclass, key jsonb) RETURNS SETOF tool_audit.data_changes
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY SELECT * FROM tool_audit.row_change_rows($1, $2);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('row_changes', jsonb_build_object('table', tool_audit.tracked_table_name($1), 'key', $2), n);
END
$$;
COMMENT ON FUNCTION tool_audit.row_changes(regclass, jsonb) IS
    'The change rows of one row of a tracked table (by its primary key as recorded) and the table''s TRUNCATE rows, oldest first';

CREATE FUNCTION tool_audit.row_history(table_name regclass, key jsonb)
RETURNS TABLE (version integer, recorded_at timestamptz, operation text, changed_by text,
               conversation_id text, turn_number integer, call_event_id uuid,
               old_values jsonb, new_values jsonb, row_after jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c tool_audit.data_changes;
    state jsonb;
BEGIN
    version := 0;
    FOR c IN SELECT * FROM tool_audit.row_change_rows(row_history.table_name, row_history.key) LOOP
        CONTINUE WHEN c.operation = 'TRUNCATE' AND state IS NULL;
        state := CASE c.operation WHEN 'INSERT' THEN c.new_values
                                  WHEN 'UPDATE' THEN coalesce(state, '{}') || c.new_values
                                  ELSE NULL END;
        version := version + 1;
        recorded_at := c.recorded_at;
        operation := c.operation;
        changed_by := tool_audit.change_author(c);
        SELECT t.conversation_id, t.turn_number INTO conversation_id, turn_number
          FROM tool_audit.tool_calls t WHERE t.event_id = c.call_event_id ORDER BY t.id LIMIT 1;
        IF NOT FOUND THEN
            conversation_id := NULL;
            turn_number := NULL;
        END IF;
        call_event_id := c.call_event_id;
        old_values := c.old_values;
        new_values := c.new_values;
        row_after := state;
        RETURN NEXT;
    END LOOP;
    PERFORM tool_audit.record_read('row_history',
                                   jsonb_build_object('table', tool_audit.tracked_table_name(row_history.table_name),
                                                      'key', row_history.key),
                                   version);
END
$$;
COMMENT ON FUNCTION tool_audit.row_history(regclass, jsonb) IS
    'Every recorded version of one row of a tracked table: when, what changed, who (user, model, tool, turn, conversation, or outside any tool call) and the tracked columns after';

CREATE FUNCTION tool_audit.row_as_of(table_name regclass, key jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c tool_audit.data_changes;
    state jsonb;
BEGIN
    PERFORM tool_audit.required_arg(row_as_of.at, 'at');
    FOR c IN SELECT * FROM tool_audit.row_change_rows(row_as_of.table_name, row_as_of.key) LOOP
        EXIT WHEN c.recorded_at > row_as_of.at;
        state := CASE c.operation WHEN 'INSERT' THEN c.new_values
                                  WHEN 'UPDATE' THEN coalesce(state, '{}') || c.new_values
                                  ELSE NULL END;
    END LOOP;
    PERFORM tool_audit.record_read('row_as_of',
                                   jsonb_build_object('table', tool_audit.tracked_table_name(row_as_of.table_name),
                                                      'key', row_as_of.key,
                                                      'at', tool_audit.iso8601_utc(row_as_of.at)),
                                   CASE WHEN state IS NULL THEN 0 ELSE 1 END);
    RETURN state;
END
$$;
COMMENT ON FUNCTION tool_audit.row_as_of(regclass, jsonb, timestamptz) IS
    'The tracked columns of one row as they were at a time, rebuilt from its change rows (sanitized values stay sanitized); NULL if the row did not exist then or nothing was recorded';

-- as sql/install/90_privileges.sql does for every table and function
REVOKE ALL ON TABLE tool_audit.tracked_tables FROM PUBLIC;
REVOKE ALL ON FUNCTION
    tool_audit.track_change(),
    tool_audit.track(regclass, jsonb),
    tool_audit.untrack(regclass),
    tool_audit.tracking_status(),
    tool_audit.tracked_table_name(regclass),
    tool_audit.change_author(tool_audit.data_changes),
    tool_audit.changes_by_call(uuid),
    tool_audit.row_changes(regclass, jsonb),
    tool_audit.row_history(regclass, jsonb),
    tool_audit.row_as_of(regclass, jsonb, timestamptz)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION tool_audit.row_change_rows(regclass, jsonb) FROM PUBLIC;

-- (1.5) tracked tables: admins track and untrack (audited) and see what
-- became of the triggers; readers, admins and the verifier read the change
-- rows row-level security lets them see, and readers and admins query them
GRANT SELECT ON tool_audit.tracked_tables TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION
    tool_audit.track(regclass, jsonb),
    tool_audit.untrack(regclass),
    tool_audit.tracking_status()
    TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION
    tool_audit.tracked_table_name(regclass),
    tool_audit.change_author(tool_audit.data_changes),
    tool_audit.changes_by_call(uuid),
    tool_audit.row_changes(regclass, jsonb),
    tool_audit.row_history(regclass, jsonb),
    tool_audit.row_as_of(regclass, jsonb, timestamptz)
    TO tool_audit_reader, tool_audit_admin;
-- (1.5) the unrecorded query of the change reports: no more than their
-- SELECT on data_changes gives them
GRANT EXECUTE ON FUNCTION tool_audit.row_change_rows(regclass, jsonb)
    TO tool_audit_reader, tool_audit_admin;

-- tool_usage counts a call begun and ended once: its columns stay, its query
-- changes; dropped and created again (as a fresh install creates it) so that
-- its rule and dependencies are those of a fresh install
DROP VIEW tool_audit.tool_usage;
CREATE VIEW tool_audit.tool_usage WITH (security_invoker = true) AS
SELECT GROUPING(t.tenant_id) = 1 AS all_tenants,
       t.tenant_id,
       t.tool_name,
       count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended') AS total_calls,
       round(count(*) FILTER (WHERE t.success)::numeric
             / nullif(count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended'), 0), 3) AS success_rate,
       round(avg(t.duration_ms)::numeric, 1) AS avg_duration_ms,
       round(max(t.duration_ms)::numeric, 1) AS max_duration_ms,
       count(DISTINCT t.user_id) AS unique_users
  FROM tool_audit.tool_calls t
 GROUP BY GROUPING SETS ((t.tool_name), (t.tenant_id, t.tool_name));
COMMENT ON VIEW tool_audit.tool_usage IS 'tool_stats() for every tool: over all visible tenants (all_tenants) and per tenant (a call begun and ended counts once)';
GRANT SELECT ON tool_audit.tool_usage TO tool_audit_reader, tool_audit_admin;
-- the clone of tool_audit_track that a partition created or attached by a
-- tracked partitioned table's owner gets checks EXECUTE on track_change()
-- as that owner: everyone may execute it; the DDL guard (src/track.c)
-- refuses CREATE TRIGGER with it to all but track()
GRANT EXECUTE ON FUNCTION tool_audit.track_change() TO PUBLIC;

-- ---- alerts under retention and erasure: sql/install/66_purge.sql ----
-- (1.5) in_sanctioned_change(): true only while purge_expired() or
-- erase_subject() runs its own statements (guard.c), so that a guard
-- trigger written in PL/pgSQL (alerts_guard) lets their change through.
-- Callable by the owner only; it reads the flag and cannot set it.
CREATE FUNCTION tool_audit.in_sanctioned_change() RETURNS boolean
    AS 'MODULE_PATHNAME', 'in_sanctioned_change' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION tool_audit.in_sanctioned_change() IS
    'Whether the running statement is purge_expired()''s or erase_subject()''s own change (for guard triggers); callable only by the owner';
REVOKE ALL ON FUNCTION tool_audit.in_sanctioned_change() FROM PUBLIC;

-- ---- reports as rows: sql/install/70_reports.sql, 90_privileges.sql ----
-- ---------------------------------------------------------------------------
-- (1.5) The access report as rows, a page at a time: one row per access to a
-- subject in a period, in time order (recorded_at, kind, id): the tool calls
-- of the subject (a call begun and ended is one access, its started row,
-- with the ended row's outcome; both rows checked) and the admin events
-- about it (payload subject_id, as legal holds and export_fhir_admin_events
-- read it, or an impersonation's target_user).  Each row carries its cursor:
-- given as after, the next page starts past it, an index range scan of
-- tool_calls_subject (and of admin_events_occurred_at for the admin events,
-- filtered by payload) however deep the page.  doc/reports.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.access_report_rows(subject_id text, start_time timestamptz, end_time timestamptz,
                                              after text DEFAULT NULL, max_rows integer DEFAULT 1000)
RETURNS TABLE (kind text, recorded_at timestamptz, started_at timestamptz, id bigint, event_id uuid,
               tenant_id text, accessed_by text, role text, what text, purpose text, success boolean,
               break_glass boolean, impersonated_by text, arguments jsonb, row_hash text,
               integrity text, cursor text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    subject text := access_report_rows.subject_id;
    after_at timestamptz := '-infinity';
    after_kind text := '';
    after_id bigint := 0;
    parts text[];
    n bigint;
BEGIN
    PERFORM tool_audit.required_arg(subject, 'subject_id');
    PERFORM tool_audit.check_period(start_time, end_time);
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 10000 THEN
        RAISE EXCEPTION 'invalid value for argument "max_rows": it must be between 1 and 10000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF after IS NOT NULL THEN
        -- the cursor of a row of an earlier page: time|kind|id (not echoed)
        parts := regexp_match(after, '^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)\|(tool_call|admin_event)\|([0-9]{1,18})$');
        BEGIN
            after_at := parts[1]::timestamptz;
        EXCEPTION WHEN others THEN
            parts := NULL;
        END;
        IF parts IS NULL THEN
            RAISE EXCEPTION 'invalid value for argument "after": not a cursor of access_report_rows()'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the cursor column of the last row of the previous page, or NULL for the first page.';
        END IF;
        after_kind := parts[2];
        after_id := parts[3]::bigint;
    END IF;

    RETURN QUERY
    SELECT p.kind, p.at, p.started_at, p.rid, p.event_id, p.tenant_id, p.accessed_by, p.role, p.what,
           p.purpose, p.success, p.break_glass, p.impersonated_by, p.arguments, encode(p.row_hash, 'hex'),
           CASE p.kind
                WHEN 'tool_call' THEN
                    coalesce((SELECT tool_audit.check_row(t) FROM tool_audit.tool_calls t WHERE t.id = p.rid),
                             (SELECT format('ended row %s: %s', e.id, tool_audit.check_row(e))
                                FROM tool_audit.tool_calls e
                               WHERE p.phase = 'started' AND e.call_event_id = p.event_id
                                 AND e.call_phase = 'ended' AND tool_audit.check_row(e) IS NOT NULL
                               LIMIT 1))
                ELSE (SELECT tool_audit.check_row(a) FROM tool_audit.admin_events a WHERE a.id = p.rid) END,
           format('%s|%s|%s', tool_audit.iso8601_utc(p.at), p.kind, p.rid)
      FROM (SELECT u.* FROM (
              (SELECT 'tool_call'::text AS kind, t.recorded_at AS at, t.started_at, t.id AS rid, t.event_id,
                      t.tenant_id, t.user_id AS accessed_by, t.user_role AS role, t.tool_name AS what,
                      t.purpose,
                      CASE WHEN t.call_phase IS NULL THEN t.success
                           ELSE (SELECT e.success FROM tool_audit.tool_calls e
                                  WHERE e.call_event_id = t.event_id AND e.call_phase = 'ended') END AS success,
                      tool_audit.is_break_glass(t) AS break_glass, t.impersonated_by, t.arguments,
                      t.row_hash, t.call_phase AS phase
                 FROM tool_audit.tool_calls t
                WHERE t.subject_id = subject
                  AND t.recorded_at >= start_time AND t.recorded_at <= end_time
                  -- past the cursor: a tool_call sorts after an admin_event of the same time
                  AND (t.recorded_at, t.id) > (after_at, CASE WHEN after_kind = 'tool_call' THEN after_id
                                                              ELSE -9223372036854775808 END)
                  AND t.call_phase IS DISTINCT FROM 'ended'
                ORDER BY t.recorded_at, t.id
                LIMIT max_rows)
              UNION ALL
              (SELECT 'admin_event'::text, a.occurred_at, NULL::timestamptz, a.id, a.event_id,
                      a.tenant_id, a.actor, a.actor_type, a.event_type, a.reason, NULL::boolean, false,
                      a.impersonated_by, a.payload, a.row_hash, NULL::text
                 FROM tool_audit.admin_events a
                WHERE (a.payload ->> 'subject_id' = subject OR a.payload ->> 'target_user' = subject)
                  AND a.occurred_at >= start_time AND a.occurred_at <= end_time
                  AND (a.occurred_at, a.id) > (after_at, CASE WHEN after_kind = 'admin_event' THEN after_id
                                                              WHEN after_kind = 'tool_call' THEN 9223372036854775807
                                                              ELSE -9223372036854775808 END)
                ORDER BY a.occurred_at, a.id
                LIMIT max_rows)) u
             ORDER BY u.at, u.kind, u.rid
             LIMIT max_rows) p
     ORDER BY p.at, p.kind, p.rid;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('access_report_rows',
                                   jsonb_build_object('subject_id', subject,
                                                      'start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time),
                                                      'after', after, 'max_rows', max_rows), n);
END
$$;
COMMENT ON FUNCTION tool_audit.access_report_rows(text, timestamptz, timestamptz, text, integer) IS
    'The accesses to a subject in a period as rows (tool calls, and admin events about the subject), at most max_rows a page in time order, each with its sanitized arguments, row hash, integrity problem (NULL if the row checks out) and the cursor that starts the next page';

-- ---------------------------------------------------------------------------
-- (1.5) The timeline as rows: a conversation's tool calls (a call begun and
-- ended: one row, at its start), under each the rows it changed, and the
-- admin events that name the conversation (payload conversation_id, as the
-- purge reads it), in time order, each with who, what, and its integrity
-- problem (NULL if the row checks out).  The text timeline,
-- conversation_timeline(), stays as it was.  doc/reports.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.conversation_events(conversation_id text)
RETURNS TABLE ("at" timestamptz, kind text, turn_number integer, user_id text, what text, detail jsonb,
               success boolean, duration_ms numeric, integrity text, id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    conversation text := tool_audit.required_arg(conversation_events.conversation_id, 'conversation_id');
    n bigint;
BEGIN
    RETURN QUERY
    SELECT x.at, x.kind, x.turn_number, x.user_id, x.what, x.detail, x.success, x.duration_ms,
           x.integrity, x.id
      FROM (SELECT c.recorded_at AS at, 'tool_call'::text AS kind, 0 AS rank, c.turn_number, c.user_id,
                   c.tool_name AS what,
                   jsonb_build_object('arguments', c.arguments, 'result_summary', c.result_summary,
                                      'state', c.state, 'call_id', c.call_id)
                   || CASE WHEN c.started_at IS NOT NULL
                           THEN jsonb_build_object('started_at', tool_audit.iso8601_utc(c.started_at))
                           ELSE '{}' END AS detail,
                   c.success, round(c.duration_ms::numeric, 1) AS duration_ms,
                   coalesce((SELECT tool_audit.check_row(t) FROM tool_audit.tool_calls t WHERE t.id = c.id),
                            (SELECT 'ended row ' || e.id || ': ' || tool_audit.check_row(e)
                               FROM tool_audit.tool_calls e
                              WHERE e.event_id = c.end_event_id)) AS integrity,
                   c.id
              FROM tool_audit.calls c
             WHERE c.conversation_id = conversation
            UNION ALL
            SELECT d.recorded_at, 'data_change', 1, c.turn_number, c.user_id,
                   d.operation || ' ' || d.table_name,
                   jsonb_build_object('row_key', d.row_key, 'call_id', c.call_id),
                   NULL, NULL, tool_audit.check_row(d), d.id
              FROM tool_audit.calls c
              JOIN tool_audit.data_changes d ON d.call_event_id = c.call_id
             WHERE c.conversation_id = conversation
            UNION ALL
            SELECT a.occurred_at, 'admin_event', 2, NULL, a.actor, a.event_type, a.payload,
                   NULL, NULL, tool_audit.check_row(a), a.id
              FROM tool_audit.admin_events a
             WHERE a.payload ->> 'conversation_id' = conversation) x
     ORDER BY x.at, x.rank, x.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('conversation_events', jsonb_build_object('conversation_id', conversation), n);
END
$$;
COMMENT ON FUNCTION tool_audit.conversation_events(text) IS
    'A conversation as rows in time order: its tool calls (a call begun and ended: one row), the rows each changed and the admin events naming it, each with time, user, what, detail, duration rounded to 0.1 ms and integrity problem (NULL if the row checks out)';

-- (1.5) the access report as rows and the timeline as rows, like the reports
REVOKE ALL ON FUNCTION
    tool_audit.access_report_rows(text, timestamptz, timestamptz, text, integer),
    tool_audit.conversation_events(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    tool_audit.access_report_rows(text, timestamptz, timestamptz, text, integer),
    tool_audit.conversation_events(text)
    TO tool_audit_reader, tool_audit_admin;


-- (1.5) export_cursor_lanes(cursor): export_since()'s cursor check, in C
-- (a walk of the jsonb: the SQL check took about 0.4 s of a 0.8 s page at
-- 100,000 lanes); the number of lanes, or 22023 if it is not a cursor
CREATE FUNCTION tool_audit.export_cursor_lanes(cursor jsonb) RETURNS bigint
    AS 'MODULE_PATHNAME', 'export_cursor_lanes' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.export_cursor_lanes(jsonb) IS
    'The number of lanes in an export_since() cursor, after checking its shape (22023 if it is not one)';

-- (1.5) export_since(): the next rows of the three audit tables for a loader
-- that resumes where it stopped (issue 16; doc/export-since.md says why the
-- cursor is a position per lane, not an id: ids commit out of order, a
-- lane's positions commit in order).  The cursor is {table: {"chain_id:lane":
-- last chain_seq handed out}, "first": the table the next page starts with,
-- "after": {table: the lane the last page stopped in}}; '{}' (or NULL)
-- starts from the first row.
-- The page's last row comes with the cursor after the page (the other rows
-- with NULL: a cursor on every row made a page cost rows x lanes, see
-- doc/export-since.md); each line carries its own position, so the cursor
-- after any line is the page's cursor with the positions of the lines up
-- to it: a loader resumes with no row missed or repeated.
CREATE FUNCTION tool_audit.export_since(cursor jsonb, max_rows integer)
RETURNS TABLE (line jsonb, next_cursor jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
-- the plan a page needs (a probe of the chain position index a lane, nested
-- in the skip scan), whatever the caller set: with index scans off a page
-- took 30 to 50 times as long, with nested loops off 0.5 s on a small table.
-- A generic plan keeps the cursor a parameter: a custom plan made it a
-- constant, copied a dozen times in planning (2.8 MB at 100,000 lanes,
-- about 0.1 s a page)
SET enable_indexscan = on
SET enable_indexonlyscan = on
SET enable_nestloop = on
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    cur jsonb := coalesce(export_since.cursor, '{}');
    n bigint := 0;
    lanes bigint;
    tab text;
    doc text;
    r record;
    own text[];
    -- the page's last line so far, held back until the next (or the end):
    -- only the last one gets the cursor
    held jsonb;
    -- the last position handed out in each lane of the table being read
    moved_key text[];
    moved_seq bigint[];
    moved_n integer;
    -- the cursor's positions in the table being read
    tab_pos jsonb;
    -- the tables, taken in turn from the one the cursor names ("first"), so
    -- that no table waits behind another that keeps growing (the loader's
    -- own read records in admin_events did, at one row a page)
    tabs text[] := ARRAY['admin_events', 'tool_calls', 'data_changes'];
    first integer;
    next_first text;
    -- the lanes of a table are taken in turn too: a page that fills up in a
    -- table leaves its last lane in the cursor's "after", and the next page
    -- in that table starts after it and wraps round to it.  So no lane waits
    -- behind another that keeps growing, and a loader's pages do not each
    -- walk again the lanes exported before (which made a whole export cost
    -- pages x lanes index probes)
    after jsonb;
    after_key text;
    after_id bigint;
    after_lane integer;
    lo_id bigint;
    lo_lane integer;
    hi_id bigint;
    hi_lane integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 100000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 100000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a cursor is what this function returned: an object of the three
    -- tables, each an object of "chain_id:lane" keys and non-negative
    -- integer positions, "first", one of the tables' names, and "after", an
    -- object of tables' names and "chain_id:lane" strings; 22023 otherwise,
    -- with a message that never repeats what was given (src/export_cursor.c,
    -- one pass that also counts the lanes)
    lanes := tool_audit.export_cursor_lanes(cur);
    first := coalesce(array_position(tabs, cur ->> 'first'), 1);
    -- the rows this transaction wrote (an earlier page's read record, the
    -- caller's own writes) are visible to it but not committed, and may never
    -- be: handed out, with the cursor past them, they would leave a row the
    -- loader never saw where they were, and the position to the next writer
    -- after a rollback, whose row the cursor would skip.  They are the last
    -- rows of the lanes the transaction holds (chain.c: its lock, field4
    -- TA_LOCKTAG_LANE_XACT = 21592, on each lane it wrote, to its end): such
    -- a lane is left for a page in another transaction.  No transaction id
    -- yet: nothing written.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        own := ARRAY(SELECT l.classid::bigint || ':' || l.objid::bigint FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.objsubid = 21592
                        AND l.pid = pg_backend_pid() AND l.granted);
    END IF;
    after := coalesce(cur -> 'after', '{}');
    cur := jsonb_build_object('admin_events', coalesce(cur->'admin_events', '{}'),
                              'tool_calls', coalesce(cur->'tool_calls', '{}'),
                              'data_changes', coalesce(cur->'data_changes', '{}'),
                              'first', tabs[first]);
    -- table by table from the first, lane by lane (chain_id, chain_lane) in
    -- index order from the one after the table's "after" lane round to it,
    -- found by a skip scan of the chain position index; in each lane the
    -- positions after the cursor's, so that a page costs index probes per
    -- lane visited and per row handed out, not a scan of what was exported
    -- before.  A page that fills up in a table makes the next page start
    -- with the table after it.
    FOR k IN 0 .. 2 LOOP
        tab := tabs[(first - 1 + k) % 3 + 1];
        after_key := after ->> tab;
        doc := CASE tab
            WHEN 'tool_calls' THEN $q$jsonb_build_object(
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
            || jsonb_strip_nulls(jsonb_build_object('call_phase', t.call_phase,
                   'call_event_id', t.call_event_id, 'caller_txid', t.caller_txid))
            || CASE WHEN t.started_at IS NOT NULL
                    THEN jsonb_build_object('started_at', tool_audit.iso8601_utc(t.started_at))
                    ELSE '{}' END$q$
            WHEN 'admin_events' THEN $q$jsonb_build_object(
            'table', 'admin_events',
            'id', t.id, 'event_id', t.event_id, 'occurred_at', tool_audit.iso8601_utc(t.occurred_at),
            'event_type', t.event_type, 'actor', t.actor, 'actor_type', t.actor_type,
            'tenant_id', t.tenant_id, 'payload', t.payload, 'reason', t.reason,
            'source_ip', abbrev(t.source_ip), 'metadata', t.metadata, 'recorded_by', t.recorded_by,
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex'))$q$
            ELSE $q$jsonb_build_object(
            'table', 'data_changes',
            'id', t.id, 'event_id', t.event_id, 'recorded_at', tool_audit.iso8601_utc(t.recorded_at),
            'tenant_id', t.tenant_id, 'table_name', t.table_name, 'operation', t.operation,
            'row_key', t.row_key, 'old_values', t.old_values, 'new_values', t.new_values,
            'call_event_id', t.call_event_id, 'txid', t.txid::text,
            'application_name', t.application_name, 'recorded_by', t.recorded_by,
            'retention_policy', t.retention_policy, 'expires_at', tool_audit.iso8601_utc(t.expires_at),
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex'))$q$ END;
        moved_key := '{}';
        moved_seq := '{}';
        moved_n := 0;
        tab_pos := cur -> tab;
        -- a skip scan of the chain position index finds the lanes with rows
        -- after the cursor's position, and in each a range scan reads those
        -- rows (in chain_seq order), lane after lane until the page is full;
        -- the lanes this transaction holds are left out (chain.c's
        -- lane_tag(): the chain id folded to 32 bits, the lane).  Each step
        -- of the skip scan is one descent of the index: from an entry at or
        -- before its lane's position (pos), to the first entry after that
        -- position, which is in the lane (a lane with new rows) or in the
        -- next lane; from an entry after its lane's position, past the lane
        -- (no chain reaches position 2^63 - 1).  So a lane with nothing new
        -- costs one descent, not two (bench/export_since.sh).
        -- One statement for the lanes after the "after" lane, one for those
        -- up to it (wrapping round), or one for all lanes without an "after"
        -- lane: bounds on (chain_id, chain_lane), the low one exclusive, the
        -- high one inclusive (lanes are never negative)
        IF after_key IS NOT NULL THEN
            after_id := split_part(after_key, ':', 1)::bigint;
            after_lane := split_part(after_key, ':', 2)::integer;
        END IF;
        FOR phase IN 1 .. CASE WHEN after_key IS NULL THEN 1 ELSE 2 END LOOP
            IF phase = 1 AND after_key IS NOT NULL THEN
                lo_id := after_id; lo_lane := after_lane;
            ELSE
                lo_id := -9223372036854775808; lo_lane := -1;
            END IF;
            IF phase = 2 THEN
                hi_id := after_id; hi_lane := after_lane;
            ELSE
                hi_id := 9223372036854775807; hi_lane := 2147483647;
            END IF;
            FOR r IN EXECUTE format($q$
                WITH RECURSIVE s AS (
                    (SELECT t.chain_id, t.chain_lane, t.chain_seq,
                            coalesce(($1 ->> (t.chain_id::text || ':' || t.chain_lane))::bigint, 0) AS pos
                       FROM tool_audit.%1$I t
                      WHERE (t.chain_id, t.chain_lane) > ($4, $5) AND t.chain_seq IS NOT NULL
                        AND (t.chain_id, t.chain_lane) <= ($6, $7)
                      ORDER BY t.chain_id, t.chain_lane, t.chain_seq LIMIT 1)
                    UNION ALL
                    SELECT x.chain_id, x.chain_lane, x.chain_seq,
                           CASE WHEN x.chain_id = s.chain_id AND x.chain_lane = s.chain_lane THEN s.pos
                                ELSE coalesce(($1 ->> (x.chain_id::text || ':' || x.chain_lane))::bigint, 0) END
                      FROM s, LATERAL (
                        SELECT t.chain_id, t.chain_lane, t.chain_seq FROM tool_audit.%1$I t
                         WHERE (t.chain_id, t.chain_lane, t.chain_seq)
                               > (s.chain_id, s.chain_lane,
                                  CASE WHEN s.chain_seq > s.pos THEN 9223372036854775807 ELSE s.pos END)
                         ORDER BY t.chain_id, t.chain_lane, t.chain_seq LIMIT 1) x
                     WHERE (x.chain_id, x.chain_lane) <= ($6, $7))
                SELECT s.chain_id::text || ':' || s.chain_lane AS lane_key, x.seq, x.doc
                  FROM s CROSS JOIN LATERAL (
                       SELECT t.chain_seq AS seq, %2$s AS doc FROM tool_audit.%1$I t
                        WHERE t.chain_id = s.chain_id AND t.chain_lane = s.chain_lane
                          AND t.chain_seq > s.pos
                        ORDER BY t.chain_seq LIMIT $2) x
                 WHERE s.chain_seq > s.pos
                   AND NOT (((s.chain_id & 4294967295) # ((s.chain_id >> 32) & 4294967295))
                            || ':' || s.chain_lane) = ANY ($3)
                 LIMIT $2$q$, tab, doc)
                USING tab_pos, max_rows - n, coalesce(own, '{}'), lo_id, lo_lane, hi_id, hi_lane
            LOOP
                IF held IS NOT NULL THEN
                    line := held;
                    next_cursor := NULL;
                    RETURN NEXT;
                END IF;
                held := r.doc;
                n := n + 1;
                -- a lane's rows come together, in order: its last one is its place
                IF moved_n = 0 OR moved_key[moved_n] <> r.lane_key THEN
                    moved_n := moved_n + 1;
                    moved_key[moved_n] := r.lane_key;
                END IF;
                moved_seq[moved_n] := r.seq;
            END LOOP;
            EXIT WHEN n >= max_rows;
        END LOOP;
        -- the cursor's entries of this table and the page's few, merged once
        -- (not a jsonb_set() a row, nor jsonb_object_agg() of the whole
        -- cursor, which took 1.4 s at 100,000 lanes: bench/export_since.sh)
        IF moved_n > 0 THEN
            cur := jsonb_set(cur, ARRAY[tab],
                             tab_pos || (SELECT jsonb_object_agg(u.k, u.s)
                                           FROM unnest(moved_key, moved_seq) u(k, s)));
        END IF;
        -- the lane this table's next page starts after: where this one
        -- stopped if it filled up here, else none (every lane was visited)
        IF n >= max_rows THEN
            after := jsonb_set(after, ARRAY[tab], to_jsonb(moved_key[moved_n]));
            next_first := tabs[(first + k) % 3 + 1];
            EXIT;
        END IF;
        after := after - tab;
    END LOOP;
    -- the cursor after the page, on its last row
    IF held IS NOT NULL THEN
        IF next_first <> tabs[first] THEN
            cur := jsonb_set(cur, '{first}', to_jsonb(next_first));
        END IF;
        IF after <> '{}' THEN
            cur := cur || jsonb_build_object('after', after);
        END IF;
        line := held;
        next_cursor := cur;
        RETURN NEXT;
    END IF;
    PERFORM tool_audit.record_read('export_since',
                                   jsonb_build_object('max_rows', max_rows, 'lanes_in_cursor', lanes), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_since(jsonb, integer) IS
    'The next rows (at most max_rows) of the three audit tables after a cursor, in chain order, as export_jsonl() writes them; the last row with the cursor after the page, the others with NULL: a loader resumes with no row missed or repeated';

REVOKE ALL ON FUNCTION tool_audit.export_since(jsonb, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tool_audit.export_cursor_lanes(jsonb) FROM PUBLIC;
-- (1.5) export_since(): as export_jsonl(), for readers, admins and the
-- verifier, with its cursor check (it runs as its caller)
GRANT EXECUTE ON FUNCTION tool_audit.export_since(jsonb, integer),
    tool_audit.export_cursor_lanes(jsonb)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;

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
REVOKE ALL ON FUNCTION tool_audit.tenant_digest(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tool_audit.derive_tenant_digest(jsonb, text) FROM PUBLIC;
-- (1.5) tenant verification: readers verify and take digests too (a bound
-- reader: of its tenants' chains only); admins and the verifier take one
-- tenant's digest
GRANT EXECUTE ON FUNCTION tool_audit.verify(timestamptz), tool_audit.digest(),
    tool_audit.verify_digest(jsonb), tool_audit.signing_public_key()
    TO tool_audit_reader;
GRANT EXECUTE ON FUNCTION tool_audit.tenant_digest(text), tool_audit.derive_tenant_digest(jsonb, text)
    TO tool_audit_admin, tool_audit_verifier;
-- (1.5, issue 12) unschedule_retention(): removing the purge job needs dual
-- approval (action tool_audit.retention.unschedule) when it is required
CREATE OR REPLACE FUNCTION tool_audit.unschedule_retention()
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit retention in ' || current_database();
    removed jsonb;
BEGIN
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L AND j.database = %L;',
               job_name, current_database()));
    -- (1.5) removing a job stops the purge: dual approval when it is required
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT FROM cron.job j WHERE j.jobname = job_name AND j.database = current_database()) THEN
        RETURN false;
    END IF;
    PERFORM tool_audit.approval_gate('tool_audit.retention.unschedule', '{}');
    removed := tool_audit.remove_retention_jobs();
    IF removed IS NULL THEN
        RETURN false;
    END IF;
    PERFORM tool_audit.record_own_event('retention.schedule',
                                        jsonb_build_object('before', removed, 'after', NULL));
    RETURN true;
END
$$;
COMMENT ON FUNCTION tool_audit.unschedule_retention() IS
    'Removes this database''s pg_cron purge job; true if there was one; needs dual approval when it is required';
-- ---------------------------------------------------------------------------
-- (1.5) The security state: a fingerprint of who can see and change what
-- (row-level security, policies, privileges, the extension's functions,
-- triggers, event triggers, rules, tenant bindings, key fingerprints, rule
-- sets; src/security_state_sql.h, doc/canonical-encoding.md section 8).
-- digest() carries it, verify_digest() and the external verifier compare
-- it; verify() compares the parts only the extension's scripts define with
-- the expectation this file records, last, when the script has made them.
-- ---------------------------------------------------------------------------
CREATE TABLE tool_audit.security_expectation (
    component text NOT NULL,
    object    text NOT NULL,
    hash      text NOT NULL,
    PRIMARY KEY (component, object)
);
COMMENT ON TABLE tool_audit.security_expectation IS
    'What the install or upgrade script made of the security state, object by object: verify() compares with it; written only by those scripts';

CREATE FUNCTION tool_audit.security_expectation_guard() RETURNS trigger
    AS 'MODULE_PATHNAME', 'security_expectation_guard' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.security_expectation_guard() IS
    'Trigger that refuses every write to security_expectation outside the extension''s install and upgrade scripts';
CREATE TRIGGER security_expectation_guard
    BEFORE INSERT OR UPDATE OR DELETE ON tool_audit.security_expectation
    FOR EACH ROW EXECUTE FUNCTION tool_audit.security_expectation_guard();
CREATE TRIGGER security_expectation_guard_truncate
    BEFORE TRUNCATE ON tool_audit.security_expectation
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.security_expectation_guard();

CREATE FUNCTION tool_audit.security_state() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'security_state' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.security_state() IS
    'The fingerprint of the security state a digest carries: one SHA-256 per component, and an overall hash';

CREATE FUNCTION tool_audit.record_security_expectation() RETURNS void
    AS 'MODULE_PATHNAME', 'record_security_expectation' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.record_security_expectation() IS
    'Records the security state the install or upgrade script made (it runs in those scripts only)';

REVOKE ALL ON tool_audit.security_expectation FROM PUBLIC;
REVOKE ALL ON FUNCTION tool_audit.security_expectation_guard(), tool_audit.security_state(),
    tool_audit.record_security_expectation() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tool_audit.security_state() TO tool_audit_verifier, tool_audit_admin;

-- what the external verifier reads to recompute the configuration components
-- as tool_audit_verifier: the bindings and rule sets, and the keys' SHA-256
-- fingerprints (never the key bytes) through a view
CREATE VIEW tool_audit.pseudonym_key_fingerprints AS
    SELECT key_id, pg_catalog.encode(pg_catalog.sha256(key), 'hex') AS fingerprint, active, created_at
      FROM tool_audit.pseudonym_keys;
COMMENT ON VIEW tool_audit.pseudonym_key_fingerprints IS
    'The pseudonymization keys'' ids with a SHA-256 of each key (never the key), active flag and creation time';
REVOKE ALL ON tool_audit.pseudonym_key_fingerprints FROM PUBLIC;
GRANT SELECT ON tool_audit.pseudonym_key_fingerprints TO tool_audit_verifier, tool_audit_admin;
GRANT SELECT ON tool_audit.tenant_bindings, tool_audit.sanitize_rules, tool_audit.alert_rules
    TO tool_audit_verifier;

-- (1.5) verify_since(): verify_digest() over the rows after the digest's
-- heads only (issue 16, incremental verification)
CREATE FUNCTION tool_audit.verify_since(digest jsonb)
    RETURNS TABLE (table_name text, chain text, "position" bigint, row_id bigint, problem text)
    AS 'MODULE_PATHNAME', 'verify_since' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.verify_since(jsonb) IS
    'Incremental verify_digest(): only the rows after the digest''s heads, each head checked against the digest''s hash, and a bad signature';
REVOKE ALL ON FUNCTION tool_audit.verify_since(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tool_audit.verify_since(jsonb) TO tool_audit_verifier, tool_audit_admin;

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
-- A table at 1.4 is marked when it holds rows or its sequence has handed
-- out ids: an empty table whose inserts were all rolled back cannot be told
-- from one a refused restore emptied, so it keeps being reported (as 1.4 did)
-- until its first row commits.
INSERT INTO tool_audit.trail_marks (table_name)
SELECT 'tool_calls'
 WHERE EXISTS (SELECT 1 FROM tool_audit.tool_calls)
    OR (SELECT is_called FROM tool_audit.tool_calls_id_seq)
UNION ALL
SELECT 'admin_events'
 WHERE EXISTS (SELECT 1 FROM tool_audit.admin_events)
    OR (SELECT is_called FROM tool_audit.admin_events_id_seq);

-- Functions and views older than 1.5 that more than one 1.5 change above
-- alters: each is replaced once, here, after every object it uses, with
-- its final text (as in sql/install, word for word).  (A function new in
-- 1.5 is created once, with its final text, by the change that adds it.)

CREATE OR REPLACE FUNCTION tool_audit.tool_stats(tool_name text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stats jsonb;
BEGIN
    -- a call begun and ended is one call: its started row counts it, its
    -- ended row carries the outcome and duration (a started row has none)
    SELECT CASE WHEN count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended') = 0
        THEN jsonb_build_object('tool', $1, 'total_calls', 0)
        ELSE jsonb_build_object(
            'tool', $1,
            'total_calls', count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended'),
            'success_rate', round(count(*) FILTER (WHERE t.success)::numeric
                                  / count(*) FILTER (WHERE t.call_phase IS DISTINCT FROM 'ended'), 3),
            'avg_duration_ms', round(avg(t.duration_ms)::numeric, 1),
            'max_duration_ms', round(max(t.duration_ms)::numeric, 1),
            'unique_users', count(DISTINCT t.user_id))
        END
      FROM tool_audit.tool_calls t
     WHERE t.tool_name = tool_audit.required_arg($1, 'tool_name'::pg_catalog.text)
      INTO stats;
    PERFORM tool_audit.record_read('tool_stats', jsonb_build_object('tool_name', $1), 1);
    RETURN stats;
END
$$;
COMMENT ON FUNCTION tool_audit.tool_stats(text) IS
    'One tool''s call count (a call begun and ended counts once), success rate, average and maximum duration and distinct users, as JSON';

-- fhir_audit_event(row): one FHIR R4 AuditEvent resource for a tool call.
-- PL/pgSQL returning one expression (1.5): PL/pgSQL prepares it once a
-- transaction, where an SQL function (not inlined: it pins two settings) was
-- set up again for every row; the entity and detail lists drop their empty
-- members with a JSON path filter instead of subqueries, which would make it
-- a query to plan and start for every row (no detail at all: no list)
CREATE OR REPLACE FUNCTION tool_audit.fhir_audit_event(r tool_audit.tool_calls) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
BEGIN
    RETURN jsonb_strip_nulls(jsonb_build_object(
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
        'outcome', CASE WHEN r.success THEN '0' WHEN NOT r.success THEN '4' END,
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
        -- the subject (when there is one) and the call; each detail with a value
        'entity', jsonb_path_query_array(jsonb_build_array(
            tool_audit.fhir_subject_entity(r.subject_id, r.session_metadata->>'subject_type'),
            jsonb_build_object(
                'what', jsonb_build_object('identifier', CASE WHEN tool_audit.fhir_string(r.tool_call_id) IS NOT NULL
                    THEN jsonb_build_object('system', 'urn:tool_audit:tool_call_id', 'value', tool_audit.fhir_string(r.tool_call_id))
                    ELSE jsonb_build_object('system', 'urn:tool_audit:event_id', 'value', r.event_id::text) END),
                'type', '{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}'::jsonb,
                'name', tool_audit.fhir_string(r.tool_name),
                'detail', nullif(jsonb_path_query_array(jsonb_build_array(
                    jsonb_build_object('type', 'arguments', 'valueString', tool_audit.fhir_string(r.arguments::text)),
                    jsonb_build_object('type', 'result_summary', 'valueString', tool_audit.fhir_string(r.result_summary::text)),
                    jsonb_build_object('type', 'conversation_id', 'valueString', tool_audit.fhir_string(r.conversation_id)),
                    jsonb_build_object('type', 'turn_number', 'valueString', r.turn_number::text),
                    jsonb_build_object('type', 'call_trigger', 'valueString', r.call_trigger::text),
                    jsonb_build_object('type', 'duration_ms', 'valueString', r.duration_ms::text),
                    jsonb_build_object('type', 'row_hash', 'valueString', encode(r.row_hash, 'hex')),
                    jsonb_build_object('type', 'chain', 'valueString', r.chain_id || '/' || r.chain_lane || '/' || r.chain_seq)),
                    '$[*] ? (@.valueString.type() != "null")'), '[]'))),
            '$[*] ? (@.type() != "null")')));
END
$$;
COMMENT ON FUNCTION tool_audit.fhir_audit_event(tool_audit.tool_calls) IS
    'One tool call as a FHIR R4 AuditEvent resource';

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
                || CASE WHEN (c.t).impersonated_by IS NOT NULL
                        THEN jsonb_build_object('impersonated_by', (c.t).impersonated_by) ELSE '{}' END
                || CASE WHEN (c.t).call_phase = 'started'
                        THEN jsonb_build_object('call_state', CASE WHEN c.ended_success IS NULL
                                                                   THEN 'not_ended' ELSE 'ended' END)
                        ELSE '{}' END
                -- the client's time, when it sent one (1.5)
                || CASE WHEN (c.t).started_at IS NOT NULL
                        THEN jsonb_build_object('started_at', tool_audit.iso8601_utc((c.t).started_at))
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
    PERFORM tool_audit.record_read('access_report',
                                   jsonb_build_object('subject_id', access_report.subject_id,
                                                      'start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time)),
                                   (report->>'total_accesses')::bigint);
    RETURN report;
END
$$;
COMMENT ON FUNCTION tool_audit.access_report(text, timestamptz, timestamptz) IS
    'Every access to a subject''s data in a period, with the break-glass accesses and a verification of the rows, as JSON';

CREATE OR REPLACE VIEW tool_audit.otel_tool_spans WITH (security_invoker = true) AS
SELECT 'execute_tool ' || t.tool_name AS "span.name",
       -- from the client's started_at when it sent one (1.5), else back from recorded_at
       coalesce(t.started_at, t.recorded_at - make_interval(secs => coalesce(t.duration_ms, 0) / 1000)) AS start_time,
       CASE WHEN t.started_at IS NULL THEN t.recorded_at
            ELSE t.started_at + make_interval(secs => coalesce(t.duration_ms, 0) / 1000) END AS end_time,
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
        -- (1.5) lengthening alone needs no second person; fewer days or
        -- other names and patterns may shorten some rows' retention
        IF retention_days < before_row.retention_days OR
           (matches IS NOT NULL AND matches IS DISTINCT FROM before_row.matches) THEN
            PERFORM tool_audit.approval_gate('tool_audit.retention.set_policy',
                jsonb_build_object('policy_name', policy_name, 'retention_days', retention_days,
                                   'matches', to_jsonb(matches), 'applies_to', applies_to));
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
    -- (1.5) a new policy takes rows from the policy that covered them
    PERFORM tool_audit.approval_gate('tool_audit.retention.set_policy',
        jsonb_build_object('policy_name', policy_name, 'retention_days', retention_days,
                           'matches', to_jsonb(matches), 'applies_to', applies_to));
    INSERT INTO tool_audit.retention_policies
        (policy_name, applies_to, retention_days, matches, is_default, changed_by)
    VALUES (set_retention_policy.policy_name, set_retention_policy.applies_to,
            set_retention_policy.retention_days, coalesce(set_retention_policy.matches, '{}'),
            coalesce(cardinality(set_retention_policy.matches), 0) = 0, tool_audit.acting_role())
    RETURNING * INTO after_row;
    RETURN tool_audit.retention_event('policy', NULL, to_jsonb(after_row), reason);
END
$$;
COMMENT ON FUNCTION tool_audit.set_retention_policy(text, integer, text[], text, text) IS
    'Creates or changes a retention policy (never under the floor) and records it as a tool_audit.retention.policy admin event';

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
        SELECT 'tool_calls'::text, count(*), min(t.recorded_at), max(t.recorded_at)
          FROM tool_audit.tool_calls t
         WHERE tool_audit.hold_covers(h.scope, t.tenant_id, t.subject_id, t.user_id,
                                      t.conversation_id, t.tool_name, t.recorded_at)
        UNION ALL
        SELECT 'data_changes'::text, count(*), min(d.recorded_at), max(d.recorded_at)
          FROM tool_audit.data_changes d
          LEFT JOIN tool_audit.tool_calls k ON k.event_id = d.call_event_id
         WHERE tool_audit.hold_covers(h.scope, d.tenant_id, k.subject_id, k.user_id,
                                      k.conversation_id, k.tool_name, d.recorded_at)) AS c(table_name, n, first_at, last_at)
     WHERE h.released_at IS NULL
     ORDER BY h.hold_id, c.table_name
$$;
COMMENT ON FUNCTION tool_audit.hold_report() IS
    'The active legal holds with, per audit table, the rows each covers and their first and last time';

CREATE OR REPLACE FUNCTION tool_audit.export_jsonl(start_time timestamptz, end_time timestamptz)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
    n bigint;
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
                   'call_event_id', t.call_event_id, 'caller_txid', t.caller_txid))
            -- the client's time, when it sent one (1.5)
            || CASE WHEN t.started_at IS NOT NULL
                    THEN jsonb_build_object('started_at', tool_audit.iso8601_utc(t.started_at))
                    ELSE '{}' END AS doc
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
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_jsonl',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_jsonl(timestamptz, timestamptz) IS
    'The audit tables'' rows in a period (tool calls, admin events, row changes) as JSON documents with their hashes and chain positions, to check outside the database';

CREATE OR REPLACE FUNCTION tool_audit.conversation_timeline(conversation_id text) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT l.line
      FROM tool_audit.calls c
     CROSS JOIN LATERAL (
           SELECT 0::bigint AS k,
                  format('[Turn %s] %s %s(%s) %s %s [%sms]',
                  coalesce(c.turn_number::text, '?'),
                  tool_audit.report_mark(CASE WHEN c.success THEN 'ok' ELSE 'failed' END),
                  c.tool_name, c.arguments::text, tool_audit.report_mark('arrow'),
                  CASE c.state WHEN 'never_ended' THEN '(never ended)'
                               WHEN 'in_progress' THEN '(in progress)'
                               ELSE c.result_summary::text END,
                  coalesce(trim_scale(round(c.duration_ms::numeric, 1))::text, '?'))   -- 0.1 ms for display
                  -- the client's time, when it sent one (1.5)
                  || CASE WHEN c.started_at IS NOT NULL
                          THEN format(' [started %s]', tool_audit.iso8601_utc(c.started_at)) ELSE '' END
                  AS line
           UNION ALL   -- (1.5) the rows the call changed, under it
           SELECT d.id, format('    %s %s %s', d.operation, d.table_name, d.row_key::text)
             FROM tool_audit.data_changes d
            WHERE d.call_event_id = c.call_id) l
     WHERE c.conversation_id = tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY c.turn_number, c.recorded_at, c.id, l.k;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('conversation_timeline', jsonb_build_object('conversation_id', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.conversation_timeline(text) IS
    'A conversation as one line of text per tool call (a call begun and ended: one line): turn, outcome, tool, arguments, result summary and duration; under it, one line per row the call changed (1.5)';

-- (end of the final texts)

-- (1.5) last: the security state this script made is what verify() expects
SELECT tool_audit.record_security_expectation();
