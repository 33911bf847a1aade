/*-------------------------------------------------------------------------
 *
 * json.h
 *	  JSON values as the verifier reads them (parsed by yajl, json.c) and
 *	  writes them (the canonical JSON of section 3 of
 *	  doc/canonical-encoding.md, canonical.c).
 *
 * verifier/json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOOL_AUDIT_VERIFY_JSON_H
#define TOOL_AUDIT_VERIFY_JSON_H

#include "verify.h"

/*
 * Deepest nesting accepted.  jsonb's limit is the server's stack:
 * PostgreSQL 15 stores arrays nested 14513 deep with the default
 * max_stack_depth of 2MB and 54563 deep with 7680kB, the most an 8MB stack
 * rlimit allows; this is well above both.  Nothing here recurses on the
 * nesting (yajl keeps its own stack, json_free and the canonical writer
 * theirs), so the limit only bounds a value's memory, like any other.
 */
#define JSON_MAX_DEPTH 100000

/*
 * What a number may be: exactly what numeric_in (and so jsonb) accepts in
 * PostgreSQL 15.  At most 131072 digits before the decimal point
 * (NUMERIC_WEIGHT_MAX base-10000 digits), a display scale -- the digits
 * written after the point, minus the exponent -- of at most 16383
 * (NUMERIC_DSCALE_MAX; trailing zeros count, so 1.0e-16383 is refused
 * while 1e-16383 is not), and an exponent below INT_MAX / 2 in magnitude
 * (even for zero).
 */
#define JSON_MAX_INT_DIGITS 131072
#define JSON_MAX_DSCALE 16383
#define JSON_MAX_EXPONENT 1073741822

/*
 * A number is written out in full, so "1e131071" (8 bytes) becomes 131072.
 * Beyond the limits above, the canonical text of all numbers of one JSON
 * text together may not exceed the length of that text by more than this.
 * Honest inputs never come near: PostgreSQL prints jsonb numbers without
 * exponent, so rows read from the database and digests written by the
 * extension hold their numbers already written out.
 */
#define JSON_MAX_NUMBER_GROWTH (1024 * 1024)

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
	char	   *key;			/* UTF-8, NUL-terminated, no NUL inside */
	size_t		keylen;
	JsonValue  *value;
	size_t		order;			/* position in the text, while parsing */
} JsonMember;

struct JsonValue
{
	JsonKind	kind;
	char	   *str;			/* STRING: UTF-8; NUMBER: its canonical
								 * decimal; both NUL-terminated */
	size_t		len;
	size_t		count;			/* ARRAY items or OBJECT members */
	JsonValue **items;
	JsonMember *members;		/* sorted by key bytes, keys unique */
};

/* json.c */
extern JsonValue *json_parse(const char *text, size_t len, char *err,
							 size_t errlen);
extern void json_free(JsonValue *v);
extern const JsonValue *json_get(const JsonValue *obj, const char *key);
extern bool json_int64(const JsonValue *v, int64_t *out);
extern bool json_is_string(const JsonValue *v, const char *s);

/* canonical.c */
extern bool canonical_number(const char *text, size_t len, Buf *out);
extern void canonical_string(const char *s, size_t len, Buf *out);
extern void canonical_json(const JsonValue *v, Buf *out);

#endif							/* TOOL_AUDIT_VERIFY_JSON_H */
