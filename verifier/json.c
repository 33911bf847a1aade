/*-------------------------------------------------------------------------
 *
 * json.c
 *	  Parsing JSON with yajl into JsonValue trees.
 *
 * yajl (Debian: libyajl-dev) does the lexing, grammar, unescaping and
 * UTF-8 checks; its callbacks build the tree here.  yajl is used because
 * its yajl_number callback hands over every number as the exact text of
 * the input, so that 18446744073709551616 or
 * 123456789012345678901234567890.0001 reach the canonical writer with all
 * their digits, as jsonb's numeric keeps them (jansson refuses integers
 * beyond 64 bits and rounds fractions to doubles; json-c clamps large
 * integers to the 64-bit range).
 *
 * What is added to yajl, so that what is accepted is what jsonb (in
 * PostgreSQL 15, UTF-8 database) accepts:
 *   - numbers within numeric's limits (canonical.c, json.h), and a cap on
 *     how much longer than the input all numbers written out may be;
 *   - a strict check that every string and key is well-formed UTF-8 (yajl
 *     lets overlong forms, surrogates and code points above U+10FFFF
 *     through) and holds no U+0000 (jsonb refuses \u0000: text cannot
 *     hold it);
 *   - a check that \u escapes of surrogates come in pairs (yajl reads a
 *     lone one as '?');
 *   - whitespace only as RFC 8259 has it (yajl also skips \f and \v);
 *   - a nesting limit, above what jsonb stores (json.h);
 *   - jsonb's object semantics: members sorted by the bytes of their
 *     keys, a key given twice keeping its last value.
 * test/vectors/json_invalid.tsv holds inputs both must refuse.
 *
 * verifier/json.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "json.h"

/* a container still being filled, and the room allocated in it */
typedef struct OpenContainer
{
	JsonValue  *value;
	size_t		cap;
	size_t		next_order;		/* OBJECT: members seen so far */
} OpenContainer;

typedef struct TreeBuilder
{
	JsonValue  *root;			/* owns everything built so far */
	OpenContainer *open;		/* innermost last */
	size_t		depth;
	size_t		opencap;
	char	   *key;			/* OBJECT: key waiting for its value */
	size_t		keylen;
	size_t		key_order;
	const char *problem;		/* why a callback stopped yajl */
	Buf			number;			/* canonical form of the last number */
	size_t		number_bytes;	/* of all numbers so far, canonical */
	size_t		number_budget;	/* the most number_bytes may reach */
} TreeBuilder;

/* ---- UTF-8 ---- */

/*
 * True if s[0..len) is well-formed UTF-8: every sequence of the length its
 * first byte announces, decoding to a scalar value (not a surrogate, not
 * above U+10FFFF) that needs that length.
 */
static bool
utf8_well_formed(const unsigned char *s, size_t len)
{
	static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		n;
		uint32_t	cp;
		size_t		j;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			n = 2;
		else if ((c & 0xF0) == 0xE0)
			n = 3;
		else if ((c & 0xF8) == 0xF0)
			n = 4;
		else
			return false;		/* a continuation byte, or 0xF8 and up */
		if (len - i < n)
			return false;
		cp = c & (0x7F >> n);
		for (j = 1; j < n; j++)
		{
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n;
	}
	return true;
}

/* True if text[at..at+6) is a \uXXXX escape; its code unit in *cp. */
static bool
u_escape_at(const char *text, size_t len, size_t at, unsigned int *cp)
{
	unsigned char two[2];

	if (at > len || len - at < 6 || text[at] != '\\' || text[at + 1] != 'u' ||
		!hex_decode(text + at + 2, 4, two, 2))
		return false;
	*cp = (unsigned int) two[0] << 8 | two[1];
	return true;
}

/*
 * yajl reads a \u escape of a high surrogate that no low surrogate's
 * follows as '?', and pairs it with whatever \u escape comes next; jsonb
 * refuses both.  In valid JSON every backslash starts an escape inside a
 * string, so the escapes are checked on the raw text, before yajl.
 * Returns the offset of the first unpaired surrogate, or len.
 */
static size_t
unpaired_surrogate(const char *text, size_t len)
{
	const char *p;
	size_t		at = 0;

	while (at < len && (p = memchr(text + at, '\\', len - at)) != NULL)
	{
		unsigned int cp;
		unsigned int low;

		at = (size_t) (p - text);
		if (!u_escape_at(text, len, at, &cp))
			at += 2;			/* a one-letter escape, or yajl's error */
		else if (cp >= 0xDC00 && cp <= 0xDFFF)
			return at;
		else if (cp < 0xD800 || cp > 0xDBFF)
			at += 6;
		else if (u_escape_at(text, len, at + 6, &low) &&
				 low >= 0xDC00 && low <= 0xDFFF)
			at += 12;
		else
			return at;
	}
	return len;
}

/* ---- the tree ---- */

static JsonValue *
new_value(JsonKind kind)
{
	JsonValue  *v = xmalloc(sizeof(JsonValue));

	memset(v, 0, sizeof(JsonValue));
	v->kind = kind;
	return v;
}

