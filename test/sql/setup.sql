-- Fixtures for the whole suite: test roles, a helper that reports SQLSTATEs,
-- and a known pseudonymization key so that pseudonyms are deterministic.
\set VERBOSITY terse
SET client_min_messages = warning;
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['regress_writer', 'regress_reader', 'regress_reader_acme',
                             'regress_acme_member', 'regress_admin', 'regress_nobody']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I', r);
        END IF;
    END LOOP;
END $$;
RESET client_min_messages;
GRANT tool_audit_writer TO regress_writer;
GRANT tool_audit_reader TO regress_reader, regress_reader_acme;
GRANT regress_reader_acme TO regress_acme_member;
GRANT tool_audit_admin TO regress_admin;

-- regress_try(sql): 'ok', or the SQLSTATE and message of the error it raised
CREATE FUNCTION regress_try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- what CREATE EXTENSION made
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'tool_audit';
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'tool\_audit\_%' ORDER BY 1;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass)
   AND NOT tgisinternal ORDER BY 1, 2;
SELECT evtname, evtevent, evtenabled FROM pg_event_trigger ORDER BY 1;
SELECT relname, relrowsecurity, relpersistence FROM pg_class
 WHERE relnamespace = 'tool_audit'::regnamespace AND relkind = 'r' ORDER BY 1;
SELECT count(*) AS builtin_rules FROM tool_audit.sanitize_rules WHERE builtin;

-- CREATE EXTENSION made one key, named after the time of installation
SELECT key_id ~ '^k[0-9]{20}$' AS install_key_named, active FROM tool_audit.pseudonym_key_ids;
SELECT key_id AS install_key FROM tool_audit.pseudonym_key_ids \gset
-- a fixed key: every pseudonym below is reproducible; the install key retires
SELECT tool_audit.rotate_pseudonym_key('test', decode(repeat('ab', 32), 'hex'));
SELECT CASE WHEN key_id = :'install_key' THEN 'the install key' ELSE key_id END AS key, active
  FROM tool_audit.pseudonym_key_ids ORDER BY active;
SELECT event_type, actor, payload->>'after' AS after, payload->>'before' = :'install_key' AS before_was_install_key
  FROM tool_audit.admin_events ORDER BY id;
