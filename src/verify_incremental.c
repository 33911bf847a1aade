/*-------------------------------------------------------------------------
 *
 * verify_incremental.c
 *		The index scan of the verification walk (verify.c), which can move
 *		forward: tool_audit.verify_since(digest) walks a lane the digest
 *		covers from the row two before its head instead of from its first row.
 *
 * verify() and verify_digest() read the chain position index from start to
 * end with no key, as they always did.  verify_since() begins the same scan
 * with a row comparison key, (chain_id, chain_lane, chain_seq) >= (c, l, s),
 * which the walk restarts (index_rescan) at a later position whenever it
 * meets a lane whose verified head lies further on: one descent of the
 * B-tree per lane, then the rows after the head, so that the time taken
 * follows the rows added since the digest and the number of lanes, not the
 * size of the table.  A row comparison key never returns a row whose chain
 * id is NULL (the index sorts them last), so once the keyed scan is done
 * those rows are read with a second key, chain_id IS NULL, and reported by
 * the walk as rows not in a chain; a row with a chain id but no lane or
 * position is skipped by the keyed scan and found by a full verify() only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "catalog.h"
#include "verify_incremental.h"

/* The position key, (chain_id, chain_lane, chain_seq) >= (chain_id, lane, seq). */
static void
position_key(TaWalkScan *ws, int64 chain_id, int32 lane, int64 seq)
{
	Datum		args[3] = {Int64GetDatum(chain_id), Int32GetDatum(lane), Int64GetDatum(seq)};

	if (IndexRelationGetNumberOfKeyAttributes(ws->irel) != 3)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chain position index %s does not have three key columns",
						RelationGetRelationName(ws->irel))));
	for (int i = 0; i < 3; i++)
	{
		/* members of a row comparison compare with the B-tree order proc */
		ScanKeyEntryInitializeWithInfo(&ws->sub[i], SK_ROW_MEMBER | (i == 2 ? SK_ROW_END : 0),
									   (AttrNumber) (i + 1), BTGreaterEqualStrategyNumber,
									   ws->irel->rd_opcintype[i], ws->irel->rd_indcollation[i],
									   index_getprocinfo(ws->irel, i + 1, BTORDER_PROC),
									   args[i]);
	}
	memset(&ws->key, 0, sizeof(ws->key));
	ws->key.sk_flags = SK_ROW_HEADER;
	ws->key.sk_attno = 1;
	ws->key.sk_strategy = BTGreaterEqualStrategyNumber;
	ws->key.sk_subtype = InvalidOid;
	ws->key.sk_collation = InvalidOid;
	ws->key.sk_argument = PointerGetDatum(ws->sub);
}

/*
 * A scan of the chain position index in chain order; seekable: one that
 * ta_walk_seek() can move (it then also reads the rows with no chain id at
 * its end).
 */
TaWalkScan *
ta_walk_begin(Relation rel, Relation irel, Snapshot snap, bool seekable)
{
	TaWalkScan *ws = palloc0(sizeof(TaWalkScan));

	ws->rel = rel;
	ws->irel = irel;
	ws->snap = snap;
	ws->seekable = seekable;
	if (!seekable)
	{
		ws->scan = ta_index_scan(rel, irel, snap, NULL, 0);
		return ws;
	}
	position_key(ws, PG_INT64_MIN, PG_INT32_MIN, PG_INT64_MIN);
	ScanKeyEntryInitialize(&ws->nullkey, SK_ISNULL | SK_SEARCHNULL, 1,
						   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid, (Datum) 0);
	ws->scan = ta_index_scan(rel, irel, snap, &ws->key, 1);
	return ws;
}

/*
 * A part of the same scan, for the parallel walk (verify_parallel.c): the
 * lanes of the chain ids lo to hi, or (nulls) the rows with no chain id.
 * A seekable part starts at (lo) with the position key and ends at the
 * first row past hi, so that verify_since() skips exactly what it skips in
 * a whole scan; the other parts read chain_id >= lo AND chain_id <= hi,
 * which keeps the rows whose lane or position is NULL as verify() does.
 */
TaWalkScan *
ta_walk_begin_part(Relation rel, Relation irel, Snapshot snap, bool seekable,
				   bool nulls, int64 lo, int64 hi)
{
	TaWalkScan *ws = palloc0(sizeof(TaWalkScan));

	ws->rel = rel;
	ws->irel = irel;
	ws->snap = snap;
	ScanKeyEntryInitialize(&ws->nullkey, SK_ISNULL | SK_SEARCHNULL, 1,
						   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid, (Datum) 0);
	if (nulls)
	{
		ws->scan = ta_index_scan(rel, irel, snap, &ws->nullkey, 1);
		return ws;
	}
	ws->bounded = true;
	ws->hi = hi;
	if (!seekable)
	{
		ScanKeyInit(&ws->range[0], 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(lo));
		ScanKeyInit(&ws->range[1], 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(hi));
		ws->scan = ta_index_scan(rel, irel, snap, ws->range, 2);
		return ws;
	}
	ws->seekable = true;
	ws->nulls_done = true;		/* the rows with no chain id are a part of their own */
	position_key(ws, lo, PG_INT32_MIN, PG_INT64_MIN);
	ws->scan = ta_index_scan(rel, irel, snap, &ws->key, 1);
	return ws;
}

bool
ta_walk_next(TaWalkScan *ws, TupleTableSlot *slot)
{
	for (;;)
	{
		if (index_getnext_slot(ws->scan, ForwardScanDirection, slot))
		{
			if (ws->bounded && ws->seekable)
			{
				bool		isnull;
				Datum		chain = slot_getattr(slot, ws->irel->rd_index->indkey.values[0], &isnull);

				if (isnull || DatumGetInt64(chain) > ws->hi)
					return false;
			}
			return true;
		}
		if (!ws->seekable || ws->nulls_done)
			return false;
		ws->nulls_done = true;
		index_rescan(ws->scan, &ws->nullkey, 1, NULL, 0);
	}
}

/* The next row read is the first at or after (chain_id, lane, seq). */
void
ta_walk_seek(TaWalkScan *ws, int64 chain_id, int32 lane, int64 seq)
{
	Assert(ws->seekable && (ws->bounded || !ws->nulls_done));
	position_key(ws, chain_id, lane, seq);
	index_rescan(ws->scan, &ws->key, 1, NULL, 0);
}

/*
 * The last position of a lane (0 if it has no row), read backwards with a
 * scan of its own: for the report of a lane that ends before the head a
 * digest names, whose rows the walk skipped.
 */
int64
ta_walk_lane_end(TaWalkScan *ws, int64 chain_id, int32 lane)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(ws->rel, NULL);
	int64		last = 0;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(chain_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(lane));
	scan = ta_index_scan(ws->rel, ws->irel, ws->snap, keys, 2);
	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		Datum		seq = slot_getattr(slot, ws->irel->rd_index->indkey.values[2], &isnull);

		if (!isnull)
		{
			last = DatumGetInt64(seq);
			break;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return last;
}

void
ta_walk_end(TaWalkScan *ws)
{
	index_endscan(ws->scan);
	pfree(ws);
}
