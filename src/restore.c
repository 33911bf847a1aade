/*-------------------------------------------------------------------------
 *
 * restore.c
 *		Rows restored from a dump, with no setting: what pg_restore, psql
 *		replaying a plain dump and pg_dumpall load.
 *
 * A dump holds every audit row as it was stored: its id, time, recorded_by
 * and event_id, and its row hash and chain position (row_hash, chain_id,
 * chain_lane, chain_seq, chain_hash).  The insert trigger recognises such a
 * row by what it brings: an id, a row hash and every chain column.  It is
 * accepted, as it is, only
 *	- from a superuser (anyone else gets the usual "ids are assigned" error);
 *	- if its row hash recomputes from its columns, and its chain id from its
 *	  table and tenant (a row edited in the dump is refused at once); and
 *	- if, when the transaction commits, its lane is whole: every row of the
 *	  table is a row restored by this transaction, each lane starts at
 *	  position 1 from the zero link (or where a purge anchor says its first
 *	  rows went), has no gap an anchor does not cover, and every link
 *	  recomputes from the previous one.
 * The last check waits for the commit (XACT_EVENT_PRE_COMMIT, and before
 * PREPARE) because a dump's COPY brings rows in the order they are stored,
 * not lane by lane.  The table is locked in EXCLUSIVE mode from the first
 * restored row to the commit, so that no other transaction writes to it
 * meanwhile; pg_restore's -j runs each table's COPY in one transaction, so
 * that costs nothing.  The check reads every row of the table once, through
 * the chain position index, and keeps only the current lane's link: memory
 * stays flat however large the dump.
 *
 * What this leaves a superuser (who can do anything to the database):
 * loading a whole made-up trail into an empty table, with hashes and links
 * computed by hand.  It cannot append a row to a table that holds rows, skip
 * a position, or store a row whose hashes do not fit it.  A made-up trail is
 * caught by any digest taken before (its heads do not match: verify_digest(),
 * the external verifier); a trail emptied by a restore that was refused is
 * caught by verify(): its id sequence has handed out ids while the table
 * holds no rows (check_id_sequence() in verify.c).
 *
 * Subtransactions: a rolled back one takes its restored rows away, and with
 * them the need to check their table (unless an outer level restored some).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "erase.h"
#include "guard.h"
#include "hash.h"
#include "restore.h"

/* A table rows were restored into, at one subtransaction level. */
typedef struct RestoredTable
{
	Oid			relid;
	SubTransactionId subid;
} RestoredTable;

static List *restored_tables = NIL;	/* in TopTransactionContext */
static bool callbacks_registered = false;

static void register_callbacks(void);

/* ---- the row ---- */

bool
ta_row_brings_place(const TaLayout *layout, const Datum *values, const bool *nulls)
{
	if (!layout->chained || nulls[ta_column(layout, TA_COL_ID)])
		return false;
	for (int c = TA_FIRST_CHAIN_COLUMN; c < TA_NCOLUMNS; c++)
		if (nulls[layout->column[c]])
			return false;
	return true;
}

static void
restored_row_refused(const TaLayout *layout, int64 id, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("restored row " INT64_FORMAT " of tool_audit.%s refused: %s",
					id, layout->name, why),
			 errhint("The dump was changed after it was taken, or it is not a dump of tool_audit rows.")));
}

/* Remember, for the commit, that this transaction restored rows into rel. */
static void
note_restored_table(Relation rel)
{
	SubTransactionId cur = GetCurrentSubTransactionId();
	ListCell   *lc;
	MemoryContext old;
	RestoredTable *t;

	foreach(lc, restored_tables)
	{
		t = lfirst(lc);
		if (t->relid == RelationGetRelid(rel) && t->subid == cur)
			return;
	}
	register_callbacks();

	/*
	 * Nobody else writes to the table until this transaction ends: the check
	 * at commit must see every row the table will hold.
	 */
	LockRelationOid(RelationGetRelid(rel), ExclusiveLock);
	old = MemoryContextSwitchTo(TopTransactionContext);
	t = palloc(sizeof(RestoredTable));
	t->relid = RelationGetRelid(rel);
	t->subid = cur;
	restored_tables = lappend(restored_tables, t);
	MemoryContextSwitchTo(old);
}

/*
 * A row that brings its id, row hash and chain position (ta_row_brings_place):
 * the caller must be a superuser, and the row hash and chain id must
 * recompute from the row.  Its links are checked at commit.
 */
