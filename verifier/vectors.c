/*-------------------------------------------------------------------------
 *
 * vectors.c
 *	  --vectors DIR: check this implementation against test/vectors/.
 *
 * The four files are described in section 6 of
 * doc/canonical-encoding.md.  Every line that is not empty or a comment is
 * one vector; a line that cannot be parsed counts as a failed vector, so a
 * broken file cannot pass by being skipped.
 *
 * verifier/vectors.c
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MAX_FIELDS 8

typedef struct VectorCounts
{
	int			passed;
	int			failed;
} VectorCounts;

typedef bool (*VectorCheck) (char **fields, char *msg, size_t msglen);

/* Split line at tabs, in place.  Returns the number of fields. */
static int
split_tabs(char *line, char **fields, int max)
{
	int			n = 0;
	char	   *p = line;

	fields[n++] = p;
	while ((p = strchr(p, '\t')) != NULL)
	{
		*p++ = '\0';
		if (n == max)
			return max + 1;
		fields[n++] = p;
	}
	return n;
}

static bool
check_json(char **fields, char *msg, size_t msglen)
{
	JsonValue  *v = json_parse(fields[0], strlen(fields[0]), msg, msglen);
	Buf			got;
	bool		same;

	if (v == NULL)
		return false;
	buf_init(&got);
	canonical_json(v, &got);
	json_free(v);
	same = bytes_cmp(got.data, got.len, fields[1], strlen(fields[1])) == 0;
	if (!same)
		snprintf(msg, msglen, "expected %s, got %.*s", fields[1],
				 (int) got.len, (const char *) got.data);
	buf_free(&got);
	return same;
}

/*
 * json_invalid.tsv: form, input, what is wrong.  The input must be
 * refused.  form "text" is the input itself, "hex" its bytes in hex,
 * "deep" a count N of arrays nested in each other.
 */
static bool
check_invalid(char **fields, char *msg, size_t msglen)
{
	Buf			input;
	JsonValue  *v;
	char		err[256];
	bool		ok = true;

	buf_init(&input);
	if (strcmp(fields[0], "text") == 0)
		buf_puts(&input, fields[1]);
	else if (strcmp(fields[0], "hex") == 0 && strlen(fields[1]) % 2 == 0)
	{
		size_t		n = strlen(fields[1]) / 2;

		buf_reserve(&input, n);
		ok = hex_decode(fields[1], 2 * n, input.data, n);
		input.len = n;
	}
	else if (strcmp(fields[0], "deep") == 0)
	{
		int64_t		n;

		ok = parse_int64(fields[1], strlen(fields[1]), &n) && n > 0 &&
			n <= 10 * JSON_MAX_DEPTH;
		for (int64_t i = 0; ok && i < 2 * n; i++)
			buf_putc(&input, i < n ? '[' : ']');
	}
	else
		ok = false;
	if (!ok)
	{
		snprintf(msg, msglen, "malformed vector");
		buf_free(&input);
		return false;
	}
	v = json_parse((const char *) input.data, input.len, err, sizeof(err));
	if (v != NULL)
	{
		snprintf(msg, msglen, "accepted (%s)", fields[2]);
		json_free(v);
		ok = false;
	}
	buf_free(&input);
	return ok;
}

/* One built-in case of check_limits: text must be accepted, or refused. */
static void
expect_json(VectorCounts *counts, const char *what, const Buf *text,
			bool accept)
{
	char		err[256];
	JsonValue  *v = json_parse((const char *) text->data, text->len, err,
							   sizeof(err));

	if ((v != NULL) == accept)
		counts->passed++;
	else
	{
		counts->failed++;
		printf("FAIL limits: %s %s%s%s\n", accept ? "refused" : "accepted",
			   what, v == NULL ? ": " : "", v == NULL ? err : "");
	}
	json_free(v);
}

/*
 * Limits that no vector file shows well: numbers at the very edge of what
 * numeric holds, and nesting at the limit, must be accepted (whatever
 * their length once written out); many numbers written short must not
 * together grow beyond JSON_MAX_NUMBER_GROWTH (jsonb would take them; the
 * verifier refuses, as no honest input holds them: see json.h), while the
 * same numbers written out are accepted.
 */