/*
 * Free v and everything in it.  A list of values still to free stands in
 * for recursion, so that no nesting can exhaust the stack.
 */
void
json_free(JsonValue *v)
{
	JsonValue **todo = NULL;
	size_t		ntodo = 0;
	size_t		cap = 0;
	size_t		i;

	if (v == NULL)
		return;
	todo = xgrow(todo, &cap, 1, sizeof(JsonValue *));
	todo[ntodo++] = v;
	while (ntodo > 0)
	{
		v = todo[--ntodo];
		todo = xgrow(todo, &cap, ntodo + v->count, sizeof(JsonValue *));
		for (i = 0; v->kind == JSON_ARRAY && i < v->count; i++)
			todo[ntodo++] = v->items[i];
		for (i = 0; v->kind == JSON_OBJECT && i < v->count; i++)
		{
			free(v->members[i].key);
			todo[ntodo++] = v->members[i].value;
		}
		free(v->items);
		free(v->members);
		free(v->str);
		free(v);
	}
	free(todo);
}

/* Hang v into the innermost open container, or make it the root. */
static int
attach(TreeBuilder *tb, JsonValue *v)
{
	OpenContainer *top;
	JsonValue  *c;

	if (tb->depth == 0)
	{
		tb->root = v;
		return 1;
	}
	top = &tb->open[tb->depth - 1];
	c = top->value;
	if (c->kind == JSON_ARRAY)
	{
		c->items = xgrow(c->items, &top->cap, c->count + 1, sizeof(JsonValue *));
		c->items[c->count++] = v;
	}
	else
	{
		JsonMember *m;

		c->members = xgrow(c->members, &top->cap, c->count + 1,
						   sizeof(JsonMember));
		m = &c->members[c->count++];
		m->key = tb->key;
		m->keylen = tb->keylen;
		m->value = v;
		m->order = tb->key_order;
		tb->key = NULL;
	}
	return 1;
}

static int
member_order(const void *a, const void *b)
{
	const JsonMember *x = a;
	const JsonMember *y = b;
	int			c = bytes_cmp(x->key, x->keylen, y->key, y->keylen);

	if (c != 0)
		return c;
	return x->order < y->order ? -1 : 1;
}

/* jsonb's object: sorted by key bytes, of a repeated key the last value. */
static void
settle_object(JsonValue *obj)
{
	size_t		kept = 0;
	size_t		i;

	if (obj->count > 1)
		qsort(obj->members, obj->count, sizeof(JsonMember), member_order);
	for (i = 0; i < obj->count; i++)
	{
		JsonMember *m = &obj->members[i];
		bool		overridden = (i + 1 < obj->count &&
								  bytes_cmp(m->key, m->keylen, m[1].key,
											m[1].keylen) == 0);

		if (overridden)
		{
			free(m->key);
			json_free(m->value);
		}
		else
			obj->members[kept++] = *m;
	}
	obj->count = kept;
}

/* ---- yajl callbacks: each returns 1 to go on, 0 to stop the parse ---- */

static int
on_null(void *ctx)
{
	return attach(ctx, new_value(JSON_NULL));
}

static int
on_boolean(void *ctx, int value)
{
	return attach(ctx, new_value(value ? JSON_TRUE : JSON_FALSE));
}

static int
on_number(void *ctx, const char *text, size_t len)
{
	TreeBuilder *tb = ctx;
	JsonValue  *v;

	buf_reset(&tb->number);
	if (!canonical_number(text, len, &tb->number))
	{
		tb->problem = "number out of range";
		return 0;
	}
	tb->number_bytes += tb->number.len;
	if (tb->number_bytes > tb->number_budget)
	{
		tb->problem = "numbers too long when written out";
		return 0;
	}
	v = new_value(JSON_NUMBER);
	v->len = tb->number.len;
	v->str = xstrndup((const char *) tb->number.data, tb->number.len);
	return attach(tb, v);
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
	TreeBuilder *tb = ctx;
	JsonValue  *v;

	if (!utf8_well_formed(s, len))
	{
		tb->problem = "invalid UTF-8 in a string";
		return 0;
	}
	if (memchr(s, '\0', len) != NULL)
	{
		tb->problem = "\\u0000 in a string";
		return 0;
	}
	v = new_value(JSON_STRING);
	v->len = len;
	v->str = xstrndup((const char *) s, len);
	return attach(tb, v);
}

static int
on_key(void *ctx, const unsigned char *s, size_t len)
{
	TreeBuilder *tb = ctx;
	OpenContainer *top = &tb->open[tb->depth - 1];

	if (!utf8_well_formed(s, len))
	{
		tb->problem = "invalid UTF-8 in an object key";
		return 0;
	}
	if (memchr(s, '\0', len) != NULL)
	{
		tb->problem = "\\u0000 in an object key";
		return 0;
	}
	free(tb->key);
	tb->key = xstrndup((const char *) s, len);
	tb->keylen = len;
	tb->key_order = top->next_order++;
	return 1;
}

