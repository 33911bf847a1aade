/*
 * libFuzzer harness for the external verifier's JSON reading and canonical
 * writing (verifier/json.c on yajl, verifier/canonical.c): arbitrary bytes,
 * each input in a buffer of exactly its size so that AddressSanitizer sees
 * a read past the end.  The verifier reads digest files and database rows
 * it cannot trust.  Besides not crashing, it checks what the spec promises:
 *
 *   - differentially, against a second writer kept here and deliberately
 *     simple: yajl's own tree parser (yajl_tree) reads the input again,
 *     keys in input order and numbers as their raw text; this file sorts
 *     the keys itself (a stable insertion sort, a repeated key keeping its
 *     last value), escapes strings byte by byte, and writes each number out
 *     by moving its decimal point in a string of digits (ref_number).  The
 *     verifier's canonical text must be exactly that text, so a wrong
 *     digit, a lost point or a misplaced key is caught, not only output
 *     that fails to be a fixed point;
 *   - the canonical text of anything accepted parses again and is its own
 *     canonical text, and holds no byte below 0x20;
 *   - canonical_number() on the raw bytes never crashes; on a text of the
 *     JSON number grammar it accepts and refuses exactly as ref_number
 *     (numeric's limits) and writes the same text.
 *
 *   test/fuzz/run.sh [seconds] json
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "json.h"

static void
fail(const char *what, const char *a, size_t alen, const char *b, size_t blen)
{
	/* at most 300 bytes of each: numbers can be 131072 digits long */
	fprintf(stderr, "%s:\n  verifier  (%zu bytes): %.*s\n  reference (%zu bytes): %.*s\n",
			what, alen, (int) (alen < 300 ? alen : 300), a,
			blen, (int) (blen < 300 ? blen : 300), b);
	abort();
}

/* ---- the reference number writer ---- */

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool
json_number_grammar(const char *s, size_t len)
{
	size_t		i = 0;
	size_t		start;

	if (i < len && s[i] == '-')
		i++;
	if (i < len && s[i] == '0')
		i++;
	else if (i < len && s[i] >= '1' && s[i] <= '9')
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return false;
	if (i < len && s[i] == '.')
	{
		start = ++i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start)
			return false;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E'))
	{
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		start = i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start)
			return false;
	}
	return i == len;
}

/*
 * The canonical text of a number of the JSON grammar, into out (malloc'd),
 * or false if numeric would refuse it.  Written apart from canonical.c and
 * the slow way: all the digits in one string, the point moved by padding
 * with zeros, then the zeros trimmed off both ends.
 */
static bool
ref_number(const char *s, size_t len, char **out, size_t *outlen)
{
	const char *end = s + len;
	const char *e = s;
	bool		negative = (*s == '-');
	bool		seen_point = false;
	char	   *digits;
	size_t		nint = 0;
	size_t		nfrac = 0;
	long long	exponent = 0;
	long long	point;
	char	   *text;
	size_t		n = 0;
	long long	i;
	char	   *p;
	char	   *q;

	while (e < end && *e != 'e' && *e != 'E')
		e++;
	if (e < end)
	{
		const char *x = e + 1;
		bool		minus = (*x == '-');

		if (*x == '+' || *x == '-')
			x++;
		for (; x < end; x++)
		{
			exponent = exponent * 10 + (*x - '0');
			if (exponent >= 1073741823)		/* INT_MAX / 2: numeric_in refuses */
				return false;
		}
		if (minus)
			exponent = -exponent;
	}
	digits = malloc(len + 1);
	for (p = (char *) s + negative; p < e; p++)
	{
		if (*p == '.')
			seen_point = true;
		else
		{
			digits[n++] = *p;
			if (seen_point)
				nfrac++;
			else
				nint++;
		}
	}
	digits[n] = '\0';
	if ((long long) nfrac - exponent > 16383)		/* display scale */
	{
		free(digits);
		return false;
	}
	/* drop leading zeros, each taking the point one place left */
	point = (long long) nint + exponent;
	for (q = digits; *q == '0'; q++)
		point--;
	if (*q == '\0')
	{
		free(digits);
		*out = strdup("0");
		*outlen = 1;
		return true;
	}
	if (point > 131072)				/* digits before the point */
	{
		free(digits);
		return false;
	}
	n = strlen(q);
	/* "0." and zeros, the digits, zeros: room for all of it */
	text = malloc(n + 4 + (size_t) (point < 0 ? -point : point));
	p = text;
	if (negative)
		*p++ = '-';
	if (point <= 0)
	{
		*p++ = '0';
		*p++ = '.';
		for (i = 0; i < -point; i++)
			*p++ = '0';
		memcpy(p, q, n);
		p += n;
	}
	else
	{
		for (i = 0; i < point || i < (long long) n; i++)
		{
			if (i == point)
				*p++ = '.';
			*p++ = i < (long long) n ? q[i] : '0';
		}
	}
	*p = '\0';
	/* trailing zeros of a fraction, and a point left alone */
	if (strchr(text, '.') != NULL)
	{
		while (p[-1] == '0')
			*--p = '\0';
		if (p[-1] == '.')
			*--p = '\0';
	}
	free(digits);
	*out = text;
	*outlen = (size_t) (p - text);
	return true;
}

