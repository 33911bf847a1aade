/*-------------------------------------------------------------------------
 *
 * summarize.h
 *		Result summaries (summarize.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_SUMMARIZE_H
#define TA_SUMMARIZE_H

#include "utils/jsonb.h"

#include "rules.h"

extern Jsonb *ta_summarize_result(const TaRuleSet *rs, Jsonb *result,
								  int success_override, bool *success,
								  text **error);

#endif							/* TA_SUMMARIZE_H */
