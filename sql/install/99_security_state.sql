
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

SELECT tool_audit.record_security_expectation();
