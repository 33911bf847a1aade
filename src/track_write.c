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
 * The table, its indexes, the executor state and the result relation (with
 * its index info, the partial indexes' predicates and the CHECK expressions
 * ready) are kept for the rest of the transaction after its first change
 * row, not opened, built and closed for every row: a transaction that
 * changes ten tracked rows opens data_changes once.  They are opened under
 * the transaction's resource owner (not the statement's, which ends first)
 * and closed before commit or PREPARE by a transaction callback; an abort
 * lets the resource owner release them (no leak warning on abort) and the
 * memory goes with the transaction's.  A relcache invalidation of the table
 * (an ALTER, a new or dropped index or trigger: each invalidates the table)
 * closes them at the next row, which opens them again.  The lock taken
 * with them (RowExclusiveLock, which every change row takes anyway) is held
 * by the transaction, so a subtransaction rolled back after writing a change
 * row leaves it held to the transaction's end, as a lock taken before the
 * savepoint would be.  A write while another is in progress (none expected:
 * the insert trigger changes no tracked table) goes the per-row way.  DDL on
 * data_changes refuses a table the session holds open, so guard.c closes it
 * before each DDL statement (ddl_command_start) and, preloaded, before each
 * utility statement; not preloaded, a REINDEX or CLUSTER of data_changes
 * (no event trigger) in a transaction that wrote a change row fails with
 * "being used by active queries" (doc/changes.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/bitmapset.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "commands/trigger.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
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
	List	   *pred_oids;		/* partial indexes of the table seen so far */
	List	   *preds;			/* ... their planned predicates, in that order */
	/* the same, ready to evaluate, for every transaction (reusable()) */
	bool		states_ok;		/* every CHECK expression is reusable */
	ExprState **check_states;
	List	   *pred_states;	/* in the order of pred_oids; NULL: not reusable */
	int			depth;			/* > 0 while a row is being written */
} dc_checks;

/* data_changes as kept open for the rest of the transaction */
static struct
{
	bool		open;
	bool		stale;			/* invalidated since opened: reopen */
	bool		callback;		/* the transaction callback is registered */
	SubTransactionId subid;		/* the (sub)transaction that opened it */
	Oid			relid;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} dc_open;

static void
track_write_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == dc_checks.relid)
		dc_checks.valid = false;
	if (dc_open.open && (relid == InvalidOid || relid == dc_open.relid))
		dc_open.stale = true;
}

/*
 * Whether a planned CHECK expression or index predicate may be made ready
 * once per backend and evaluated in every later transaction's executor
 * state (init_checks()): only nodes whose ready state holds nothing of the
 * executor state it was first evaluated in (no per-query cache, no row
 * type cache, no whole-row reference, no hashed IN list), calling only
 * built-in functions, whose lookup cannot go stale.  data_changes' own
 * CHECKs (table_name <> '', operation IN (...)) and partial index
 * predicates (IS NOT NULL, = 'TRUNCATE') are such; anything else is made
 * ready per transaction.
 */
static bool reusable_walker(Node *node, void *context);

static bool
reusable(Node *node, void *context)
{
	Oid			fn = InvalidOid;

	if (node == NULL)
		return true;
	switch (nodeTag(node))
	{
		case T_Var:
			/*
			 * Not a whole-row reference: its first evaluation keeps a row
			 * descriptor in the executor state's memory (ExecEvalWholeRowVar),
			 * which a later transaction would read freed.  Nor a system
			 * column.
			 */
			if (((Var *) node)->varattno <= 0)
				return false;
			break;
		case T_Const:
		case T_BoolExpr:
		case T_RelabelType:
		case T_BooleanTest:
		case T_List:
			break;
		case T_NullTest:
			if (((NullTest *) node)->argisrow)
				return false;
			break;
		case T_OpExpr:
			fn = ((OpExpr *) node)->opfuncid;
			break;
		case T_FuncExpr:
			fn = ((FuncExpr *) node)->funcid;
			break;
		case T_ScalarArrayOpExpr:
			if (OidIsValid(((ScalarArrayOpExpr *) node)->hashfuncid))
				return false;
			fn = ((ScalarArrayOpExpr *) node)->opfuncid;
			break;
		default:
			return false;
	}
	if ((IsA(node, OpExpr) || IsA(node, FuncExpr) || IsA(node, ScalarArrayOpExpr)) &&
		(!OidIsValid(fn) || fn >= FirstGenbkiObjectId))
		return false;
	return !expression_tree_walker(node, reusable_walker, context);
}

