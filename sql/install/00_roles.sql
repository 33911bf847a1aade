/*
 * tool_audit--1.3.sql: the append-only, sanitized audit trail for AI tool
 * calls and admin events, created as it is now in one pass.
 *
 * Built by the Makefile from the files of sql/install, in name order; edit
 * those, not the built script.  Databases created at 1.0, 1.1 or 1.2 reach
 * the same catalogs through sql/tool_audit--1.0--1.1.sql and the scripts
 * after it (test/t/010_fresh_vs_upgraded.pl compares the two).
 */

\echo Use "CREATE EXTENSION tool_audit" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Roles.  Roles are cluster-wide: create them once, keep them across
-- DROP/CREATE EXTENSION and across databases.
-- ---------------------------------------------------------------------------
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tool_audit_writer', 'tool_audit_reader', 'tool_audit_admin',
                             'tool_audit_verifier']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;
