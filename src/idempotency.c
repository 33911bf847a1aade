/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *		Retries of a tool call: a row of tool_audit.tool_calls whose call key
 *		(tenant_id, conversation_id, tool_call_id, call_phase; NULL matching
 *		NULL) is already stored is not stored again; and the client's
 *		started_at, checked against the server's time.
 *
 * A client that lost its connection after log_call() cannot know whether
 * the call was stored; it calls again with the same tool_call_id (the id
 * the model gave the call).  log_call() then returns the row stored first,
 * once it has checked that the retry records the same call: every hashed
 * column equal but the ones the server assigns (id, recorded_at, the
 * retention columns, caller_txid, and event_id unless the caller brought
 * one).  A different call under a key already taken, a retry by another
 * role, and a plain INSERT (or COPY) of a taken key are refused with 23505;
 * nothing is stored twice under one key.  A retry without a tool_call_id
 * that brings the event_id of a stored row gets that row back from
 * log_call() the same way (event_id's unique index refuses anything else).
 *
 * No unique index carries the key: databases created before 1.5 may hold
 * rows sharing a tool_call_id, and restoring their dumps must go on
 * working.  A new row's key is checked here instead, as a unique index
 * would check it: under a transaction-level lock on a hash of the key, a
 * probe of the (non-unique) index tool_calls_tool_call_id with a dirty
 * snapshot, which sees rows still being inserted and waits for their
 * transaction (a rolled back one leaves nothing: the retry is stored).  The
 * lock covers the time between the probe and the row reaching the index;
 * after that the probe itself finds the row, so a transaction keeps one
 * such lock at a time, as insert.c does for caller-supplied event ids.  A
 * row that is not stored takes no chain position.  Restored rows (a dump's)
 * are not checked: they keep what they were.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "catalog.h"
#include "chain.h"
#include "hash.h"
#include "idempotency.h"
#include "layout.h"

#define TA_LOCKTAG_CALL_KEY		0x5446

/* How far after the server's time a client's started_at may be (clock skew). */
#define TA_STARTED_AT_MAX_AHEAD_SECS	(5 * 60)

/* ---- started_at ---- */

/*
 * started_at is the client's word for when the call began; recorded_at (the
 * server's) stays the time the chain and the reports' periods go by.  It may
 * lie anywhere in the past (calls logged later from a queue), but not more
 * than a few minutes after the row is recorded: a call cannot begin after
 * it is logged, and a clock that far ahead is wrong.  Infinite times are
 * refused.  The value is not quoted.
 */
void
ta_check_started_at(const TaLayout *layout, Datum *values, bool *nulls)
{
	int			i = layout->column[TA_COL_STARTED_AT];
	int			r = layout->column[TA_COL_RECORDED_AT];
	TimestampTz started;

	if (i < 0 || r < 0 || nulls[i] || nulls[r])
		return;
	started = DatumGetTimestampTz(values[i]);
	if (TIMESTAMP_NOT_FINITE(started))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("started_at must be a finite time")));
	if (started - DatumGetTimestampTz(values[r]) >
		(int64) TA_STARTED_AT_MAX_AHEAD_SECS * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("started_at is more than %d minutes after the time the call is recorded",
						TA_STARTED_AT_MAX_AHEAD_SECS / 60),
				 errdetail("A call cannot begin after it is logged; the client's clock may be ahead of the server's."),
				 errhint("Send the time the call began, with its UTC offset.")));
}

/* ---- the call key ---- */

/* The columns of the key, as indexes in the descriptor (-1: the table has none). */
typedef struct CallKey
{
	int			cols[4];		/* tenant_id, conversation_id, tool_call_id, call_phase */
} CallKey;

static void
call_key(Relation rel, const TaLayout *layout, CallKey *key)
{
	key->cols[0] = layout->column[TA_COL_TENANT_ID];
	key->cols[1] = layout->column[TA_COL_CONVERSATION_ID];
	key->cols[2] = layout->column[TA_COL_TOOL_CALL_ID];
	key->cols[3] = ta_attribute_index(RelationGetDescr(rel), "call_phase");
}

/* the lock of the last key checked, if still held */
static LOCKTAG key_lock;
static bool key_lock_taken = false;

static void
release_key_lock(void)
{
	/* gone already if its transaction ended (or was prepared) */
	if (key_lock_taken && IsTransactionState() &&
#if PG_VERSION_NUM >= 170000
		LockHeldByMe(&key_lock, ExclusiveLock, false)
#else
		LockHeldByMe(&key_lock, ExclusiveLock)
#endif
		)
		ta_xact_unlock(&key_lock);
	key_lock_taken = false;
}

/*
 * Serialize on the key: a transaction-level lock on a hash of its values
 * (a collision only makes two keys wait for each other).  The previous
 * key's lock is let go first: its row is in the index by now, where the
 * probe finds it.
 */
