-- A tracked table with a tenant column (found by an attack review): an
-- UPDATE that moves a row to another tenant is recorded as the row's DELETE
-- under the old tenant and its INSERT under the new one, in the same
-- transaction, so that neither tenant's readers read the other's values,
-- and each tenant's row_history() shows the row leaving or arriving.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_tm_alpha') THEN
        CREATE ROLE regress_tm_alpha IN ROLE tool_audit_reader;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_tm_beta') THEN
        CREATE ROLE regress_tm_beta IN ROLE tool_audit_reader;
    END IF;
END $$;
RESET client_min_messages;
SET ROLE regress_admin;
SELECT tool_audit.bind_tenant('regress_tm_alpha', 'tm_alpha') IS NOT NULL AS bound,
       tool_audit.bind_tenant('regress_tm_beta', 'tm_beta') IS NOT NULL AS bound;
RESET ROLE;

CREATE TABLE public.tm_docs (id integer PRIMARY KEY, body text, tenant text);
GRANT SELECT, INSERT, UPDATE ON public.tm_docs TO regress_writer;
SET ROLE regress_admin;
SELECT (tool_audit.track('public.tm_docs', '{"tenant_column": "tenant"}'))->'table' AS tracked;
RESET ROLE;
SET ROLE regress_writer;
INSERT INTO public.tm_docs VALUES (1, 'alpha confidential plan', 'tm_alpha');
UPDATE public.tm_docs SET tenant = 'tm_beta', body = 'beta text' WHERE id = 1;
RESET ROLE;

SELECT operation, tenant_id, old_values, new_values FROM tool_audit.data_changes
 WHERE table_name = 'public.tm_docs' ORDER BY id;
-- the move's two rows: one transaction
SELECT (array_agg(txid ORDER BY id))[2] = (array_agg(txid ORDER BY id))[3] AS one_transaction
  FROM tool_audit.data_changes WHERE table_name = 'public.tm_docs';
-- an UPDATE that does not move it stays one UPDATE row
SET ROLE regress_writer;
UPDATE public.tm_docs SET body = 'beta text 2' WHERE id = 1;
RESET ROLE;
SELECT operation, tenant_id, old_values, new_values FROM tool_audit.data_changes
 WHERE table_name = 'public.tm_docs' ORDER BY id DESC LIMIT 1;
-- beta's reader: nothing of alpha
SET ROLE regress_tm_beta;
SELECT count(*) AS alpha_data_seen_by_beta FROM tool_audit.data_changes
 WHERE table_name = 'public.tm_docs'
   AND (old_values::text LIKE '%alpha%' OR new_values::text LIKE '%alpha%');
RESET ROLE;
-- alpha's reader: its row changed (it is not alpha's any more)
SET ROLE regress_tm_alpha;
SELECT operation, old_values->>'body' AS body FROM tool_audit.data_changes
 WHERE table_name = 'public.tm_docs' ORDER BY id;
SELECT version, operation FROM tool_audit.row_history('public.tm_docs', '{"id": 1}');
RESET ROLE;

SET ROLE regress_admin;
SELECT tool_audit.untrack('public.tm_docs');
RESET ROLE;
DROP TABLE public.tm_docs;
