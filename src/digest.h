/*-------------------------------------------------------------------------
 *
 * digest.h
 *		Signed digests of every chain lane's head (digest.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_DIGEST_H
#define TA_DIGEST_H

#include "utils/jsonb.h"

extern char *ta_digest_signature_problem(Jsonb *d);

#endif							/* TA_DIGEST_H */
