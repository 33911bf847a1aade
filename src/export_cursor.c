/*-------------------------------------------------------------------------
 *
 * export_cursor.c
 *		export_since()'s cursor check (1.5): that a cursor given back by a
 *		loader has the shape export_since() returns, and how many lanes it
 *		holds, in one pass over the jsonb.
 *
 * A cursor is {"admin_events" | "tool_calls" | "data_changes": {"chain_id:
 * lane": position}, "first": one of those three names, "after": {table:
 * "chain_id:lane"}}: positions are non-negative integers of at most 18
 * digits, chain ids signed 64-bit integers as text, lanes unsigned 32-bit
 * (in "after", the lane where a page stopped, which export_since() reads as
 * bigint and integer: both must fit).  The check was SQL (jsonb_each()
 * and a regular expression a lane, then a second jsonb_each() pass to count
 * them), about 0.4 s of a 0.8 s page at 100,000 lanes
 * (bench/export_since.sh); here it is a walk of the jsonb containers.
 *
 * The message never repeats what was given: a cursor comes from outside
 * and a wrong one may be anything, a secret pasted by mistake included.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(export_cursor_lanes);

static const char *const cursor_tables[] = {"admin_events", "tool_calls", "data_changes"};

static void
bad_cursor(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cursor is not a cursor returned by export_since()"),
			 errhint("Pass '{}' to start from the first row, or the next_cursor of the last row stored.")));
}

/* Is the jsonb string one of the three tables' names? */
static bool
is_table_name(const JsonbValue *s)
{
	for (size_t i = 0; i < lengthof(cursor_tables); i++)
		if ((size_t) s->val.string.len == strlen(cursor_tables[i]) &&
			memcmp(s->val.string.val, cursor_tables[i], s->val.string.len) == 0)
			return true;
	return false;
}

/* Up to max ASCII digits (at least one) from *p; false if none or too many. */
static bool
take_digits(const char **p, const char *end, int max)
{
	int			n = 0;

	while (*p < end && **p >= '0' && **p <= '9')
	{
		(*p)++;
		if (++n > max)
			return false;
	}
	return n > 0;
}

/* A lane key: -?[0-9]{1,19}:[0-9]{1,10}, the whole string. */
static bool
is_lane_key(const JsonbValue *k)
{
	const char *p = k->val.string.val;
	const char *end = p + k->val.string.len;

	if (p < end && *p == '-')
		p++;
	if (!take_digits(&p, end, 19))
		return false;
	if (p >= end || *p++ != ':')
		return false;
	return take_digits(&p, end, 10) && p == end;
}

/* An "after" lane: a lane key whose chain id fits int64, its lane int32. */
static bool
is_after_lane(const JsonbValue *v)
{
	const char *p;
	const char *end;
	bool		neg = false;
	uint64		id = 0;
	uint64		lane = 0;

	if (v->type != jbvString || !is_lane_key(v))
		return false;
	p = v->val.string.val;
	end = p + v->val.string.len;
	if (*p == '-')
	{
		neg = true;
		p++;
	}
	/* at most 19 digits (is_lane_key): no uint64 overflow */
	for (; *p != ':'; p++)
		id = id * 10 + (uint64) (*p - '0');
	if (id > (neg ? (uint64) PG_INT64_MAX + 1 : (uint64) PG_INT64_MAX))
		return false;
	for (p++; p < end; p++)
		lane = lane * 10 + (uint64) (*p - '0');
	return lane <= (uint64) PG_INT32_MAX;
}

/*
 * A position: a number whose text is [0-9]{1,18}, as the SQL check read it
 * (so 1.0 and 1e3, which numeric_out writes 1.0 and 1000, differ: the first
 * is refused, as a cursor export_since() wrote never holds it).
 */
static bool
is_position(const JsonbValue *v)
{
	char	   *text;
	const char *p;
	bool		ok;

	if (v->type != jbvNumeric)
		return false;
	text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	p = text;
	ok = take_digits(&p, text + strlen(text), 18) && *p == '\0';
	pfree(text);
	return ok;
}

/*
 * The members of an object (a table's positions, or "after"), each key and
 * value checked; refuses the cursor at the first that is not right.
 */
static int64
check_members(JsonbContainer *obj, bool (*key_ok) (const JsonbValue *),
			  bool (*value_ok) (const JsonbValue *))
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int64		members = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			if (!key_ok(&v))
				bad_cursor();
			members++;
		}
		else if (tok == WJB_VALUE && !value_ok(&v))
			bad_cursor();
	}
	return members;
}

/*
 * export_cursor_lanes(cursor jsonb) returns bigint: the number of lanes in
 * the cursor, after checking its shape (22023 if it is not a cursor).
 */
Datum
export_cursor_lanes(PG_FUNCTION_ARGS)
{
	Jsonb	   *cur = PG_GETARG_JSONB_P(0);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int64		lanes = 0;
	bool		is_first = false;
	bool		is_after = false;

	if (!JB_ROOT_IS_OBJECT(cur))
		bad_cursor();
	it = JsonbIteratorInit(&cur->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			is_first = (v.val.string.len == 5 && memcmp(v.val.string.val, "first", 5) == 0);
			is_after = (v.val.string.len == 5 && memcmp(v.val.string.val, "after", 5) == 0);
			if (!is_first && !is_after && !is_table_name(&v))
				bad_cursor();
		}
		else if (tok == WJB_VALUE)
		{
			if (is_first)
			{
				if (v.type != jbvString || !is_table_name(&v))
					bad_cursor();
			}
			else if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				bad_cursor();
			else if (is_after)
				check_members(v.val.binary.data, is_table_name, is_after_lane);
			else
				lanes += check_members(v.val.binary.data, is_lane_key, is_position);
		}
	}
	PG_FREE_IF_COPY(cur, 0);
	PG_RETURN_INT64(lanes);
}