static void
check_limits(VectorCounts *counts)
{
	static const char *const edges[] = {
		"1e131071", "-9.9999e131071", "0.0001e131075", "10e131070",
		"1e-16383", "1.5e-16382", "0e-16383", "0e1073741822",
		"[1e131071, 1e131071, 1e131071, 1e131071, 1e131071, 1e131071, 1e-16383]",
	};
	/* numbers of 131072 digits, one more than the growth allows */
	size_t		n = JSON_MAX_NUMBER_GROWTH / 131072 + 1;
	Buf			text;
	size_t		i;

	buf_init(&text);
	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
	{
		buf_reset(&text);
		buf_puts(&text, edges[i]);
		expect_json(counts, edges[i], &text, true);
	}

	buf_reset(&text);
	for (i = 0; i < 2 * JSON_MAX_DEPTH; i++)
		buf_putc(&text, i < JSON_MAX_DEPTH ? '[' : ']');
	expect_json(counts, "nesting at the limit", &text, true);

	buf_reset(&text);
	for (i = 0; i < n; i++)
		buf_puts(&text, i == 0 ? "[1e131071" : ",1e131071");
	buf_putc(&text, ']');
	expect_json(counts, "numbers growing beyond the limit", &text, false);

	buf_reset(&text);
	for (i = 0; i < n; i++)
	{
		buf_puts(&text, i == 0 ? "[1" : ",1");
		for (size_t z = 0; z < 131071; z++)
			buf_putc(&text, '0');
	}
	buf_putc(&text, ']');
	expect_json(counts, "the same numbers written out", &text, true);
	buf_free(&text);
}

