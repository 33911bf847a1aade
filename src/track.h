/*-------------------------------------------------------------------------
 *
 * track.h
 *		The row-change trigger of tracked tables (track.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_TRACK_H
#define TA_TRACK_H

#include "nodes/nodes.h"

extern void ta_guard_tracked(Node *stmt);

#endif							/* TA_TRACK_H */
