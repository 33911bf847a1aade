-- Event triggers refuse the DDL that would switch protection off or lose rows,
-- for superusers too.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
-- the trail holds rows of this file's own (DROP is refused below because of them)
SELECT tool_name FROM tool_audit.log_call('guarded_call', '{}', '{}', 1, '{"conversation_id": "conv_ddl_guard"}');
SELECT event_type FROM tool_audit.log_event('policy.update', 'ddl_guard', '{}', '{}');
SELECT count(*) AS calls FROM tool_audit.tool_calls \gset

-- triggers
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls DISABLE TRIGGER tool_calls_append_only$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls DISABLE TRIGGER ALL$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls DISABLE TRIGGER USER$$);
SELECT regress_try($$ALTER TABLE tool_audit.admin_events DISABLE TRIGGER admin_events_before_insert$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ENABLE TRIGGER tool_calls_append_only$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ENABLE REPLICA TRIGGER tool_calls_append_only$$);
SELECT regress_try($$DROP TRIGGER tool_calls_append_only ON tool_audit.tool_calls$$);
SELECT regress_try($$DROP TRIGGER admin_events_before_insert ON tool_audit.admin_events$$);
SELECT regress_try($$CREATE TRIGGER swallow BEFORE INSERT ON tool_audit.tool_calls
                     FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()$$);