static bool
parse_uuid(const char *s, size_t len, unsigned char out[16])
{
	size_t		ndigits = 0;
	size_t		i = 0;
	bool		braces = (len >= 2 && s[0] == '{' && s[len - 1] == '}');
	char		hex[32];

	if (braces)
	{
		i = 1;
		len--;
	}
	for (; i < len; i++)
	{
		char		c = s[i];

		/* like uuid_in: a hyphen may follow any group of four digits */
		if (c == '-' && ndigits > 0 && ndigits % 4 == 0 && ndigits < 32 &&
			s[i - 1] != '-' && i + 1 < len)
			continue;
		if (ndigits == 32 || !((c >= '0' && c <= '9') ||
							   (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return false;
		hex[ndigits++] = c;
	}
	return ndigits == 32 && hex_decode(hex, 32, out, 16);
}

/* "addr" or "addr/bits", as inet_in accepts them (host bits kept). */
static bool
parse_inet(const char *s, size_t len, unsigned char out[18], size_t *outlen)
{
	char		addr[64];
	unsigned char bytes[16];
	const char *slash = memchr(s, '/', len);
	size_t		addrlen = slash ? (size_t) (slash - s) : len;
	int			family = memchr(s, ':', addrlen) ? 6 : 4;
	int			maxbits = (family == 4) ? 32 : 128;
	int			bits = maxbits;

	if (addrlen == 0 || addrlen >= sizeof(addr) || memchr(s, '\0', len))
		return false;
	memcpy(addr, s, addrlen);
	addr[addrlen] = '\0';
	if (inet_pton(family == 4 ? AF_INET : AF_INET6, addr, bytes) != 1)
		return false;
	if (slash)
	{
		const char *p = slash + 1;
		const char *end = s + len;

		if (p == end || end - p > 3)
			return false;
		bits = 0;
		for (; p < end; p++)
		{
			if (*p < '0' || *p > '9')
				return false;
			bits = bits * 10 + (*p - '0');
		}
		if (bits > maxbits)
			return false;
	}
	*outlen = encode_inet(family, bits, bytes, out);
	return true;
}

/* Encode one [name, tag, value] triple of rows.tsv into r. */
static bool
add_vector_field(RowFields *r, const JsonValue *triple, Buf *scratch,
				 char *msg, size_t msglen)
{
	const JsonValue *name;
	const JsonValue *tagv;
	const JsonValue *val;
	unsigned char bytes[18];
	size_t		len = 0;
	int64_t		i64;
	char		tag;

	if (triple->kind != JSON_ARRAY || triple->count != 3 ||
		triple->items[0]->kind != JSON_STRING ||
		triple->items[1]->kind != JSON_STRING ||
		triple->items[1]->len != 1)
	{
		snprintf(msg, msglen, "each column must be [name, tag, value]");
		return false;
	}
	name = triple->items[0];
	tagv = triple->items[1];
	val = triple->items[2];
	tag = tagv->str[0];

	switch (tag)
	{
		case 'i':
			if (!json_int64(val, &i64))
				goto bad;
			encode_i64(i64, bytes);
			len = 8;
			break;
		case 'f':
			if (val->kind != JSON_NUMBER)
				goto bad;
			/* the canonical text is the same exact decimal as the input */
			encode_f64(strtod(val->str, NULL), bytes);
			len = 8;
			break;
		case 'b':
			if (val->kind != JSON_TRUE && val->kind != JSON_FALSE)
				goto bad;
			bytes[0] = (val->kind == JSON_TRUE) ? 1 : 0;
			len = 1;
			break;
		case 's':
			if (val->kind != JSON_STRING)
				goto bad;
			row_add(r, name->str, name->len, tag, val->str, val->len);
			return true;
		case 'u':
			if (val->kind != JSON_STRING || !parse_uuid(val->str, val->len, bytes))
				goto bad;
			len = 16;
			break;
		case 't':
			if (json_is_string(val, "infinity"))
				i64 = INT64_MAX;
			else if (json_is_string(val, "-infinity"))
				i64 = INT64_MIN;
			else if (!json_int64(val, &i64))
				goto bad;
			encode_i64(i64, bytes);
			len = 8;
			break;
		case 'n':
			if (val->kind != JSON_STRING ||
				!parse_inet(val->str, val->len, bytes, &len))
				goto bad;
			break;
		case 'j':
			buf_reset(scratch);
			canonical_json(val, scratch);
			row_add(r, name->str, name->len, tag, scratch->data, scratch->len);
			return true;
		default:
			snprintf(msg, msglen, "unknown tag \"%c\"", tag);
			return false;
	}
	row_add(r, name->str, name->len, tag, bytes, len);
	return true;

bad:
	snprintf(msg, msglen, "bad value for column \"%.*s\" with tag \"%c\"",
			 (int) name->len, name->str, tag);
	return false;
}

/* Compare a computed hash with the expected one, a field in hex. */
static bool
hash_matches(const unsigned char got[HASH_LEN], const char *expected_hex,
			 char *msg, size_t msglen)
{
	unsigned char expected[HASH_LEN];
	char		got_hex[2 * HASH_LEN + 1];

	if (!hex_decode(expected_hex, strlen(expected_hex), expected, HASH_LEN))
	{
		snprintf(msg, msglen, "expected hash is not 64 hex digits");
		return false;
	}
	if (memcmp(got, expected, HASH_LEN) == 0)
		return true;
	hex_encode(got, HASH_LEN, got_hex);
	snprintf(msg, msglen, "expected %s, got %s", expected_hex, got_hex);
	return false;
}

static bool
check_row(char **fields, char *msg, size_t msglen)
{
	JsonValue  *cols;
	RowFields	r;
	Buf			scratch;
	unsigned char hash[HASH_LEN];
	bool		ok = false;
	size_t		i;

	cols = json_parse(fields[1], strlen(fields[1]), msg, msglen);
	if (cols == NULL)
		return false;
	if (cols->kind != JSON_ARRAY)
	{
		snprintf(msg, msglen, "columns must be a JSON array");
		json_free(cols);
		return false;
	}
	row_init(&r);
	buf_init(&scratch);
	for (i = 0; i < cols->count; i++)
	{
		if (!add_vector_field(&r, cols->items[i], &scratch, msg, msglen))
			goto done;
	}
	if (!row_hash(&r, fields[0], hash, msg, msglen))
		goto done;
	ok = hash_matches(hash, fields[2], msg, msglen);
done:
	buf_free(&scratch);
	row_free(&r);
	json_free(cols);
	return ok;
}

static bool
parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t	v = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++)
	{
		if (*s < '0' || *s > '9' || v > (max - (uint64_t) (*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t) (*s - '0');
	}
	*out = v;
	return true;
}

static bool
check_link(char **fields, char *msg, size_t msglen)
{
	int64_t		chain;
	uint64_t	lane;
	uint64_t	seq;
	unsigned char prev[HASH_LEN];
	unsigned char row[HASH_LEN];
	unsigned char link[HASH_LEN];

	if (!parse_int64(fields[0], strlen(fields[0]), &chain) ||
		!parse_uint(fields[1], UINT32_MAX, &lane) ||
		!parse_uint(fields[2], UINT64_MAX, &seq) ||
		!hex_decode(fields[3], strlen(fields[3]), prev, HASH_LEN) ||
		!hex_decode(fields[4], strlen(fields[4]), row, HASH_LEN))
	{
		snprintf(msg, msglen, "malformed field");
		return false;
	}
	link_hash(chain, (uint32_t) lane, seq, prev, row, link);
	return hash_matches(link, fields[5], msg, msglen);
}

/*
 * chains.tsv: table, tenant ("\N" for NULL), retention policy ("\N" for
 * NULL), chain_id in decimal
 */
static bool
check_chain(char **fields, char *msg, size_t msglen)
{
	int64_t		expected;
	int64_t		got;
	bool		null_tenant;
	bool		null_policy;

	if (!parse_int64(fields[3], strlen(fields[3]), &expected))
	{
		snprintf(msg, msglen, "malformed chain_id");
		return false;
	}
	null_tenant = (strcmp(fields[1], "\\N") == 0);
	null_policy = (strcmp(fields[2], "\\N") == 0);
	if (!chain_id(fields[0], null_tenant ? NULL : fields[1],
				  null_tenant ? 0 : strlen(fields[1]),
				  null_policy ? NULL : fields[2],
				  null_policy ? 0 : strlen(fields[2]), &got, msg, msglen))
		return false;
	if (got != expected)
	{
		snprintf(msg, msglen, "expected %s, got %lld", fields[3],
				 (long long) got);
		return false;
	}
	return true;
}

/*
 * erasures.tsv: entries as [[table, row_id, [columns], row_hash_after hex],
 * ...] in (table, row_id) order, and the erasures_hash they commit to
 * (section 7 of the spec).
 */
static bool
check_erasures(char **fields, char *msg, size_t msglen)
{
	JsonValue  *v = json_parse(fields[0], strlen(fields[0]), msg, msglen);
	Buf			pre;
	unsigned char got[HASH_LEN];
	bool		ok = true;
	size_t		i;

	if (v == NULL)
		return false;
	buf_init(&pre);
	erasure_preimage_begin(&pre);
	ok = v->kind == JSON_ARRAY;
	for (i = 0; ok && i < v->count; i++)
	{
		const JsonValue *e = v->items[i];
		int64_t		row_id;
		unsigned char after[HASH_LEN];

		ok = e->kind == JSON_ARRAY && e->count == 4 &&
			e->items[0]->kind == JSON_STRING && e->items[1]->kind == JSON_NUMBER &&
			e->items[2]->kind == JSON_ARRAY && e->items[3]->kind == JSON_STRING &&
			parse_int64(e->items[1]->str, e->items[1]->len, &row_id) &&
			hex_decode(e->items[3]->str, e->items[3]->len, after, HASH_LEN);
		if (ok)
			erasure_preimage_add(&pre, e->items[0]->str, row_id, e->items[2], after);
	}
	json_free(v);
	if (!ok)
	{
		snprintf(msg, msglen, "malformed entries");
		buf_free(&pre);
		return false;
	}
	sha256(pre.data, pre.len, got);
	buf_free(&pre);
	return hash_matches(got, fields[1], msg, msglen);
}

/*
 * security_state.tsv: a component name, its rows as a JSON array of arrays of
 * strings and nulls, and the component's hash (section 8 of the spec); or
 * "overall", [[name, hash hex], ...] and the overall hash.
 */
static bool
check_security_state(char **fields, char *msg, size_t msglen)
{
	JsonValue  *v = json_parse(fields[1], strlen(fields[1]), msg, msglen);
	bool		overall = strcmp(fields[0], "overall") == 0;
	unsigned char got[HASH_LEN];
	Buf		   *rows;
	const char **names;
	unsigned char (*hashes)[HASH_LEN];
	bool		ok;
	size_t		i,
				j;

	if (v == NULL)
		return false;
	ok = v->kind == JSON_ARRAY;
	rows = xmalloc(sizeof(Buf) * (v->count ? v->count : 1));
	names = xmalloc(sizeof(char *) * (v->count ? v->count : 1));
	hashes = xmalloc(HASH_LEN * (v->count ? v->count : 1));
	for (i = 0; ok && i < v->count; i++)
	{
		const JsonValue *r = v->items[i];

		buf_init(&rows[i]);
		ok = r->kind == JSON_ARRAY;
		if (ok && overall)
		{
			ok = r->count == 2 && r->items[0]->kind == JSON_STRING &&
				r->items[1]->kind == JSON_STRING &&
				hex_decode(r->items[1]->str, r->items[1]->len, hashes[i], HASH_LEN);
			if (ok)
				names[i] = r->items[0]->str;
			continue;
		}
		if (ok)
			buf_put_u32(&rows[i], (uint32_t) r->count);
		for (j = 0; ok && j < r->count; j++)
		{
			ok = r->items[j]->kind == JSON_STRING || r->items[j]->kind == JSON_NULL;
			if (ok)
				security_state_put_column(&rows[i],
										  r->items[j]->kind == JSON_NULL ? NULL : r->items[j]->str,
										  r->items[j]->len);
		}
	}
	if (ok && overall)
		security_state_overall_hash(names, (const unsigned char (*)[HASH_LEN]) hashes,
									v->count, got);
	else if (ok)
		security_state_component_hash(fields[0], rows, v->count, got);
	for (j = 0; j < i; j++)
		buf_free(&rows[j]);
	free(rows);
	free(names);
	free(hashes);
	json_free(v);
	if (!ok)
	{
		snprintf(msg, msglen, "malformed rows");
		return false;
	}
	return hash_matches(got, fields[2], msg, msglen);
}

/*
 * Run every vector of one file, each a line of want_fields tab-separated
 * fields; false if the file could not be read.
 */
static bool
run_file(const char *dir, const char *name, int want_fields,
		 VectorCheck check, VectorCounts *counts)
{
	char		path[4096];
	FILE	   *f;
	char	   *line = NULL;
	size_t		linecap = 0;
	ssize_t		n;
	int			lineno = 0;
	int			vectors = 0;
	char	   *fields[MAX_FIELDS];
	char		msg[512];

	if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
	{
		fprintf(stderr, "tool_audit_verify: path too long\n");
		return false;
	}
	if ((f = fopen(path, "r")) == NULL)
	{
		fprintf(stderr, "tool_audit_verify: could not open \"%s\": %s\n",
				path, strerror(errno));
		return false;
	}
	while ((n = getline(&line, &linecap, f)) >= 0)
	{
		int			nfields;

		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		vectors++;
		msg[0] = '\0';
		if ((size_t) n != strlen(line))
		{
			snprintf(msg, sizeof(msg), "NUL byte in line");
			nfields = 0;
		}
		else if ((nfields = split_tabs(line, fields, MAX_FIELDS)) != want_fields)
		{
			snprintf(msg, sizeof(msg),
					 "expected %d tab-separated fields, found %d",
					 want_fields, nfields);
			nfields = 0;
		}
		if (nfields > 0 && check(fields, msg, sizeof(msg)))
			counts->passed++;
		else
		{
			counts->failed++;
			printf("FAIL %s:%d: %s\n", name, lineno, msg);
		}
	}
	free(line);
	fclose(f);
	if (vectors == 0)
	{
		fprintf(stderr, "tool_audit_verify: \"%s\" holds no vectors\n", path);
		return false;
	}
	return true;
}

int
run_vectors(const char *dir)
{
	VectorCounts counts = {0, 0};
	bool		ok = true;

	ok &= run_file(dir, "json.tsv", 2, check_json, &counts);
	ok &= run_file(dir, "json_invalid.tsv", 3, check_invalid, &counts);
	check_limits(&counts);
	ok &= run_file(dir, "rows.tsv", 3, check_row, &counts);
	ok &= run_file(dir, "links.tsv", 6, check_link, &counts);
	ok &= run_file(dir, "chains.tsv", 4, check_chain, &counts);
	ok &= run_file(dir, "erasures.tsv", 2, check_erasures, &counts);
	ok &= run_file(dir, "security_state.tsv", 3, check_security_state, &counts);
	printf("vectors: %d passed, %d failed\n", counts.passed, counts.failed);
	if (!ok)
		return EXIT_ERROR;
	return counts.failed == 0 ? EXIT_OK : EXIT_PROBLEM;
}
