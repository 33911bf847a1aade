/* tool_audit--1.0.sql: the append-only, sanitized audit trail for AI tool calls and admin events */

\echo Use "CREATE EXTENSION tool_audit" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Roles.  Roles are cluster-wide: create them once, keep them across
-- DROP/CREATE EXTENSION and across databases.
-- ---------------------------------------------------------------------------
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tool_audit_writer', 'tool_audit_reader', 'tool_audit_admin']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

-- ---------------------------------------------------------------------------
-- C functions
-- ---------------------------------------------------------------------------

-- sanitize(document): secrets redacted and personal data pseudonymized, at any depth
CREATE FUNCTION tool_audit.sanitize(document jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sanitize' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- sanitize_text(value): the value rules (detectors, regexes) applied to one string
CREATE FUNCTION tool_audit.sanitize_text(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'sanitize_text' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- summarize_result(result): success, error and key identifiers only, never the payload
CREATE FUNCTION tool_audit.summarize_result(result jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'summarize_result' LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;

-- pseudonymize(value): the keyed pseudonym the sanitizer stores for this value
CREATE FUNCTION tool_audit.pseudonymize(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'pseudonymize' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- random_key(length): bytes from the server's strong random source, for keys
CREATE FUNCTION tool_audit.random_key(length integer DEFAULT 32) RETURNS bytea
    AS 'MODULE_PATHNAME', 'random_key' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- acting_role(): the session's role, seen through SECURITY DEFINER functions
CREATE FUNCTION tool_audit.acting_role() RETURNS text
    AS 'MODULE_PATHNAME', 'acting_role' LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE FUNCTION tool_audit.tool_calls_before_insert() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tool_calls_before_insert' LANGUAGE C;
CREATE FUNCTION tool_audit.admin_events_before_insert() RETURNS trigger
    AS 'MODULE_PATHNAME', 'admin_events_before_insert' LANGUAGE C;
CREATE FUNCTION tool_audit.refuse_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'refuse_change' LANGUAGE C;
CREATE FUNCTION tool_audit.rules_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'rules_changed' LANGUAGE C;
CREATE FUNCTION tool_audit.ddl_guard() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'ddl_guard' LANGUAGE C;

-- ---------------------------------------------------------------------------
-- The audit tables
-- ---------------------------------------------------------------------------
CREATE TYPE tool_audit.call_trigger AS ENUM
    ('user_request', 'proactive', 'retry', 'follow_up', 'system');

-- ids come from these sequences through the insert triggers, never from the
-- caller (an INSERT that brings an id is refused).
CREATE SEQUENCE tool_audit.tool_calls_id_seq;
CREATE SEQUENCE tool_audit.admin_events_id_seq;

CREATE TABLE tool_audit.tool_calls (
    id               bigint PRIMARY KEY,
    event_id         uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid() UNIQUE,
    recorded_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tenant_id        text,
    conversation_id  text,
    turn_number      integer CONSTRAINT turn_number_not_negative CHECK (turn_number >= 0),
    user_id          text,
    user_role        text,
    model            text,
    tool_name        text NOT NULL CONSTRAINT tool_name_not_empty CHECK (tool_name <> ''),
    tool_call_id     text,
    call_trigger     tool_audit.call_trigger NOT NULL DEFAULT 'user_request',
    purpose          text,
    subject_id       text,
    arguments        jsonb NOT NULL DEFAULT '{}',
    result_summary   jsonb NOT NULL DEFAULT '{}',
    success          boolean NOT NULL,
    error            text,
    duration_ms      double precision
                     CONSTRAINT duration_ms_finite_not_negative
                     CHECK (duration_ms >= 0 AND duration_ms < 'Infinity'),
    client_ip        inet,
    user_agent       text,
    session_metadata jsonb NOT NULL DEFAULT '{}',
    recorded_by      text NOT NULL
);
COMMENT ON TABLE tool_audit.tool_calls IS 'One row per AI tool call; append-only, sanitized on insert';

CREATE TABLE tool_audit.admin_events (
    id          bigint PRIMARY KEY,
    event_id    uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid() UNIQUE,
    occurred_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    event_type  text NOT NULL
                CONSTRAINT event_type_is_dotted
                CHECK (event_type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    actor       text NOT NULL CONSTRAINT actor_not_empty CHECK (actor <> ''),
    actor_type  text NOT NULL DEFAULT 'user'
                CONSTRAINT actor_type_is_known CHECK (actor_type IN ('user', 'service')),
    tenant_id   text,
    payload     jsonb NOT NULL DEFAULT '{}',
    reason      text,
    source_ip   inet,
    metadata    jsonb NOT NULL DEFAULT '{}',
    recorded_by text NOT NULL
);
ALTER SEQUENCE tool_audit.tool_calls_id_seq OWNED BY tool_audit.tool_calls.id;
ALTER SEQUENCE tool_audit.admin_events_id_seq OWNED BY tool_audit.admin_events.id;
COMMENT ON TABLE tool_audit.admin_events IS 'Administrative actions (prompt, policy, billing, impersonation, kill switch); append-only';

CREATE TRIGGER tool_calls_before_insert
    BEFORE INSERT ON tool_audit.tool_calls
    FOR EACH ROW EXECUTE FUNCTION tool_audit.tool_calls_before_insert();
CREATE TRIGGER tool_calls_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.tool_calls
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
-- row level as well: logical replication's apply worker fires only row triggers
CREATE TRIGGER tool_calls_append_only_row
    BEFORE UPDATE OR DELETE ON tool_audit.tool_calls
    FOR EACH ROW EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.tool_calls
    ENABLE ALWAYS TRIGGER tool_calls_before_insert,
    ENABLE ALWAYS TRIGGER tool_calls_append_only,
    ENABLE ALWAYS TRIGGER tool_calls_append_only_row;

CREATE TRIGGER admin_events_before_insert
    BEFORE INSERT ON tool_audit.admin_events
    FOR EACH ROW EXECUTE FUNCTION tool_audit.admin_events_before_insert();
CREATE TRIGGER admin_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON tool_audit.admin_events
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
CREATE TRIGGER admin_events_append_only_row
    BEFORE UPDATE OR DELETE ON tool_audit.admin_events
    FOR EACH ROW EXECUTE FUNCTION tool_audit.refuse_change();
ALTER TABLE tool_audit.admin_events
    ENABLE ALWAYS TRIGGER admin_events_before_insert,
    ENABLE ALWAYS TRIGGER admin_events_append_only,
    ENABLE ALWAYS TRIGGER admin_events_append_only_row;

-- ---------------------------------------------------------------------------
-- Sanitizing rules and pseudonymization keys
-- ---------------------------------------------------------------------------
CREATE SEQUENCE tool_audit.sanitize_rules_rule_id_seq AS integer;
CREATE TABLE tool_audit.sanitize_rules (
    rule_id    integer PRIMARY KEY DEFAULT nextval('tool_audit.sanitize_rules_rule_id_seq'),
    applies_to text NOT NULL CONSTRAINT applies_to_key_or_value CHECK (applies_to IN ('key', 'value')),
    match      text NOT NULL,
    pattern    text NOT NULL CONSTRAINT pattern_not_empty CHECK (pattern <> ''),
    action     text NOT NULL
               CONSTRAINT action_is_known CHECK (action IN ('keep', 'redact', 'pseudonymize', 'drop')),
    priority   integer NOT NULL DEFAULT 100,
    enabled    boolean NOT NULL DEFAULT true,
    builtin    boolean NOT NULL DEFAULT false,
    note       text,
    CONSTRAINT match_fits_target CHECK (
        (applies_to = 'key' AND match IN ('exact', 'prefix', 'suffix', 'contains', 'regex')) OR
        (applies_to = 'value' AND match IN ('regex', 'detector'))),
    CONSTRAINT detector_is_known CHECK (
        match <> 'detector' OR
        pattern IN ('bearer', 'jwt', 'pem_private_key', 'api_key', 'us_ssn', 'card_number'))
);
ALTER SEQUENCE tool_audit.sanitize_rules_rule_id_seq OWNED BY tool_audit.sanitize_rules.rule_id;
COMMENT ON TABLE tool_audit.sanitize_rules IS 'What the sanitizer redacts, pseudonymizes, drops or keeps; first match by (priority, rule_id) wins';

-- Built-in rules.  Personal data (priority 50) is pseudonymized so it still
-- links across rows; secrets (priority 100) are redacted.  "ssn" is in both
-- lists of the seed: the pseudonymizing rule wins, being irreversible
-- without the key yet linkable.
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority, builtin, note)
SELECT 'key', m, p, 'pseudonymize', 50, true, 'personal data'
  FROM (VALUES ('exact', 'patient_name'), ('exact', 'ssn'), ('exact', 'social_security_number'),
               ('exact', 'date_of_birth'), ('exact', 'dob'), ('exact', 'birth_date'),
               ('exact', 'address'), ('exact', 'home_address'), ('exact', 'street_address'),
               ('exact', 'phone'), ('exact', 'phone_number'), ('exact', 'mobile'),
               ('exact', 'email'), ('exact', 'email_address')) AS v(m, p);

INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority, builtin, note)
SELECT 'key', m, p, 'redact', 100, true, 'secret'
  FROM (VALUES ('contains', 'password'), ('contains', 'passwd'), ('contains', 'passphrase'),
               ('exact', 'pwd'), ('contains', 'secret'), ('suffix', 'token'),
               ('contains', 'apikey'), ('exact', 'auth'), ('contains', 'authorization'),
               ('exact', 'cookie'), ('exact', 'set_cookie'), ('contains', 'privatekey'),
               ('contains', 'creditcard'), ('contains', 'cardnumber'), ('exact', 'cc_number'),
               ('exact', 'cvv'), ('exact', 'cvc'), ('exact', 'cvv2'), ('exact', 'ssn')) AS v(m, p);

INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority, builtin, note)
VALUES ('value', 'detector', 'pem_private_key', 'redact', 100, true, 'secret found by value'),
       ('value', 'detector', 'jwt', 'redact', 100, true, 'secret found by value'),
       ('value', 'detector', 'bearer', 'redact', 100, true, 'secret found by value'),
       ('value', 'detector', 'api_key', 'redact', 100, true, 'secret found by value'),
       ('value', 'detector', 'card_number', 'redact', 100, true, 'card number (Luhn) found by value'),
       ('value', 'detector', 'us_ssn', 'pseudonymize', 100, true, 'US SSN found by value');

CREATE TABLE tool_audit.pseudonym_keys (
    key_id     text PRIMARY KEY CONSTRAINT key_id_is_simple CHECK (key_id ~ '^[A-Za-z0-9_-]{1,63}$'),
    key        bytea NOT NULL CONSTRAINT key_is_long_enough CHECK (pg_catalog.length(key) BETWEEN 32 AND 64),
    active     boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE UNIQUE INDEX pseudonym_keys_one_active ON tool_audit.pseudonym_keys (active) WHERE active;
COMMENT ON TABLE tool_audit.pseudonym_keys IS 'HMAC keys for pseudonyms; readable by no role but the owner';

-- Inserting an active key retires the one active before it.  rotate_pseudonym_key()
-- relies on this, and so does a restore: pg_restore creates the extension (and
-- with it a fresh install key), then COPYs the dumped keys; the dumped active key
-- takes over again, so pseudonyms made before and after the restore still link.
CREATE FUNCTION tool_audit.pseudonym_keys_one_active() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.active THEN
        UPDATE tool_audit.pseudonym_keys k SET active = false
         WHERE k.active AND k.key_id <> NEW.key_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER pseudonym_keys_one_active
    BEFORE INSERT ON tool_audit.pseudonym_keys
    FOR EACH ROW EXECUTE FUNCTION tool_audit.pseudonym_keys_one_active();

-- The install key: named after the moment of installation, so that a dumped
-- key (named after an earlier one) never collides with it on restore.
INSERT INTO tool_audit.pseudonym_keys (key_id, key, active)
VALUES ('k' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS'),
        tool_audit.random_key(32), true);

CREATE VIEW tool_audit.pseudonym_key_ids AS
    SELECT key_id, active, created_at FROM tool_audit.pseudonym_keys;

CREATE FUNCTION tool_audit.sanitize_rules_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.builtin THEN
        RAISE EXCEPTION 'built-in sanitize rule % cannot be changed', OLD.rule_id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Add a rule with a lower priority number (action ''keep'' to exempt a key) to override it.';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF NEW.builtin THEN
        RAISE EXCEPTION 'only the extension defines built-in sanitize rules'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.match = 'regex' THEN
        PERFORM '' ~ NEW.pattern;       -- raises invalid_regular_expression
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER sanitize_rules_check
    BEFORE INSERT OR UPDATE OR DELETE ON tool_audit.sanitize_rules
    FOR EACH ROW EXECUTE FUNCTION tool_audit.sanitize_rules_check();
CREATE TRIGGER sanitize_rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.sanitize_rules
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();
CREATE TRIGGER pseudonym_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.pseudonym_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();
-- TRUNCATE would remove the built-in rules (or every key) with no event
CREATE TRIGGER sanitize_rules_no_truncate
    BEFORE TRUNCATE ON tool_audit.sanitize_rules
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();
CREATE TRIGGER pseudonym_keys_no_truncate
    BEFORE TRUNCATE ON tool_audit.pseudonym_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.refuse_change();

-- ---------------------------------------------------------------------------
-- Recording API
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.log_call(
    tool_name   text,
    arguments   jsonb,
    result      jsonb,
    duration_ms double precision,
    context     jsonb DEFAULT '{}')
RETURNS tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ctx jsonb := coalesce(context, '{}');
    stored tool_audit.tool_calls;
BEGIN
    IF jsonb_typeof(ctx) <> 'object' THEN
        RAISE EXCEPTION 'context must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is a JSON %s.', jsonb_typeof(ctx));
    END IF;
    IF tool_name IS NULL OR tool_name = '' THEN
        RAISE EXCEPTION 'tool_name must not be empty'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- attribution values land in text columns: an object there would escape the key
    -- rules.  One jsonpath call: PL/pgSQL sets expressions up again in every
    -- transaction, and thirteen separate tests cost ten times as much.
    IF jsonb_path_exists(ctx, '$.keyvalue() ? ((@.value.type() == "object" || @.value.type() == "array") && (@.key == "conversation_id" || @.key == "turn_number" || @.key == "user_id" || @.key == "user_role" || @.key == "model" || @.key == "tenant_id" || @.key == "call_trigger" || @.key == "purpose" || @.key == "subject_id" || @.key == "tool_call_id" || @.key == "client_ip" || @.key == "user_agent" || @.key == "event_id"))') THEN
        RAISE EXCEPTION 'attribution values in context must be scalars'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'conversation_id, turn_number, user_id, user_role, model, tenant_id, call_trigger, purpose, subject_id, tool_call_id, client_ip, user_agent and event_id are stored as text or numbers.',
                  HINT = 'Put structured context under another key: it goes to session_metadata, sanitized.';
    END IF;

    INSERT INTO tool_audit.tool_calls
        (event_id, tenant_id, conversation_id, turn_number, user_id, user_role, model,
         tool_name, tool_call_id, call_trigger, purpose, subject_id,
         arguments, result_summary, success, error, duration_ms,
         client_ip, user_agent, session_metadata)
    VALUES
        (coalesce((ctx->>'event_id')::uuid, gen_random_uuid()),
         ctx->>'tenant_id', ctx->>'conversation_id', (ctx->>'turn_number')::integer,
         ctx->>'user_id', ctx->>'user_role', ctx->>'model',
         log_call.tool_name, ctx->>'tool_call_id',
         coalesce((ctx->>'call_trigger')::tool_audit.call_trigger, 'user_request'),
         ctx->>'purpose', ctx->>'subject_id',
         log_call.arguments, log_call.result, NULL, NULL, log_call.duration_ms,
         (ctx->>'client_ip')::inet, ctx->>'user_agent',
         ctx - ARRAY['event_id', 'tenant_id', 'conversation_id', 'turn_number', 'user_id',
                     'user_role', 'model', 'tool_call_id', 'call_trigger', 'purpose',
                     'subject_id', 'client_ip', 'user_agent'])
    RETURNING * INTO stored;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit row for tool call "%" was not stored', tool_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Something on tool_audit.tool_calls discarded the insert.';
    END IF;
    RETURN stored;
END
$$;

CREATE FUNCTION tool_audit.log_event(
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
    IF starts_with(event_type, 'tool_audit.') THEN
        RAISE EXCEPTION 'event types starting with "tool_audit." are reserved for tool_audit itself'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The event type given was "%s".', event_type);
    END IF;
    IF event_type !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' THEN
        RAISE EXCEPTION 'invalid event type "%"', event_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Event types are dotted lowercase names.',
                  HINT = 'For example prompt.update, policy.update, impersonation.start, killswitch.enable.';
    END IF;

    INSERT INTO tool_audit.admin_events
        (event_id, event_type, actor, actor_type, tenant_id, payload, reason, source_ip, metadata)
    VALUES
        (coalesce((ctx->>'event_id')::uuid, gen_random_uuid()),
         log_event.event_type, log_event.actor, coalesce(ctx->>'actor_type', 'user'),
         ctx->>'tenant_id', log_event.payload, ctx->>'reason', (ctx->>'source_ip')::inet,
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

-- record_own_event(): the extension's own administration, under the reserved
-- "tool_audit." event types; callable only by the owner (its own functions).
CREATE FUNCTION tool_audit.record_own_event(event_type text, payload jsonb, tenant_id text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload)
    VALUES ('tool_audit.' || record_own_event.event_type, tool_audit.acting_role(), 'user',
            record_own_event.tenant_id, record_own_event.payload)
$$;

-- Every change to the rules is itself an admin event.
CREATE FUNCTION tool_audit.sanitize_rules_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- a superuser's restore re-inserts rules whose events the dump already holds
    IF current_setting('tool_audit.restoring', true) = 'on'
       AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = tool_audit.acting_role()) THEN
        RETURN NULL;
    END IF;
    PERFORM tool_audit.record_own_event(
        'sanitize_rule.' || lower(TG_OP),
        jsonb_build_object(
            'before', CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            'after',  CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END));
    RETURN NULL;
END
$$;
CREATE TRIGGER sanitize_rules_audit
    AFTER INSERT OR UPDATE OR DELETE ON tool_audit.sanitize_rules
    FOR EACH ROW EXECUTE FUNCTION tool_audit.sanitize_rules_audit();
-- session_replication_role = replica must not skip the rules' own guards either
ALTER TABLE tool_audit.sanitize_rules
    ENABLE ALWAYS TRIGGER sanitize_rules_check,
    ENABLE ALWAYS TRIGGER sanitize_rules_changed,
    ENABLE ALWAYS TRIGGER sanitize_rules_no_truncate,
    ENABLE ALWAYS TRIGGER sanitize_rules_audit;
ALTER TABLE tool_audit.pseudonym_keys
    ENABLE ALWAYS TRIGGER pseudonym_keys_one_active,
    ENABLE ALWAYS TRIGGER pseudonym_keys_changed,
    ENABLE ALWAYS TRIGGER pseudonym_keys_no_truncate;

CREATE FUNCTION tool_audit.rotate_pseudonym_key(key_id text DEFAULT NULL, key bytea DEFAULT NULL)
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
    IF rotate_pseudonym_key.key_id !~ '^[A-Za-z0-9_-]{1,63}$' THEN
        RAISE EXCEPTION 'invalid key id "%"', rotate_pseudonym_key.key_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Key ids are 1 to 63 letters, digits, "_" or "-"; they appear in every pseudonym.';
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

-- ---------------------------------------------------------------------------
-- Tenants: which tenants a reader may see
-- ---------------------------------------------------------------------------
CREATE TABLE tool_audit.tenant_bindings (
    role      regrole NOT NULL,
    tenant_id text NOT NULL,
    PRIMARY KEY (role, tenant_id)
);
COMMENT ON TABLE tool_audit.tenant_bindings IS 'Readers that are members of a bound role see only the bound tenants';

-- bound_tenants(): the tenants the calling session is limited to: the union of
-- the bindings of every role that its current role (after SET ROLE) or its login
-- role is a member of; NULL if none is bound.  Both count, so a bound login
-- cannot escape its binding with SET ROLE to an unbound role it belongs to.  It
-- answers for the caller only: nobody can list other roles' tenants with it.
CREATE FUNCTION tool_audit.bound_tenants() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- superusers are members of every role by definition: their memberships say nothing
    SELECT array_agg(DISTINCT b.tenant_id ORDER BY b.tenant_id)
      FROM tool_audit.tenant_bindings b,
           unnest(ARRAY[tool_audit.acting_role()::name, SESSION_USER]) AS r(name)
     WHERE NOT coalesce((SELECT a.rolsuper FROM pg_authid a WHERE a.rolname = r.name), false)
       AND pg_has_role(r.name, b.role::oid, 'MEMBER')
$$;

CREATE FUNCTION tool_audit.bind_tenant(role regrole, tenant_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added boolean;
BEGIN
    IF role IS NULL OR tenant_id IS NULL THEN
        RAISE EXCEPTION 'role and tenant_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO tool_audit.tenant_bindings VALUES (bind_tenant.role, bind_tenant.tenant_id)
        ON CONFLICT DO NOTHING;
    added := FOUND;
    IF added THEN
        PERFORM tool_audit.record_own_event('tenant_binding.add',
                                            jsonb_build_object('after', jsonb_build_object('role', role::text, 'tenant_id', tenant_id)),
                                            tenant_id);
    END IF;
    RETURN added;
END
$$;

CREATE FUNCTION tool_audit.unbind_tenant(role regrole, tenant_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_one boolean;
BEGIN
    DELETE FROM tool_audit.tenant_bindings b
     WHERE b.role = unbind_tenant.role AND b.tenant_id = unbind_tenant.tenant_id;
    found_one := FOUND;
    IF found_one THEN
        PERFORM tool_audit.record_own_event('tenant_binding.remove',
                                            jsonb_build_object('before', jsonb_build_object('role', role::text, 'tenant_id', tenant_id)),
                                            tenant_id);
    END IF;
    RETURN found_one;
END
$$;

-- ---------------------------------------------------------------------------
-- Row-level security: writers insert, readers read their tenants, admins read all
-- ---------------------------------------------------------------------------
ALTER TABLE tool_audit.tool_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_audit.admin_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY writer_insert ON tool_audit.tool_calls
    FOR INSERT TO tool_audit_writer WITH CHECK (true);
CREATE POLICY writer_insert ON tool_audit.admin_events
    FOR INSERT TO tool_audit_writer WITH CHECK (true);
-- what ORMs need: INSERT ... RETURNING id, ON CONFLICT (event_id) DO NOTHING;
-- a writer sees the id and event_id of the rows it recorded itself, nothing else
CREATE POLICY writer_own_ids ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_writer USING (recorded_by = CURRENT_USER);
CREATE POLICY writer_own_ids ON tool_audit.admin_events
    FOR SELECT TO tool_audit_writer USING (recorded_by = CURRENT_USER);
CREATE POLICY admin_read ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY admin_read ON tool_audit.admin_events
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY reader_tenant ON tool_audit.tool_calls
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));
CREATE POLICY reader_tenant ON tool_audit.admin_events
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));

-- ---------------------------------------------------------------------------
-- Privileges: PUBLIC gets nothing
-- ---------------------------------------------------------------------------
REVOKE ALL ON SCHEMA tool_audit FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA tool_audit FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tool_audit FROM PUBLIC;
REVOKE ALL ON TYPE tool_audit.call_trigger FROM PUBLIC;

GRANT USAGE ON SCHEMA tool_audit TO tool_audit_writer, tool_audit_reader, tool_audit_admin;
GRANT USAGE ON TYPE tool_audit.call_trigger TO tool_audit_writer, tool_audit_reader, tool_audit_admin;

GRANT INSERT ON tool_audit.tool_calls, tool_audit.admin_events TO tool_audit_writer;
GRANT SELECT (id, event_id) ON tool_audit.tool_calls, tool_audit.admin_events TO tool_audit_writer;
GRANT EXECUTE ON FUNCTION
    tool_audit.log_call(text, jsonb, jsonb, double precision, jsonb),
    tool_audit.log_event(text, text, jsonb, jsonb),
    tool_audit.sanitize(jsonb),
    tool_audit.sanitize_text(text),
    tool_audit.summarize_result(jsonb)
    TO tool_audit_writer;

GRANT SELECT ON tool_audit.tool_calls, tool_audit.admin_events TO tool_audit_reader, tool_audit_admin;
GRANT EXECUTE ON FUNCTION tool_audit.bound_tenants() TO tool_audit_reader, tool_audit_admin;

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

-- ---------------------------------------------------------------------------
-- pg_dump keeps the audit data (extension tables are otherwise not dumped)
-- ---------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tool_calls', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tool_calls_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.admin_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.admin_events', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.sanitize_rules', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.sanitize_rules_rule_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.pseudonym_keys', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tenant_bindings', '');

-- ---------------------------------------------------------------------------
-- DDL guards: last, so that the script's own DDL above is not inspected
-- ---------------------------------------------------------------------------
CREATE EVENT TRIGGER tool_audit_ddl_start ON ddl_command_start
    EXECUTE FUNCTION tool_audit.ddl_guard();
CREATE EVENT TRIGGER tool_audit_sql_drop ON sql_drop
    EXECUTE FUNCTION tool_audit.ddl_guard();
CREATE EVENT TRIGGER tool_audit_table_rewrite ON table_rewrite
    EXECUTE FUNCTION tool_audit.ddl_guard();
ALTER EVENT TRIGGER tool_audit_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER tool_audit_sql_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER tool_audit_table_rewrite ENABLE ALWAYS;