/* ---- the reference writer, over yajl_tree ---- */

static void
ref_string(const char *s, Buf *out)
{
	char		esc[8];

	buf_putc(out, '"');
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
		{
			buf_putc(out, '\\');
			buf_putc(out, c);
		}
		else if (c == '\b')
			buf_puts(out, "\\b");
		else if (c == '\t')
			buf_puts(out, "\\t");
		else if (c == '\n')
			buf_puts(out, "\\n");
		else if (c == '\f')
			buf_puts(out, "\\f");
		else if (c == '\r')
			buf_puts(out, "\\r");
		else if (c < 0x20)
		{
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			buf_puts(out, esc);
		}
		else
			buf_putc(out, c);
	}
	buf_putc(out, '"');
}

/* strcmp compares as unsigned char: the bytes' order */
static bool
key_before(const char *a, const char *b)
{
	return strcmp(a, b) < 0;
}

static void
ref_value(yajl_val v, Buf *out)
{
	size_t		i;
	size_t		j;

	switch (v->type)
	{
		case yajl_t_null:
			buf_puts(out, "null");
			break;
		case yajl_t_true:
			buf_puts(out, "true");
			break;
		case yajl_t_false:
			buf_puts(out, "false");
			break;
		case yajl_t_string:
			ref_string(v->u.string, out);
			break;
		case yajl_t_number:
			{
				char	   *text;
				size_t		len;

				if (!ref_number(v->u.number.r, strlen(v->u.number.r), &text, &len))
				{
					/* the verifier accepted the document: it must not */
					fprintf(stderr, "verifier accepted the number %s\n",
							v->u.number.r);
					abort();
				}
				buf_append(out, text, len);
				free(text);
				break;
			}
		case yajl_t_array:
			buf_putc(out, '[');
			for (i = 0; i < v->u.array.len; i++)
			{
				if (i > 0)
					buf_putc(out, ',');
				ref_value(v->u.array.values[i], out);
			}
			buf_putc(out, ']');
			break;
		case yajl_t_object:
			{
				size_t		n = v->u.object.len;
				size_t	   *order = malloc((n ? n : 1) * sizeof(size_t));
				size_t		kept = 0;

				/* stable insertion sort of the member indexes by key */
				for (i = 0; i < n; i++)
				{
					for (j = i; j > 0 &&
						 key_before(v->u.object.keys[i],
									v->u.object.keys[order[j - 1]]); j--)
						order[j] = order[j - 1];
					order[j] = i;
				}
				buf_putc(out, '{');
				for (i = 0; i < n; i++)
				{
					/* of equal keys, only the last given */
					if (i + 1 < n && strcmp(v->u.object.keys[order[i]],
											v->u.object.keys[order[i + 1]]) == 0)
						continue;
					if (kept++ > 0)
						buf_putc(out, ',');
					ref_string(v->u.object.keys[order[i]], out);
					buf_putc(out, ':');
					ref_value(v->u.object.values[order[i]], out);
				}
				buf_putc(out, '}');
				free(order);
				break;
			}
		default:
			abort();
	}
}