static void
lock_key(const CallKey *key, Datum *values, bool *nulls)
{
	uint64		h = 0;

	for (int k = 0; k < 4; k++)
	{
		int			i = key->cols[k];
		text	   *t;

		if (i < 0 || nulls[i])
		{
			h = hash_combine64(h, UINT64CONST(0x9e3779b97f4a7c15) + k);
			continue;
		}
		t = DatumGetTextPP(values[i]);
		h = hash_combine64(h, hash_bytes_extended((const unsigned char *) VARDATA_ANY(t),
												  VARSIZE_ANY_EXHDR(t), k + 1));
	}
	release_key_lock();
	SET_LOCKTAG_ADVISORY(key_lock, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 TA_LOCKTAG_CALL_KEY);
	(void) ta_xact_lock(&key_lock, true);
	key_lock_taken = true;
}

/*
 * The stored row the index finds for one value, among those that match
 * the key's other columns (key NULL: any), the one with the lowest id;
 * NULL if none.  Rows being inserted or deleted by another transaction are
 * waited for, as a unique index would, then the index is read again.
 */
static HeapTuple
find_stored(Relation rel, const TaLayout *layout, Oid indexoid, Oid eqproc, Datum value,
			const CallKey *key, Datum *values, bool *nulls)
{
	Relation	irel = index_open(indexoid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int			idcol = ta_column(layout, TA_COL_ID);
	HeapTuple	found = NULL;

	for (;;)
	{
		SnapshotData dirty;
		ScanKeyData skey;
		IndexScanDesc scan;
		TransactionId xwait = InvalidTransactionId;
		int64		best = 0;

		InitDirtySnapshot(dirty);
		ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   irel->rd_indcollation[0], eqproc, value);
		scan = ta_index_scan(rel, irel, &dirty, &skey, 1);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		match = true;
			bool		isnull;
			int64		id;

			for (int k = 0; key != NULL && k < 4 && match; k++)
			{
				int			i = key->cols[k];
				Datum		d;

				if (i < 0)
					continue;
				d = slot_getattr(slot, i + 1, &isnull);
				match = ta_same_text(d, isnull, values[i], nulls[i]);
			}
			if (!match)
				continue;
			if (TransactionIdIsValid(dirty.xmin) || TransactionIdIsValid(dirty.xmax))
			{
				xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
				break;
			}
			id = DatumGetInt64(slot_getattr(slot, idcol + 1, &isnull));
			if (found == NULL || id < best)
			{
				if (found != NULL)
					heap_freetuple(found);
				found = ExecCopySlotHeapTuple(slot);
				best = id;
			}
		}
		index_endscan(scan);
		if (!TransactionIdIsValid(xwait))
			break;
		/* another transaction is inserting or deleting one: wait, look again */
		if (found != NULL)
			heap_freetuple(found);
		found = NULL;
		XactLockTableWait(xwait, rel, NULL, XLTW_InsertIndex);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, AccessShareLock);
	return found;
}

/* ---- the same call? ---- */

/* Is the column one the server assigns, left out of the comparison? */
static bool
assigned_by_server(Relation rel, const TaLayout *layout, int index, bool event_id_given)
{
	static const TaColumn cols[] = {
		TA_COL_ID, TA_COL_RECORDED_AT, TA_COL_RETENTION_POLICY, TA_COL_EXPIRES_AT
	};

	for (int c = 0; c < (int) lengthof(cols); c++)
		if (layout->column[cols[c]] == index)
			return true;
	if (!event_id_given && layout->column[TA_COL_EVENT_ID] == index)
		return true;
	return index == ta_attribute_index(RelationGetDescr(rel), "caller_txid");
}

/* The hash of one column alone, or of all compared columns (index -1). */
static void
compared_hash(Relation rel, const TaLayout *layout, Datum *values, bool *nulls, int only,
			  bool event_id_given, unsigned char out[TA_HASH_LEN])
{
	bool	   *n = palloc(sizeof(bool) * layout->natts);

	for (int i = 0; i < layout->natts; i++)
		n[i] = nulls[i] || (only >= 0 ? i != only :
							assigned_by_server(rel, layout, i, event_id_given));
	ta_row_hash(layout, values, n, out);
	pfree(n);
}

/*
 * The row stored first, returned for a retry of the same call; otherwise
 * 23505, naming the columns that differ (to the role that stored it only),
 * or NULL if not refuse (the caller leaves the refusal to a unique index).
 */
