/* tool_audit--1.2--1.3.sql: a COMMENT on every function, on the type and on the last view without one;
   wider sanitizing (issue 12): new built-in key rules and the url_credentials detector;
   no secret in an error (issue 12): log_call_text(), log_event_text(), jsonb_from_text(),
   typed_value(), and log_event() and rotate_pseudonym_key() with errors that quote no value */

\echo Use "ALTER EXTENSION tool_audit UPDATE TO '1.3'" to load this file. \quit

-- 1.3 sanitizes more and quotes no value in its errors (below, after the
-- comments).  Its install script, tool_audit--1.3.sql, creates
-- the final schema in one pass (built from sql/install/*.sql); these are the
-- comments it adds, word for word: test/t/010_fresh_vs_upgraded.pl checks that
-- a database upgraded from 1.0 and a fresh one have the same catalogs.

-- The sanitizer and its tools
COMMENT ON FUNCTION tool_audit.sanitize(jsonb) IS
    'The document with secrets redacted and personal data pseudonymized at any depth, as the audit tables would store it';
COMMENT ON FUNCTION tool_audit.sanitize_text(text) IS
    'The string with the value rules (detectors and regular expressions) applied, as the audit tables would store it';
COMMENT ON FUNCTION tool_audit.summarize_result(jsonb) IS
    'The summary log_call stores for a tool result: success, error and the configured key identifiers, never the payload';
COMMENT ON FUNCTION tool_audit.pseudonymize(text) IS
    'The keyed pseudonym (hmac:<key id>:<hex>) the sanitizer stores for this value under the active key';
COMMENT ON FUNCTION tool_audit.random_key(integer) IS
    'Bytes from the server''s strong random source, for pseudonymization keys';
COMMENT ON FUNCTION tool_audit.acting_role() IS
    'The session''s role as seen from inside a SECURITY DEFINER function, used to attribute admin events';

-- The audit tables
COMMENT ON FUNCTION tool_audit.tool_calls_before_insert() IS
    'Insert trigger of tool_calls: gives the row its id, time and recorder, then sanitizes, summarizes, hashes and chains it';
COMMENT ON FUNCTION tool_audit.admin_events_before_insert() IS
    'Insert trigger of admin_events: gives the row its id, time and recorder, then sanitizes, hashes and chains it';
COMMENT ON FUNCTION tool_audit.refuse_change() IS
    'Trigger that refuses UPDATE, DELETE and TRUNCATE on the append-only tables';
COMMENT ON FUNCTION tool_audit.ddl_guard() IS
    'Event trigger function that refuses DDL which would disable, change or drop the audit trail''s protections';
COMMENT ON TYPE tool_audit.call_trigger IS
    'What prompted a tool call: the user''s request, the model on its own, a retry, a follow-up or the system';

-- Recording API
COMMENT ON FUNCTION tool_audit.log_call(text, jsonb, jsonb, double precision, jsonb) IS
    'Records one tool call (sanitized, its result summarized, hashed and chained) and returns the stored tool_calls row';
COMMENT ON FUNCTION tool_audit.log_event(text, text, jsonb, jsonb) IS
    'Records one administrative event (sanitized, hashed and chained) and returns the stored admin_events row';
COMMENT ON FUNCTION tool_audit.record_own_event(text, jsonb, text) IS
    'Records one of the extension''s own administrative actions as a "tool_audit." admin event';

-- Sanitizing rules and pseudonymization keys
COMMENT ON FUNCTION tool_audit.rules_changed() IS
    'Trigger that makes every session reload the sanitize rules and pseudonymization keys after a change';
COMMENT ON FUNCTION tool_audit.pseudonym_keys_one_active() IS
    'Trigger that retires the active pseudonymization key when a new active key is inserted';
COMMENT ON VIEW tool_audit.pseudonym_key_ids IS
    'The pseudonymization keys'' ids, active flag and creation time, without the key bytes';
COMMENT ON FUNCTION tool_audit.sanitize_rules_check() IS
    'Trigger that keeps the built-in sanitize rules unchangeable and checks a new rule''s regular expression';
COMMENT ON FUNCTION tool_audit.sanitize_rules_audit() IS
    'Trigger that records every change to the sanitize rules as an admin event';
COMMENT ON FUNCTION tool_audit.rotate_pseudonym_key(text, bytea) IS
    'Makes a new pseudonymization key the active one (a random 32-byte key if none is given) and returns its id';

-- Tenants
COMMENT ON FUNCTION tool_audit.bound_tenants() IS
    'The tenants the calling session is limited to by tenant bindings, or NULL if it is bound to none';
COMMENT ON FUNCTION tool_audit.bind_tenant(regrole, text) IS
    'Limits the readers that are members of the role to the tenant (and any others bound); true if the binding is new';
COMMENT ON FUNCTION tool_audit.unbind_tenant(regrole, text) IS
    'Removes a tenant binding of a role; true if there was one';

-- Verification, digests and checking rows
COMMENT ON FUNCTION tool_audit.canonical_json(jsonb) IS
    'The canonical JSON text a row hash covers for a jsonb value (doc/canonical-encoding.md)';
COMMENT ON FUNCTION tool_audit.verify(timestamptz) IS
    'Checks every row''s hash and chain links and the audit tables'' protections: one row per problem found, none if intact';
COMMENT ON FUNCTION tool_audit.digest() IS
    'The head of every chain lane with the time, signed with Ed25519 when a signing key is configured';
COMMENT ON FUNCTION tool_audit.verify_digest(jsonb) IS
    'The problems verify() finds, plus rows an earlier digest covered that are missing or changed, and a bad signature';
COMMENT ON FUNCTION tool_audit.signing_public_key() IS
    'The PEM public key that checks digest signatures, or NULL when no signing key is configured';
COMMENT ON FUNCTION tool_audit.compute_row_hash(tool_audit.tool_calls) IS
    'The row hash of a tool_calls row, recomputed from its columns';
COMMENT ON FUNCTION tool_audit.compute_row_hash(tool_audit.admin_events) IS
    'The row hash of an admin_events row, recomputed from its columns';
COMMENT ON FUNCTION tool_audit.chain_link(bigint, integer, bigint, bytea, bytea) IS
    'The chain_hash a row at this chain position must store, from the previous row''s link and the row hash';
COMMENT ON FUNCTION tool_audit.verify_protections() IS
    'The checks verify() makes of triggers, logging, rules and indexes, without the walk over the rows';
COMMENT ON FUNCTION tool_audit.chain_problem(bigint, integer, bigint, bytea, bytea, bytea, bytea, bigint, bytea, bytea, boolean) IS
    'What is wrong with a row''s place in its chain, from the values check_row() gathers, or NULL if nothing is';
COMMENT ON FUNCTION tool_audit.check_row(tool_audit.tool_calls) IS
    'NULL if the tool_calls row matches its row hash and links to its neighbours in its chain, else the problem';
COMMENT ON FUNCTION tool_audit.check_row(tool_audit.admin_events) IS
    'NULL if the admin_events row matches its row hash and links to its neighbours in its chain, else the problem';

-- Reports
COMMENT ON FUNCTION tool_audit.required_arg(anyelement, text) IS
    'The value, or an error naming the argument if it is NULL (a helper of the reports)';
COMMENT ON FUNCTION tool_audit.check_period(timestamptz, timestamptz) IS
    'Raises an error unless both ends of a report period are given and the start is not after the end';
COMMENT ON FUNCTION tool_audit.iso8601_utc(timestamptz) IS
    'The time as ISO 8601 text in UTC (2026-11-22T17:45:55.123456Z), whatever TimeZone and DateStyle say';
COMMENT ON FUNCTION tool_audit.is_break_glass(tool_audit.tool_calls) IS
    'True if the tool call was an emergency access: "break_glass": true in its context, or a break-glass or emergency purpose';
COMMENT ON FUNCTION tool_audit.report_mark(text) IS
    'The ok, failed or arrow mark of the reports: a UTF-8 symbol when the database encoding allows, ASCII otherwise';
COMMENT ON FUNCTION tool_audit.calls_by_conversation(text) IS
    'The tool calls of a conversation, by turn and then time';
COMMENT ON FUNCTION tool_audit.calls_by_user(text, timestamptz) IS
    'The tool calls of a user since a time (all of them if NULL), by time';
COMMENT ON FUNCTION tool_audit.failures(timestamptz) IS
    'The failed tool calls since a time (all of them if NULL), by time';
COMMENT ON FUNCTION tool_audit.tool_stats(text) IS
    'One tool''s call count, success rate, average and maximum duration and distinct users, as JSON';
COMMENT ON FUNCTION tool_audit.conversation_timeline(text) IS
    'A conversation as one line of text per tool call: turn, outcome, tool, arguments, result summary and duration';
COMMENT ON FUNCTION tool_audit.attribution(bigint) IS
    'Who made a tool call, as one line of text: user, role, model, tool and what prompted it';
COMMENT ON FUNCTION tool_audit.access_report(text, timestamptz, timestamptz) IS
    'Every access to a subject''s data in a period, with the break-glass accesses and a verification of the rows, as JSON';

-- Exports
COMMENT ON FUNCTION tool_audit.export_jsonl(timestamptz, timestamptz) IS
    'Both audit tables'' rows in a period as JSON documents with their hashes and chain positions, to check outside the database';
COMMENT ON FUNCTION tool_audit.fhir_action(text) IS
    'The FHIR AuditEvent action code (C, R, U, D or E) that a tool name''s leading verb implies';
COMMENT ON FUNCTION tool_audit.fhir_string(text) IS
    'The text as a valid FHIR string: whitespace the R4 schema refuses becomes a space, an empty string NULL';
COMMENT ON FUNCTION tool_audit.fhir_code(text) IS
    'The text as a valid FHIR code: trimmed, inner whitespace collapsed, an empty string NULL';
COMMENT ON FUNCTION tool_audit.fhir_audit_event(tool_audit.tool_calls) IS
    'One tool call as a FHIR R4 AuditEvent resource';
COMMENT ON FUNCTION tool_audit.export_fhir(timestamptz, timestamptz, text) IS
    'The tool calls in a period, of one subject if given, as FHIR R4 AuditEvent resources';

-- Sanitizing (issue 12): the detector the C library now knows, and the rules
-- the install script seeds after the 1.0 ones, in the same order, so that
-- they get the same rule_id values as in a fresh install.  The rule guards
-- refuse built-in rows and would record each as an admin event: they are
-- off for these inserts only, and ENABLE ALWAYS again after them.
ALTER TABLE tool_audit.sanitize_rules DROP CONSTRAINT detector_is_known;
ALTER TABLE tool_audit.sanitize_rules ADD CONSTRAINT detector_is_known CHECK (
        match <> 'detector' OR
        pattern IN ('bearer', 'jwt', 'pem_private_key', 'api_key', 'us_ssn', 'card_number',
                    'url_credentials'));
ALTER TABLE tool_audit.sanitize_rules
    DISABLE TRIGGER sanitize_rules_check,
    DISABLE TRIGGER sanitize_rules_audit;

INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority, builtin, note)
SELECT 'key', m, p, 'pseudonymize', 50, true, 'personal data'
  FROM (VALUES ('prefix', 'ssn'), ('regex', '[^i]ssn$'), ('contains', 'socialsecurity')) AS v(m, p);

INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority, builtin, note)
SELECT 'key', m, p, 'redact', 100, true, 'secret'
  FROM (VALUES ('exact', 'pass'), ('exact', 'pw'), ('exact', 'pswd'), ('contains', 'passcode'),
               ('contains', 'credential'), ('suffix', 'sessionid'), ('exact', 'sessid'),
               ('suffix', 'sessionkey'), ('exact', 'otp'), ('exact', 'totp'), ('exact', 'hotp'),
               ('exact', 'otpcode'), ('exact', 'mfacode'), ('exact', 'twofactorcode'),
               ('exact', 'verificationcode'), ('exact', 'pin'), ('exact', 'pincode'),
               ('exact', 'pinnumber'), ('suffix', 'signature'), ('exact', 'sig'),
               ('contains', 'connectionstring'), ('exact', 'connstr'), ('contains', 'accountkey'),
               ('contains', 'sharedaccesskey'), ('exact', 'cookies'), ('contains', 'securitycode')) AS v(m, p);

INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority, builtin, note)
VALUES ('value', 'detector', 'url_credentials', 'redact', 100, true, 'secret found by value');
ALTER TABLE tool_audit.sanitize_rules
    ENABLE ALWAYS TRIGGER sanitize_rules_check,
    ENABLE ALWAYS TRIGGER sanitize_rules_audit;

-- ---------------------------------------------------------------------------
-- No secret in the server log (issue 12, section 3): errors about a value the
-- caller passed name the field and the type expected, never the value.
-- log_call()'s context fields are read in C (quiet_input.c); log_event()
-- reads its context through typed_value() and no longer quotes event_type;
-- log_call_text() and log_event_text() take JSON as text and parse it
-- themselves, where a malformed jsonb literal is quoted by PostgreSQL.
-- ---------------------------------------------------------------------------
-- Text read into typed values with errors that name the field or argument
-- and never quote the text: a secret passed in the wrong place must not
-- reach the server log (doc/caveats.md)
CREATE FUNCTION tool_audit.jsonb_from_text(document text, argument text DEFAULT 'document')
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'jsonb_from_text' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.jsonb_from_text(text, text) IS
    'The JSON text as jsonb; if it is not JSON, an error that names the argument and the line but does not quote the text';

CREATE FUNCTION tool_audit.typed_value(value text, type_of anyelement, field text)
RETURNS anyelement
    AS 'MODULE_PATHNAME', 'typed_value' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.typed_value(text, anyelement, text) IS
    'The text as a value of the second argument''s type (integer, uuid, inet or an enum), or an error that names the context field and the type but does not quote the text';

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

-- The same two with their JSON arguments as text: a malformed JSON literal
-- passed as jsonb is refused by PostgreSQL, whose error quotes it; these
-- parse it themselves, with an error that names the argument only
CREATE FUNCTION tool_audit.log_call_text(
    tool_name   text,
    arguments   text,
    result      text,
    duration_ms double precision,
    context     text DEFAULT '{}')
RETURNS tool_audit.tool_calls
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.log_call(log_call_text.tool_name,
                               tool_audit.jsonb_from_text(log_call_text.arguments, 'arguments'),
                               tool_audit.jsonb_from_text(log_call_text.result, 'result'),
                               log_call_text.duration_ms,
                               tool_audit.jsonb_from_text(log_call_text.context, 'context'))
$$;
COMMENT ON FUNCTION tool_audit.log_call_text(text, text, text, double precision, text) IS
    'log_call() with its JSON arguments as text: JSON that does not parse is refused with an error that names the argument but does not quote it';

CREATE FUNCTION tool_audit.log_event_text(
    event_type text,
    actor      text,
    payload    text,
    context    text DEFAULT '{}')
RETURNS tool_audit.admin_events
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.log_event(log_event_text.event_type, log_event_text.actor,
                                tool_audit.jsonb_from_text(log_event_text.payload, 'payload'),
                                tool_audit.jsonb_from_text(log_event_text.context, 'context'))
$$;
COMMENT ON FUNCTION tool_audit.log_event_text(text, text, text, text) IS
    'log_event() with its JSON arguments as text: JSON that does not parse is refused with an error that names the argument but does not quote it';

-- a key passed as key_id by mistake was quoted in the error
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

REVOKE ALL ON FUNCTION
    tool_audit.jsonb_from_text(text, text),
    tool_audit.typed_value(text, anyelement, text),
    tool_audit.log_call_text(text, text, text, double precision, text),
    tool_audit.log_event_text(text, text, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    tool_audit.log_call_text(text, text, text, double precision, text),
    tool_audit.log_event_text(text, text, text, text),
    tool_audit.jsonb_from_text(text, text)
    TO tool_audit_writer;
