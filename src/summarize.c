/*-------------------------------------------------------------------------
 *
 * summarize.c
 *		Reduce a tool's result to a small summary: never the full payload.
 *
 * The summary of an object result keeps, in this order:
 *	success			false when the result has a non-null, non-false "error"
 *					key or "success": false; true otherwise
 *	error, error_type	copied when present
 *	the keys named in tool_audit.summary_keys (default: id, order_id,
 *					customer_id, status, count) when present and scalar
 *	_result_size, _truncated	when the result's JSON text is over 1,000
 *					characters (the seed's rule)
 * A result that is not an object gives {"success": true, "_result_type": ...}
 * plus the size keys.  The summary is then sanitized like everything else
 * stored, because error messages and identifiers carry secrets too.
 *
 * Summarizing a summary gives the same summary: the size keys of the input
 * are carried over rather than recomputed, so a row that passes the insert
 * trigger twice (log_call, then a dump restored) does not change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/varlena.h"

#include "jsonb_util.h"
#include "rules.h"
#include "sanitize.h"
#include "summarize.h"
#include "tool_audit.h"

#define TA_RESULT_SIZE_LIMIT	1000	/* characters, as in the seed */

static void
push_key(JsonbParseState **ps, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(ps, WJB_KEY, &k);
}

static void
push_pair(JsonbParseState **ps, const char *key, JsonbValue *v)
{
	push_key(ps, key);
	(void) pushJsonbValue(ps, WJB_VALUE, v);
}

static void
push_bool(JsonbParseState **ps, const char *key, bool b)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = b;
	push_pair(ps, key, &v);
}

static void
push_int(JsonbParseState **ps, const char *key, int64 n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(n);
	push_pair(ps, key, &v);
}

static void
push_cstring(JsonbParseState **ps, const char *key, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	push_pair(ps, key, &v);
}

static bool
is_reserved_summary_key(const char *k)
{
	return strcmp(k, "success") == 0 || strcmp(k, "error") == 0 ||
		strcmp(k, "error_type") == 0 || strcmp(k, "_result_size") == 0 ||
		strcmp(k, "_truncated") == 0 || strcmp(k, "_result_type") == 0;
}

/*
 * The length in characters of the JSON text PostgreSQL prints for a jsonb
 * value (JsonbToCString: ", " and ": " separators, escape_json escaping),
 * computed without printing it: a result of hundreds of MB must be measured,
 * not copied six times over by escaping.
 */
static int64
string_text_length(const char *s, int len)
{
	int64		n = 2;			/* the quotes */

	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if ((c & 0xC0) == 0x80)
			continue;			/* UTF-8 continuation byte: same character */
		if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' ||
			c == '\r' || c == '\t')
			n += 2;
		else if (c < 0x20)
			n += 6;				/* \u00XX */
		else
			n += 1;
	}
	return n;
}

static int64
scalar_text_length(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return 4;
		case jbvBool:
			return v->val.boolean ? 4 : 5;
		case jbvString:
			return string_text_length(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return strlen(DatumGetCString(DirectFunctionCall1(numeric_out,
															  NumericGetDatum(v->val.numeric))));
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return 0;					/* keep compiler quiet */
}

static int64
json_text_length(Jsonb *j)
{
	JsonbIterator *it = JsonbIteratorInit(&j->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int64		n = 0;
	bool		first = true;	/* no ", " before the first member */

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		CHECK_FOR_INTERRUPTS();
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				if (v.val.array.rawScalar)
					break;		/* a bare scalar prints without brackets */
				/* FALLTHROUGH */
			case WJB_BEGIN_OBJECT:
				if (!first)
					n += 2;
				n += 1;
				first = true;
				break;
			case WJB_END_ARRAY:
				if (v.val.array.rawScalar)
					break;
				/* FALLTHROUGH */
			case WJB_END_OBJECT:
				n += 1;
				first = false;
				break;
			case WJB_KEY:
				if (!first)
					n += 2;
				n += scalar_text_length(&v) + 2;	/* "key": */
				first = true;	/* the value follows without ", " */
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					n += 2;
				n += scalar_text_length(&v);
				first = false;
				break;
			case WJB_DONE:
				break;
		}
	}
	return n;
}

/* An "error" key counts unless it is null or false. */
static bool
is_error_value(JsonbValue *v)
{
	if (v == NULL || v->type == jbvNull)
		return false;
	if (v->type == jbvBool && !v->val.boolean)
		return false;
	return true;
}

/*
 * Does this object look like a summary made here: a boolean "success",
 * "_truncated": true and a numeric "_result_size", and small?  Only then is
 * its size carried over; a tool result that merely has a "_result_size" key
 * is measured like any other.
 */
