/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Memory, growable byte buffers, hex and file helpers for
 *	  tool_audit_verify.
 *
 * Running out of memory is not a verification result, so allocation
 * failures end the program with exit code 2 instead of being passed up.
 *
 * verifier/util.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify.h"

void
fatal(const char *fmt,...)
{
	va_list		ap;

	fflush(stdout);
	fputs("tool_audit_verify: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_ERROR);
}

void *
xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
		fatal("out of memory");
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void	   *q = realloc(p, n ? n : 1);

	if (q == NULL)
		fatal("out of memory");
	return q;
}

/*
 * Grow an array of elemsize-byte elements so that it holds at least need
 * elements, doubling to keep appends amortized O(1).
 */
void *
xgrow(void *p, size_t *cap, size_t need, size_t elemsize)
{
	size_t		newcap = *cap ? *cap : 8;

	if (need <= *cap)
		return p;
	while (newcap < need)
	{
		if (newcap > SIZE_MAX / 2)
			fatal("out of memory");
		newcap *= 2;
	}
	if (newcap > SIZE_MAX / elemsize)
		fatal("out of memory");
	*cap = newcap;
	return xrealloc(p, newcap * elemsize);
}

char *
xstrndup(const char *s, size_t n)
{
	char	   *r = xmalloc(n + 1);

	if (n > 0)
		memcpy(r, s, n);
	r[n] = '\0';
	return r;
}

/*
 * Order two byte strings as the spec orders names and keys: bytewise,
 * a shorter string that is a prefix of a longer one first.
 */
int
bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int			c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0 || alen == blen)
		return c;
	return alen < blen ? -1 : 1;
}

void
buf_init(Buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
buf_free(Buf *b)
{
	free(b->data);
	buf_init(b);
}

void
buf_reset(Buf *b)
{
	b->len = 0;
}

void
buf_reserve(Buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len - 1)
		fatal("out of memory");
	/* one spare byte so that callers may NUL-terminate */
	b->data = xgrow(b->data, &b->cap, b->len + extra + 1, 1);
}

void
buf_append(Buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void
buf_putc(Buf *b, unsigned char c)
{
	buf_reserve(b, 1);
	b->data[b->len++] = c;
}

void
buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_put_u32(Buf *b, uint32_t v)
{
	unsigned char c[4];

	c[0] = (unsigned char) (v >> 24);
	c[1] = (unsigned char) (v >> 16);
	c[2] = (unsigned char) (v >> 8);
	c[3] = (unsigned char) v;
	buf_append(b, c, 4);
}

void
buf_put_u64(Buf *b, uint64_t v)
{
	buf_put_u32(b, (uint32_t) (v >> 32));
	buf_put_u32(b, (uint32_t) v);
}

/* out must have room for 2n+1 bytes; writes lower-case hex */
void
hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t		i;

	for (i = 0; i < n; i++)
	{
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode exactly outlen bytes from exactly 2*outlen hex digits. */
bool
hex_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen)
{
	size_t		i;

	if (inlen != 2 * outlen)
		return false;
	for (i = 0; i < outlen; i++)
	{
		int			hi = hex_value(in[2 * i]);
		int			lo = hex_value(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (unsigned char) (hi << 4 | lo);
	}
	return true;
}

/*
 * Parse exactly len bytes as a decimal int64 written the way PostgreSQL
 * prints one: an optional "-", then digits without leading zeros ("0"
 * alone for zero, never "-0"), no sign "+", no spaces.  False otherwise or
 * out of range.
 */
bool
parse_int64(const char *s, size_t len, int64_t *out)
{
	bool		negative = (len > 0 && s[0] == '-');
	uint64_t	limit = negative ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
	uint64_t	acc = 0;
	size_t		i = negative ? 1 : 0;

	if (i == len || (s[i] == '0' && (len - i > 1 || negative)))
		return false;
	for (; i < len; i++)
	{
		unsigned	d = (unsigned char) s[i] - (unsigned) '0';

		if (d > 9 || acc > (limit - d) / 10)
			return false;
		acc = acc * 10 + d;
	}
	if (negative)
		*out = (acc == (uint64_t) INT64_MAX + 1) ? INT64_MIN : -(int64_t) acc;
	else
		*out = (int64_t) acc;
	return true;
}

/*
 * Read a whole file into out (NUL-terminated, the terminator not counted),
 * refusing files larger than maxlen so that a hostile file cannot exhaust
 * memory.
 */
bool
read_whole_file(const char *path, size_t maxlen, Buf *out, char *err,
				size_t errlen)
{
	FILE	   *f = fopen(path, "rb");
	char		chunk[65536];
	size_t		n;

	buf_reset(out);
	if (f == NULL)
	{
		snprintf(err, errlen, "could not open \"%s\": %s", path,
				 strerror(errno));
		return false;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
	{
		if (out->len + n > maxlen)
		{
			fclose(f);
			snprintf(err, errlen, "\"%s\" is larger than %zu bytes",
					 path, maxlen);
			return false;
		}
		buf_append(out, chunk, n);
	}
	if (ferror(f))
	{
		snprintf(err, errlen, "could not read \"%s\": %s", path,
				 strerror(errno));
		fclose(f);
		return false;
	}
	fclose(f);
	buf_reserve(out, 0);
	out->data[out->len] = '\0';
	return true;
}
