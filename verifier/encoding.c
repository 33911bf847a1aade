/*-------------------------------------------------------------------------
 *
 * encoding.c
 *	  The row hash (section 2), the chain id and the chain link (section 4)
 *	  of doc/canonical-encoding.md, and the encodings of single values.
 *
 * A row is collected as (name, tag, value) fields in any order; row_hash()
 * sorts them by the bytes of their names, as the spec requires, so callers
 * need not care about the table's column order.
 *
 * verifier/encoding.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "verify.h"

#define ROW_PREFIX	"tool_audit row 1"
#define LINK_PREFIX "tool_audit link 1"
#define CHAIN_PREFIX "tool_audit chain 1"
#define CHAIN_PREFIX_2 "tool_audit chain 2"

/*
 * Every hash is fed in pieces to one context, kept for the whole run:
 * millions of rows, no allocation per row.
 */
static EVP_MD_CTX *sha_ctx = NULL;

static void
hash_begin(void)
{
	if (sha_ctx == NULL && (sha_ctx = EVP_MD_CTX_new()) == NULL)
		fatal("could not create a digest context");
	if (EVP_DigestInit_ex(sha_ctx, EVP_sha256(), NULL) != 1)
		fatal("SHA-256 failed");
}

static void
hash_add(const void *data, size_t len)
{
	if (len > 0 && EVP_DigestUpdate(sha_ctx, data, len) != 1)
		fatal("SHA-256 failed");
}

/* the last n bytes of i64(v): u32 of a lane is the last 4 of i64(lane) */
static void
hash_add_be(int64_t v, size_t n)
{
	unsigned char be[8];

	encode_i64(v, be);
	hash_add(be + 8 - n, n);
}

static void
hash_end(unsigned char out[HASH_LEN])
{
	unsigned int outlen = 0;

	if (EVP_DigestFinal_ex(sha_ctx, out, &outlen) != 1 || outlen != HASH_LEN)
		fatal("SHA-256 failed");
}

void
sha256(const void *data, size_t len, unsigned char out[HASH_LEN])
{
	hash_begin();
	hash_add(data, len);
	hash_end(out);
}

void
crypto_cleanup(void)
{
	EVP_MD_CTX_free(sha_ctx);
	sha_ctx = NULL;
}

void
row_init(RowFields *r)
{
	r->fields = NULL;
	r->nfields = 0;
	r->cap = 0;
	buf_init(&r->values);
	buf_init(&r->preimage);
}

void
row_free(RowFields *r)
{
	free(r->fields);
	buf_free(&r->values);
	buf_free(&r->preimage);
	row_init(r);
}

void
row_reset(RowFields *r)
{
	r->nfields = 0;
	buf_reset(&r->values);
}

/* Add a field; name is not copied and must outlive the call to row_hash. */
void
row_add(RowFields *r, const char *name, size_t namelen, char tag,
		const void *value, size_t len)
{
	RowField   *f;

	r->fields = xgrow(r->fields, &r->cap, r->nfields + 1, sizeof(RowField));
	f = &r->fields[r->nfields++];
	f->name = name;
	f->namelen = namelen;
	f->tag = tag;
	f->off = r->values.len;
	f->len = len;
	buf_append(&r->values, value, len);
}

static int
field_cmp(const void *a, const void *b)
{
	const RowField *fa = a;
	const RowField *fb = b;

	return bytes_cmp(fa->name, fa->namelen, fb->name, fb->namelen);
}

/*
 * H("tool_audit row 1" || u8(0) || u8(len(table)) || table || fields),
 * fields in byte order of their names.
 */
bool
row_hash(RowFields *r, const char *table, unsigned char out[HASH_LEN],
		 char *err, size_t errlen)
{
	Buf		   *p = &r->preimage;
	size_t		tablelen = strlen(table);
	size_t		i;

	if (tablelen == 0 || tablelen > 255)
	{
		snprintf(err, errlen, "table name must be 1 to 255 bytes long");
		return false;
	}
	if (r->nfields > 1)
		qsort(r->fields, r->nfields, sizeof(RowField), field_cmp);

	buf_reset(p);
	buf_append(p, ROW_PREFIX, strlen(ROW_PREFIX));
	buf_putc(p, 0);
	buf_putc(p, (unsigned char) tablelen);
	buf_append(p, table, tablelen);
	for (i = 0; i < r->nfields; i++)
	{
		const RowField *f = &r->fields[i];

		if (f->namelen == 0 || f->namelen > 255)
		{
			snprintf(err, errlen, "column name must be 1 to 255 bytes long");
			return false;
		}
		if (i > 0 && field_cmp(f, f - 1) == 0)
		{
			snprintf(err, errlen, "column \"%.*s\" appears twice",
					 (int) f->namelen, f->name);
			return false;
		}
		if (f->len > UINT32_MAX)
		{
			snprintf(err, errlen, "value of column \"%.*s\" is too long",
					 (int) f->namelen, f->name);
			return false;
		}
		buf_putc(p, (unsigned char) f->namelen);
		buf_append(p, f->name, f->namelen);
		buf_putc(p, (unsigned char) f->tag);
		buf_put_u32(p, (uint32_t) f->len);
		buf_append(p, r->values.data + f->off, f->len);
	}
	sha256(p->data, p->len, out);
	return true;
}

