/*-------------------------------------------------------------------------
 *
 * verify_incremental.h
 *		The walk's index scan over a chain position index, which an
 *		incremental verification (tool_audit.verify_since()) moves forward
 *		to a lane's verified head (verify_incremental.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_VERIFY_INCREMENTAL_H
#define TA_VERIFY_INCREMENTAL_H

#include "access/genam.h"
#include "access/skey.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

typedef struct TaWalkScan
{
	IndexScanDesc scan;
	Relation	rel;
	Relation	irel;
	Snapshot	snap;
	bool		seekable;		/* begun with a position key: can seek */
	bool		nulls_done;		/* the rows with no chain id were read */
	ScanKeyData key;			/* (chain_id, chain_lane, chain_seq) >= ... */
	ScanKeyData sub[3];
	ScanKeyData nullkey;		/* chain_id IS NULL */
	bool		bounded;		/* a part of the index: chain ids up to hi */
	int64		hi;
	ScanKeyData range[2];		/* chain_id >= lo AND chain_id <= hi */
} TaWalkScan;

extern TaWalkScan *ta_walk_begin(Relation rel, Relation irel, Snapshot snap, bool seekable);
extern TaWalkScan *ta_walk_begin_part(Relation rel, Relation irel, Snapshot snap, bool seekable,
									  bool nulls, int64 lo, int64 hi);
extern bool ta_walk_next(TaWalkScan *ws, TupleTableSlot *slot);
extern void ta_walk_seek(TaWalkScan *ws, int64 chain_id, int32 lane, int64 seq);
extern int64 ta_walk_lane_end(TaWalkScan *ws, int64 chain_id, int32 lane);
extern void ta_walk_end(TaWalkScan *ws);

#endif							/* TA_VERIFY_INCREMENTAL_H */
