-- The row-change trigger's caches (1.5, issue 14: speed of tracking): what
-- the trigger works out once per table (tracked columns, how each column's
-- type becomes jsonb, where the columns of data_changes are, its CHECK
-- constraints) is worked out again after track() with other options, a
-- renamed, retyped or dropped column, and a change to data_changes; the
-- sanitizing rules apply to the next change as soon as they change.  A stale
-- cache would record a column the options exclude, leave a column renamed
-- to ssn in clear, or misread a retyped column.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
CREATE DOMAIN public.cache_score AS integer CHECK (VALUE >= 0);
CREATE TABLE public.cache_types (
    id      integer PRIMARY KEY,
    i2      smallint,
    i4      integer,
    i8      bigint,
    num     numeric(10, 2),
    num_any numeric,
    label   text,
    code    varchar(10),
    flag    boolean,
    day     date,
    at_ts   timestamp,
    at_tstz timestamptz,
    ratio   float8,
    ref     uuid,
    doc     jsonb,
    tags    text[],
    score   public.cache_score,
    empty   text
);
CREATE TABLE public.cache_people (
    id        integer PRIMARY KEY,
    name      text,
    note      text,
    grade       text,
    favourite text
);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.cache_types, public.cache_people TO regress_writer;
SET ROLE regress_admin;
SELECT (tool_audit.track('public.cache_types'))->'table' AS tracked;
SELECT (tool_audit.track('public.cache_people'))->'table' AS tracked;
RESET ROLE;

-- every type recorded as to_jsonb() writes it (the trigger builds the
-- common ones itself): the change row equals to_jsonb() of the row
SET ROLE regress_writer;
INSERT INTO public.cache_types VALUES
  (1, -32768, 2147483647, -9223372036854775808, 1.50, 'NaN', 'plain words', 'abc',
   true, '2026-03-01', '2026-03-01 12:34:56.789', '2026-03-01 12:34:56.789+02',
   1e30, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, "two", null]}',
   '{x,y}', 7, NULL),
  (2, 0, 0, 0, 0, 'Infinity', '', '', false, 'infinity', '-infinity', 'infinity',
   'NaN', NULL, '"scalar"', '{}', 0, NULL),
  (3, 1, -1, 12345678901234, -99999999.99, 0.000001000, 'a "quoted" \ line' || chr(10) || 'two',
   'ünï', NULL, '0044-03-15 BC', '1999-12-31 23:59:59', '2000-01-01 00:00:00+00',
   -0.5, NULL, 'null', NULL, NULL, NULL);
RESET ROLE;
SELECT d.row_key, d.new_values = to_jsonb(t) AS same_as_to_jsonb, d.new_values
  FROM tool_audit.data_changes d
  JOIN public.cache_types t ON d.row_key = jsonb_build_object('id', t.id)
 WHERE d.table_name = 'public.cache_types' AND d.id > :mark ORDER BY d.id;
-- an update records the changed columns only, as to_jsonb() writes them
SET ROLE regress_writer;
UPDATE public.cache_types SET num = num + 1, i8 = i8 + 1, at_tstz = at_tstz + interval '1 day',
       label = label || '!', flag = NOT flag, num_any = -num_any WHERE id = 1;
RESET ROLE;
SELECT d.old_values, d.new_values,
       d.new_values = (SELECT jsonb_object_agg(k, v) FROM jsonb_each(to_jsonb(t)) AS e(k, v)
                        WHERE k IN (SELECT jsonb_object_keys(d.old_values))) AS same_as_to_jsonb
  FROM tool_audit.data_changes d JOIN public.cache_types t ON t.id = 1
 WHERE d.table_name = 'public.cache_types' AND d.id > :mark AND d.operation = 'UPDATE'
 ORDER BY d.id;

-- a retyped column: recorded by its new type (a string now), not misread
ALTER TABLE public.cache_types ALTER COLUMN i4 TYPE text USING 'was ' || i4;
ALTER TABLE public.cache_types ALTER COLUMN flag TYPE integer USING flag::integer;
SET ROLE regress_writer;
UPDATE public.cache_types SET i4 = i4 || '.', flag = flag + 10 WHERE id = 1;
RESET ROLE;
SELECT old_values, new_values FROM tool_audit.data_changes
 WHERE table_name = 'public.cache_types' AND id > :mark ORDER BY id DESC LIMIT 1;
