/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		Every cryptographic primitive the extension uses, through OpenSSL's
 *		EVP interfaces: SHA-256 (row hashes, links, chain ids), HMAC-SHA256
 *		(pseudonyms), Ed25519 (digest signatures), and random bytes (keys,
 *		event ids).
 *
 * Algorithms are fetched once per backend (EVP_MD_fetch, EVP_MAC_fetch);
 * one SHA-256 context and one keyed HMAC context are kept for the backend's
 * life, so that hashing a row allocates nothing.  Ed25519 keys are the
 * caller's: every function that takes one frees it before raising an error,
 * so a caller only frees it on its own normal path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "crypto.h"

/* ---- algorithms, fetched once ---- */

static EVP_MD *sha256_md = NULL;
static EVP_MAC *hmac_mac = NULL;

static void
fetch_algorithms(void)
{
	if (sha256_md == NULL)
		sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (hmac_mac == NULL)
		hmac_mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	if (sha256_md == NULL || hmac_mac == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not load SHA-256 and HMAC from OpenSSL")));
}

/* ---- SHA-256 ---- */

/* one digest context for the backend's life: no allocation per hash */
static EVP_MD_CTX *sha256_ctx = NULL;

void
ta_sha256(const void *data, size_t len, unsigned char out[TA_HASH_LEN])
{
	unsigned int outlen = 0;

	if (sha256_md == NULL)
		fetch_algorithms();
	if (sha256_ctx == NULL)
	{
		sha256_ctx = EVP_MD_CTX_new();
		if (sha256_ctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
	}
	if (EVP_DigestInit_ex2(sha256_ctx, sha256_md, NULL) != 1 ||
		EVP_DigestUpdate(sha256_ctx, data, len) != 1 ||
		EVP_DigestFinal_ex(sha256_ctx, out, &outlen) != 1 ||
		outlen != TA_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("SHA-256 failed in OpenSSL")));
}

/* Two hashes compared in constant time. */
bool
ta_hash_equal(const unsigned char *a, const unsigned char *b)
{
	return CRYPTO_memcmp(a, b, TA_HASH_LEN) == 0;
}

/* ---- HMAC-SHA256 ---- */

/*
 * One EVP_MAC_CTX keyed with the active key, kept for the backend's life and
 * rebuilt when the key changes.  Each MAC re-initializes it with a NULL key,
 * which HMAC takes as "the key already set" from OpenSSL 3.0.3 on: no digest
 * lookup, key schedule or allocation per MAC.  Before 3.0.3 such a
 * re-initialization did nothing (openssl/openssl#17811), so there each MAC
 * works on a copy of the keyed context instead (EVP_MAC_CTX_dup).
 */
static EVP_MAC_CTX *keyed_ctx = NULL;
static unsigned char keyed_key[64];
static int	keyed_len = -1;

static EVP_MAC_CTX *
keyed_context(const unsigned char *key, int keylen)
{
	OSSL_PARAM	params[2];

	if (keyed_ctx != NULL && keyed_len == keylen &&
		CRYPTO_memcmp(keyed_key, key, keylen) == 0)
		return keyed_ctx;
	if (keyed_ctx != NULL)
		EVP_MAC_CTX_free(keyed_ctx);
	keyed_len = -1;
	if (hmac_mac == NULL)
		fetch_algorithms();
	keyed_ctx = EVP_MAC_CTX_new(hmac_mac);
	if (keyed_ctx == NULL || keylen > (int) sizeof(keyed_key))
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
												 (char *) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(keyed_ctx, key, keylen, params) != 1)
	{
		EVP_MAC_CTX_free(keyed_ctx);
		keyed_ctx = NULL;
		return NULL;
	}
	memcpy(keyed_key, key, keylen);
	keyed_len = keylen;
	return keyed_ctx;
}

static bool
reinit_reuses_key(void)
{
	return OpenSSL_version_num() >= 0x30000030L;	/* 3.0.3 */
}

/* HMAC-SHA256 of data under key (at most 64 bytes); false if OpenSSL failed. */
bool
ta_hmac_sha256(const unsigned char *key, int keylen, const char *data, int len,
			   unsigned char out[TA_HASH_LEN])
{
	EVP_MAC_CTX *base = keyed_context(key, keylen);
	EVP_MAC_CTX *ctx;
	size_t		outlen = 0;
	bool		ok;

	if (base == NULL)
		return false;
	if (reinit_reuses_key())
	{
		ctx = base;
		ok = EVP_MAC_init(ctx, NULL, 0, NULL) == 1;
	}
	else
	{
		ctx = EVP_MAC_CTX_dup(base);
		ok = ctx != NULL;
	}
	ok = ok &&
		EVP_MAC_update(ctx, (const unsigned char *) data, len) == 1 &&
		EVP_MAC_final(ctx, out, &outlen, TA_HASH_LEN) == 1 &&
		outlen == TA_HASH_LEN;
	if (ctx != base && ctx != NULL)
		EVP_MAC_CTX_free(ctx);
	if (!ok && ctx == base)
	{
		/* a context OpenSSL failed on is not used again */
		EVP_MAC_CTX_free(keyed_ctx);
		keyed_ctx = NULL;
		keyed_len = -1;
	}
	return ok;
}

