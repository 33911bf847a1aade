/*-------------------------------------------------------------------------
 *
 * trail_mark.h
 *		Marking the audit tables that have committed a row (trail_mark.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_TRAIL_MARK_H
#define TA_TRAIL_MARK_H

#include "utils/rel.h"

extern void ta_trail_mark_init(void);
extern void ta_trail_mark(Relation rel);

#endif							/* TA_TRAIL_MARK_H */
