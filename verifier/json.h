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
 * Deepest nesting accepted.  The extension's tool_audit.max_depth setting
 * goes up to 10000, so anything it stores must parse here.  yajl itself
 * does not recurse; the limit bounds the recursion of json_free() and of
 * the canonical writer.
 */
#define JSON_MAX_DEPTH 10000

/*
 * Most zeros a number may need written out, before or after its digits.
 * numeric holds at most 131072 digits before the point and 16383 after
 * it, so nothing jsonb stores comes near; the bound keeps "1e999999999"
 * from turning into a billion zeros.
 */
#define JSON_MAX_ZEROS 200000

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
	char	   *key;			/* UTF-8, NUL-terminated, may contain NUL */
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