-- rules that discard or redirect rows
SELECT regress_try($$CREATE RULE swallow AS ON INSERT TO tool_audit.tool_calls DO INSTEAD NOTHING$$);
SELECT regress_try($$CREATE RULE swallow AS ON DELETE TO tool_audit.admin_events DO INSTEAD NOTHING$$);
-- rewrites and data loss through columns and constraints
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ALTER COLUMN error TYPE varchar(10)$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ALTER COLUMN error TYPE text USING 'x'$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls SET UNLOGGED$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls DROP COLUMN arguments$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ADD COLUMN c int DEFAULT 1 CHECK (tool_name <> 'refund')$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls DROP CONSTRAINT tool_name_not_empty$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ALTER COLUMN tool_name DROP NOT NULL$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ALTER COLUMN id DROP IDENTITY$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls DISABLE ROW LEVEL SECURITY$$);
-- policies
SELECT regress_try($$CREATE POLICY everything ON tool_audit.tool_calls FOR SELECT USING (true)$$);
SELECT regress_try($$ALTER POLICY reader_tenant ON tool_audit.tool_calls USING (true)$$);
SELECT regress_try($$DROP POLICY reader_tenant ON tool_audit.tool_calls$$);
-- names
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls RENAME TO old_calls$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls RENAME COLUMN error TO err$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls SET SCHEMA public$$);
SELECT regress_try($$ALTER SCHEMA tool_audit RENAME TO audit_old$$);
-- inheritance: forged rows in a child would show in every SELECT of the parent
SELECT regress_try($$CREATE TABLE regress_forged () INHERITS (tool_audit.tool_calls)$$);
CREATE TABLE regress_orphan (LIKE tool_audit.tool_calls);
SELECT regress_try($$ALTER TABLE regress_orphan INHERIT tool_audit.tool_calls$$);
DROP TABLE regress_orphan;
-- the extension's functions: replaced, altered, dropped
SELECT regress_try($$CREATE OR REPLACE FUNCTION tool_audit.refuse_change() RETURNS trigger
                     LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'$$);
SELECT regress_try($$CREATE FUNCTION tool_audit.helper() RETURNS int LANGUAGE sql AS 'SELECT 1'$$);
SELECT regress_try($$ALTER FUNCTION tool_audit.log_call(text, jsonb, jsonb, double precision, jsonb) SECURITY INVOKER$$);
SELECT regress_try($$DROP FUNCTION tool_audit.refuse_change() CASCADE$$);
SELECT regress_try($$DROP FUNCTION tool_audit.ddl_guard() CASCADE$$);
SELECT regress_try($$ALTER EXTENSION tool_audit DROP TABLE tool_audit.tool_calls$$);
-- swapping a function body through another schema or name
SELECT regress_try($$ALTER FUNCTION tool_audit.tool_calls_before_insert() SET SCHEMA public$$);
SELECT regress_try($$ALTER FUNCTION tool_audit.refuse_change() RENAME TO old_refuse_change$$);
SELECT regress_try($$ALTER FUNCTION tool_audit.refuse_change() OWNER TO regress_admin$$);
SET search_path = public, tool_audit;
SELECT regress_try($$ALTER FUNCTION log_event(text, text, jsonb, jsonb) RESET search_path$$);
RESET search_path;
-- rewriting history through the enum
SELECT regress_try($$ALTER TYPE tool_audit.call_trigger RENAME VALUE 'proactive' TO 'user_request2'$$);
SELECT regress_try($$ALTER TYPE tool_audit.call_trigger ADD VALUE 'whim'$$);
-- forged rows through a foreign table child
CREATE FOREIGN DATA WRAPPER regress_fdw;
CREATE SERVER regress_server FOREIGN DATA WRAPPER regress_fdw;
SELECT regress_try($$CREATE FOREIGN TABLE regress_forged_ft () INHERITS (tool_audit.tool_calls) SERVER regress_server$$);
DROP SERVER regress_server;
DROP FOREIGN DATA WRAPPER regress_fdw;
-- owners, constraints, indexes that refuse or cascade away rows
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls OWNER TO regress_admin$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ADD CONSTRAINT no_exfil CHECK (tool_name <> 'exfiltrate') NOT VALID$$);
CREATE TABLE regress_anchor (n int PRIMARY KEY);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls ADD CONSTRAINT fk FOREIGN KEY (turn_number) REFERENCES regress_anchor NOT VALID$$);
DROP TABLE regress_anchor;
SELECT regress_try($$CREATE UNIQUE INDEX ON tool_audit.tool_calls (tool_name)$$);
SELECT regress_try($$CREATE INDEX ON tool_audit.tool_calls ((1 / (length(tool_name) - 7)))$$);
SELECT regress_try($$CREATE INDEX ON tool_audit.tool_calls (tool_name) WHERE success$$);
-- privileges are the extension's: grant its roles instead
SELECT regress_try($$GRANT SELECT ON tool_audit.pseudonym_keys TO regress_admin$$);
SELECT regress_try($$GRANT ALL ON ALL TABLES IN SCHEMA tool_audit TO regress_nobody$$);
SELECT regress_try($$REVOKE INSERT ON tool_audit.tool_calls FROM tool_audit_writer$$);
SELECT regress_try($$GRANT EXECUTE ON FUNCTION tool_audit.pseudonymize(text) TO regress_writer$$);
-- the rules and keys tables are guarded the same way (rule changes stay audited)
SELECT regress_try($$TRUNCATE tool_audit.sanitize_rules$$);
SELECT regress_try($$TRUNCATE tool_audit.pseudonym_keys$$);
SET session_replication_role = replica;
SELECT regress_try($$DELETE FROM tool_audit.sanitize_rules WHERE builtin AND pattern = 'password'$$);
SELECT regress_try($$ALTER TABLE tool_audit.tool_calls DISABLE TRIGGER ALL$$);
SELECT regress_try($$DROP TRIGGER tool_calls_append_only ON tool_audit.tool_calls$$);
RESET session_replication_role;
SELECT regress_try($$ALTER TABLE tool_audit.sanitize_rules DISABLE TRIGGER sanitize_rules_audit$$);
SELECT regress_try($$ALTER TABLE tool_audit.pseudonym_keys OWNER TO regress_admin$$);
SELECT regress_try($$CREATE TRIGGER t BEFORE INSERT ON tool_audit.sanitize_rules FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()$$);

-- the id sequences
SELECT regress_try($$ALTER SEQUENCE tool_audit.tool_calls_id_seq RESTART 1$$);

