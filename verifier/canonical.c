/*-------------------------------------------------------------------------
 *
 * canonical.c
 *	  The canonical JSON text of section 3 of doc/canonical-encoding.md:
 *	  numbers as exact decimals, strings escaped as in RFC 8785, objects
 *	  in the byte order of their keys, no whitespace.
 *
 * Written from the spec, apart from the extension's own writer: the point
 * of an external verifier is that a mistake in one cannot hide in both.
 *
 * verifier/canonical.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ---- numbers ---- */

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void
put_zeros(Buf *out, int64_t n)
{
	for (; n > 0; n--)
		buf_putc(out, '0');
}

/*
 * Append the canonical form of the JSON number text[0..len): its exact
 * value without exponent, no leading zeros, no trailing fractional zeros,
 * no sign on zero.  The digits are only moved, never computed with, so
 * any precision is kept.
 *
 * The number is read as the digit string D (integer and fraction digits,
 * the point left out) with the decimal point after its first `point`
 * digits, where point = (digits before the '.') + exponent.  Dropping a
 * leading zero of D moves the point one place left; dropping a trailing
 * zero changes nothing.
 *
 * False if text is not a JSON number or is one that numeric cannot hold
 * (json.h): then nothing is appended.
 */
bool
canonical_number(const char *text, size_t len, Buf *out)
{
	const char *p = text;
	const char *end = text + len;
	const char *first;			/* D lies in [first, last], '.' aside */
	const char *last;
	bool		negative = false;
	bool		in_fraction = false;
	int64_t		point = 0;
	int64_t		ndigits = 0;
	int64_t		nfraction = 0;	/* digits written after the '.' */
	int64_t		exponent = 0;
	int64_t		k;

	if (p < end && *p == '-')
	{
		negative = true;
		p++;
	}
	first = p;
	for (; p < end && (is_digit(*p) || (*p == '.' && !in_fraction)); p++)
	{
		if (*p == '.')
			in_fraction = true;
		else
		{
			ndigits++;
			if (!in_fraction)
				point++;
			else
				nfraction++;
		}
	}
	last = p - 1;
	if (ndigits == 0)
		return false;
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		bool		minus = false;
		const char *exp_digits;

		p++;
		if (p < end && (*p == '+' || *p == '-'))
			minus = (*p++ == '-');
		exp_digits = p;
		for (; p < end && is_digit(*p); p++)
		{
			/* saturates far beyond anything accepted below */
			if (exponent <= JSON_MAX_EXPONENT)
				exponent = exponent * 10 + (*p - '0');
		}
		if (p == exp_digits)
			return false;
		if (minus)
			exponent = -exponent;
	}
	if (p != end)
		return false;
	/* numeric_in's limits, in its order: the exponent, then the scale */
	if (exponent > JSON_MAX_EXPONENT || exponent < -JSON_MAX_EXPONENT)
		return false;
	if (nfraction - exponent > JSON_MAX_DSCALE)
		return false;
	point += exponent;

	/* leading zeros of D: each moves the point */
	for (; first <= last && (*first == '0' || *first == '.'); first++)
	{
		if (*first == '0')
		{
			point--;
			ndigits--;
		}
	}
	if (ndigits == 0)
	{
		buf_putc(out, '0');		/* zero is unsigned */
		return true;
	}
	/* trailing zeros of D */
	for (; *last == '0' || *last == '.'; last--)
	{
		if (*last == '0')
			ndigits--;
	}
	/* and digits before the point; after it, the scale bounds them */
	if (point > JSON_MAX_INT_DIGITS)
		return false;

	if (negative)
		buf_putc(out, '-');
	if (point <= 0)
	{
		buf_append(out, "0.", 2);
		put_zeros(out, -point);
	}
	k = 0;
	for (p = first; p <= last; p++)
	{
		if (*p == '.')
			continue;
		if (k == point && k > 0)
			buf_putc(out, '.');
		buf_putc(out, (unsigned char) *p);
		k++;
	}
	put_zeros(out, point - k);
	return true;
}

