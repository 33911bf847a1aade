
-- ---------------------------------------------------------------------------
-- Privileges: PUBLIC gets nothing; each role gets what its task needs.
-- Grants to one object are made in the order the upgrade scripts made them,
-- so that its ACL reads the same in a fresh and an upgraded database.
-- ---------------------------------------------------------------------------
REVOKE ALL ON SCHEMA tool_audit FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA tool_audit FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tool_audit FROM PUBLIC;
REVOKE ALL ON TYPE tool_audit.call_trigger FROM PUBLIC;

GRANT USAGE ON SCHEMA tool_audit
    TO tool_audit_writer, tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT USAGE ON TYPE tool_audit.call_trigger
    TO tool_audit_writer, tool_audit_reader, tool_audit_admin, tool_audit_verifier;

-- writers record, and read back the ids of what they recorded
GRANT INSERT ON tool_audit.tool_calls, tool_audit.admin_events TO tool_audit_writer;
GRANT SELECT (id, event_id) ON tool_audit.tool_calls, tool_audit.admin_events TO tool_audit_writer;
GRANT EXECUTE ON FUNCTION
    tool_audit.log_call(text, jsonb, jsonb, double precision, jsonb),
    tool_audit.log_event(text, text, jsonb, jsonb),
    tool_audit.sanitize(jsonb),
    tool_audit.sanitize_text(text),
    tool_audit.summarize_result(jsonb)
    TO tool_audit_writer;
-- (1.3) the same with JSON as text, parsed with errors that quote nothing
GRANT EXECUTE ON FUNCTION
    tool_audit.log_call_text(text, text, text, double precision, text),
    tool_audit.log_event_text(text, text, text, text),
    tool_audit.jsonb_from_text(text, text)
    TO tool_audit_writer;

-- readers, admins and the verifier read the audit tables; row-level
-- security decides which rows
GRANT SELECT ON tool_audit.tool_calls, tool_audit.admin_events
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION tool_audit.bound_tenants() TO tool_audit_reader, tool_audit_admin;

-- admins manage the rules, keys and tenant bindings
GRANT SELECT, INSERT, UPDATE, DELETE ON tool_audit.sanitize_rules TO tool_audit_admin;
GRANT USAGE ON SEQUENCE tool_audit.sanitize_rules_rule_id_seq TO tool_audit_admin;
GRANT SELECT ON tool_audit.tenant_bindings, tool_audit.pseudonym_key_ids TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION
    tool_audit.sanitize(jsonb),
    tool_audit.sanitize_text(text),
    tool_audit.summarize_result(jsonb),
    tool_audit.pseudonymize(text),
    tool_audit.random_key(integer),
    tool_audit.rotate_pseudonym_key(text, bytea),
    tool_audit.bind_tenant(regrole, text),
    tool_audit.unbind_tenant(regrole, text)
    TO tool_audit_admin;

-- the verifier and admins verify and take digests; the verifier can change nothing
GRANT EXECUTE ON FUNCTION tool_audit.canonical_json(jsonb), tool_audit.verify(timestamptz),
    tool_audit.digest(), tool_audit.verify_digest(jsonb), tool_audit.signing_public_key()
    TO tool_audit_verifier, tool_audit_admin;
-- (1.5) the incremental verify_digest(), to the same roles
GRANT EXECUTE ON FUNCTION tool_audit.verify_since(jsonb) TO tool_audit_verifier, tool_audit_admin;
GRANT EXECUTE ON FUNCTION tool_audit.canonical_json(jsonb) TO tool_audit_reader, tool_audit_writer;

-- readers and admins query and export what row-level security lets them
-- see; the verifier exports (it reads every tenant) but runs no report
GRANT EXECUTE ON FUNCTION
    tool_audit.compute_row_hash(tool_audit.tool_calls),
    tool_audit.compute_row_hash(tool_audit.admin_events),
    tool_audit.chain_link(bigint, integer, bigint, bytea, bytea),
    tool_audit.verify_protections(),
    tool_audit.chain_problem(bigint, integer, bigint, bytea, bytea, bytea, bytea, bigint, bytea, bytea, boolean),
    tool_audit.check_row(tool_audit.tool_calls),
    tool_audit.check_row(tool_audit.admin_events),
    tool_audit.required_arg(anyelement, text),
    tool_audit.check_period(timestamptz, timestamptz),
    tool_audit.iso8601_utc(timestamptz),
    tool_audit.is_break_glass(tool_audit.tool_calls),
    tool_audit.report_mark(text),
    tool_audit.export_jsonl(timestamptz, timestamptz),
    tool_audit.fhir_action(text),
    tool_audit.fhir_string(text),
    tool_audit.fhir_code(text),
    tool_audit.fhir_audit_event(tool_audit.tool_calls),
    tool_audit.export_fhir(timestamptz, timestamptz, text)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.calls_by_conversation(text),
    tool_audit.calls_by_user(text, timestamptz),
    tool_audit.failures(timestamptz),
    tool_audit.tool_stats(text),
    tool_audit.conversation_timeline(text),
    tool_audit.attribution(bigint),
    tool_audit.access_report(text, timestamptz, timestamptz)
    TO tool_audit_reader, tool_audit_admin;
