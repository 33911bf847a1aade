/*-------------------------------------------------------------------------
 *
 * track_write.c
 *		Writes one row of tool_audit.data_changes for the row-change trigger
 *		(track.c) without SPI.
 *
 * The insert goes through the executor's own single-row insert path, the
 * one logical replication's apply worker uses (ExecSimpleRelationInsert):
 * the table's BEFORE INSERT triggers (data_changes_before_insert: id, time,
 * recorder, transaction, sanitizing, hashing, chaining), its NOT NULL and
 * CHECK constraints, the heap insert, every index entry and any AFTER
 * triggers, as an INSERT statement would do them; what it skips is the
 * per-statement work of a prepared INSERT (executor start and end, a plan
 * tree, a projection), which cost about as much as the row itself, and
 * column DEFAULTs: the caller gives every column (the table's ids and times
 * are set by its trigger, not by defaults), so a column added with a
 * default it relies on must be filled in track.c too.
 *
 * Like SPI for a read-write statement, it advances the command counter and
 * takes a fresh snapshot first, and it runs as the table's owner (the caller
 * switches the user).  The owner bypasses the table's row-level security
 * (enabled, not forced), as it did through SPI; its INSERT privilege, which
 * an owner always has unless it revokes it from itself, is not checked.
 *
 * The CHECK constraints' expressions are read from the catalog text and
 * planned once per backend (again after a relcache invalidation of the
 * table), not once per row as a new executor state would.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/bitmapset.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "commands/trigger.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "track_write.h"

/* The planned CHECK expressions of data_changes, in the relcache's order. */
static struct
{
	Oid			relid;
	bool		valid;
	bool		registered;
	MemoryContext cxt;
	int			ncheck;
	Expr	  **checks;
	int			depth;			/* > 0 while a row is being written */
} dc_checks;

static void
track_write_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == dc_checks.relid)
		dc_checks.valid = false;
}

/* Rebuilds the planned CHECK expressions of the (open) table if needed. */
static bool
checks_for(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			ncheck = constr != NULL ? constr->num_check : 0;
	MemoryContext old;

	if (!dc_checks.registered)
	{
		CacheRegisterRelcacheCallback(track_write_inval, (Datum) 0);
		dc_checks.registered = true;
	}
	if (dc_checks.valid && dc_checks.relid == RelationGetRelid(rel) &&
		dc_checks.ncheck == ncheck)
		return true;
	/* a nested write (none expected) must not free what an outer one uses */
	if (dc_checks.depth > 1)
		return false;
	if (dc_checks.cxt != NULL)
		MemoryContextDelete(dc_checks.cxt);
	dc_checks.valid = false;
	dc_checks.cxt = AllocSetContextCreate(CacheMemoryContext, "tool_audit data_changes checks",
										  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(dc_checks.cxt);
	dc_checks.relid = RelationGetRelid(rel);
	dc_checks.ncheck = ncheck;
	dc_checks.checks = palloc0(sizeof(Expr *) * Max(ncheck, 1));
	/* as ExecRelCheck() does it, except ExecInitExpr() per row (below) */
	for (int i = 0; i < ncheck; i++)
		dc_checks.checks[i] = expression_planner(stringToNode(constr->check[i].ccbin));
	MemoryContextSwitchTo(old);
	dc_checks.valid = true;
	return true;
}

/*
 * Inserts one row (values and nulls by attribute index of data_changes,
 * natts of them) into data_changes, whose oid is given.  The caller runs
 * as the table's owner.
 */
void
ta_track_write_row(Oid relid, Datum *values, bool *nulls, int natts)
{
	EState	   *estate;
	ResultRelInfo *rri;
	RangeTblEntry *rte;
	Relation	rel;
	TupleTableSlot *slot;
	TupleDesc	desc;

	/* as SPI for a read-write statement: a new command, a fresh snapshot */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	if (rel->rd_rel->relkind != RELKIND_RELATION || desc->natts != natts)
		elog(ERROR, "tool_audit.data_changes is not the table tool_audit expects");

	estate = CreateExecutorState();
	estate->es_output_cid = GetCurrentCommandId(true);
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 180000
	ExecInitRangeTable(estate, list_make1(rte), NIL, bms_make_singleton(1));
#elif PG_VERSION_NUM >= 160000
	ExecInitRangeTable(estate, list_make1(rte), NIL);
#else
	ExecInitRangeTable(estate, list_make1(rte));
#endif
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	dc_checks.depth++;
	PG_TRY();
	{
		if (checks_for(rel) && dc_checks.ncheck > 0)
		{
			MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

			rri->ri_ConstraintExprs = palloc(sizeof(ExprState *) * dc_checks.ncheck);
			for (int i = 0; i < dc_checks.ncheck; i++)
				rri->ri_ConstraintExprs[i] = ExecInitExpr(dc_checks.checks[i], NULL);
			MemoryContextSwitchTo(old);
		}

		slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
		ExecClearTuple(slot);
		memcpy(slot->tts_values, values, sizeof(Datum) * natts);
		memcpy(slot->tts_isnull, nulls, sizeof(bool) * natts);
		ExecStoreVirtualTuple(slot);

		AfterTriggerBeginQuery();
		ExecSimpleRelationInsert(rri, estate, slot);
		AfterTriggerEndQuery(estate);
	}
	PG_FINALLY();
	{
		dc_checks.depth--;
	}
	PG_END_TRY();

	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	PopActiveSnapshot();
}
