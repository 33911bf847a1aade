/*-------------------------------------------------------------------------
 *
 * json.c
 *	  A small recursive descent JSON parser (RFC 8259, UTF-8 validating)
 *	  and the canonical JSON writer of doc/canonical-encoding.md section 3.
 *
 * Numbers are never converted to binary floating point: their digits are
 * rearranged as a decimal string, so "123456789012345678901234567890.0001"
 * keeps every digit, exactly as jsonb's numeric does.  Objects are sorted
 * by the bytes of their keys as they are parsed; a key given twice keeps
 * its last value, as jsonb does.  Nesting is limited to JSON_MAX_DEPTH so
 * that hostile input cannot overflow the stack.
 *
 * verifier/json.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct JsonParser
{
	const unsigned char *start;
	const unsigned char *p;
	const unsigned char *end;
	int			depth;
	char	   *err;
	size_t		errlen;
	bool		failed;
	Buf			scratch;		/* string and number assembly */
} JsonParser;

static JsonValue *parse_value(JsonParser *ps);

static bool
parse_error(JsonParser *ps, const char *msg)
{
	if (!ps->failed)
		snprintf(ps->err, ps->errlen, "invalid JSON at byte %zu: %s",
				 (size_t) (ps->p - ps->start), msg);
	ps->failed = true;
	return false;
}

static JsonValue *
new_value(JsonKind kind)
{
	JsonValue  *v = xmalloc(sizeof(JsonValue));

	memset(v, 0, sizeof(JsonValue));
	v->kind = kind;
	return v;
}

void
json_free(JsonValue *v)
{
	size_t		i;

	if (v == NULL)
		return;
	if (v->kind == JSON_ARRAY)
	{
		for (i = 0; i < v->count; i++)
			json_free(v->items[i]);
	}
	else if (v->kind == JSON_OBJECT)
	{
		for (i = 0; i < v->count; i++)
		{
			free(v->members[i].key);
			json_free(v->members[i].value);
		}
	}
	free(v->items);
	free(v->members);
	free(v->str);
	free(v);
}

