\set ECHO none
-- The reference for test/sql/fhir_helpers.sql, included in each database it
-- compares in (UTF-8 and LATIN1) with
--     \getenv abs_srcdir PG_ABS_SRCDIR
--     \i :abs_srcdir/fhir_reference.sql
-- Not a test itself (not in REGRESS).  Schema fhir_ref: fhir_string() and
-- fhir_code() as they were defined before 1.5 (a regular expression each);
-- corpus(alphabet): 20,000 strings of 0 to 12 letters drawn from it;
-- compare(alphabet): how many of them the reference changes, and on how many
-- the extension's fhir_string() and fhir_code() disagree with it.
CREATE SCHEMA fhir_ref;
CREATE FUNCTION fhir_ref.fhir_string(value text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF getdatabaseencoding() = 'UTF8' THEN
        value := regexp_replace(value,
            '[\u000b\u000c\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]', ' ', 'g');
    ELSE
        value := regexp_replace(value, '[\u000b\u000c]', ' ', 'g');
    END IF;
    RETURN nullif(value, '');
END
$$;
CREATE FUNCTION fhir_ref.fhir_code(value text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nullif(regexp_replace(btrim(fhir_ref.fhir_string(value), E' \t\r\n'), E'[ \t\r\n]+', ' ', 'g'), '')
$$;
CREATE FUNCTION fhir_ref.corpus(alphabet text[]) RETURNS TABLE (s text)
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(string_agg(alphabet[1 + floor(random() * cardinality(alphabet))::int], '' ORDER BY j), '')
      FROM generate_series(1, 20000) i
      LEFT JOIN LATERAL generate_series(1, i % 13) j ON true
     GROUP BY i
$$;
CREATE FUNCTION fhir_ref.compare(alphabet text[])
RETURNS TABLE (strings bigint, mapped_by_reference bigint, string_differs bigint, code_differs bigint)
LANGUAGE sql VOLATILE AS $$
    SELECT count(*),
           count(*) FILTER (WHERE fhir_ref.fhir_string(s) IS DISTINCT FROM s),
           count(*) FILTER (WHERE tool_audit.fhir_string(s) IS DISTINCT FROM fhir_ref.fhir_string(s)),
           count(*) FILTER (WHERE tool_audit.fhir_code(s) IS DISTINCT FROM fhir_ref.fhir_code(s))
      FROM fhir_ref.corpus(alphabet)
$$;
\set ECHO all
