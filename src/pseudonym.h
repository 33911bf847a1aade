/*-------------------------------------------------------------------------
 *
 * pseudonym.h
 *		Keyed pseudonyms for personal data (pseudonym.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_PSEUDONYM_H
#define TA_PSEUDONYM_H

#include "rules.h"

extern char *ta_pseudonymize(const TaRuleSet *rs, const char *value, int len);
extern bool ta_looks_like_pseudonym(const TaRuleSet *rs, const char *value,
									int len);

#endif							/* TA_PSEUDONYM_H */