/* expression_tree_walker's callback: true stops (not reusable) */
static bool
reusable_walker(Node *node, void *context)
{
	return !reusable(node, context);
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
	dc_checks.pred_oids = NIL;
	dc_checks.preds = NIL;
	dc_checks.pred_states = NIL;
	dc_checks.check_states = palloc0(sizeof(ExprState *) * Max(ncheck, 1));
	dc_checks.states_ok = true;
	/* as ExecRelCheck() does it, except ExecInitExpr() per row (below) */
	for (int i = 0; i < ncheck; i++)
	{
		dc_checks.checks[i] = expression_planner(stringToNode(constr->check[i].ccbin));
		if (dc_checks.states_ok && reusable((Node *) dc_checks.checks[i], NULL))
			dc_checks.check_states[i] = ExecInitExpr(dc_checks.checks[i], NULL);
		else
			dc_checks.states_ok = false;
	}
	MemoryContextSwitchTo(old);
	dc_checks.valid = true;
	return true;
}

/* The executor state and result relation of one insert into the open table. */
static void
build_state(Relation rel, EState **estate_out, ResultRelInfo **rri_out, TupleTableSlot **slot_out)
{
	EState	   *estate;
	ResultRelInfo *rri;
	RangeTblEntry *rte;
	Oid			relid = RelationGetRelid(rel);

	estate = CreateExecutorState();
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
	*estate_out = estate;
	*rri_out = rri;
	*slot_out = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
}

/*
 * The planned predicate of a partial index of the table, planned once per
 * backend (with the CHECK expressions, and dropped with them) rather than
 * by ExecInsertIndexTuples() for each new executor state; its position in
 * dc_checks.preds (and pred_states: its state ready for every transaction,
 * or NULL when it is not reusable()).
 */
static int
planned_predicate(Relation index, List *predicate)
{
	MemoryContext old;
	List	   *planned;
	ExprState  *state = NULL;

	for (int i = 0; i < list_length(dc_checks.pred_oids); i++)
		if (list_nth_oid(dc_checks.pred_oids, i) == RelationGetRelid(index))
			return i;
	old = MemoryContextSwitchTo(dc_checks.cxt);
	planned = (List *) expression_planner((Expr *) copyObject(predicate));
	if (reusable((Node *) planned, NULL))
		state = ExecInitQual(planned, NULL);
	dc_checks.pred_oids = lappend_oid(dc_checks.pred_oids, RelationGetRelid(index));
	dc_checks.preds = lappend(dc_checks.preds, planned);
	dc_checks.pred_states = lappend(dc_checks.pred_states, state);
	MemoryContextSwitchTo(old);
	return list_length(dc_checks.preds) - 1;
}

/*
 * The CHECK expressions of the result relation and the predicates of its
 * partial indexes, ready to evaluate.  For the table kept open (kept), the
 * states made ready once per backend where they are reusable() (an
 * evaluation never overlaps another: a nested write goes the per-row way,
 * with states of its own); else made ready in the executor state.
 */
