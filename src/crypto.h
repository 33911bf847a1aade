/*-------------------------------------------------------------------------
 *
 * crypto.h
 *		SHA-256, HMAC-SHA256, Ed25519, random bytes and event ids
 *		(crypto.c, over OpenSSL's EVP interfaces).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_CRYPTO_H
#define TA_CRYPTO_H

#include <openssl/evp.h>

#include "fmgr.h"

#define TA_HASH_LEN		32		/* SHA-256 */
#define TA_ED25519_KEY_ID_HEX	16

extern void ta_sha256(const void *data, size_t len, unsigned char out[TA_HASH_LEN]);
extern bool ta_hash_equal(const unsigned char *a, const unsigned char *b);
extern bool ta_hmac_sha256(const unsigned char *key, int keylen,
						   const char *data, int len, unsigned char out[TA_HASH_LEN]);
extern void ta_random_bytes(unsigned char *buf, int len);
extern Datum ta_new_event_id(void);

extern EVP_PKEY *ta_ed25519_load(const char *path);
extern void ta_ed25519_key_id(EVP_PKEY *pkey, char out[TA_ED25519_KEY_ID_HEX + 1]);
extern char *ta_ed25519_sign_hex(EVP_PKEY *pkey, const char *msg, int len);
extern bool ta_ed25519_verify(EVP_PKEY *pkey, const char *msg, int len,
							  const unsigned char *sig, size_t siglen);
extern text *ta_ed25519_public_pem(EVP_PKEY *pkey);

#endif							/* TA_CRYPTO_H */