/* ---- strings ---- */

/* the characters with a one-letter escape, and their letters */
static const char short_escaped[] = "\"\\\b\f\n\r\t";
static const char short_letter[] = "\"\\bfnrt";

static bool
stands_for_itself(unsigned char c)
{
	return c >= 0x20 && c != '"' && c != '\\';
}

static void
put_escape(Buf *out, unsigned char c)
{
	const char *hit = memchr(short_escaped, c, sizeof(short_escaped) - 1);
	char		esc[8];

	if (hit != NULL)
	{
		esc[0] = '\\';
		esc[1] = short_letter[hit - short_escaped];
		buf_append(out, esc, 2);
	}
	else
	{
		snprintf(esc, sizeof(esc), "\\u%04x", (unsigned int) c);
		buf_append(out, esc, 6);
	}
}

/*
 * Append s (UTF-8) as a quoted string: runs of bytes that stand for
 * themselves (everything from U+0020 up, '/', U+007F and non-ASCII
 * included) are copied whole; '"', '\' and U+0000..U+001F are escaped.
 */
void
canonical_string(const char *s, size_t len, Buf *out)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;

	buf_putc(out, '"');
	while (p < end)
	{
		const unsigned char *run = p;

		while (p < end && stands_for_itself(*p))
			p++;
		buf_append(out, run, (size_t) (p - run));
		if (p < end)
			put_escape(out, *p++);
	}
	buf_putc(out, '"');
}

/* ---- values ---- */

static void
put_scalar(const JsonValue *v, Buf *out)
{
	switch (v->kind)
	{
		case JSON_NULL:
			buf_puts(out, "null");
			return;
		case JSON_FALSE:
			buf_puts(out, "false");
			return;
		case JSON_TRUE:
			buf_puts(out, "true");
			return;
		case JSON_NUMBER:
			buf_append(out, v->str, v->len);
			return;
		case JSON_STRING:
			canonical_string(v->str, v->len, out);
			return;
		case JSON_ARRAY:
		case JSON_OBJECT:
			break;
	}
}

/* an array or object being written, and how many of its items are */
typedef struct OpenWrite
{
	const JsonValue *container;
	size_t		done;
} OpenWrite;

/*
 * Append the canonical text of v.  Objects are kept sorted and without
 * repeated keys by json.c, so members are written in order.  The
 * containers being written are kept in a list rather than on the stack,
 * so that no nesting can exhaust it.
 */
void
canonical_json(const JsonValue *v, Buf *out)
{
	OpenWrite  *open = NULL;
	size_t		depth = 0;
	size_t		cap = 0;

	for (;;)
	{
		if (v != NULL && v->kind != JSON_ARRAY && v->kind != JSON_OBJECT)
			put_scalar(v, out);
		else if (v != NULL)
		{
			buf_putc(out, v->kind == JSON_ARRAY ? '[' : '{');
			open = xgrow(open, &cap, depth + 1, sizeof(OpenWrite));
			open[depth].container = v;
			open[depth].done = 0;
			depth++;
		}
		/* the next item of the innermost container, closing finished ones */
		v = NULL;
		while (depth > 0 && v == NULL)
		{
			OpenWrite  *top = &open[depth - 1];
			const JsonValue *c = top->container;

			if (top->done == c->count)
			{
				buf_putc(out, c->kind == JSON_ARRAY ? ']' : '}');
				depth--;
				continue;
			}
			if (top->done > 0)
				buf_putc(out, ',');
			if (c->kind == JSON_ARRAY)
				v = c->items[top->done];
			else
			{
				canonical_string(c->members[top->done].key,
								 c->members[top->done].keylen, out);
				buf_putc(out, ':');
				v = c->members[top->done].value;
			}
			top->done++;
		}
		if (depth == 0 && v == NULL)
			break;
	}
	free(open);
}