/* ---- random bytes and event ids ---- */

void
ta_random_bytes(unsigned char *buf, int len)
{
	if (!pg_strong_random(buf, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
}

/*
 * A new event id: a version 4 UUID, like gen_random_uuid(), from the same
 * source (pg_strong_random), drawn a batch at a time.  One call into
 * OpenSSL's generator costs more than the rest of a row's identity columns
 * together (perf: ~30% of the insert trigger at one id per call); event ids
 * are identifiers, not secrets, so holding the next few in backend memory
 * gives nothing away.
 */
#define EVENT_ID_BATCH 64

static unsigned char event_id_pool[EVENT_ID_BATCH * UUID_LEN];
static int	event_id_next = EVENT_ID_BATCH;

Datum
ta_new_event_id(void)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	if (event_id_next == EVENT_ID_BATCH)
	{
		ta_random_bytes(event_id_pool, sizeof(event_id_pool));
		event_id_next = 0;
	}
	memcpy(u->data, event_id_pool + event_id_next * UUID_LEN, UUID_LEN);
	event_id_next++;
	u->data[6] = (u->data[6] & 0x0F) | 0x40;	/* version 4 */
	u->data[8] = (u->data[8] & 0x3F) | 0x80;	/* RFC 4122 variant */
	return UUIDPGetDatum(u);
}

/* ---- Ed25519 ---- */

static void
free_key_and_fail(EVP_PKEY *pkey, const char *what)
{
	EVP_PKEY_free(pkey);
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("could not %s", what)));
}

/* The Ed25519 private key (PEM) in the file; NULL when path is empty. */
EVP_PKEY *
ta_ed25519_load(const char *path)
{
	FILE	   *f;
	EVP_PKEY   *pkey;

	if (path == NULL || path[0] == '\0')
		return NULL;
	f = AllocateFile(path, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open signing key file \"%s\": %m", path)));
	pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	FreeFile(f);
	if (pkey == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not read a private key from \"%s\"", path),
				 errhint("Create one with: openssl genpkey -algorithm ed25519 -out FILE")));
	if (!EVP_PKEY_is_a(pkey, "ED25519"))
	{
		EVP_PKEY_free(pkey);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the key in \"%s\" is not an Ed25519 key", path)));
	}
	return pkey;
}

/* First 16 hex digits of SHA-256 over the raw 32-byte public key. */
void
ta_ed25519_key_id(EVP_PKEY *pkey, char out[TA_ED25519_KEY_ID_HEX + 1])
{
	unsigned char raw[64];
	size_t		rawlen = sizeof(raw);
	unsigned char h[TA_HASH_LEN];
	char		hex[2 * TA_HASH_LEN];

	if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1)
		free_key_and_fail(pkey, "get the public key of the signing key");
	ta_sha256(raw, rawlen, h);
	hex_encode((char *) h, TA_HASH_LEN, hex);
	memcpy(out, hex, TA_ED25519_KEY_ID_HEX);
	out[TA_ED25519_KEY_ID_HEX] = '\0';
}

/* Ed25519 signature of msg, as lower-case hex. */
char *
ta_ed25519_sign_hex(EVP_PKEY *pkey, const char *msg, int len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t		siglen = sizeof(sig);
	char	   *hex;
	bool		ok;

	ok = ctx != NULL &&
		EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *) msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		free_key_and_fail(pkey, "sign the digest");
	hex = palloc(2 * siglen + 1);
	hex_encode((char *) sig, siglen, hex);
	hex[2 * siglen] = '\0';
	return hex;
}

bool
ta_ed25519_verify(EVP_PKEY *pkey, const char *msg, int len,
				  const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	ok = ctx != NULL &&
		EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *) msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* The public half of the key, PEM-encoded. */
text *
ta_ed25519_public_pem(EVP_PKEY *pkey)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	char	   *data;
	long		len;
	text	   *result;

	if (bio == NULL || PEM_write_bio_PUBKEY(bio, pkey) != 1)
	{
		BIO_free(bio);
		free_key_and_fail(pkey, "write the public key");
	}
	len = BIO_get_mem_data(bio, &data);
	result = cstring_to_text_with_len(data, (int) len);
	BIO_free(bio);
	return result;
}
