/*-------------------------------------------------------------------------
 *
 * quiet_input.c
 *		Typed values read from text whose errors never quote the text.
 *
 * A caller that passes a secret where an integer, a UUID, an IP address or
 * a JSON document belongs (a misplaced API key in a context field, a token
 * pasted into the wrong argument) must not find it in the server log nor in
 * the error its client prints: the input functions of PostgreSQL's types
 * quote what they could not read ("invalid input syntax for type integer:
 * "..."").  So the text is checked here first, with the grammar the input
 * function accepts, and refused with an error that names the field and the
 * type it expects; only text that passes reaches the input function, which
 * then cannot fail on it.
 *
 * Checking first, rather than catching the input function's error: an error
 * can only be caught safely inside a subtransaction, which costs more than
 * the check and would have to be taken on every recorded call.  PostgreSQL
 * 16 has soft errors (InputFunctionCallSafe) for this; 15 does not, and the
 * checks serve every version alike.
 *
 * The types are the ones the audit tables' typed context columns have
 * (integer, uuid, inet, the call_trigger enum, timestamptz) and jsonb.
 * A timestamptz is read from ISO 8601 text with its UTC offset only
 * (2026-12-02T06:45:26.123Z, 2026-12-02 07:45:26+01:00): the other forms
 * timestamptz_in reads depend on DateStyle and TimeZone, and some of its
 * errors (an unknown time zone name) quote the text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>
#include <sys/socket.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inet.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "quiet_input.h"

/*
 * Decimal integer text as int4in reads it on PostgreSQL 15: blanks around
 * an optional sign and at least one digit.  False if it is not one, or out
 * of range (*overflow then says which).
 */
static bool
read_int32(const char *s, int32 *result, bool *overflow)
{
	bool		negative = false;
	int64		v = 0;

	*overflow = false;
	while (isspace((unsigned char) *s))
		s++;
	if (*s == '+' || *s == '-')
		negative = *s++ == '-';
	if (!isdigit((unsigned char) *s))
		return false;
	while (isdigit((unsigned char) *s))
	{
		if (!*overflow)
		{
			v = v * 10 + (*s - '0');
			if (v > (int64) PG_INT32_MAX + 1)
				*overflow = true;
		}
		s++;
	}
	while (isspace((unsigned char) *s))
		s++;
	if (*s != '\0')
		return false;
	if (!negative && v > PG_INT32_MAX)
		*overflow = true;
	if (*overflow)
		return false;
	*result = (int32) (negative ? -v : v);
	return true;
}

/*
 * UUID text as uuid_in reads it: 32 hex digits, optionally in braces, with
 * a hyphen allowed after any group of four digits but the last.
 */
static bool
is_uuid_text(const char *s)
{
	bool		braces = (*s == '{');

	if (braces)
		s++;
	for (int digits = 0; digits < 32; digits++)
	{
		if (!isxdigit((unsigned char) *s))
			return false;
		s++;
		if (*s == '-' && digits % 4 == 3 && digits < 31)
			s++;
	}
	if (braces && *s++ != '}')
		return false;
	return *s == '\0';
}

/* inet text as inet_in reads it: PostgreSQL's own address parser, no error. */
static bool
is_inet_text(const char *s)
{
	unsigned char addr[16];
	int			family = strchr(s, ':') != NULL ? PGSQL_AF_INET6 : PGSQL_AF_INET;
	int			bits = pg_inet_net_pton(family, s, addr, -1);

	return bits >= 0 && bits <= (family == PGSQL_AF_INET6 ? 128 : 32);
}

/* n decimal digits at *s, as a number; false if there are not n. */
static bool
read_digits(const char **s, int n, int *result)
{
	*result = 0;
	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) (*s)[i]))
			return false;
		*result = *result * 10 + ((*s)[i] - '0');
	}
	*s += n;
	return true;
}

/*
 * ISO 8601 text with a UTC offset: YYYY-MM-DD, T (or t, or a space),
 * hh:mm[:ss[.fraction]], then Z (or z) or +hh[:mm], -hh[:mm], +hhmm; blanks
 * around it.  Returns 0 and the time, ERRCODE_INVALID_DATETIME_FORMAT for
 * text of another form, ERRCODE_DATETIME_FIELD_OVERFLOW for a field out of
 * its range (month 13, February 30, hour 24, an offset beyond 15:59) or a
 * time out of timestamptz's range.
 */
