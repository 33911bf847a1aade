-- data_changes kept open for the transaction (1.5, issue 14: speed of
-- tracking).  The row-change trigger opens data_changes, its indexes and
-- its executor state once per transaction and closes them before commit
-- (track_write.c).  What must not change: a transaction's change rows are
-- all stored, chained and sanitized; rolled-back ones (savepoint, exception
-- block, whole transaction) leave no row, and the changes after them are
-- stored; an index created on data_changes in the middle of a transaction
-- gets the rows written after it; commit gives no resource leak warning.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
CREATE TABLE public.kept_accounts (
    id integer PRIMARY KEY,
    email text,
    ssn text,
    balance numeric(12, 2)
);
INSERT INTO public.kept_accounts
SELECT i, 'user' || i || '@example.com', NULL, 100 FROM generate_series(1, 5) i;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.kept_accounts TO regress_writer;
SET ROLE regress_admin;
SELECT (tool_audit.track('public.kept_accounts'))->'table' AS tracked;
RESET ROLE;

-- several changes in one transaction: every one stored, in order, chained
SET ROLE regress_writer;
BEGIN;
UPDATE public.kept_accounts SET balance = balance + 1 WHERE id = 1;
UPDATE public.kept_accounts SET balance = balance + 1 WHERE id = 2;
UPDATE public.kept_accounts SET ssn = '123-45-6789' WHERE id = 3;
DELETE FROM public.kept_accounts WHERE id = 5;
INSERT INTO public.kept_accounts VALUES (6, 'six@example.com', NULL, 0);
COMMIT;
RESET ROLE;
SELECT operation, row_key, old_values, new_values
  FROM tool_audit.data_changes WHERE id > :mark ORDER BY id;
-- the tracked ssn column is pseudonymized like an ssn argument
SELECT count(*) AS clear_ssn FROM tool_audit.data_changes
 WHERE id > :mark AND new_values::text LIKE '%123-45-6789%';
SELECT count(*) AS rows, count(*) FILTER (WHERE tool_audit.check_row(d) IS NULL) AS rows_that_check
  FROM tool_audit.data_changes d WHERE id > :mark;
SELECT count(DISTINCT txid) AS transactions FROM tool_audit.data_changes WHERE id > :mark;

-- the first change row of the transaction written in a savepoint that is
-- rolled back (the table was opened there), then more changes: only those
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
SET ROLE regress_writer;
BEGIN;
SAVEPOINT s1;
UPDATE public.kept_accounts SET balance = 500 WHERE id = 1;
UPDATE public.kept_accounts SET balance = 501 WHERE id = 2;
ROLLBACK TO SAVEPOINT s1;
UPDATE public.kept_accounts SET balance = 502 WHERE id = 3;
SAVEPOINT s2;
UPDATE public.kept_accounts SET balance = 503 WHERE id = 4;
RELEASE SAVEPOINT s2;
COMMIT;
RESET ROLE;
SELECT row_key, new_values FROM tool_audit.data_changes WHERE id > :mark ORDER BY id;
SELECT id, balance FROM public.kept_accounts ORDER BY id;

-- an exception block rolls back a change row written with the table open,
-- and the transaction goes on writing change rows
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
SET ROLE regress_writer;
BEGIN;
UPDATE public.kept_accounts SET balance = 600 WHERE id = 1;
DO $$
BEGIN
    UPDATE public.kept_accounts SET balance = 601 WHERE id = 2;
    RAISE EXCEPTION 'give up';
EXCEPTION WHEN raise_exception THEN
    NULL;
END $$;
UPDATE public.kept_accounts SET balance = 602 WHERE id = 4;
COMMIT;
RESET ROLE;
SELECT row_key, new_values FROM tool_audit.data_changes WHERE id > :mark ORDER BY id;
SELECT count(*) AS rows, count(*) FILTER (WHERE tool_audit.check_row(d) IS NULL) AS rows_that_check
  FROM tool_audit.data_changes d WHERE id > :mark;

-- a whole transaction rolled back leaves no change row, and the next one
-- (which opens the table again) is stored
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
SET ROLE regress_writer;
BEGIN;
UPDATE public.kept_accounts SET balance = 700 WHERE id = 1;
UPDATE public.kept_accounts SET balance = 701 WHERE id = 2;
ROLLBACK;
UPDATE public.kept_accounts SET balance = 702 WHERE id = 3;
RESET ROLE;
SELECT row_key, new_values FROM tool_audit.data_changes WHERE id > :mark ORDER BY id;

-- an index created on data_changes between two change rows of one
-- transaction holds the second (the open table is closed and opened again
-- on the invalidation): counted through that index only
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
BEGIN;
UPDATE public.kept_accounts SET balance = 800 WHERE id = 1;
CREATE INDEX regress_kept_txid ON tool_audit.data_changes (txid);
UPDATE public.kept_accounts SET balance = 801 WHERE id = 2;
UPDATE public.kept_accounts SET balance = 802 WHERE id = 3;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM tool_audit.data_changes WHERE txid = txid_current();
SELECT count(*) AS in_new_index FROM tool_audit.data_changes WHERE txid = txid_current();
ROLLBACK;
SELECT count(*) AS rolled_back_rows FROM tool_audit.data_changes WHERE id > :mark;
SELECT count(*) AS index_left FROM pg_class WHERE relname = 'regress_kept_txid';

-- the time index is a BRIN index, and the purge's and the export's query
-- by time can use it
SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam
 WHERE c.relname = 'data_changes_recorded_at';
BEGIN;
SET LOCAL enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM tool_audit.data_changes
 WHERE recorded_at >= '2026-01-01' AND recorded_at < '2026-02-01';
ROLLBACK;

-- data_changes' CHECK constraints and partial index predicates (only
-- built-in operators) are made ready once per backend and evaluated in
-- every later transaction (track_write.c): the partial index of calls gets
-- exactly the rows made in a call, over transactions with and without one
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
SET ROLE regress_writer;
UPDATE public.kept_accounts SET balance = 10 WHERE id = 4;
SET tool_audit.call = '0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c';
UPDATE public.kept_accounts SET balance = 11 WHERE id = 4;
UPDATE public.kept_accounts SET balance = 12 WHERE id = 6;
RESET tool_audit.call;
UPDATE public.kept_accounts SET balance = 13 WHERE id = 6;
RESET ROLE;
BEGIN;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM tool_audit.data_changes
 WHERE call_event_id = '0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c' AND id > 0;
SELECT count(*) AS in_call_index FROM tool_audit.data_changes
 WHERE call_event_id = '0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c' AND id > :mark;
-- and the partial index of TRUNCATEs none of them
EXPLAIN (COSTS OFF) SELECT count(*) FROM tool_audit.data_changes
 WHERE operation = 'TRUNCATE' AND table_name = 'public.kept_accounts';
SELECT count(*) AS in_truncate_index FROM tool_audit.data_changes
 WHERE operation = 'TRUNCATE' AND table_name = 'public.kept_accounts';
ROLLBACK;
SELECT count(*) AS rows, count(call_event_id) AS with_call
  FROM tool_audit.data_changes WHERE id > :mark;

SET ROLE regress_admin;
SELECT tool_audit.untrack('public.kept_accounts');
RESET ROLE;
DROP TABLE public.kept_accounts;