static void
skip_ws(JsonParser *ps)
{
	while (ps->p < ps->end &&
		   (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int
hex4(const unsigned char *p)
{
	int			v = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		int			c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static void
put_utf8(Buf *b, unsigned int cp)
{
	if (cp < 0x80)
		buf_putc(b, (unsigned char) cp);
	else if (cp < 0x800)
	{
		buf_putc(b, (unsigned char) (0xC0 | (cp >> 6)));
		buf_putc(b, (unsigned char) (0x80 | (cp & 0x3F)));
	}
	else if (cp < 0x10000)
	{
		buf_putc(b, (unsigned char) (0xE0 | (cp >> 12)));
		buf_putc(b, (unsigned char) (0x80 | ((cp >> 6) & 0x3F)));
		buf_putc(b, (unsigned char) (0x80 | (cp & 0x3F)));
	}
	else
	{
		buf_putc(b, (unsigned char) (0xF0 | (cp >> 18)));
		buf_putc(b, (unsigned char) (0x80 | ((cp >> 12) & 0x3F)));
		buf_putc(b, (unsigned char) (0x80 | ((cp >> 6) & 0x3F)));
		buf_putc(b, (unsigned char) (0x80 | (cp & 0x3F)));
	}
}

/*
 * Length of the well-formed UTF-8 sequence at p (Unicode table 3-7: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0.
 */
static size_t
utf8_sequence_len(const unsigned char *p, const unsigned char *end)
{
	size_t		avail = (size_t) (end - p);
	unsigned char c = p[0];

	if (c >= 0xC2 && c <= 0xDF)
		return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF)
	{
		unsigned char lo = (c == 0xE0) ? 0xA0 : 0x80;
		unsigned char hi = (c == 0xED) ? 0x9F : 0xBF;

		if (avail < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
			return 0;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4)
	{
		unsigned char lo = (c == 0xF0) ? 0x90 : 0x80;
		unsigned char hi = (c == 0xF4) ? 0x8F : 0xBF;

		if (avail < 4 || p[1] < lo || p[1] > hi ||
			(p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

/* Parse a string starting at the opening quote into ps->scratch. */
static bool
parse_string_raw(JsonParser *ps)
{
	Buf		   *b = &ps->scratch;

	buf_reset(b);
	ps->p++;					/* opening quote */
	for (;;)
	{
		unsigned char c;

		if (ps->p >= ps->end)
			return parse_error(ps, "unterminated string");
		c = *ps->p;
		if (c == '"')
		{
			ps->p++;
			return true;
		}
		if (c < 0x20)
			return parse_error(ps, "control character in string");
		if (c == '\\')
		{
			int			cp;

			if (ps->end - ps->p < 2)
				return parse_error(ps, "unterminated escape");
			c = ps->p[1];
			ps->p += 2;
			switch (c)
			{
				case '"':
				case '\\':
				case '/':
					buf_putc(b, c);
					continue;
				case 'b':
					buf_putc(b, '\b');
					continue;
				case 'f':
					buf_putc(b, '\f');
					continue;
				case 'n':
					buf_putc(b, '\n');
					continue;
				case 'r':
					buf_putc(b, '\r');
					continue;
				case 't':
					buf_putc(b, '\t');
					continue;
				case 'u':
					break;
				default:
					ps->p -= 2;
					return parse_error(ps, "invalid escape");
			}
			if (ps->end - ps->p < 4 || (cp = hex4(ps->p)) < 0)
				return parse_error(ps, "invalid \\u escape");
			ps->p += 4;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return parse_error(ps, "unpaired low surrogate");
			if (cp >= 0xD800 && cp <= 0xDBFF)
			{
				int			lo;

				if (ps->end - ps->p < 6 || ps->p[0] != '\\' ||
					ps->p[1] != 'u' || (lo = hex4(ps->p + 2)) < 0 ||
					lo < 0xDC00 || lo > 0xDFFF)
					return parse_error(ps, "unpaired high surrogate");
				ps->p += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			put_utf8(b, (unsigned int) cp);
			continue;
		}
		if (c < 0x80)
		{
			buf_putc(b, c);
			ps->p++;
		}
		else
		{
			size_t		n = utf8_sequence_len(ps->p, ps->end);

			if (n == 0)
				return parse_error(ps, "invalid UTF-8");
			buf_append(b, ps->p, n);
			ps->p += n;
		}
	}
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Parse a number and write its canonical decimal form into ps->scratch.
 *
 * The value is digits(S) * 10^scale, where S is the integer and fraction
 * digits run together and scale = exponent - number of fraction digits.
 * Leading zeros of S do not change the value and trailing zeros move into
 * the scale; what is left is printed without an exponent.
 */
static bool
parse_number(JsonParser *ps)
{
	Buf		   *b = &ps->scratch;
	const unsigned char *digits_start;
	bool		negative = false;
	int64_t		fraclen = 0;
	int64_t		exponent = 0;
	int64_t		scale;
	size_t		n;
	size_t		i;
	unsigned char *s;

	buf_reset(b);
	if (*ps->p == '-')
	{
		negative = true;
		ps->p++;
	}
	if (ps->p >= ps->end || !is_digit(*ps->p))
		return parse_error(ps, "invalid number");

	/* integer part: 0, or no leading zero */
	digits_start = ps->p;
	if (*ps->p == '0')
		ps->p++;
	else
		while (ps->p < ps->end && is_digit(*ps->p))
			ps->p++;
	buf_append(b, digits_start, (size_t) (ps->p - digits_start));

	if (ps->p < ps->end && *ps->p == '.')
	{
		ps->p++;
		digits_start = ps->p;
		while (ps->p < ps->end && is_digit(*ps->p))
			ps->p++;
		if (ps->p == digits_start)
			return parse_error(ps, "digit expected after decimal point");
		fraclen = ps->p - digits_start;
		buf_append(b, digits_start, (size_t) fraclen);
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E'))
	{
		bool		expneg = false;

		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			expneg = (*ps->p++ == '-');
		if (ps->p >= ps->end || !is_digit(*ps->p))
			return parse_error(ps, "digit expected in exponent");
		while (ps->p < ps->end && is_digit(*ps->p))
		{
			/* saturate: anything this large is rejected below anyway */
			if (exponent < 1000000000)
				exponent = exponent * 10 + (*ps->p - '0');
			ps->p++;
		}
		if (expneg)
			exponent = -exponent;
	}

	/* strip leading zeros of S */
	s = b->data;
	n = b->len;
	i = 0;
	while (i < n && s[i] == '0')
		i++;
	if (i == n)
	{
		buf_reset(b);
		buf_putc(b, '0');		/* zero has no sign */
		return true;
	}
	memmove(s, s + i, n - i);
	n -= i;

	/* trailing zeros go into the scale */
	scale = exponent - fraclen;
	while (s[n - 1] == '0')
	{
		n--;
		scale++;
	}
	if (scale > JSON_MAX_SCALE || scale < -JSON_MAX_SCALE)
		return parse_error(ps, "number out of range");

	/* now rebuild in place: b holds S (n digits) */
	b->len = n;
	if (scale >= 0)
	{
		for (i = 0; i < (size_t) scale; i++)
			buf_putc(b, '0');
	}
	else if ((int64_t) n > -scale)
	{
		size_t		intlen = (size_t) ((int64_t) n + scale);

		buf_putc(b, 0);
		memmove(b->data + intlen + 1, b->data + intlen, n - intlen);
		b->data[intlen] = '.';
	}
	else
	{
		size_t		zeros = (size_t) (-scale - (int64_t) n);

		buf_reserve(b, zeros + 2);
		memmove(b->data + zeros + 2, b->data, n);
		b->data[0] = '0';
		b->data[1] = '.';
		memset(b->data + 2, '0', zeros);
		b->len = n + zeros + 2;
	}
	if (negative)
	{
		buf_putc(b, 0);
		memmove(b->data + 1, b->data, b->len - 1);
		b->data[0] = '-';
	}
	return true;
}

static char *
scratch_copy(JsonParser *ps, size_t *len)
{
	*len = ps->scratch.len;
	return xstrndup((const char *) ps->scratch.data, ps->scratch.len);
}

static int
member_cmp(const void *a, const void *b)
{
	const JsonMember *ma = a;
	const JsonMember *mb = b;
	size_t		n = ma->keylen < mb->keylen ? ma->keylen : mb->keylen;
	int			c = memcmp(ma->key, mb->key, n);

	if (c != 0)
		return c;
	if (ma->keylen != mb->keylen)
		return ma->keylen < mb->keylen ? -1 : 1;
	return ma->order < mb->order ? -1 : (ma->order > mb->order ? 1 : 0);
}

/* Sort members by key bytes; of equal keys keep the last one given. */
static void
finish_object(JsonValue *obj)
{
	size_t		i;
	size_t		out = 0;

	if (obj->count < 2)
		return;
	qsort(obj->members, obj->count, sizeof(JsonMember), member_cmp);
	for (i = 0; i < obj->count; i++)
	{
		JsonMember *m = &obj->members[i];

		if (i + 1 < obj->count && m->keylen == m[1].keylen &&
			memcmp(m->key, m[1].key, m->keylen) == 0)
		{
			free(m->key);
			json_free(m->value);
			continue;
		}
		obj->members[out++] = *m;
	}
	obj->count = out;
}

static JsonValue *
parse_container(JsonParser *ps, bool is_object)
{
	JsonValue  *v = new_value(is_object ? JSON_OBJECT : JSON_ARRAY);
	size_t		cap = 0;
	unsigned char close = is_object ? '}' : ']';

	if (++ps->depth > JSON_MAX_DEPTH)
	{
		parse_error(ps, "nested too deeply");
		goto fail;
	}
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close)
	{
		ps->p++;
		ps->depth--;
		return v;
	}
	for (;;)
	{
		JsonMember  m = {NULL, 0, NULL, 0};
		JsonValue  *item;

		skip_ws(ps);
		if (is_object)
		{
			if (ps->p >= ps->end || *ps->p != '"')
			{
				parse_error(ps, "object key expected");
				goto fail;
			}
			if (!parse_string_raw(ps))
				goto fail;
			m.key = scratch_copy(ps, &m.keylen);
			m.order = v->count;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
			{
				free(m.key);
				parse_error(ps, "':' expected");
				goto fail;
			}
			ps->p++;
		}
		item = parse_value(ps);
		if (item == NULL)
		{
			free(m.key);
			goto fail;
		}
		if (is_object)
		{
			v->members = xgrow(v->members, &cap, v->count + 1,
							   sizeof(JsonMember));
			m.value = item;
			v->members[v->count++] = m;
		}
		else
		{
			v->items = xgrow(v->items, &cap, v->count + 1,
							 sizeof(JsonValue *));
			v->items[v->count++] = item;
		}
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',')
		{
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close)
		{
			ps->p++;
			break;
		}
		parse_error(ps, is_object ? "',' or '}' expected" : "',' or ']' expected");
		goto fail;
	}
	if (is_object)
		finish_object(v);
	ps->depth--;
	return v;

fail:
	json_free(v);
	return NULL;
}

static bool
match_literal(JsonParser *ps, const char *lit)
{
	size_t		n = strlen(lit);

	if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0)
		return false;
	ps->p += n;
	return true;
}

static JsonValue *
parse_value(JsonParser *ps)
{
	JsonValue  *v;

	skip_ws(ps);
	if (ps->p >= ps->end)
	{
		parse_error(ps, "value expected");
		return NULL;
	}
	switch (*ps->p)
	{
		case '{':
			return parse_container(ps, true);
		case '[':
			return parse_container(ps, false);
		case '"':
			if (!parse_string_raw(ps))
				return NULL;
			v = new_value(JSON_STRING);
			v->str = scratch_copy(ps, &v->len);
			return v;
		case 't':
			if (match_literal(ps, "true"))
				return new_value(JSON_TRUE);
			break;
		case 'f':
			if (match_literal(ps, "false"))
				return new_value(JSON_FALSE);
			break;
		case 'n':
			if (match_literal(ps, "null"))
				return new_value(JSON_NULL);
			break;
		default:
			if (*ps->p == '-' || is_digit(*ps->p))
			{
				if (!parse_number(ps))
					return NULL;
				v = new_value(JSON_NUMBER);
				v->str = scratch_copy(ps, &v->len);
				return v;
			}
			break;
	}
	parse_error(ps, "unexpected character");
	return NULL;
}

/*
 * Parse text (len bytes, need not be NUL-terminated).  Returns NULL and a
 * message in err on any error.
 */
JsonValue *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	JsonParser	ps;
	JsonValue  *v;

	ps.start = (const unsigned char *) text;
	ps.p = ps.start;
	ps.end = ps.start + len;
	ps.depth = 0;
	ps.err = err;
	ps.errlen = errlen;
	ps.failed = false;
	buf_init(&ps.scratch);

	v = parse_value(&ps);
	if (v != NULL)
	{
		skip_ws(&ps);
		if (ps.p != ps.end)
		{
			parse_error(&ps, "garbage after the value");
			json_free(v);
			v = NULL;
		}
	}
	buf_free(&ps.scratch);
	return v;
}

/* The string form of RFC 8785, quotes included. */
void
json_canonical_string(const char *s, size_t len, Buf *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t		i;
	size_t		run = 0;		/* start of bytes copied as they are */

	buf_putc(out, '"');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		const char *esc = NULL;
		char		u[7];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		buf_append(out, s + run, i - run);
		run = i + 1;
		switch (c)
		{
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			case '\b':
				esc = "\\b";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\r':
				esc = "\\r";
				break;
			default:
				memcpy(u, "\\u00", 4);
				u[4] = hex[c >> 4];
				u[5] = hex[c & 0x0f];
				u[6] = '\0';
				esc = u;
				break;
		}
		buf_puts(out, esc);
	}
	buf_append(out, s + run, len - run);
	buf_putc(out, '"');
}

/* Append the canonical form of v; recursion is bounded by JSON_MAX_DEPTH. */
void
json_canonical(const JsonValue *v, Buf *out)
{
	size_t		i;

	switch (v->kind)
	{
		case JSON_NULL:
			buf_puts(out, "null");
			break;
		case JSON_FALSE:
			buf_puts(out, "false");
			break;
		case JSON_TRUE:
			buf_puts(out, "true");
			break;
		case JSON_NUMBER:
			buf_append(out, v->str, v->len);
			break;
		case JSON_STRING:
			json_canonical_string(v->str, v->len, out);
			break;
		case JSON_ARRAY:
			buf_putc(out, '[');
			for (i = 0; i < v->count; i++)
			{
				if (i > 0)
					buf_putc(out, ',');
				json_canonical(v->items[i], out);
			}
			buf_putc(out, ']');
			break;
		case JSON_OBJECT:
			buf_putc(out, '{');
			for (i = 0; i < v->count; i++)
			{
				if (i > 0)
					buf_putc(out, ',');
				json_canonical_string(v->members[i].key,
									  v->members[i].keylen, out);
				buf_putc(out, ':');
				json_canonical(v->members[i].value, out);
			}
			buf_putc(out, '}');
			break;
	}
}

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
		if (obj->members[i].keylen == keylen &&
			memcmp(obj->members[i].key, key, keylen) == 0)
			return obj->members[i].value;
	}
	return NULL;
}

/* A number that is an integer within the int64 range. */
bool
json_int64(const JsonValue *v, int64_t *out)
{
	const char *p;
	bool		negative;
	uint64_t	acc = 0;
	uint64_t	limit;

	if (v == NULL || v->kind != JSON_NUMBER)
		return false;
	p = v->str;
	negative = (*p == '-');
	if (negative)
		p++;
	limit = negative ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
	for (; *p; p++)
	{
		if (!is_digit((unsigned char) *p))
			return false;		/* a fraction */
		if (acc > (limit - (uint64_t) (*p - '0')) / 10)
			return false;
		acc = acc * 10 + (uint64_t) (*p - '0');
	}
	if (negative)
		*out = (acc == (uint64_t) INT64_MAX + 1) ? INT64_MIN : -(int64_t) acc;
	else
		*out = (int64_t) acc;
	return true;
}

bool
json_is_string(const JsonValue *v, const char *s)
{
	return v != NULL && v->kind == JSON_STRING && v->len == strlen(s) &&
		memcmp(v->str, s, v->len) == 0;
}