static int
open_container(TreeBuilder *tb, JsonKind kind)
{
	JsonValue  *v;

	if (tb->depth >= JSON_MAX_DEPTH)
	{
		tb->problem = "nested too deeply";
		return 0;
	}
	v = new_value(kind);
	attach(tb, v);
	tb->open = xgrow(tb->open, &tb->opencap, tb->depth + 1,
					 sizeof(OpenContainer));
	tb->open[tb->depth].value = v;
	tb->open[tb->depth].cap = 0;
	tb->open[tb->depth].next_order = 0;
	tb->depth++;
	return 1;
}

static int
on_start_map(void *ctx)
{
	return open_container(ctx, JSON_OBJECT);
}

static int
on_start_array(void *ctx)
{
	return open_container(ctx, JSON_ARRAY);
}

static int
on_end_map(void *ctx)
{
	TreeBuilder *tb = ctx;

	settle_object(tb->open[--tb->depth].value);
	return 1;
}

static int
on_end_array(void *ctx)
{
	TreeBuilder *tb = ctx;

	tb->depth--;
	return 1;
}

static const yajl_callbacks tree_callbacks = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number,	/* and so no yajl_integer, yajl_double */
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_key,
	.yajl_end_map = on_end_map,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end_array,
};

/*
 * Parse exactly one JSON value from text[0..len) (RFC 8259: no comments,
 * nothing after the value but whitespace; text need not be
 * NUL-terminated).  Returns NULL and a message in err on any error.
 */
JsonValue *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	TreeBuilder tb;
	yajl_handle h;
	yajl_status st;
	size_t		at;
	const char *p;

	at = unpaired_surrogate(text, len);
	if (at < len)
	{
		snprintf(err, errlen, "invalid JSON at byte %zu: unpaired surrogate "
				 "in a \\u escape", at);
		return NULL;
	}

	/*
	 * yajl skips \f and \v as whitespace; RFC 8259 and jsonb do not.  In a
	 * string they would be raw control characters, refused as well, so
	 * either byte anywhere makes the text invalid.
	 */
	if ((p = memchr(text, '\f', len)) != NULL ||
		(p = memchr(text, '\v', len)) != NULL)
	{
		snprintf(err, errlen, "invalid JSON at byte %zu: raw form feed or "
				 "vertical tab", (size_t) (p - text));
		return NULL;
	}

	memset(&tb, 0, sizeof(tb));
	buf_init(&tb.number);
	tb.number_budget = len + JSON_MAX_NUMBER_GROWTH;
	h = yajl_alloc(&tree_callbacks, NULL, &tb);
	if (h == NULL)
		fatal("out of memory");
	/* yajl's defaults are the strict ones; say so rather than rely on it */
	yajl_config(h, yajl_allow_comments, 0);
	yajl_config(h, yajl_dont_validate_strings, 0);
	yajl_config(h, yajl_allow_trailing_garbage, 0);
	yajl_config(h, yajl_allow_multiple_values, 0);
	yajl_config(h, yajl_allow_partial_values, 0);

	st = yajl_parse(h, (const unsigned char *) text, len);
	at = yajl_get_bytes_consumed(h);
	if (st == yajl_status_ok)
	{
		st = yajl_complete_parse(h);
		at = len;
	}
	if (st != yajl_status_ok)
	{
		const char *why = tb.problem;
		unsigned char *msg = NULL;
		size_t		whylen;

		if (why == NULL)
		{
			msg = yajl_get_error(h, 0, NULL, 0);
			why = msg ? (const char *) msg : "parse error";
		}
		/* yajl ends its message with a newline */
		whylen = strcspn(why, "\n");
		snprintf(err, errlen, "invalid JSON at byte %zu: %.*s", at,
				 (int) whylen, why);
		if (msg != NULL)
			yajl_free_error(h, msg);
		json_free(tb.root);
		tb.root = NULL;
	}
	yajl_free(h);
	free(tb.key);
	free(tb.open);
	buf_free(&tb.number);
	return tb.root;
}

/* ---- reading values ---- */

/* Member of an object by an ASCII key, or NULL. */
const JsonValue *
json_get(const JsonValue *obj, const char *key)
{
	size_t		keylen = strlen(key);
	size_t		i;

	if (obj == NULL || obj->kind != JSON_OBJECT)
		return NULL;
	for (i = 0; i < obj->count; i++)
	{
		const JsonMember *m = &obj->members[i];

		if (bytes_cmp(m->key, m->keylen, key, keylen) == 0)
			return m->value;
	}
	return NULL;
}

/*
 * A number that is an integer within the int64 range.  Its canonical text
 * has the very form parse_int64 reads: no exponent, no leading zeros, no
 * "-0"; a fraction or a value out of range makes it refuse.
 */
bool
json_int64(const JsonValue *v, int64_t *out)
{
	return v != NULL && v->kind == JSON_NUMBER &&
		parse_int64(v->str, v->len, out);
}

bool
json_is_string(const JsonValue *v, const char *s)
{
	return v != NULL && v->kind == JSON_STRING &&
		bytes_cmp(v->str, v->len, s, strlen(s)) == 0;
}