void
ta_check_restored_row(Relation rel, const TaLayout *layout, Datum *values, bool *nulls)
{
	const int  *col = layout->column;
	int64		id = DatumGetInt64(values[col[TA_COL_ID]]);
	unsigned char row_hash[TA_HASH_LEN],
				stored[TA_HASH_LEN];

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("ids of tool_audit.%s are assigned by tool_audit", layout->name),
				 errdetail("The row came with id " INT64_FORMAT " and a chain position.", id),
				 errhint("Only a superuser restores the rows of a dump.")));
	if (ta_sanctioned_change_in_xact())
		restored_row_refused(layout, id, "this transaction also purged or erased rows");
	if (!ta_stored_hash(values[col[TA_COL_ROW_HASH]], false, stored))
		restored_row_refused(layout, id, "its row hash is not 32 bytes");
	ta_row_hash(layout, values, nulls, row_hash);

	/*
	 * An erased row no longer hashes to its stored row hash (which its links
	 * keep): its content hashes to its erasures entry's row_hash_after,
	 * which may not be loaded yet (admin_events' data comes before
	 * erasures' in a dump).  It is let through here, and verify() accepts
	 * it only through an entry its erasure event commits to.
	 */
	if (!ta_hash_equal(row_hash, stored) && !ta_row_has_erasure_marker(layout, values, nulls))
		restored_row_refused(layout, id, "its content does not match its row hash");
	if (DatumGetInt64(values[col[TA_COL_CHAIN_ID]]) != ta_chain_id(layout, values, nulls))
		restored_row_refused(layout, id, "its chain id does not match its table and tenant");
	if (DatumGetInt32(values[col[TA_COL_CHAIN_LANE]]) < 0 ||
		DatumGetInt64(values[col[TA_COL_CHAIN_SEQ]]) < 1)
		restored_row_refused(layout, id, "its chain position is out of range");
	if (!ta_stored_hash(values[col[TA_COL_CHAIN_HASH]], false, stored))
		restored_row_refused(layout, id, "its chain link is not 32 bytes");
	note_restored_table(rel);
}

/* ---- the check at commit ---- */

/*
 * The purge anchor that continues a lane at position seq from the link prev:
 * true, with the position after it and its last link, if there is one.
 */
static bool
anchor_after(const TaLayout *layout, int64 chain_id, int32 lane, int64 seq,
			 const unsigned char prev[TA_HASH_LEN], int64 *next_seq,
			 unsigned char link_after[TA_HASH_LEN])
{
	static const char *const sql =
	"SELECT a.last_seq, a.link_before, a.link_after FROM tool_audit.purge_anchors a"
	" WHERE a.table_name OPERATOR(pg_catalog.=) $1 AND a.chain_id OPERATOR(pg_catalog.=) $2"
	"   AND a.chain_lane OPERATOR(pg_catalog.=) $3 AND a.first_seq OPERATOR(pg_catalog.=) $4";
	Oid			argtypes[4] = {TEXTOID, INT8OID, INT4OID, INT8OID};
	Datum		args[4];
	bool		found = false;

	if (!OidIsValid(ta_schema_relid("purge_anchors", true)))
		return false;
	args[0] = CStringGetTextDatum(layout->name);
	args[1] = Int64GetDatum(chain_id);
	args[2] = Int32GetDatum(lane);
	args[3] = Int64GetDatum(seq);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, 4, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read tool_audit.purge_anchors");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		n1;
		Datum		last = SPI_getbinval(tup, desc, 1, &n1);
		unsigned char before[TA_HASH_LEN];

		if (!n1 && ta_stored_hash_attr(tup, desc, 2, before) &&
			ta_hash_equal(before, prev) &&
			ta_stored_hash_attr(tup, desc, 3, link_after))
		{
			*next_seq = DatumGetInt64(last) + 1;
			found = true;
		}
	}
	SPI_finish();
	return found;
}

static void
lane_refused(const TaLayout *layout, int64 chain_id, int32 lane, int64 seq, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("restored rows of tool_audit.%s refused: %s", layout->name, why),
			 errdetail("At chain " INT64_FORMAT "/%d, position " INT64_FORMAT ".",
					   chain_id, lane, seq),
			 errhint("Restore a whole dump, as pg_dump wrote it, into a database whose audit tables are empty.")));
}

