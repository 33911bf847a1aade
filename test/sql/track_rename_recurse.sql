-- RENAME COLUMN of a column the tracking names (track_exclude_rename) is
-- refused on the tracked table itself; a rename that reaches the tracked
-- table from elsewhere must be refused too: from an inheritance parent
-- (ALTER TABLE parent RENAME COLUMN recurses to its children), from the
-- partitioned table of a partition tracked on its own, and from the
-- composite type of a typed table (ALTER TYPE ... RENAME ATTRIBUTE ...
-- CASCADE).  Each would put the excluded column's values in the trail.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- an inheritance child, tracked, renamed through its parent
CREATE TABLE public.rr_parent (id integer, secret text);
CREATE TABLE public.rr_child (id integer PRIMARY KEY, secret text) ;
ALTER TABLE public.rr_child INHERIT public.rr_parent;
-- a partition tracked on its own, renamed through its partitioned table
CREATE TABLE public.rr_parted (id integer, secret text) PARTITION BY RANGE (id);
CREATE TABLE public.rr_part PARTITION OF public.rr_parted FOR VALUES FROM (0) TO (100);
ALTER TABLE public.rr_part ADD PRIMARY KEY (id);
-- a typed table, renamed through its type
CREATE TYPE public.rr_type AS (id integer, secret text);
CREATE TABLE public.rr_typed OF public.rr_type (PRIMARY KEY (id));
ALTER TABLE public.rr_parent OWNER TO regress_writer;
ALTER TABLE public.rr_child OWNER TO regress_writer;
ALTER TABLE public.rr_parted OWNER TO regress_writer;
ALTER TABLE public.rr_part OWNER TO regress_writer;
ALTER TYPE public.rr_type OWNER TO regress_writer;
ALTER TABLE public.rr_typed OWNER TO regress_writer;
SET ROLE regress_admin;
SELECT (tool_audit.track('public.rr_child', '{"exclude": ["secret"]}'))->'table' AS tracked;
SELECT (tool_audit.track('public.rr_part', '{"exclude": ["secret"]}'))->'table' AS tracked;
SELECT (tool_audit.track('public.rr_typed', '{"exclude": ["secret"]}'))->'table' AS tracked;
RESET ROLE;

SET ROLE regress_writer;
-- on the tracked tables themselves: refused (as in track_exclude_rename)
ALTER TABLE public.rr_child RENAME COLUMN secret TO s;
-- through the parent, the partitioned table and the type: refused too
ALTER TABLE public.rr_parent RENAME COLUMN secret TO s;
ALTER TABLE public.rr_parted RENAME COLUMN secret TO s;
ALTER TYPE public.rr_type RENAME ATTRIBUTE secret TO s CASCADE;
INSERT INTO public.rr_child VALUES (1, 'child-secret');
INSERT INTO public.rr_part VALUES (1, 'part-secret');
INSERT INTO public.rr_typed VALUES (1, 'typed-secret');
RESET ROLE;
SELECT attrelid::regclass AS rel, attname FROM pg_attribute
 WHERE attrelid IN ('public.rr_child'::regclass, 'public.rr_part'::regclass, 'public.rr_typed'::regclass)
   AND attnum = 2 ORDER BY 1;
-- the excluded column's values are nowhere in the trail
SELECT count(*) AS secrets_recorded FROM tool_audit.data_changes
 WHERE table_name LIKE 'public.rr\_%'
   AND (old_values::text LIKE '%secret%' OR new_values::text LIKE '%secret%');

SET ROLE regress_admin;
SELECT tool_audit.untrack('public.rr_child');
SELECT tool_audit.untrack('public.rr_part');
SELECT tool_audit.untrack('public.rr_typed');
RESET ROLE;
DROP TABLE public.rr_child, public.rr_parent, public.rr_parted, public.rr_typed;
DROP TYPE public.rr_type;
