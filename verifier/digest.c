/*-------------------------------------------------------------------------
 *
 * digest.c
 *	  Reading a digest file (the output of tool_audit.digest(), section 5
 *	  of doc/canonical-encoding.md) and checking its Ed25519 signature.
 *
 * The file comes from outside and may have been tampered with, so every
 * member is checked for its type; anything malformed is an error (exit 2)
 * rather than a guess.  The signature covers the canonical JSON of the
 * object without its "signature" member.
 *
 * verifier/digest.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "json.h"

#define DIGEST_FORMAT	"tool_audit digest 1"
#define DIGEST_MAX_SIZE (256 * 1024 * 1024)
#define ED25519_SIG_LEN 64
#define ED25519_KEY_LEN 32

static const unsigned char zero_hash[HASH_LEN];

int
digest_head_cmp(const DigestHead *a, const char *table, int64_t chain,
				int64_t lane, int64_t position)
{
	int			c = strcmp(a->table, table);

	if (c != 0)
		return c;
	if (a->chain != chain)
		return a->chain < chain ? -1 : 1;
	if (a->lane != lane)
		return a->lane < lane ? -1 : 1;
	if (a->position != position)
		return a->position < position ? -1 : 1;
	return 0;
}

static int
head_qsort_cmp(const void *a, const void *b)
{
	const DigestHead *hb = b;

	return digest_head_cmp(a, hb->table, hb->chain, hb->lane, hb->position);
}

/*
 * A head of the digest names this tenant (a tenant's digest covers the
 * chains of the tenants its heads name, as the extension reads it).
 */
bool
digest_names_tenant(const Digest *d, const char *tenant, size_t len)
{
	if (tenant == NULL)
		return false;
	for (size_t i = 0; i < d->nheads; i++)
		if (d->heads[i].tenant != NULL && strlen(d->heads[i].tenant) == len &&
			memcmp(d->heads[i].tenant, tenant, len) == 0)
			return true;
	return false;
}

void
digest_free(Digest *d)
{
	size_t		i;

	for (i = 0; i < d->nheads; i++)
	{
		free(d->heads[i].table);
		free(d->heads[i].tenant);
	}
	free(d->heads);
	security_state_free(d);
	free(d->database);
	memset(d, 0, sizeof(Digest));
}

static void
load_head(const char *path, size_t i, const JsonValue *h, DigestHead *out)
{
	const JsonValue *table = json_get(h, "table");
	const JsonValue *hash = json_get(h, "hash");
	const JsonValue *chain = json_get(h, "chain");
	const JsonValue *tenant = json_get(h, "tenant");
	const JsonValue *policy = json_get(h, "retention_policy");	/* 1.4 on */
	int64_t		derived;
	char		err[256];

	if (h->kind != JSON_OBJECT ||
		chain == NULL || chain->kind != JSON_STRING ||
		!parse_int64(chain->str, chain->len, &out->chain) ||
		!json_int64(json_get(h, "lane"), &out->lane) ||
		!json_int64(json_get(h, "position"), &out->position) ||
		table == NULL || table->kind != JSON_STRING ||
		tenant == NULL || (tenant->kind != JSON_STRING && tenant->kind != JSON_NULL) ||
		(policy != NULL && policy->kind != JSON_STRING && policy->kind != JSON_NULL) ||
		hash == NULL || hash->kind != JSON_STRING ||
		!hex_decode(hash->str, hash->len, out->hash, HASH_LEN))
		fatal("digest \"%s\": head %zu is malformed (it needs the chain id as a "
			  "decimal string, integer lane and position, a table name, a tenant "
			  "(string or null), a retention policy if any (string or null) and a "
			  "64-digit hex hash)",
			  path, i + 1);
	if (out->position < 0 || out->lane < 0 || out->lane > INT32_MAX)
		fatal("digest \"%s\": head %zu has a negative position or a lane out "
			  "of range", path, i + 1);
	if (strlen(table->str) != table->len)
		fatal("digest \"%s\": head %zu has a NUL in its table name", path, i + 1);
	out->table = xstrndup(table->str, table->len);
	out->tenant = tenant->kind == JSON_NULL ? NULL : xstrndup(tenant->str, tenant->len);
	out->done = false;

	/*
	 * the chain id is derived from the table, tenant and retention policy
	 * (section 4); a digest taken before 1.4 has no policy: NULL
	 */
	if (policy != NULL && policy->kind == JSON_NULL)
		policy = NULL;
	if (!chain_id(out->table, tenant->kind == JSON_NULL ? NULL : tenant->str,
				  tenant->kind == JSON_NULL ? 0 : tenant->len,
				  policy == NULL ? NULL : policy->str,
				  policy == NULL ? 0 : policy->len, &derived,
				  err, sizeof(err)))
		fatal("digest \"%s\": head %zu: %s", path, i + 1, err);
	if (derived != out->chain)
		fatal("digest \"%s\": head %zu: chain %lld is not the chain of its "
			  "table, tenant and retention policy (%lld)", path, i + 1,
			  (long long) out->chain, (long long) derived);
}