/* Every row of the table restored by this transaction, every lane whole. */
static void
check_restored_table(Oid relid)
{
	Relation	rel = try_relation_open(relid, AccessShareLock);
	const TaLayout *layout;
	const int  *col;
	Relation	irel;
	Snapshot	snap;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext rowcxt,
				old;
	bool		in_lane = false;
	int64		cur_chain = 0,
				expected = 1;
	int32		cur_lane = 0;
	unsigned char prev[TA_HASH_LEN];

	if (rel == NULL)
		return;					/* dropped since */
	layout = ta_layout_of(rel);
	col = layout->column;
	irel = index_open(ta_chain_index(layout), AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	PushActiveSnapshot(snap);	/* for the anchors' query, at commit */
	slot = table_slot_create(rel, NULL);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "tool_audit restore check",
								   ALLOCSET_DEFAULT_SIZES);
	scan = ta_index_scan(rel, irel, snap, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		should_free,
					isnull;
		HeapTuple	tup;
		int64		chain_id,
					seq,
					id;
		int32		lane;
		unsigned char row_hash[TA_HASH_LEN],
					link[TA_HASH_LEN],
					stored_link[TA_HASH_LEN];

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(rowcxt);
		tup = ExecFetchSlotHeapTuple(slot, false, &should_free);
		id = DatumGetInt64(slot_getattr(slot, col[TA_COL_ID] + 1, &isnull));
		if (!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("restored rows of tool_audit.%s refused: the table already holds rows",
							layout->name),
					 errdetail("Row " INT64_FORMAT " was not restored by this transaction.", id),
					 errhint("Restore a dump into a database whose audit tables are empty.")));
		slot_getallattrs(slot);
		if (slot->tts_isnull[col[TA_COL_CHAIN_ID]] || slot->tts_isnull[col[TA_COL_CHAIN_LANE]] ||
			slot->tts_isnull[col[TA_COL_CHAIN_SEQ]])
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("restored rows of tool_audit.%s refused: row " INT64_FORMAT " is in no chain",
							layout->name, id)));
		chain_id = DatumGetInt64(slot->tts_values[col[TA_COL_CHAIN_ID]]);
		lane = DatumGetInt32(slot->tts_values[col[TA_COL_CHAIN_LANE]]);
		seq = DatumGetInt64(slot->tts_values[col[TA_COL_CHAIN_SEQ]]);
		if (!in_lane || chain_id != cur_chain || lane != cur_lane)
		{
			in_lane = true;
			cur_chain = chain_id;
			cur_lane = lane;
			expected = 1;
			memset(prev, 0, TA_HASH_LEN);
		}
		/* a gap (or a late start) only where a purge left an anchor */
		while (expected < seq)
		{
			int64		next;

			if (!anchor_after(layout, chain_id, lane, expected, prev, &next, prev) || next > seq)
				lane_refused(layout, chain_id, lane, expected,
							 expected == 1 ? "the lane does not start at position 1" :
							 "a row is missing before this position");
			expected = next;
		}
		if (!ta_stored_hash(slot->tts_values[col[TA_COL_ROW_HASH]],
							slot->tts_isnull[col[TA_COL_ROW_HASH]], row_hash) ||
			!ta_stored_hash(slot->tts_values[col[TA_COL_CHAIN_HASH]],
							slot->tts_isnull[col[TA_COL_CHAIN_HASH]], stored_link))
			lane_refused(layout, chain_id, lane, seq, "a row has no row hash or chain link");
		ta_link_hash(chain_id, lane, seq, prev, row_hash, link);
		if (!ta_hash_equal(link, stored_link))
			lane_refused(layout, chain_id, lane, seq,
						 "a chain link does not follow from the row before it");
		memcpy(prev, stored_link, TA_HASH_LEN);
		expected = seq + 1;
		if (should_free)
			heap_freetuple(tup);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	UnregisterSnapshot(snap);
	index_close(irel, AccessShareLock);
	relation_close(rel, AccessShareLock);
	MemoryContextDelete(rowcxt);
}

static void
check_restored_tables(void)
{
	List	   *done = NIL;
	ListCell   *lc;

	if (restored_tables != NIL && ta_sanctioned_change_in_xact())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restored rows of tool_audit refused: this transaction also purged or erased rows"),
				 errhint("Restore in a transaction of its own.")));
	foreach(lc, restored_tables)
	{
		Oid			relid = ((RestoredTable *) lfirst(lc))->relid;

		if (list_member_oid(done, relid))
			continue;
		check_restored_table(relid);
		done = lappend_oid(done, relid);
	}
	list_free(done);
}

static void
restore_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (restored_tables != NIL)
				check_restored_tables();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			restored_tables = NIL;	/* TopTransactionContext is gone */
			break;
		default:
			break;
	}
}

/* A rolled back subtransaction's rows are gone; a committed one's are its parent's. */
static void
restore_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, restored_tables)
			if (((RestoredTable *) lfirst(lc))->subid >= mySubid)
				restored_tables = foreach_delete_current(restored_tables, lc);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, restored_tables)
		{
			RestoredTable *t = lfirst(lc);

			if (t->subid == mySubid)
				t->subid = parentSubid;
		}
	}
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(restore_xact_callback, NULL);
	RegisterSubXactCallback(restore_subxact_callback, NULL);
	callbacks_registered = true;
}