static int
read_iso8601(const char *s, TimestampTz *result)
{
	struct pg_tm tm = {0};
	int			sign,
				oh = 0,
				om = 0,
				tz;
	double		fraction = 0;
	fsec_t		fsec;

	while (isspace((unsigned char) *s))
		s++;
	if (!read_digits(&s, 4, &tm.tm_year) || *s++ != '-' ||
		!read_digits(&s, 2, &tm.tm_mon) || *s++ != '-' ||
		!read_digits(&s, 2, &tm.tm_mday) ||
		(*s != 'T' && *s != 't' && *s != ' '))
		return ERRCODE_INVALID_DATETIME_FORMAT;
	s++;
	if (!read_digits(&s, 2, &tm.tm_hour) || *s++ != ':' || !read_digits(&s, 2, &tm.tm_min))
		return ERRCODE_INVALID_DATETIME_FORMAT;
	if (*s == ':')
	{
		s++;
		if (!read_digits(&s, 2, &tm.tm_sec))
			return ERRCODE_INVALID_DATETIME_FORMAT;
		if (*s == '.' || *s == ',')
		{
			double		scale = 0.1;

			s++;
			if (!isdigit((unsigned char) *s))
				return ERRCODE_INVALID_DATETIME_FORMAT;
			for (int i = 0; isdigit((unsigned char) *s); i++, s++)
			{
				if (i >= 9)
					return ERRCODE_INVALID_DATETIME_FORMAT;
				fraction += (*s - '0') * scale;
				scale /= 10;
			}
		}
	}
	if (*s == 'Z' || *s == 'z')
	{
		s++;
		sign = 1;
	}
	else if (*s == '+' || *s == '-')
	{
		sign = (*s++ == '-') ? -1 : 1;
		if (!read_digits(&s, 2, &oh))
			return ERRCODE_INVALID_DATETIME_FORMAT;
		if (*s == ':')
			s++;
		if (isdigit((unsigned char) *s) && !read_digits(&s, 2, &om))
			return ERRCODE_INVALID_DATETIME_FORMAT;
	}
	else
		return ERRCODE_INVALID_DATETIME_FORMAT;	/* no offset: ambiguous */
	while (isspace((unsigned char) *s))
		s++;
	if (*s != '\0')
		return ERRCODE_INVALID_DATETIME_FORMAT;

	if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
		tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1] ||
		tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 ||
		oh > MAX_TZDISP_HOUR || om > 59)
		return ERRCODE_DATETIME_FIELD_OVERFLOW;
	fsec = (fsec_t) rint(fraction * USECS_PER_SEC);
	tz = -sign * (oh * SECS_PER_HOUR + om * SECS_PER_MINUTE);	/* west of UTC */
	if (tm2timestamp(&tm, fsec, &tz, result) != 0 || !IS_VALID_TIMESTAMP(*result))
		return ERRCODE_DATETIME_FIELD_OVERFLOW;
	return 0;
}

/* A label of the enum type, as enum_in looks it up. */
static bool
is_enum_label(Oid typid, const char *s)
{
	return strlen(s) < NAMEDATALEN &&
		SearchSysCacheExists2(ENUMTYPOIDNAME, ObjectIdGetDatum(typid), CStringGetDatum(s));
}

static void
refuse(const char *what, const char *name, int sqlstate, const char *expected, Oid typid)
{
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("invalid value for %s \"%s\": expected %s", what, name, expected),
			 errdetail("The value is not shown: it may be a secret put in the wrong place."),
			 type_is_enum(typid) ?
			 errhint("The labels are listed by enum_range(NULL::%s).", format_type_be(typid)) : 0));
}

/*
 * The value of type typid that the text stands for, or an error naming the
 * field (what and name: context field "turn_number") and the type it
 * expects.
 */