static void
init_checks(Relation rel, EState *estate, ResultRelInfo *rri, bool kept)
{
	MemoryContext old;

	if (!checks_for(rel))
		return;
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	if (dc_checks.ncheck > 0)
	{
		if (kept && dc_checks.states_ok)
			rri->ri_ConstraintExprs = dc_checks.check_states;
		else
		{
			rri->ri_ConstraintExprs = palloc(sizeof(ExprState *) * dc_checks.ncheck);
			for (int i = 0; i < dc_checks.ncheck; i++)
				rri->ri_ConstraintExprs[i] = ExecInitExpr(dc_checks.checks[i], NULL);
		}
	}
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *ii = rri->ri_IndexRelationInfo[i];
		int			p;

		if (ii->ii_Predicate == NIL || ii->ii_PredicateState != NULL)
			continue;
		p = planned_predicate(rri->ri_IndexRelationDescs[i], ii->ii_Predicate);
		if (kept && list_nth(dc_checks.pred_states, p) != NULL)
			ii->ii_PredicateState = (ExprState *) list_nth(dc_checks.pred_states, p);
		else
			/* as ExecPrepareQual() makes it, from the predicate planned once */
			ii->ii_PredicateState = ExecInitQual((List *) list_nth(dc_checks.preds, p), NULL);
	}
	MemoryContextSwitchTo(old);
}

/* The insert itself, into the result relation, with its triggers. */
static void
insert_slot(EState *estate, ResultRelInfo *rri, TupleTableSlot *slot,
			Datum *values, bool *nulls, int natts)
{
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * natts);
	ExecStoreVirtualTuple(slot);

	AfterTriggerBeginQuery();
	ExecSimpleRelationInsert(rri, estate, slot);
	AfterTriggerEndQuery(estate);
}

static void
check_table(Relation rel, int natts)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION || RelationGetDescr(rel)->natts != natts)
		elog(ERROR, "tool_audit.data_changes is not the table tool_audit expects");
}

/*
 * ExecCloseIndices() without its lock releases: the transaction keeps the
 * indexes' RowExclusiveLock to its end, as it keeps the table's, and the
 * commit drops every lock at once (7 lock releases a transaction saved).
 * Nothing can be waiting for these locks that a release at pre-commit
 * would let through any sooner than the commit does.
 */
static void
close_indices(ResultRelInfo *rri)
{
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		if (rri->ri_IndexRelationDescs[i] == NULL)
			continue;
#if PG_VERSION_NUM >= 170000
		index_insert_cleanup(rri->ri_IndexRelationDescs[i], rri->ri_IndexRelationInfo[i]);
#endif
		index_close(rri->ri_IndexRelationDescs[i], NoLock);
		rri->ri_IndexRelationDescs[i] = NULL;
	}
}

/* Closes the kept table (under the transaction's resource owner). */
static void
close_kept(void)
{
	ResourceOwner save = CurrentResourceOwner;

	if (!dc_open.open)
		return;
	dc_open.open = false;
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		close_indices(dc_open.rri);
		ExecResetTupleTable(dc_open.estate->es_tupleTable, false);
		FreeExecutorState(dc_open.estate);
		table_close(dc_open.rel, NoLock);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
}

static void
track_write_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			close_kept();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the resource owner releases them, the memory goes with the transaction */
			dc_open.open = false;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			/*
			 * Opened again after PRE_COMMIT (a callback that runs after this
			 * one wrote a change row): the resource owner releases it, and
			 * the state, in the transaction's memory, must not outlive it.
			 */
			dc_open.open = false;
			break;
		default:
			break;
	}
}

/*
 * A rolled back subtransaction that opened the table (again: after a CREATE
 * INDEX of data_changes in it, say) closes it before the relation cache
 * forgets what the subtransaction created: the kept index of a rolled back
 * CREATE INDEX would otherwise stay referenced ("cannot remove relcache
 * entry ... because it has nonzero refcount").  One opened before the
 * subtransaction stays open.
 */
static void
track_write_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && dc_open.open && dc_open.subid >= mySubid &&
		dc_checks.depth == 0)
		close_kept();
}