/* the input was accepted and written as canon: write it again, here */
static void
check_against_reference(const char *text, size_t size, const Buf *canon)
{
	char	   *z = malloc(size + 1);
	char		err[256];
	yajl_val	tree;
	Buf			ref;

	memcpy(z, text, size);
	z[size] = '\0';
	tree = yajl_tree_parse(z, err, sizeof(err));
	free(z);
	if (tree == NULL)
	{
		fprintf(stderr, "accepted by the verifier, not by yajl_tree: %s\n", err);
		abort();
	}
	buf_init(&ref);
	ref_value(tree, &ref);
	yajl_tree_free(tree);
	if (bytes_cmp(canon->data, canon->len, ref.data, ref.len) != 0)
		fail("canonical text differs from the reference", (const char *) canon->data,
			 canon->len, (const char *) ref.data, ref.len);
	buf_free(&ref);
}

/* ---- the fixed point ---- */

static void
check_fixed_point(const Buf *canon)
{
	char		err[256];
	JsonValue  *again = json_parse((const char *) canon->data, canon->len,
								   err, sizeof(err));
	Buf			twice;
	size_t		i;

	if (again == NULL)
	{
		fprintf(stderr, "canonical text does not parse: %s\n%.*s\n", err,
				(int) canon->len, (const char *) canon->data);
		abort();
	}
	buf_init(&twice);
	canonical_json(again, &twice);
	json_free(again);
	if (bytes_cmp(twice.data, twice.len, canon->data, canon->len) != 0)
		fail("not a fixed point", (const char *) twice.data, twice.len,
			 (const char *) canon->data, canon->len);
	buf_free(&twice);
	for (i = 0; i < canon->len; i++)
	{
		if (canon->data[i] < 0x20)
			abort();
	}
}

static void
check_number(const char *data, size_t size)
{
	Buf			once;
	Buf			twice;
	bool		accepted;

	buf_init(&once);
	buf_init(&twice);
	accepted = canonical_number(data, size, &once);
	if (json_number_grammar(data, size))
	{
		char	   *ref = NULL;
		size_t		reflen = 0;
		bool		ref_accepted = ref_number(data, size, &ref, &reflen);

		if (accepted != ref_accepted)
			fail(accepted ? "number accepted, numeric refuses it" :
				 "number refused, numeric holds it", data, size,
				 ref ? ref : "", reflen);
		if (accepted &&
			bytes_cmp(once.data, once.len, ref, reflen) != 0)
			fail("number differs from the reference", (const char *) once.data,
				 once.len, ref, reflen);
		free(ref);
	}
	if (accepted)
	{
		if (!canonical_number((const char *) once.data, once.len, &twice) ||
			bytes_cmp(once.data, once.len, twice.data, twice.len) != 0)
			fail("number not a fixed point", (const char *) once.data,
				 once.len, (const char *) twice.data, twice.len);
	}
	buf_free(&once);
	buf_free(&twice);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *copy = malloc(size ? size : 1);
	char		err[256];
	JsonValue  *v;

	memcpy(copy, data, size);
	v = json_parse(copy, size, err, sizeof(err));
	if (v != NULL)
	{
		Buf			canon;

		buf_init(&canon);
		canonical_json(v, &canon);
		json_free(v);
		check_against_reference(copy, size, &canon);
		check_fixed_point(&canon);
		buf_free(&canon);
	}
	check_number(copy, size);
	free(copy);
	return 0;
}
