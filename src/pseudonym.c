/*-------------------------------------------------------------------------
 *
 * pseudonym.c
 *		Keyed pseudonyms for personal data: HMAC-SHA256 (crypto.c) of the
 *		normalized value.
 *
 * A pseudonym is "hmac:<key id>:<32 lowercase hex digits>", the first 128
 * bits of HMAC-SHA256(key, normalized value).  The value is normalized
 * first so that the same datum links however it was typed: ASCII white
 * space is trimmed at both ends and ASCII letters are lowered (" Jane@X.com"
 * and "jane@x.com"); a value made only of digits and the punctuation used to
 * group them (space - . / ( ) +) is reduced to its digits ("078-05-1120",
 * "078 05 1120" and "078051120"; "+1 (555) 010-0100" and "15550100100").  Without the key,
 * which only tool_audit_admin can manage and which never leaves the
 * database, a pseudonym cannot be reversed by enumerating candidates, as an
 * unkeyed SHA-256 of a 9-digit SSN can in minutes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "crypto.h"
#include "pseudonym.h"

#define TA_PSEUDONYM_PREFIX		"hmac:"
#define TA_PSEUDONYM_BYTES		16

static bool
is_ascii_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Digits, possibly grouped by space - . / ( ) +, and at least one digit. */
static bool
is_grouped_number(const char *s, int len)
{
	bool		digit = false;

	for (int i = 0; i < len; i++)
	{
		if (s[i] >= '0' && s[i] <= '9')
			digit = true;
		else if (strchr(" -./()+", s[i]) == NULL || s[i] == '\0')
			return false;
	}
	return digit;
}

char *
ta_pseudonymize(const TaRuleSet *rs, const char *value, int len)
{
	unsigned char mac[TA_HASH_LEN];
	char	   *norm;
	char		hex[TA_PSEUDONYM_BYTES * 2 + 1];
	int			start = 0,
				end = len,
				n = 0;

	if (!rs->has_key)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no active pseudonymization key"),
				 errdetail("Personal data cannot be stored without a key."),
				 errhint("Run SELECT tool_audit.rotate_pseudonym_key() as tool_audit_admin.")));

	while (start < end && is_ascii_space(value[start]))
		start++;
	while (end > start && is_ascii_space(value[end - 1]))
		end--;
	norm = palloc(end - start + 1);
	if (is_grouped_number(value + start, end - start))
	{
		for (int i = start; i < end; i++)
			if (value[i] >= '0' && value[i] <= '9')
				norm[n++] = value[i];
	}
	else
	{
		for (int i = start; i < end; i++)
		{
			char		c = value[i];

			norm[n++] = (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
		}
	}

	if (!ta_hmac_sha256(rs->key, rs->key_len, norm, n, mac))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not compute HMAC-SHA256")));
	pfree(norm);

	hex_encode((const char *) mac, TA_PSEUDONYM_BYTES, hex);
	hex[TA_PSEUDONYM_BYTES * 2] = '\0';
	explicit_bzero(mac, sizeof(mac));
	return psprintf(TA_PSEUDONYM_PREFIX "%s:%s", rs->key_id, hex);
}

/*
 * Is this string already a pseudonym?  Sanitizing must be idempotent (a row
 * restored from a dump passes the insert trigger again), so a pseudonym is
 * never pseudonymized a second time.  Only the shape of one made with a key
 * that exists counts: "hmac:078-05-1120:<32 hex>" is not a way to smuggle a
 * value past the sanitizer.
 */
bool
ta_looks_like_pseudonym(const TaRuleSet *rs, const char *value, int len)
{
	int			plen = strlen(TA_PSEUDONYM_PREFIX);
	int			i,
				idlen = 0;

	if (len < plen + 2 + TA_PSEUDONYM_BYTES * 2 ||
		memcmp(value, TA_PSEUDONYM_PREFIX, plen) != 0)
		return false;
	for (i = plen; i < len && value[i] != ':'; i++)
	{
		char		c = value[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
		idlen++;
	}
	if (idlen == 0 || idlen > TA_MAX_KEY_ID_LEN || i >= len ||
		len - (i + 1) != TA_PSEUDONYM_BYTES * 2)
		return false;
	for (int h = i + 1; h < len; h++)
		if (!((value[h] >= '0' && value[h] <= '9') ||
			  (value[h] >= 'a' && value[h] <= 'f')))
			return false;
	for (int k = 0; k < rs->nkey_ids; k++)
		if ((int) strlen(rs->key_ids[k]) == idlen &&
			memcmp(rs->key_ids[k], value + plen, idlen) == 0)
			return true;
	return false;
}

/* tool_audit.pseudonymize(value text) RETURNS text */
PG_FUNCTION_INFO_V1(pseudonymize);
Datum
pseudonymize(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(ta_pseudonymize(ta_get_rules(),
													 VARDATA_ANY(value),
													 VARSIZE_ANY_EXHDR(value))));
}

/* tool_audit.random_key(length integer DEFAULT 32) RETURNS bytea */
PG_FUNCTION_INFO_V1(random_key);
Datum
random_key(PG_FUNCTION_ARGS)
{
	int32		len = PG_GETARG_INT32(0);
	bytea	   *result;

	if (len < 32 || len > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key length must be between 32 and 64 bytes"),
				 errdetail("Requested length was %d.", len)));
	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	ta_random_bytes((unsigned char *) VARDATA(result), len);
	PG_RETURN_BYTEA_P(result);
}