/*
 * Closes the kept table before a utility statement (guard.c: its event
 * trigger on ddl_command_start and, preloaded, its ProcessUtility hook): an
 * ALTER TABLE, CREATE INDEX or DROP of data_changes refuses a table this
 * session holds open ("being used by active queries").  The next change row
 * opens it again.  Not while a row is being written (nothing runs DDL then).
 */
void
ta_track_write_release(void)
{
	if (dc_open.open && dc_checks.depth == 0 && IsTransactionState())
		close_kept();
}

/* Opens the table for the rest of the transaction (under its resource owner). */
static void
open_kept(Oid relid, int natts)
{
	ResourceOwner save = CurrentResourceOwner;
	MemoryContext old;

	if (!dc_open.callback)
	{
		RegisterXactCallback(track_write_xact_callback, NULL);
		RegisterSubXactCallback(track_write_subxact_callback, NULL);
		dc_open.callback = true;
	}
	CurrentResourceOwner = TopTransactionResourceOwner;
	old = MemoryContextSwitchTo(TopTransactionContext);
	PG_TRY();
	{
		Relation	rel = table_open(relid, RowExclusiveLock);

		/* not kept if it is not the table expected (a savepoint may catch that) */
		if (rel->rd_rel->relkind != RELKIND_RELATION || RelationGetDescr(rel)->natts != natts)
		{
			table_close(rel, NoLock);
			elog(ERROR, "tool_audit.data_changes is not the table tool_audit expects");
		}
		dc_open.rel = rel;
		dc_open.relid = relid;
		dc_open.subid = GetCurrentSubTransactionId();
		dc_open.stale = false;
		dc_open.estate = NULL;
		dc_open.open = true;	/* closed by close_kept() from here on */
		build_state(rel, &dc_open.estate, &dc_open.rri, &dc_open.slot);
		dc_checks.depth++;
		PG_TRY();
		{
			init_checks(rel, dc_open.estate, dc_open.rri, true);
		}
		PG_FINALLY();
		{
			dc_checks.depth--;
		}
		PG_END_TRY();
	}
	PG_CATCH();
	{
		CurrentResourceOwner = save;
		MemoryContextSwitchTo(old);
		/*
		 * half built: the abort releases what was opened (caught by a
		 * savepoint: the transaction's end, with a leak warning)
		 */
		dc_open.open = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	CurrentResourceOwner = save;
	MemoryContextSwitchTo(old);
}

/* One row the per-row way: a write nested in another. */
static void
write_row_once(Oid relid, Datum *values, bool *nulls, int natts)
{
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	Relation	rel = table_open(relid, RowExclusiveLock);

	check_table(rel, natts);
	build_state(rel, &estate, &rri, &slot);
	dc_checks.depth++;
	PG_TRY();
	{
		init_checks(rel, estate, rri, false);
		insert_slot(estate, rri, slot, values, nulls, natts);
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
}

/*
 * Inserts one row (values and nulls by attribute index of data_changes,
 * natts of them) into data_changes, whose oid is given.  The caller runs
 * as the table's owner.
 */
void
ta_track_write_row(Oid relid, Datum *values, bool *nulls, int natts)
{
	/* as SPI for a read-write statement: a new command, a fresh snapshot */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	if (dc_checks.depth > 0)
		write_row_once(relid, values, nulls, natts);
	else
	{
		/* the command counter processed this transaction's own invalidations */
		if (dc_open.open && (dc_open.stale || dc_open.relid != relid))
			close_kept();
		if (!dc_open.open)
			open_kept(relid, natts);
		check_table(dc_open.rel, natts);
		dc_checks.depth++;
		PG_TRY();
		{
			insert_slot(dc_open.estate, dc_open.rri, dc_open.slot, values, nulls, natts);
		}
		PG_FINALLY();
		{
			dc_checks.depth--;
		}
		PG_END_TRY();
		/* the row's per-tuple memory (its trigger's work) and the slot's copy */
		ExecClearTuple(dc_open.slot);
		ResetPerTupleExprContext(dc_open.estate);
	}
	PopActiveSnapshot();
}
