/*-------------------------------------------------------------------------
 *
 * purge.h
 *		purge_expired() and the lane heads its anchors keep (purge.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_PURGE_H
#define TA_PURGE_H

#include "utils/snapshot.h"

#include "crypto.h"

extern bool ta_anchor_head(const char *table, int64 chain_id, int32 lane, Snapshot snap,
						   int64 *seq, unsigned char link[TA_HASH_LEN]);

#endif							/* TA_PURGE_H */
