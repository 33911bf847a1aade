
-- ---------------------------------------------------------------------------
-- The sanitizer and its tools (C).  sanitize_rules and pseudonym_keys, which
-- drive them, are created below with the tables.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.sanitize(document jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sanitize' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.sanitize(jsonb) IS
    'The document with secrets redacted and personal data pseudonymized at any depth, as the audit tables would store it';

CREATE FUNCTION tool_audit.sanitize_text(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'sanitize_text' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.sanitize_text(text) IS
    'The string with the value rules (detectors and regular expressions) applied, as the audit tables would store it';

-- NULL is a result too: it gives {"success": true}
CREATE FUNCTION tool_audit.summarize_result(result jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'summarize_result' LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.summarize_result(jsonb) IS
    'The summary log_call stores for a tool result: success, error and the configured key identifiers, never the payload';

CREATE FUNCTION tool_audit.pseudonymize(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'pseudonymize' LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.pseudonymize(text) IS
    'The keyed pseudonym (hmac:<key id>:<hex>) the sanitizer stores for this value under the active key';

CREATE FUNCTION tool_audit.random_key(length integer DEFAULT 32) RETURNS bytea
    AS 'MODULE_PATHNAME', 'random_key' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.random_key(integer) IS
    'Bytes from the server''s strong random source, for pseudonymization keys';

CREATE FUNCTION tool_audit.acting_role() RETURNS text
    AS 'MODULE_PATHNAME', 'acting_role' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.acting_role() IS
    'The session''s role as seen from inside a SECURITY DEFINER function, used to attribute admin events';