GRANT SELECT ON tool_audit.tool_usage TO tool_audit_reader, tool_audit_admin;
GRANT SELECT ON tool_audit.tool_calls_csv, tool_audit.admin_events_csv, tool_audit.otel_tool_spans
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;

-- (1.4) retention: admins read the policies, overrides, floor and holds
-- (and change them through the extension's functions only); the verifier
-- and admins read what purges and erasures left
GRANT SELECT ON tool_audit.retention_policies, tool_audit.retention_overrides,
    tool_audit.retention_floor, tool_audit.legal_holds
    TO tool_audit_admin;
GRANT SELECT ON tool_audit.purge_anchors, tool_audit.erasures
    TO tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.hold_covers(jsonb, text, text, text, text, text, timestamptz),
    tool_audit.retention_policy_for(text, text),
    tool_audit.current_retention_days(text, text)
    TO tool_audit_admin, tool_audit_verifier;

-- (1.4) retention policies: admins change policies and tenant overrides,
-- and call the floor's function, which refuses all but superusers
GRANT EXECUTE ON FUNCTION
    tool_audit.set_retention_policy(text, integer, text[], text, text),
    tool_audit.set_retention_override(text, text, integer, text),
    tool_audit.set_retention_floor(integer, text)
    TO tool_audit_admin;

-- (1.4) purge: admins place and release legal holds, list them, and purge
GRANT EXECUTE ON FUNCTION
    tool_audit.place_hold(jsonb, text),
    tool_audit.release_hold(bigint, text),
    tool_audit.hold_report(),
    tool_audit.purge_expired(boolean)
    TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION tool_audit.purge_anchor_check(text) TO tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION
    tool_audit.purged_link(text, bigint, integer, bigint),
    tool_audit.purge_link_before(text, bigint, integer, bigint)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;

-- (1.4) erasure: admins erase; admins and the verifier read the erasure log
GRANT EXECUTE ON FUNCTION tool_audit.erase_subject(text, text, text) TO tool_audit_admin;
GRANT SELECT ON tool_audit.erasure_log TO tool_audit_admin, tool_audit_verifier;
-- (1.4) the reports' row check accepts verified erasures
GRANT EXECUTE ON FUNCTION
    tool_audit.accepted_row_hash(tool_audit.tool_calls),
    tool_audit.accepted_row_hash(tool_audit.admin_events)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;

-- (1.4) admins schedule and unschedule the purge as a pg_cron job
GRANT EXECUTE ON FUNCTION tool_audit.schedule_retention(text), tool_audit.unschedule_retention()
    TO tool_audit_admin;

-- (1.4) purge: the retention of rows written before 1.4
GRANT EXECUTE ON FUNCTION tool_audit.legacy_retention_days(text, text, text)
    TO tool_audit_admin, tool_audit_verifier;

-- (1.5) FHIR: subject entities, purposes and admin events as AuditEvents,
-- for those who may export (as export_fhir)
GRANT EXECUTE ON FUNCTION
    tool_audit.fhir_subject_entity(text, text),
    tool_audit.fhir_purpose(text, boolean),
    tool_audit.fhir_admin_event(tool_audit.admin_events),
    tool_audit.export_fhir_admin_events(timestamptz, timestamptz, text)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
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
-- (1.5) the clone of tool_audit_track that a partition created or attached
-- by a tracked partitioned table's owner gets checks EXECUTE on
-- track_change() as that owner: everyone may execute it; the DDL guard
-- (src/track.c) refuses CREATE TRIGGER with it to all but track()
GRANT EXECUTE ON FUNCTION tool_audit.track_change() TO PUBLIC;
-- (1.5) the access report as rows and the timeline as rows, like the reports
GRANT EXECUTE ON FUNCTION
    tool_audit.access_report_rows(text, timestamptz, timestamptz, text, integer),
    tool_audit.conversation_events(text)
    TO tool_audit_reader, tool_audit_admin;

-- (1.5) export_since(): as export_jsonl(), for readers, admins and the
-- verifier, with its cursor check (it runs as its caller)
GRANT EXECUTE ON FUNCTION tool_audit.export_since(jsonb, integer),
    tool_audit.export_cursor_lanes(jsonb)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;

-- (1.5) tenant verification: readers verify and take digests too (a bound
-- reader: of its tenants' chains only); admins and the verifier take one
-- tenant's digest
GRANT EXECUTE ON FUNCTION tool_audit.verify(timestamptz), tool_audit.digest(),
    tool_audit.verify_digest(jsonb), tool_audit.signing_public_key()
    TO tool_audit_reader;
GRANT EXECUTE ON FUNCTION tool_audit.tenant_digest(text), tool_audit.derive_tenant_digest(jsonb, text)
    TO tool_audit_admin, tool_audit_verifier;
