/*-------------------------------------------------------------------------
 *
 * sanitize.h
 *		Removing secrets and personal data from documents and text before
 *		they are stored (sanitize.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_SANITIZE_H
#define TA_SANITIZE_H

#include "utils/jsonb.h"

#include "rules.h"

extern Jsonb *ta_sanitize_jsonb(const TaRuleSet *rs, Jsonb *in,
								const char *what);
extern char *ta_sanitize_text(const TaRuleSet *rs, const char *s, int len,
							  const char *what);

#endif							/* TA_SANITIZE_H */
