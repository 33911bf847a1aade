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
 * False if text is not a JSON number or would need more than
 * JSON_MAX_ZEROS zeros written out.
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
			if (exponent < 1000000000)
				exponent = exponent * 10 + (*p - '0');
		}
		if (p == exp_digits)
			return false;
		if (minus)
			exponent = -exponent;
	}
	if (p != end)
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
	if (-point > JSON_MAX_ZEROS || point - ndigits > JSON_MAX_ZEROS)
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

/*
 * Append the canonical text of v.  Objects are kept sorted and without
 * repeated keys by json.c, so members are written in order.  Recursion is
 * bounded by JSON_MAX_DEPTH, which json_parse enforces.
 */
void
canonical_json(const JsonValue *v, Buf *out)
{
	size_t		i;

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
			buf_putc(out, v->kind == JSON_ARRAY ? '[' : '{');
			for (i = 0; i < v->count; i++)
			{
				if (i > 0)
					buf_putc(out, ',');
				if (v->kind == JSON_ARRAY)
				{
					canonical_json(v->items[i], out);
					continue;
				}
				canonical_string(v->members[i].key, v->members[i].keylen, out);
				buf_putc(out, ':');
				canonical_json(v->members[i].value, out);
			}
			buf_putc(out, v->kind == JSON_ARRAY ? ']' : '}');
			return;
	}
}
