/*-------------------------------------------------------------------------
 *
 * jsonb_util.h
 *		Small jsonb helpers several files share (jsonb_util.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_JSONB_UTIL_H
#define TA_JSONB_UTIL_H

#include "utils/jsonb.h"

extern const char *ta_jsonb_type_name(Jsonb *j);
extern JsonbValue *ta_jsonb_key(JsonbContainer *obj, const char *key);
extern char *ta_jsonb_string(JsonbContainer *obj, const char *key);

#endif							/* TA_JSONB_UTIL_H */
