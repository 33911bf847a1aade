
-- ---------------------------------------------------------------------------
-- Recording API
-- ---------------------------------------------------------------------------

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
COMMENT ON FUNCTION tool_audit.log_event(text, text, jsonb, jsonb) IS
    'Records one administrative event (sanitized, hashed and chained) and returns the stored admin_events row';

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
