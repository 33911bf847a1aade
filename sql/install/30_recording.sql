
-- ---------------------------------------------------------------------------
-- Recording API
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

-- log_call() is in C, with the contract of an audited INSERT (it runs the
-- insert trigger's work and inserts the row itself, so it needs no SECURITY
-- DEFINER and no rule can swallow its row)
CREATE FUNCTION tool_audit.log_call(
    tool_name   text,
    arguments   jsonb,
    result      jsonb,
    duration_ms double precision,
    context     jsonb DEFAULT '{}')
RETURNS tool_audit.tool_calls
    AS 'MODULE_PATHNAME', 'log_call' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.log_call(text, jsonb, jsonb, double precision, jsonb) IS
    'Records one tool call (sanitized, its result summarized, hashed and chained) and returns the stored tool_calls row';

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
COMMENT ON FUNCTION tool_audit.record_own_event(text, jsonb, text) IS
    'Records one of the extension''s own administrative actions as a "tool_audit." admin event';

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
