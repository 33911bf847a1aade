/*-------------------------------------------------------------------------
 *
 * fhir_text.c
 *		The two text rules of the FHIR export (1.5): fhir_string() and
 *		fhir_code(), applied to a dozen values of every row export_fhir()
 *		writes.
 *
 * FHIR R4's JSON schema gives a string the pattern ^[ \r\n\t\S]+$ (in
 * JavaScript): the only whitespace it admits is space, tab, CR and LF, and
 * never an empty string.  fhir_string() turns every other whitespace
 * character JavaScript's \s knows into a space (in a UTF-8 database: vertical
 * tab, form feed, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
 * U+205F, U+3000, U+FEFF; in any other encoding only vertical tab and form
 * feed, the ones every server encoding writes as one byte) and an empty
 * result into NULL.  A code (^[^\s]+( [^\s]+)*$) is that string trimmed of
 * space, tab, CR and LF, each inner run of them one space: fhir_code().
 *
 * Both were a PL/pgSQL and an SQL function with a regular expression and a
 * SET search_path each (stopping the planner from inlining them): about
 * thirty calls a row.  Here they are one pass over the bytes, with no name
 * looked up, whatever the caller's search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"

PG_FUNCTION_INFO_V1(ta_fhir_string);
PG_FUNCTION_INFO_V1(ta_fhir_code);

/*
 * How many bytes of s[0..len) starting at s are a whitespace character
 * FHIR's string pattern refuses (0 if none starts there).
 */
static int
refused_space(const unsigned char *s, int len, bool utf8)
{
	if (s[0] == 0x0b || s[0] == 0x0c)
		return 1;
	if (!utf8 || s[0] < 0xc2)
		return 0;
	if (s[0] == 0xc2)
		return (len >= 2 && s[1] == 0xa0) ? 2 : 0;	/* U+00A0 */
	if (len < 3)
		return 0;
	if (s[0] == 0xe1)
		return (s[1] == 0x9a && s[2] == 0x80) ? 3 : 0;	/* U+1680 */
	if (s[0] == 0xe2)
	{
		if (s[1] == 0x80)		/* U+2000..U+203F */
			return (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf) ? 3 : 0;
		if (s[1] == 0x81)		/* U+2040..U+207F */
			return s[2] == 0x9f ? 3 : 0;	/* U+205F */
		return 0;
	}
	if (s[0] == 0xe3)
		return (s[1] == 0x80 && s[2] == 0x80) ? 3 : 0;	/* U+3000 */
	if (s[0] == 0xef)
		return (s[1] == 0xbb && s[2] == 0xbf) ? 3 : 0;	/* U+FEFF */
	return 0;
}

/*
 * The value with every refused whitespace character a space, written to out
 * (room for len bytes: a character is never replaced by a longer one); as_code
 * also trims space, tab, CR and LF and makes each inner run of them one space.
 * Returns the length written.
 */
static int
fhir_text(char *out, const char *value, int len, bool as_code)
{
	const unsigned char *s = (const unsigned char *) value;
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	bool		pending_space = false;
	int			n_out = 0;
	int			i = 0;

	while (i < len)
	{
		int			n = refused_space(s + i, len - i, utf8);
		unsigned char c = n > 0 ? ' ' : s[i];

		if (n == 0)
			n = 1;
		i += n;
		if (as_code && (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
		{
			/* a run of them is one space, and only between two others */
			pending_space = n_out > 0;
			continue;
		}
		if (pending_space)
		{
			out[n_out++] = ' ';
			pending_space = false;
		}
		out[n_out++] = (char) c;
	}
	return n_out;
}

static Datum
fhir_result(FunctionCallInfo fcinfo, bool as_code)
{
	text	   *value = PG_GETARG_TEXT_PP(0);
	int			len = VARSIZE_ANY_EXHDR(value);
	text	   *result = (text *) palloc(VARHDRSZ + len);
	int			n_out = fhir_text(VARDATA(result), VARDATA_ANY(value), len, as_code);

	if (n_out == 0)
	{
		pfree(result);
		PG_RETURN_NULL();		/* FHIR has no empty string */
	}
	SET_VARSIZE(result, VARHDRSZ + n_out);
	PG_RETURN_TEXT_P(result);
}

/* fhir_string(text): the value as a valid FHIR string, NULL if empty */
Datum
ta_fhir_string(PG_FUNCTION_ARGS)
{
	return fhir_result(fcinfo, false);
}

/* fhir_code(text): the value as a valid FHIR code, NULL if empty */
Datum
ta_fhir_code(PG_FUNCTION_ARGS)
{
	return fhir_result(fcinfo, true);
}