Datum
ta_quiet_input(Oid typid, int32 typmod, const char *value,
			   const char *what, const char *name)
{
	Oid			infunc,
				ioparam;

	switch (typid)
	{
		case TEXTOID:
			return CStringGetTextDatum(value);
		case INT4OID:
			{
				int32		v;
				bool		overflow;

				if (!read_int32(value, &v, &overflow))
					refuse(what, name, overflow ? ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE :
						   ERRCODE_INVALID_TEXT_REPRESENTATION,
						   overflow ? "an integer from -2147483648 to 2147483647" : "an integer",
						   typid);
				return Int32GetDatum(v);
			}
		case UUIDOID:
			if (!is_uuid_text(value))
				refuse(what, name, ERRCODE_INVALID_TEXT_REPRESENTATION, "a UUID", typid);
			break;
		case INETOID:
			if (!is_inet_text(value))
				refuse(what, name, ERRCODE_INVALID_TEXT_REPRESENTATION, "an IP address", typid);
			break;
		case TIMESTAMPTZOID:
			{
				TimestampTz t;
				int			problem = read_iso8601(value, &t);

				if (problem != 0)
					refuse(what, name, problem,
						   problem == ERRCODE_DATETIME_FIELD_OVERFLOW ?
						   "an ISO 8601 time whose fields are in range" :
						   "an ISO 8601 time with its UTC offset, such as 2026-12-02T06:45:26.123Z",
						   typid);
				return TimestampTzGetDatum(t);
			}
		default:
			if (type_is_enum(typid))
			{
				if (!is_enum_label(typid, value))
				{
					char	   *expected = psprintf("a label of %s", format_type_be(typid));

					refuse(what, name, ERRCODE_INVALID_TEXT_REPRESENTATION, expected, typid);
				}
				break;
			}
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("%s \"%s\" has type %s, which tool_audit cannot read without quoting it",
							what, name, format_type_be(typid))));
	}
	getTypeInputInfo(typid, &infunc, &ioparam);
	return OidInputFunctionCall(infunc, unconstify(char *, value), ioparam, typmod);
}

/* What is wrong with JSON text, in words that quote none of it. */
static const char *
json_problem(JsonParseErrorType e)
{
	switch (e)
	{
		case JSON_INVALID_TOKEN:
			return "a token that is not JSON";
		case JSON_ESCAPING_INVALID:
		case JSON_ESCAPING_REQUIRED:
			return "a string with an invalid escape or control character";
		case JSON_UNICODE_CODE_POINT_ZERO:
		case JSON_UNICODE_ESCAPE_FORMAT:
		case JSON_UNICODE_HIGH_ESCAPE:
		case JSON_UNICODE_HIGH_SURROGATE:
		case JSON_UNICODE_LOW_SURROGATE:
			return "a Unicode escape that jsonb cannot store";
		case JSON_EXPECTED_END:
			return "more text after the end of the document";
		case JSON_EXPECTED_MORE:
			return "an end before the document is complete";
		default:
			return "a structure that is not JSON";
	}
}

/*
 * The JSON text as jsonb, or an error naming the argument and the line of
 * the problem, quoting nothing.  The text is parsed once without building
 * anything (with the escapes decoded, so that what jsonb refuses in them is
 * found too), then by jsonb's own input function, which then cannot fail on
 * its syntax.
 */
Jsonb *
ta_quiet_jsonb(text *document, const char *argument)
{
	char	   *s = text_to_cstring(document);
#if PG_VERSION_NUM >= 170000
	JsonLexContext *lex = makeJsonLexContextCstringLen(NULL, s, strlen(s), GetDatabaseEncoding(), true);
#else
	JsonLexContext *lex = makeJsonLexContextCstringLen(s, strlen(s), GetDatabaseEncoding(), true);
#endif
	JsonParseErrorType e = pg_parse_json(lex, &nullSemAction);

	if (e != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(e == JSON_UNICODE_CODE_POINT_ZERO ?
						 ERRCODE_UNTRANSLATABLE_CHARACTER : ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid value for argument \"%s\": expected a JSON document", argument),
				 errdetail("Line %d has %s. The text is not shown: it may hold a secret.",
						   lex->line_number, json_problem(e))));
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s)));
}

/*
 * tool_audit.jsonb_from_text(document text, argument text DEFAULT 'document')
 *	RETURNS jsonb
 */
PG_FUNCTION_INFO_V1(jsonb_from_text);
Datum
jsonb_from_text(PG_FUNCTION_ARGS)
{
	char	   *argument = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_JSONB_P(ta_quiet_jsonb(PG_GETARG_TEXT_PP(0), argument));
}

/*
 * tool_audit.typed_value(value text, type_of anyelement, field text)
 *	RETURNS anyelement
 *
 * The text as a value of the second argument's type, for log_event()'s
 * context: the error for text that is not one names the context field,
 * and does not quote the text.
 */
PG_FUNCTION_INFO_V1(typed_value);
Datum
typed_value(PG_FUNCTION_ARGS)
{
	Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, 1);

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!OidIsValid(typid))
		elog(ERROR, "could not determine the type of typed_value()'s second argument");
	return ta_quiet_input(typid, -1, text_to_cstring(PG_GETARG_TEXT_PP(0)), "context field",
						  PG_ARGISNULL(2) ? "?" : text_to_cstring(PG_GETARG_TEXT_PP(2)));
}
