/*-------------------------------------------------------------------------
 *
 * trail_mark.c
 *		tool_audit.trail_marks: which audit tables have committed a row.
 *
 * verify() reports an audit table that holds no rows while its id sequence
 * has handed out ids: a restore whose rows were refused leaves exactly that.
 * So does a new database whose every insert so far was rolled back, and the
 * server keeps nothing else that tells the two apart (a sequence is not
 * transactional, and a refused COPY leaves aborted tuples as a rollback
 * does).  This mark does: the insert trigger writes it in the transaction of
 * a row it stores, so it commits only with a row, and pg_dump keeps it with
 * the extension's configuration, so a refused restore still carries it.
 *
 * The first row a backend stores in a table looks for a mark (one index
 * probe, not an MVCC read: probe()); if there is none, it inserts one, as
 * the table's owner.  Restored rows (restore.c) mark their table too, so a
 * restore of a dump taken before 1.5, which has no marks, leaves them.  A mark
 * seen committed is remembered for the backend's life (with the table's OID:
 * a table created again is looked at again), so later rows cost a test.  A mark inserted by this transaction counts only once the
 * transaction commits, and not if the subtransaction that wrote it rolls
 * back (the subtransaction callback forgets it, and the next row writes
 * another).  The table has no unique index on purpose: a writer never waits
 * for another transaction's uncommitted mark (an autonomous worker waiting
 * for its caller would hang both), and two marks of one table say the same.
 *
 * Before ALTER EXTENSION UPDATE to 1.5 the table does not exist and nothing
 * is written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "trail_mark.h"

/*
 * A committed mark seen, per audit table (ta_audit_tables' order): the
 * table's OID then, so that a table created again (DROP and CREATE
 * EXTENSION in this session) is looked at again.
 */
static Oid	marked[TA_NAUDIT_TABLES];

/* the nesting level of the (sub)transaction that inserted a mark; 0: none */
static int	inserted_at[TA_NAUDIT_TABLES];
static Oid	inserted_relid[TA_NAUDIT_TABLES];

static void
trail_mark_xact_callback(XactEvent event, void *arg)
{
	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
	{
		if (event == XACT_EVENT_COMMIT && inserted_at[i] > 0)
			marked[i] = inserted_relid[i];
		/* a prepared transaction may still roll back: look again later */
		if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
			event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
			event == XACT_EVENT_PREPARE)
			inserted_at[i] = 0;
	}
}

static void
trail_mark_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
	{
		if (inserted_at[i] < level)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
			inserted_at[i] = 0;
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
			inserted_at[i] = level - 1;
	}
}

void
ta_trail_mark_init(void)
{
	RegisterXactCallback(trail_mark_xact_callback, NULL);
	RegisterSubXactCallback(trail_mark_subxact_callback, NULL);
}

/* 1 for a mark written by a committed transaction, 2 by this one */
static int
mark_kind(TupleTableSlot *slot)
{
	bool		should_free;
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
	int			kind = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tuple->t_data)) ? 2 : 1;

	if (should_free)
		heap_freetuple(tuple);
	return kind;
}

/*
 * The index to probe, open: trail_marks_table if it is still a B-tree whose
 * first column is table_name; NULL otherwise (the owner may drop a plain
 * index, and make another under its name).
 */
static Relation
marks_index(Relation rel)
{
	Oid			index = ta_schema_relid("trail_marks_table", true);
	Relation	irel;

	if (!OidIsValid(index))
		return NULL;
	if (!ta_index_on_column(index, RelationGetRelid(rel), "table_name"))
		return NULL;
	irel = index_open(index, AccessShareLock);
	if (OidIsValid(irel->rd_indcollation[0]) && RelationGetIndexPredicate(irel) == NIL)
		return irel;
	index_close(irel, AccessShareLock);
	return NULL;
}

/*
 * Is there a mark of the table: 1 committed, 2 only this transaction's, 0
 * none.  Read straight from the index with SnapshotSelf (committed rows and
 * this transaction's): not an MVCC read, so no predicate lock, and two
 * SERIALIZABLE transactions writing a table's first rows at once do not
 * fail on it (a read then an insert each would be a write skew).  The
 * index is a plain one, which the DDL guard lets the extension's owner drop
 * (as it lets any plain index go): without it, or with another index under
 * its name, the table (a few rows) is read whole the same way, rather than
 * every audit write failing.
 */
static int
probe(Oid marks, const char *name)
{
	Relation	rel = table_open(marks, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	attno = ta_attribute_index(desc, "table_name") + 1;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Relation	irel;
	int			found = 0;

	if (attno == InvalidAttrNumber)
		elog(ERROR, "tool_audit.trail_marks has no column \"table_name\"");
	irel = marks_index(rel);
	if (irel != NULL)
	{
		ScanKeyData key;
		IndexScanDesc scan;

		ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   irel->rd_indcollation[0], F_TEXTEQ, CStringGetTextDatum(name));
		scan = ta_index_scan(rel, irel, SnapshotSelf, &key, 1);
		while (found != 1 && index_getnext_slot(scan, ForwardScanDirection, slot))
			found = mark_kind(slot);
		index_endscan(scan);
		index_close(irel, AccessShareLock);
	}
	else
	{
		TableScanDesc scan = table_beginscan(rel, SnapshotSelf, 0, NULL);

		while (found != 1 && table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		d = slot_getattr(slot, attno, &isnull);

			if (!isnull && strcmp(TextDatumGetCString(d), name) == 0)
				found = mark_kind(slot);
		}
		table_endscan(scan);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return found;
}

/* A row of this audit table is being stored: mark the table if need be. */
void
ta_trail_mark(Relation rel)
{
	const char *name = RelationGetRelationName(rel);
	int			t = -1;
	Oid			marks;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			found;

	/* every row after the first: a test of the table's OID */
	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
		if (marked[i] == RelationGetRelid(rel) ||
			(inserted_at[i] > 0 && inserted_relid[i] == RelationGetRelid(rel)))
			return;
	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
		if (strcmp(name, ta_audit_tables[i]) == 0)
			t = i;
	if (t < 0)
		return;
	marks = ta_schema_relid("trail_marks", true);
	if (!OidIsValid(marks))
		return;					/* a schema older than 1.5 */

	found = probe(marks, name);
	if (found == 1)
		marked[t] = RelationGetRelid(rel);
	else if (found == 2)
	{
		/* written by this transaction already (a restore's COPY of the marks) */
		inserted_at[t] = GetCurrentTransactionNestLevel();
		inserted_relid[t] = RelationGetRelid(rel);
	}
	else
	{
		args[0] = CStringGetTextDatum(name);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ta_spi_exec_as_owner(ta_relation_owner(marks),
							 "INSERT INTO " TA_SCHEMA ".trail_marks (table_name) VALUES ($1)",
							 1, argtypes, args, NULL, false);
		SPI_finish();
		inserted_at[t] = GetCurrentTransactionNestLevel();
		inserted_relid[t] = RelationGetRelid(rel);
	}
}
