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
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/varlena.h"

#include "tool_audit.h"

static JsonbValue *
get_key(Jsonb *obj, const char *key)
{
	return getKeyJsonValueFromContainer(&obj->root, key, strlen(key), NULL);
}

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

static const char *
root_type_name(Jsonb *j)
{
	if (JB_ROOT_IS_OBJECT(j))
		return "object";
	if (JB_ROOT_IS_SCALAR(j))
	{
		JsonbValue	v;

		if (JsonbExtractScalar(&j->root, &v))
		{
			switch (v.type)
			{
				case jbvString:
					return "string";
				case jbvNumeric:
					return "number";
				case jbvBool:
					return "boolean";
				default:
					return "null";
			}
		}
	}
	return "array";
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
		char	   *raw = pstrdup(ta_summary_keys);
		List	   *names;
		ListCell   *lc;

		err = get_key(result, "error");
		v = get_key(result, "success");
		ok = !is_error_value(err) &&
			!(v && v->type == jbvBool && !v->val.boolean);
		if (success_override >= 0)
			ok = (success_override == 1);
		push_bool(&ps, "success", ok);
		if (err)
			push_pair(&ps, "error", err);
		if ((v = get_key(result, "error_type")) != NULL)
			push_pair(&ps, "error_type", v);

		if (!SplitGUCList(raw, ',', &names))
			elog(ERROR, "invalid tool_audit.summary_keys");
		foreach(lc, names)
		{
			char	   *name = (char *) lfirst(lc);

			/* identifiers are scalars: a nested record under "status" is payload */
			if (!is_reserved_summary_key(name) &&
				(v = get_key(result, name)) != NULL && v->type != jbvBinary)
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
		JsonbValue *size = JB_ROOT_IS_OBJECT(result)
			? get_key(result, "_result_size") : NULL;

		if (!JB_ROOT_IS_OBJECT(result))
			push_cstring(&ps, "_result_type", root_type_name(result));
		if (size != NULL && size->type == jbvNumeric)
		{
			/* a summary being summarized again: keep what it said */
			push_pair(&ps, "_result_size", size);
			push_bool(&ps, "_truncated", true);
		}
		else
		{
			char	   *out = JsonbToCString(NULL, &result->root, VARSIZE(result));
			int64		chars = pg_mbstrlen(out);

			if (chars > TA_RESULT_SIZE_LIMIT)
			{
				push_int(&ps, "_result_size", chars);
				push_bool(&ps, "_truncated", true);
			}
			pfree(out);
		}
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);

	summary = ta_sanitize_jsonb_with(rs, JsonbValueToJsonb(res), "result summary");
	if (success)
		*success = ok;
	if (error)
		*error = error_text(get_key(summary, "error"));
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
