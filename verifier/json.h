/*-------------------------------------------------------------------------
 *
 * json.h
 *	  A small JSON parser and the canonical JSON writer of section 3 of
 *	  doc/canonical-encoding.md.
 *
 * verifier/json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOOL_AUDIT_VERIFY_JSON_H
#define TOOL_AUDIT_VERIFY_JSON_H

#include "verify.h"

/*
 * Deepest nesting accepted.  The extension's tool_audit.max_depth setting
 * goes up to 10000, so anything it stores must parse here; recursion this
 * deep needs well under 8 MB of stack.
 */
#define JSON_MAX_DEPTH 10000

/*
 * Largest power of ten a number may carry, in either direction.  numeric
 * allows at most 131072 digits before the point and 16383 after it, so
 * nothing jsonb holds comes near; the bound keeps "1e999999999" from
 * turning into a billion zeros.
 */
#define JSON_MAX_SCALE 200000

typedef enum JsonKind
{
	JSON_NULL,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT
} JsonKind;

typedef struct JsonValue JsonValue;

typedef struct JsonMember
{
	char	   *key;			/* decoded UTF-8, may contain NUL */
	size_t		keylen;
	JsonValue  *value;
	size_t		order;			/* position in the text, for duplicates */
} JsonMember;

struct JsonValue
{
	JsonKind	kind;
	char	   *str;			/* STRING: decoded UTF-8; NUMBER: canonical
								 * decimal; both NUL-terminated */
	size_t		len;
	size_t		count;			/* ARRAY items or OBJECT members */
	JsonValue **items;
	JsonMember *members;		/* sorted by key bytes, keys unique */
};

extern JsonValue *json_parse(const char *text, size_t len, char *err,
							 size_t errlen);
extern void json_free(JsonValue *v);
extern void json_canonical(const JsonValue *v, Buf *out);
extern void json_canonical_string(const char *s, size_t len, Buf *out);
extern const JsonValue *json_get(const JsonValue *obj, const char *key);
extern bool json_int64(const JsonValue *v, int64_t *out);
extern bool json_is_string(const JsonValue *v, const char *s);

#endif							/* TOOL_AUDIT_VERIFY_JSON_H */