-- unrelated objects of every naming shape are still left alone (these once
-- crashed the server: types and domains are named differently by ALTER)
SET ROLE regress_nobody;
SELECT regress_try($$ALTER TYPE pg_catalog.int4 RENAME TO x$$);
SELECT regress_try($$ALTER DOMAIN information_schema.cardinal_number OWNER TO regress_nobody$$);
SELECT regress_try($$ALTER TYPE pg_catalog.int4 SET SCHEMA public$$);
RESET ROLE;
CREATE DOMAIN regress_dom AS int CONSTRAINT positive CHECK (VALUE > 0);
ALTER DOMAIN regress_dom RENAME CONSTRAINT positive TO positive2;
ALTER DOMAIN regress_dom RENAME TO regress_dom2;
ALTER DOMAIN regress_dom2 OWNER TO regress_admin;
CREATE SCHEMA regress_elsewhere;
ALTER DOMAIN regress_dom2 SET SCHEMA regress_elsewhere;
DROP DOMAIN regress_elsewhere.regress_dom2;
CREATE TYPE regress_pair AS (a int, b int);
ALTER TYPE regress_pair RENAME ATTRIBUTE a TO a2;
ALTER TYPE regress_pair RENAME TO regress_pair2;
ALTER TYPE regress_pair2 OWNER TO regress_admin;
ALTER TYPE regress_pair2 SET SCHEMA regress_elsewhere;
DROP TYPE regress_elsewhere.regress_pair2;
SELECT lo_create(4242) AS large_object;
ALTER LARGE OBJECT 4242 OWNER TO regress_admin;
SELECT lo_unlink(4242);
CREATE FUNCTION regress_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION regress_f() RENAME TO regress_f2;
ALTER FUNCTION regress_f2() SET SCHEMA regress_elsewhere;
GRANT EXECUTE ON FUNCTION regress_elsewhere.regress_f2() TO regress_nobody;
DROP SCHEMA regress_elsewhere CASCADE;
CREATE PUBLICATION regress_pub;
ALTER PUBLICATION regress_pub OWNER TO regress_admin;
ALTER PUBLICATION regress_pub RENAME TO regress_pub2;
DROP PUBLICATION regress_pub2;
SELECT 'unrelated DDL unaffected' AS result;

-- dropping the trail while it holds rows
SELECT regress_try($$DROP TABLE tool_audit.tool_calls$$);
SELECT regress_try($$DROP TABLE tool_audit.admin_events CASCADE$$);
SELECT regress_try($$DROP TYPE tool_audit.call_trigger CASCADE$$);
SELECT regress_try($$DROP SCHEMA tool_audit CASCADE$$);
SELECT regress_try($$DROP EXTENSION tool_audit$$);
SELECT regress_try($$DROP EXTENSION tool_audit CASCADE$$);
SELECT regress_try($$DROP OWNED BY CURRENT_USER$$);
-- a cascade that reaches a policy from elsewhere is caught at sql_drop
SELECT regress_try($$DROP OWNED BY tool_audit_reader$$);

-- an empty trail may be dropped: a fresh database
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_empty_trail;
\c regress_empty_trail
CREATE EXTENSION tool_audit;
DROP EXTENSION tool_audit;
SELECT count(*) AS relations_left FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tool_audit';
\c :regress_db
DROP DATABASE regress_empty_trail;
\set VERBOSITY terse

-- the chain position indexes make a fork a constraint violation: recording
-- stops without them (issue 12), so they cannot be dropped; nor can the other
-- unique indexes
DROP INDEX tool_audit.tool_calls_chain_position;
DROP INDEX CONCURRENTLY tool_audit.admin_events_chain_position;
DROP INDEX IF EXISTS tool_audit.retention_policies_one_default;
SELECT count(*) AS chain_position_indexes FROM pg_class
 WHERE relname IN ('tool_calls_chain_position', 'admin_events_chain_position');

-- harmless DDL still works
BEGIN;
CREATE INDEX regress_calls_by_tool ON tool_audit.tool_calls (tool_name);   -- a plain index is fine
COMMENT ON TABLE tool_audit.tool_calls IS 'commented';
ALTER TABLE tool_audit.tool_calls SET (fillfactor = 90);
DROP INDEX tool_audit.regress_calls_by_tool;
SELECT 'harmless DDL allowed' AS result;
ROLLBACK;
CREATE TABLE regress_unrelated (a int);
ALTER TABLE regress_unrelated DISABLE TRIGGER ALL;
ALTER TABLE regress_unrelated ALTER COLUMN a TYPE bigint;
DROP TABLE regress_unrelated;

-- everything is still in place
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'tool_audit.tool_calls'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT evtname, evtenabled FROM pg_event_trigger ORDER BY 1;
SELECT relpersistence, relrowsecurity FROM pg_class WHERE oid = 'tool_audit.tool_calls'::regclass;
SELECT count(*) - :calls AS calls_lost FROM tool_audit.tool_calls;