/*
 * chain_id = the first 8 bytes, as a signed big-endian integer, of
 * H("tool_audit chain 1" || u8(0) || u8(len(table)) || table ||
 *	 (u8(0) if the tenant is NULL, else u8(1) || tenant))
 * for a row without a retention policy (written before 1.4), and of
 * H("tool_audit chain 2" || u8(0) || u8(len(table)) || table ||
 *	 u8(len(policy)) || policy ||
 *	 (u8(0) if the tenant is NULL, else u8(1) || tenant))
 * for a row with one.  tenant and policy are UTF-8, NULL for NULL.  The
 * table name and the policy must be 1 to 255 bytes; false and err otherwise.
 */
bool
chain_id(const char *table, const char *tenant, size_t tenantlen,
		 const char *policy, size_t policylen,
		 int64_t *out, char *err, size_t errlen)
{
	unsigned char h[HASH_LEN];
	unsigned char flag = (tenant == NULL) ? 0 : 1;
	size_t		tablelen = strlen(table);

	if (tablelen == 0 || tablelen > 255)
	{
		snprintf(err, errlen, "table name must be 1 to 255 bytes long");
		return false;
	}
	if (policy != NULL && (policylen == 0 || policylen > 255))
	{
		snprintf(err, errlen, "retention policy must be 1 to 255 bytes long");
		return false;
	}
	hash_begin();
	if (policy == NULL)
		hash_add(CHAIN_PREFIX, sizeof(CHAIN_PREFIX));	/* its NUL is the u8(0) */
	else
		hash_add(CHAIN_PREFIX_2, sizeof(CHAIN_PREFIX_2));
	hash_add_be((int64_t) tablelen, 1);
	hash_add(table, tablelen);
	if (policy != NULL)
	{
		hash_add_be((int64_t) policylen, 1);
		hash_add(policy, policylen);
	}
	hash_add(&flag, 1);
	if (tenant != NULL)
		hash_add(tenant, tenantlen);
	hash_end(h);
	*out = get_i64(h);
	return true;
}

/*
 * H("tool_audit link 1" || u8(0) || i64(chain) || u32(lane) || u64(seq) ||
 *	 prev || row_hash)
 */
void
link_hash(int64_t chain, uint32_t lane, uint64_t seq,
		  const unsigned char prev[HASH_LEN],
		  const unsigned char row[HASH_LEN], unsigned char out[HASH_LEN])
{
	hash_begin();
	hash_add(LINK_PREFIX, sizeof(LINK_PREFIX));	/* its NUL is the u8(0) */
	hash_add_be(chain, 8);
	hash_add_be((int64_t) lane, 4);
	hash_add_be((int64_t) seq, 8);
	hash_add(prev, HASH_LEN);
	hash_add(row, HASH_LEN);
	hash_end(out);
}

void
encode_i64(int64_t v, unsigned char out[8])
{
	uint64_t	u = (uint64_t) v;
	int			i;

	for (i = 0; i < 8; i++)
		out[i] = (unsigned char) (u >> (56 - 8 * i));
}

/* the two's-complement big-endian 64-bit integer at p */
int64_t
get_i64(const unsigned char p[8])
{
	uint64_t	u = 0;
	int			i;

	for (i = 0; i < 8; i++)
		u = (u << 8) | p[i];
	/* implementation-defined for u > INT64_MAX, but two's complement here */
	return (int64_t) u;
}

/* IEEE 754 binary64 bits, big-endian; -0 becomes +0 */
void
encode_f64_bits(uint64_t bits, unsigned char out[8])
{
	if (bits == UINT64_C(0x8000000000000000))
		bits = 0;
	encode_i64((int64_t) bits, out);
}

void
encode_f64(double d, unsigned char out[8])
{
	uint64_t	bits;

	memcpy(&bits, &d, sizeof(bits));
	encode_f64_bits(bits, out);
}

/*
 * u8(4 or 6) || u8(prefix length) || the 4 or 16 address bytes.  Returns
 * the encoded length.
 */
size_t
encode_inet(int family, int bits, const unsigned char *addr,
			unsigned char out[18])
{
	size_t		n = (family == 4) ? 4 : 16;

	out[0] = (unsigned char) family;
	out[1] = (unsigned char) bits;
	memcpy(out + 2, addr, n);
	return n + 2;
}