static EVP_PKEY *
load_public_key(const char *path)
{
	BIO		   *bio = BIO_new_file(path, "r");
	EVP_PKEY   *pkey;

	if (bio == NULL)
		fatal("could not open public key file \"%s\"", path);
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL)
		fatal("\"%s\" is not a PEM public key (SubjectPublicKeyInfo)", path);
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519)
	{
		EVP_PKEY_free(pkey);
		fatal("\"%s\" is not an Ed25519 public key", path);
	}
	return pkey;
}

/* The key_id the extension computes: SHA-256 of the raw key, 16 hex digits. */
static void
public_key_id(EVP_PKEY *pkey, char out[17])
{
	unsigned char raw[ED25519_KEY_LEN];
	size_t		rawlen = sizeof(raw);
	unsigned char h[HASH_LEN];
	char		hex[2 * HASH_LEN + 1];

	if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1 ||
		rawlen != ED25519_KEY_LEN)
		fatal("could not read the raw Ed25519 public key");
	sha256(raw, rawlen, h);
	hex_encode(h, HASH_LEN, hex);
	memcpy(out, hex, 16);
	out[16] = '\0';
}

/* Verify the signature; true if valid. */
static bool
signature_valid(const JsonValue *root, const JsonValue *sigv,
				const JsonValue *key_id, const char *pubkey_path)
{
	unsigned char sig[ED25519_SIG_LEN];
	EVP_PKEY   *pkey = load_public_key(pubkey_path);
	EVP_MD_CTX *ctx;
	char		our_id[17];
	Buf			msg;
	size_t		i;
	bool		first = true;
	bool		ok;

	public_key_id(pkey, our_id);
	if (key_id != NULL && key_id->kind == JSON_STRING &&
		(key_id->len != 16 || memcmp(key_id->str, our_id, 16) != 0))
		fprintf(stderr, "tool_audit_verify: note: the digest names key_id "
				"\"%.*s\", the public key given is \"%s\"\n",
				(int) (key_id->len > 64 ? 64 : key_id->len), key_id->str,
				our_id);

	if (!hex_decode(sigv->str, sigv->len, sig, ED25519_SIG_LEN))
	{
		EVP_PKEY_free(pkey);
		return false;
	}

	/* canonical JSON of the object without its "signature" member */
	buf_init(&msg);
	buf_putc(&msg, '{');
	for (i = 0; i < root->count; i++)
	{
		const JsonMember *m = &root->members[i];

		if (m->keylen == 9 && memcmp(m->key, "signature", 9) == 0)
			continue;
		if (!first)
			buf_putc(&msg, ',');
		first = false;
		canonical_string(m->key, m->keylen, &msg);
		buf_putc(&msg, ':');
		canonical_json(m->value, &msg);
	}
	buf_putc(&msg, '}');

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		fatal("could not create a signature context");
	if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) != 1)
		fatal("could not initialize Ed25519 verification");
	ok = (EVP_DigestVerify(ctx, sig, sizeof(sig), msg.data, msg.len) == 1);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	buf_free(&msg);
	return ok;
}

