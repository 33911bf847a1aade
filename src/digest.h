/*-------------------------------------------------------------------------
 *
 * digest.h
 *		Signed digests of every chain lane's head (digest.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_DIGEST_H
#define TA_DIGEST_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* the "format" of every digest */
#define DIGEST_FORMAT	"tool_audit digest 1"

extern char *ta_digest_signature_problem(Jsonb *d);
extern Datum ta_digest_sign(StringInfo buf);

/* a time as digests write it: YYYY-MM-DDTHH:MM:SS.ffffffZ */
extern char *ta_digest_time_text(TimestampTz ts);

#endif							/* TA_DIGEST_H */