-- a dropped column is no longer recorded, the next ones are
ALTER TABLE public.cache_types DROP COLUMN i2, ADD COLUMN added integer;
SET ROLE regress_writer;
UPDATE public.cache_types SET added = 5, i8 = 1 WHERE id = 2;
DELETE FROM public.cache_types WHERE id = 2;
RESET ROLE;
SELECT operation, old_values, new_values FROM tool_audit.data_changes
 WHERE table_name = 'public.cache_types' AND id > :mark ORDER BY id DESC LIMIT 2;

-- ---- what a stale cache would leak ----
SELECT coalesce(max(id), 0) AS mark FROM tool_audit.data_changes \gset
SET ROLE regress_writer;
INSERT INTO public.cache_people VALUES (1, 'Ada', 'n0', '1111', 'tea');
UPDATE public.cache_people SET grade = '2222', note = 'n1' WHERE id = 1;
RESET ROLE;
-- track() again, now excluding grade: the next update does not record it
SET ROLE regress_admin;
SELECT (tool_audit.track('public.cache_people', '{"exclude": ["grade"]}'))->'table' AS tracked;
RESET ROLE;
SET ROLE regress_writer;
UPDATE public.cache_people SET grade = '3333', note = 'n2' WHERE id = 1;
UPDATE public.cache_people SET grade = '4444' WHERE id = 1;   -- only grade: no change row
RESET ROLE;
-- a column renamed to ssn is pseudonymized from the next change on
ALTER TABLE public.cache_people RENAME COLUMN note TO ssn;
SET ROLE regress_writer;
UPDATE public.cache_people SET ssn = '078-05-1120' WHERE id = 1;
RESET ROLE;
-- a rule added by an admin applies to the next change; removed, it no longer does
SET ROLE regress_admin;
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, note)
VALUES ('key', 'exact', 'favourite', 'redact', 'regress track_cache');
RESET ROLE;
SET ROLE regress_writer;
UPDATE public.cache_people SET favourite = 'coffee' WHERE id = 1;
RESET ROLE;
SET ROLE regress_admin;
DELETE FROM tool_audit.sanitize_rules WHERE note = 'regress track_cache';
RESET ROLE;
SET ROLE regress_writer;
UPDATE public.cache_people SET favourite = 'cocoa' WHERE id = 1;
RESET ROLE;
-- the include form, after the exclude one: only name
SET ROLE regress_admin;
SELECT (tool_audit.track('public.cache_people', '{"columns": ["name"]}'))->'table' AS tracked;
RESET ROLE;
SET ROLE regress_writer;
UPDATE public.cache_people SET name = 'Ada L.', grade = '5555', favourite = 'water' WHERE id = 1;
RESET ROLE;
SELECT operation, old_values - 'ssn' AS old_values, new_values - 'ssn' AS new_values,
       old_values->>'ssn' LIKE 'hmac:%' AS old_ssn_pseudonymized,
       new_values->>'ssn' LIKE 'hmac:%' AS new_ssn_pseudonymized
  FROM tool_audit.data_changes
 WHERE table_name = 'public.cache_people' AND id > :mark ORDER BY id;
SELECT count(*) AS clear_ssn_anywhere FROM tool_audit.data_changes
 WHERE (row_key || old_values || new_values)::text LIKE '%078-05-1120%';

-- the rows written this way are stamped, hashed and chained as any other
SELECT count(*) FILTER (WHERE row_hash IS NULL OR chain_hash IS NULL OR txid IS NULL
                          OR recorded_by <> 'regress_writer') AS unstamped
  FROM tool_audit.data_changes WHERE table_name LIKE 'public.cache_%';
-- (the problems of this file's change rows: files before it in the schedule tamper on purpose)
SELECT v.* FROM tool_audit.verify() v
 WHERE v.row_id IS NULL
    OR v.table_name = 'data_changes'
   AND v.row_id IN (SELECT id FROM tool_audit.data_changes WHERE table_name LIKE 'public.cache_%');

SET ROLE regress_admin;
SELECT tool_audit.untrack('public.cache_types'), tool_audit.untrack('public.cache_people');
RESET ROLE;
DROP TABLE public.cache_types, public.cache_people;
DROP DOMAIN public.cache_score;
