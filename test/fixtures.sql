\set ECHO none
-- The regression tests' fixtures, included at the top of every test/sql file
-- that needs them with
--     \getenv abs_srcdir PG_ABS_SRCDIR
--     \i :abs_srcdir/fixtures.sql
-- (pg_regress sets PG_ABS_SRCDIR to its --inputdir).  Not a test itself (not in
-- REGRESS).  It prints nothing, and may run any number of times, in any order:
--   * the test roles, created if missing, with their tool_audit roles;
--   * regress_try(sql): 'ok', or the SQLSTATE and message of the error it raised;
--   * a fixed pseudonymization key 'test' (32 bytes of 0xab), made active
--     once, so that every pseudonym is reproducible (the install key retires;
--     setup.sql shows the rotation).  In a database that has no tool_audit
--     yet (reports and exports make their own), the key is CREATE EXTENSION's.
SET client_min_messages = warning;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES
            ('regress_writer', 'tool_audit_writer'), ('regress_reader', 'tool_audit_reader'),
            ('regress_reader_acme', 'tool_audit_reader'), ('regress_acme_member', 'regress_reader_acme'),
            ('regress_admin', 'tool_audit_admin'), ('regress_nobody', NULL)) AS t(name, member_of)
    LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.name) THEN
            EXECUTE format('CREATE ROLE %I', r.name);
        END IF;
        IF r.member_of IS NOT NULL AND NOT EXISTS (
                SELECT FROM pg_auth_members m
                 WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = r.name)
                   AND m.roleid = (SELECT oid FROM pg_roles WHERE rolname = r.member_of)) THEN
            EXECUTE format('GRANT %I TO %I', r.member_of, r.name);
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION regress_try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'tool_audit') THEN
        IF NOT EXISTS (SELECT FROM tool_audit.pseudonym_key_ids WHERE key_id = 'test') THEN
            PERFORM tool_audit.rotate_pseudonym_key('test', decode(repeat('ab', 32), 'hex'));
        ELSIF NOT EXISTS (SELECT FROM tool_audit.pseudonym_key_ids WHERE key_id = 'test' AND active) THEN
            -- a key id cannot be used twice: say so rather than fail on its primary key
            RAISE EXCEPTION 'fixtures: the fixed key ''test'' was retired by an earlier test file'
                USING HINT = 'A test that rotates keys must roll the rotation back, or use a database of its own.';
        END IF;
    END IF;
END $$;
RESET client_min_messages;
\set ECHO all
