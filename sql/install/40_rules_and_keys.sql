
-- ---------------------------------------------------------------------------
-- Sanitizing rules and pseudonymization keys
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.rules_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'rules_changed' LANGUAGE C;
COMMENT ON FUNCTION tool_audit.rules_changed() IS
    'Trigger that makes every session reload the sanitize rules and pseudonymization keys after a change';

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
        pattern IN ('bearer', 'jwt', 'pem_private_key', 'api_key', 'us_ssn', 'card_number',
                    'url_credentials'))
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

-- Added in 1.3 (issue 12): short and spelled-out key names for passwords,
-- sessions, one-time codes, signatures, connection strings and cloud keys;
-- social security numbers under longer keys; passwords inside URLs.
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
COMMENT ON FUNCTION tool_audit.pseudonym_keys_one_active() IS
    'Trigger that retires the active pseudonymization key when a new active key is inserted';
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
COMMENT ON VIEW tool_audit.pseudonym_key_ids IS
    'The pseudonymization keys'' ids, active flag and creation time, without the key bytes';

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
COMMENT ON FUNCTION tool_audit.sanitize_rules_check() IS
    'Trigger that keeps the built-in sanitize rules unchangeable and checks a new rule''s regular expression';

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

-- Every change to the rules is itself an admin event.
CREATE FUNCTION tool_audit.sanitize_rules_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    restored boolean := current_setting('tool_audit.restoring', true) = 'on';
BEGIN
    -- a superuser's restore re-inserts rules whose events the dump already
    -- holds: with tool_audit.restoring = on, or with no setting a rule whose
    -- rule_id this session did not draw from the sequence (a dump brings its
    -- rule_ids and sets the sequence after the rows)
    IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = tool_audit.acting_role()) THEN
        IF NOT coalesce(restored, false) AND TG_OP = 'INSERT' THEN
            BEGIN
                restored := NEW.rule_id > currval('tool_audit.sanitize_rules_rule_id_seq');
            EXCEPTION WHEN object_not_in_prerequisite_state THEN
                restored := true;       -- currval not yet defined in this session
            END;
        END IF;
        IF restored THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM tool_audit.record_own_event(
        'sanitize_rule.' || lower(TG_OP),
        jsonb_build_object(
            'before', CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            'after',  CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tool_audit.sanitize_rules_audit() IS
    'Trigger that records every change to the sanitize rules as an admin event';
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
COMMENT ON FUNCTION tool_audit.rotate_pseudonym_key(text, bytea) IS
    'Makes a new pseudonymization key the active one (a random 32-byte key if none is given) and returns its id';