static bool
is_summary(Jsonb *obj)
{
	JsonbValue *s = ta_jsonb_key(&obj->root, "success");
	JsonbValue *t = ta_jsonb_key(&obj->root, "_truncated");
	JsonbValue *n = ta_jsonb_key(&obj->root, "_result_size");

	return s && s->type == jbvBool && t && t->type == jbvBool && t->val.boolean &&
		n && n->type == jbvNumeric && VARSIZE(obj) < 4 * TA_RESULT_SIZE_LIMIT;
}

static text *
error_text(JsonbValue *v)
{
	Jsonb	   *j;

	if (!is_error_value(v))
		return NULL;
	if (v->type == jbvString)
		return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
	j = JsonbValueToJsonb(v);
	return cstring_to_text(JsonbToCString(NULL, &j->root, VARSIZE(j)));
}

/*
 * tool_audit.summary_keys as a list of names, split again only when the
 * setting changes (kept in TopMemoryContext with the copy it was split
 * from, which the names point into).
 */
static List *
summary_key_names(void)
{
	static char *split_from = NULL;
	static char *split_copy = NULL;
	static List *names = NIL;
	const char *setting = ta_summary_keys ? ta_summary_keys : "";
	MemoryContext old;
	char	   *from;
	char	   *copy;
	List	   *list;

	if (split_from != NULL && strcmp(split_from, setting) == 0)
		return names;
	old = MemoryContextSwitchTo(TopMemoryContext);
	from = pstrdup(setting);
	copy = pstrdup(setting);
	if (!SplitGUCList(copy, ',', &list))
	{
		MemoryContextSwitchTo(old);
		pfree(from);
		pfree(copy);
		elog(ERROR, "invalid tool_audit.summary_keys");	/* the check hook ran */
	}
	MemoryContextSwitchTo(old);
	if (split_from != NULL)
	{
		pfree(split_from);
		pfree(split_copy);
		list_free(names);
	}
	split_from = from;
	split_copy = copy;
	names = list;
	return names;
}

/*
 * Summarize result.  success_override (-1: none, 0: false, 1: true) is the
 * caller's own verdict, which wins over the one derived from the result, so
 * that the summary and the row's success column never disagree.
 */
Jsonb *
ta_summarize_result(const TaRuleSet *rs, Jsonb *result, int success_override,
					bool *success, text **error)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	JsonbValue *err = NULL,
			   *v;
	Jsonb	   *summary;
	bool		ok = true;

	res = pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	if (result != NULL && JB_ROOT_IS_OBJECT(result))
	{
		ListCell   *lc;

		err = ta_jsonb_key(&result->root, "error");
		v = ta_jsonb_key(&result->root, "success");
		ok = !is_error_value(err) &&
			!(v && v->type == jbvBool && !v->val.boolean);
		if (success_override >= 0)
			ok = (success_override == 1);
		push_bool(&ps, "success", ok);
		if (err)
			push_pair(&ps, "error", err);
		if ((v = ta_jsonb_key(&result->root, "error_type")) != NULL)
			push_pair(&ps, "error_type", v);

		foreach(lc, summary_key_names())
		{
			char	   *name = (char *) lfirst(lc);

			/* identifiers are scalars: a nested record under "status" is payload */
			if (!is_reserved_summary_key(name) &&
				(v = ta_jsonb_key(&result->root, name)) != NULL && v->type != jbvBinary)
				push_pair(&ps, name, v);
		}
	}
	else
	{
		if (success_override >= 0)
			ok = (success_override == 1);
		push_bool(&ps, "success", ok);
	}

	if (result != NULL)
	{
		JsonbValue *size = NULL;

		/* a summary being summarized again keeps what it said */
		if (JB_ROOT_IS_OBJECT(result) && is_summary(result))
			size = ta_jsonb_key(&result->root, "_result_size");
		if (!JB_ROOT_IS_OBJECT(result))
			push_cstring(&ps, "_result_type", ta_jsonb_type_name(result));
		if (size != NULL)
		{
			push_pair(&ps, "_result_size", size);
			push_bool(&ps, "_truncated", true);
		}
		else
		{
			int64		chars = json_text_length(result);

			if (chars > TA_RESULT_SIZE_LIMIT)
			{
				push_int(&ps, "_result_size", chars);
				push_bool(&ps, "_truncated", true);
			}
		}
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);

	summary = ta_sanitize_jsonb(rs, JsonbValueToJsonb(res), "result summary");
	if (success)
		*success = ok;
	if (error)
		*error = error_text(ta_jsonb_key(&summary->root, "error"));
	return summary;
}

/* tool_audit.summarize_result(result jsonb) RETURNS jsonb */
PG_FUNCTION_INFO_V1(summarize_result);
Datum
summarize_result(PG_FUNCTION_ARGS)
{
	Jsonb	   *result = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);

	PG_RETURN_JSONB_P(ta_summarize_result(ta_get_rules(), result, -1, NULL, NULL));
}