/*
 * Load and check a digest.  Malformed files are fatal.  Returns false if a
 * problem was reported and the run should stop.
 */
bool
digest_load(const char *path, const char *pubkey_path, Digest *d)
{
	Buf			text;
	char		err[256];
	JsonValue  *root;
	const JsonValue *heads;
	const JsonValue *sig;
	const JsonValue *key_id;
	const JsonValue *database;
	const JsonValue *taken_at;
	bool		go_on = true;
	size_t		i;

	memset(d, 0, sizeof(Digest));
	buf_init(&text);
	if (!read_whole_file(path, DIGEST_MAX_SIZE, &text, err, sizeof(err)))
		fatal("%s", err);
	root = json_parse((const char *) text.data, text.len, err, sizeof(err));
	buf_free(&text);
	if (root == NULL)
		fatal("digest \"%s\": %s", path, err);
	if (root->kind != JSON_OBJECT ||
		!json_is_string(json_get(root, "format"), DIGEST_FORMAT))
		fatal("digest \"%s\": not a tool_audit digest (\"format\" must be \"%s\")",
			  path, DIGEST_FORMAT);

	heads = json_get(root, "heads");
	sig = json_get(root, "signature");
	key_id = json_get(root, "key_id");
	database = json_get(root, "database");
	taken_at = json_get(root, "taken_at");
	if (heads == NULL || heads->kind != JSON_ARRAY)
		fatal("digest \"%s\": \"heads\" must be an array", path);
	if (sig == NULL || (sig->kind != JSON_NULL && sig->kind != JSON_STRING))
		fatal("digest \"%s\": \"signature\" must be a string or null", path);
	if (key_id != NULL && key_id->kind != JSON_NULL && key_id->kind != JSON_STRING)
		fatal("digest \"%s\": \"key_id\" must be a string or null", path);
	if (database != NULL && database->kind == JSON_STRING &&
		strlen(database->str) == database->len)
		d->database = xstrndup(database->str, database->len);
	/* what rows not covered may not claim to precede (timeorder.c) */
	if (taken_at != NULL && taken_at->kind == JSON_STRING &&
		parse_digest_time(taken_at->str, taken_at->len, &d->taken_at))
	{
		d->has_taken_at = true;
		/* as written, for the server (security_state.c) */
		d->taken_at_text = xstrndup(taken_at->str, taken_at->len);
	}
	/* a tenant's digest (tool_audit.tenant_digest()) says nothing of other chains */
	d->tenant_scoped = json_is_string(json_get(root, "scope"), "tenant");

	security_state_load(root, d);
	d->nheads = heads->count;
	d->heads = xmalloc(sizeof(DigestHead) * (heads->count ? heads->count : 1));
	for (i = 0; i < heads->count; i++)
		load_head(path, i, heads->items[i], &d->heads[i]);

	if (sig->kind == JSON_STRING)
	{
		if (pubkey_path == NULL)
			fatal("digest \"%s\" is signed: give the public key with --public-key",
				  path);
		if (!signature_valid(root, sig, key_id, pubkey_path))
			go_on = report_digest_problem("digest signature invalid");
	}
	else if (pubkey_path != NULL)
		go_on = report_digest_problem("digest is not signed");

	json_free(root);
	qsort(d->heads, d->nheads, sizeof(DigestHead), head_qsort_cmp);
	tenant_filter_heads(d);		/* --tenant: that tenant's heads only */

	/* position 0 covers no row: its hash can only be the empty chain's */
	for (i = 0; i < d->nheads && go_on; i++)
	{
		DigestHead *h = &d->heads[i];

		if (h->position != 0)
			continue;
		h->done = true;
		if (CRYPTO_memcmp(h->hash, zero_hash, HASH_LEN) == 0)
			d->checked++;
		else
			go_on = report_problem(h->table, h->chain, h->lane, 0, NULL,
								   "row changed since the digest");
	}
	return go_on;
}
