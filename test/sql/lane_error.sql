-- An error while a backend takes a lane (chain.c, take_lane() then
-- read_head()) gives back the session lock of the lane it took: the session
-- used to keep a lock it did not know it had, and every other writer of the
-- chain probed past that lane for the session's life.  The head cannot be
-- read here because the lane's last row was forged with a damaged link
-- (the insert trigger disabled through the catalog): the write fails with
-- XX001, in a statement of its own and in a subtransaction, and no lane
-- lock is left behind.  In a database of its own (the forged row stays).
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_lane_error;
CREATE DATABASE regress_tool_audit_lane_error TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_lane_error
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;

-- the session locks of lanes this backend holds (field4 0x5441)
CREATE FUNCTION lane_locks() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_locks
     WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 21569
$$;
-- after \c -, wait until the session before has let go of its lanes
CREATE FUNCTION settle() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..2000 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_locks l
                               WHERE l.locktype = 'advisory' AND l.pid <> pg_backend_pid()
                                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()));
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;

INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('le_first', 'le_t', true);
SELECT lane_locks();

-- the lane's last row forged with a link of one byte
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert';
\c -
\set VERBOSITY terse
SELECT settle();
DO $$
DECLARE
    t tool_audit.tool_calls;
BEGIN
    SELECT * INTO t FROM tool_audit.tool_calls WHERE tenant_id = 'le_t' ORDER BY chain_seq DESC LIMIT 1;
    INSERT INTO tool_audit.tool_calls SELECT (jsonb_populate_record(t, jsonb_build_object(
        'id', nextval('tool_audit.tool_calls_id_seq'), 'event_id', gen_random_uuid(),
        'tool_name', 'le_forged', 'chain_seq', t.chain_seq + 1, 'chain_hash', '\x00'))).*;
END $$;
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert';
\c -
\set VERBOSITY terse
SELECT settle();

-- a statement of its own fails, and the lane is not kept
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('le_damaged', 'le_t', true);
SELECT lane_locks();
-- caught in a subtransaction: the transaction goes on without the lane
BEGIN;
SELECT regexp_replace(regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
                                   VALUES ('le_damaged', 'le_t', true)$$), 'chain -?\d+', 'chain N') AS try;
SELECT lane_locks();
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('le_other', 'le_u', true);
COMMIT;
-- the lane of the chain written to is kept, as ever
SELECT lane_locks();
SELECT tool_name, chain_lane, chain_seq FROM tool_audit.tool_calls WHERE tenant_id IN ('le_t', 'le_u') ORDER BY id;

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_lane_error;
RESET client_min_messages;