static HeapTuple
same_call_or_refuse(Relation rel, const TaLayout *layout, HeapTuple stored,
					Datum *values, bool *nulls, bool event_id_given, const char *keyname,
					bool refuse)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *sv = palloc(sizeof(Datum) * layout->natts);
	bool	   *sn = palloc(sizeof(bool) * layout->natts);
	unsigned char a[TA_HASH_LEN],
				b[TA_HASH_LEN];
	int			by = ta_column(layout, TA_COL_RECORDED_BY);
	StringInfoData cols;

	heap_deform_tuple(stored, desc, sv, sn);
	if (!ta_same_text(sv[by], sn[by], values[by], nulls[by]) && !refuse)
		return NULL;
	if (!ta_same_text(sv[by], sn[by], values[by], nulls[by]))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("%s is already recorded for another call", keyname),
				 errdetail("The stored row was recorded by another role."),
				 errhint("A retry returns the stored row to the role that recorded it."),
				 errtable(rel)));
	compared_hash(rel, layout, sv, sn, -1, event_id_given, a);
	compared_hash(rel, layout, values, nulls, -1, event_id_given, b);
	if (memcmp(a, b, TA_HASH_LEN) == 0)
		return stored;
	if (!refuse)
		return NULL;

	initStringInfo(&cols);
	for (int h = 0; h < layout->nhashed; h++)
	{
		int			i = layout->hashed[h].index;

		if (assigned_by_server(rel, layout, i, event_id_given))
			continue;
		compared_hash(rel, layout, sv, sn, i, event_id_given, a);
		compared_hash(rel, layout, values, nulls, i, event_id_given, b);
		if (memcmp(a, b, TA_HASH_LEN) != 0)
			appendStringInfo(&cols, "%s%s", cols.len > 0 ? ", " : "", layout->hashed[h].name);
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("%s is already recorded for another call", keyname),
			 errdetail("The stored row differs in: %s.", cols.data),
			 errhint("A retry must repeat the call as it was first logged; a new call needs a tool_call_id of its own."),
			 errtable(rel)));
	return NULL;				/* keep the compiler quiet */
}

/* ---- the entry points ---- */

/*
 * For a new row of tool_calls (sanitized, summarized, not yet hashed):
 * the row stored first when this one is a retry of the same call, which
 * log_call() returns instead of storing it (from_log_call), or NULL: the
 * row is to be stored.  A key already taken by another call is refused;
 * so is any taken key in a plain INSERT, unless the row brings the stored
 * row's own event_id (insert.c then skips it, for ON CONFLICT DO NOTHING,
 * or event_id's unique index refuses it, as before 1.5).
 */
HeapTuple
ta_stored_retry(Relation rel, const TaLayout *layout, Datum *values, bool *nulls,
				bool event_id_given, bool from_log_call)
{
	CallKey		key;
	int			callid = layout->column[TA_COL_TOOL_CALL_ID];
	int			eventid = layout->column[TA_COL_EVENT_ID];
	Oid			indexoid;
	HeapTuple	stored;

	if (!layout->chained || callid < 0)
		return NULL;
	if (nulls[callid])
	{
		/* no call id: a log_call() retry may still bring a stored event_id */
		if (!from_log_call || !event_id_given)
			return NULL;
		stored = find_stored(rel, layout, ta_event_id_index(layout), F_UUID_EQ,
							 values[eventid], NULL, values, nulls);
		if (stored == NULL)
			return NULL;
		/* another call: event_id's unique index refuses it, as before 1.5 */
		return same_call_or_refuse(rel, layout, stored, values, nulls, true, "event_id", false);
	}
	/* missing, or another plain index under its name (layout.c) */
	indexoid = layout->tool_call_index;
	if (!OidIsValid(indexoid))
	{
		/* a table not yet at 1.5 (ALTER EXTENSION UPDATE not run): as before */
		if (layout->column[TA_COL_STARTED_AT] < 0)
			return NULL;
		ta_missing_relation("tool_calls_tool_call_id");
	}
	call_key(rel, layout, &key);
	lock_key(&key, values, nulls);
	stored = find_stored(rel, layout, indexoid, F_TEXTEQ, values[callid], &key, values, nulls);
	if (stored == NULL)
		return NULL;			/* stored from now on: the lock is kept */
	/* this row will not be stored: nobody needs to wait for it */
	release_key_lock();
	if (from_log_call)
		return same_call_or_refuse(rel, layout, stored, values, nulls, event_id_given,
								   "tool_call_id", true);
	if (event_id_given)
	{
		bool		isnull;
		Datum		theirs = heap_getattr(stored, eventid + 1, RelationGetDescr(rel), &isnull);

		if (!isnull && memcmp(DatumGetUUIDP(theirs)->data, DatumGetUUIDP(values[eventid])->data,
							  UUID_LEN) == 0)
			return NULL;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("tool_call_id is already recorded in this tenant and conversation"),
			 errdetail("A stored row of tool_audit.tool_calls has the same tenant_id, conversation_id, tool_call_id and call_phase."),
			 errhint("tool_audit.log_call() returns the stored row to a retry of the same call."),
			 errtable(rel)));
	return NULL;				/* keep the compiler quiet */
}

/*
 * Is this the row stored first, which ta_stored_retry() gave log_call() for
 * a retry?  A row read from the table has its place in it (t_self); a row
 * formed for insertion has none yet.
 */
bool
ta_is_stored_row(HeapTuple tuple)
{
	return ItemPointerIsValid(&tuple->t_self);
}
