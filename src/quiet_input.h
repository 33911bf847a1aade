/*-------------------------------------------------------------------------
 *
 * quiet_input.h
 *		Typed values read from text whose errors never quote the text
 *		(quiet_input.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_QUIET_INPUT_H
#define TA_QUIET_INPUT_H

#include "utils/jsonb.h"

extern Datum ta_quiet_input(Oid typid, int32 typmod, const char *value,
							const char *what, const char *name);
extern Jsonb *ta_quiet_jsonb(text *document, const char *argument);

#endif							/* TA_QUIET_INPUT_H */
