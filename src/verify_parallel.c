/*-------------------------------------------------------------------------
 *
 * verify_parallel.c
 *		The walk of a large audit table by parallel workers: verify(),
 *		verify_digest() and verify_since() use more than one core.
 *
 * Chains are independent: a lane's links are checked in order, but nothing
 * carries from one chain to the next.  So the table's chain ids are cut
 * into parts (four a process, of equal width between the lowest and the
 * highest chain id, which are hashes), plus one part for the rows with no
 * chain id, and each part is walked whole by one process with the very
 * walk of verify.c, restricted to its chain ids.  The parts are handed out
 * through an atomic counter in the dynamic shared memory of a parallel
 * context (access/parallel.h, as parallel CREATE INDEX does); the leader
 * takes parts too, so the walk is complete whatever number of workers was
 * launched, none included.  Workers inherit the leader's transaction,
 * snapshot, user and security context; they are read-only: what a run
 * writes (its alert, its audit.read event) is written by the leader after
 * the parallel context is gone.
 *
 * A worker sends its problems to the leader through a queue of its own
 * (shm_mq); the leader keeps them with its own in a store per part (on
 * disk past a share of work_mem, as the function's result) and emits them
 * part by part, each in the order found: chain order, the serial walk's
 * (see emit()).  A worker's error is raised in the leader.  The heads of a
 * digest each process reached are marked in the shared copy of the run's
 * state and merged by the leader, which reports the heads none reached.
 *
 * Small tables are walked serially: below tool_audit.verify_parallel_min_pages,
 * with tool_audit.verify_parallel_workers = 0, or where parallel mode
 * cannot be entered (already in it, or a single-user server); with no
 * dynamic shared memory to be had, the leader walks every part.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/parallel.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker_internals.h"
#include "storage/bufmgr.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/tuplestore.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "verify_parallel.h"

/* keys in the parallel context's table of contents (parallel.c's are 0xFFFFFFFFFFFF....) */
#define VP_KEY_SHARED			UINT64CONST(0x5441000000000001)
#define VP_KEY_STATE			UINT64CONST(0x5441000000000002)
#define VP_KEY_QUEUES			UINT64CONST(0x5441000000000003)
#define VP_QUEUE_SIZE			((Size) 65536)
#define VP_PARTS_PER_PROCESS	4

int			ta_verify_parallel_workers = 2;
int			ta_verify_parallel_min_pages = 1024;

/* The parts of the table, in the dynamic shared memory. */
typedef struct VpShared
{
	pg_atomic_uint32 next;		/* the next part to walk */
	pg_atomic_uint32 worker_parts;	/* parts the workers walked */
	int32		nparts;
	TaChainRange parts[FLEXIBLE_ARRAY_MEMBER];
} VpShared;

/* A problem, as a worker sends it; its text follows. */
typedef struct VpMessage
{
	int32		part;
	int32		lane;
	int64		chain_id;
	int64		position;
	int64		row_id;
	bool		has_chain;
	bool		tail;			/* after the part's last row */
} VpMessage;

typedef struct VpLeader
{
	int			nqueues;
	shm_mq_handle **mqh;
	bool	   *done;
	Tuplestorestate **stores;	/* each part's problems, in the order found */
	TupleDesc	desc;			/* of VpMessage */
	int32		part;			/* the part the leader walks */
	int32		nparts;
	MemoryContext cxt;
	MemoryContext tmpcxt;
} VpLeader;

typedef struct VpSender
{
	shm_mq_handle *mqh;
	int32		part;
} VpSender;

void
ta_verify_parallel_init(void)
{
	DefineCustomIntVariable("tool_audit.verify_parallel_workers",
							"Parallel workers verify(), verify_digest() and verify_since() may use for each large audit table, besides the process running them.",
							"0 walks every table in the process running the function. Capped by max_parallel_workers; each worker walks whole chains.",
							&ta_verify_parallel_workers,
							2, 0, MAX_PARALLEL_WORKER_LIMIT,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("tool_audit.verify_parallel_min_pages",
							"Smallest audit table, in pages, that the verifiers walk with parallel workers.",
							"Smaller tables are walked by the process running the function alone.",
							&ta_verify_parallel_min_pages,
							1024, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_BLOCKS,
							NULL, NULL, NULL);
}

/* The workers to walk the table with; 0: serially. */
int
ta_verify_parallel_plan(Relation rel)
{
	int			n = Min(ta_verify_parallel_workers, max_parallel_workers);

	if (n <= 0 || IsInParallelMode() || !IsUnderPostmaster)
		return 0;
	if (RelationGetNumberOfBlocks(rel) < (BlockNumber) ta_verify_parallel_min_pages)
		return 0;
	return n;
}

/* The lowest and highest chain id of the table's rows (false: none has one). */
static bool
chain_bounds(Relation rel, Relation irel, int64 *min, int64 *max)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	AttrNumber	attno = irel->rd_index->indkey.values[0];
	ScanKeyData key;
	IndexScanDesc scan;
	bool		found = false;
	bool		isnull;

	ScanKeyEntryInitialize(&key, SK_ISNULL | SK_SEARCHNOTNULL, 1, InvalidStrategy,
						   InvalidOid, InvalidOid, InvalidOid, (Datum) 0);
	scan = ta_index_scan(rel, irel, GetActiveSnapshot(), &key, 1);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		*min = DatumGetInt64(slot_getattr(slot, attno, &isnull));
		index_rescan(scan, &key, 1, NULL, 0);
		found = index_getnext_slot(scan, BackwardScanDirection, slot);
		*max = found ? DatumGetInt64(slot_getattr(slot, attno, &isnull)) : *min;
		found = true;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * The parts: nchained of equal width over [min, max] (the first from the
 * lowest chain id there is, the last to the highest), then the rows with
 * no chain id.
 */
static TaChainRange *
plan_parts(Relation rel, Relation irel, int nchained, int *nparts)
{
	TaChainRange *parts;
	int64		min = 0,
				max = 0;
	uint64		span;

	/*
	 * As many parts whatever the chain ids (some then empty): the number
	 * says nothing of how many chains, of other tenants, there are.
	 */
	(void) chain_bounds(rel, irel, &min, &max);
	span = (uint64) max - (uint64) min;
	parts = palloc0(sizeof(TaChainRange) * (nchained + 1));
	for (int k = 0; k < nchained; k++)
	{
		/* part k: from bound k to bound k + 1 (offset k/nchained of the span), less one */
		uint64		off = span / nchained * k + (span % nchained) * k / nchained;
		uint64		next = span / nchained * (k + 1) + (span % nchained) * (k + 1) / nchained;
		int64		lo = k == 0 ? PG_INT64_MIN : (int64) ((uint64) min + off);

		parts[k].lo = lo;
		if (k == nchained - 1)
			parts[k].hi = PG_INT64_MAX;
		else if ((int64) ((uint64) min + next) > lo)
			parts[k].hi = (int64) ((uint64) min + next) - 1;
		else
		{
			/* empty */
			parts[k].lo = 1;
			parts[k].hi = 0;
		}
	}
	parts[nchained].nulls = true;
	*nparts = nchained + 1;
	return parts;
}

/*
 * A problem into its part's store: on disk past a share of work_mem, as the
 * serial walk's result, so that a table tampered with everywhere does not
 * hold its problems in memory.
 */
static void
collect(VpLeader *ld, const VpMessage *m, const char *problem)
{
	MemoryContext old = MemoryContextSwitchTo(ld->cxt);
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	if (ld->stores[m->part] == NULL)
		ld->stores[m->part] = tuplestore_begin_heap(false, false, Max(work_mem / ld->nparts, 64));
	MemoryContextSwitchTo(ld->tmpcxt);
	values[0] = BoolGetDatum(m->tail);
	values[1] = BoolGetDatum(m->has_chain);
	values[2] = Int64GetDatum(m->chain_id);
	values[3] = Int32GetDatum(m->lane);
	values[4] = Int64GetDatum(m->position);
	values[5] = Int64GetDatum(m->row_id);
	values[6] = CStringGetTextDatum(problem);
	tuplestore_putvalues(ld->stores[m->part], ld->desc, values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(ld->tmpcxt);
}

static TupleDesc
message_desc(void)
{
	TupleDesc	desc = CreateTemplateTupleDesc(7);

	TupleDescInitEntry(desc, 1, "tail", BOOLOID, -1, 0);
	TupleDescInitEntry(desc, 2, "has_chain", BOOLOID, -1, 0);
	TupleDescInitEntry(desc, 3, "chain_id", INT8OID, -1, 0);
	TupleDescInitEntry(desc, 4, "lane", INT4OID, -1, 0);
	TupleDescInitEntry(desc, 5, "position", INT8OID, -1, 0);
	TupleDescInitEntry(desc, 6, "row_id", INT8OID, -1, 0);
	TupleDescInitEntry(desc, 7, "problem", TEXTOID, -1, 0);
	return desc;
}

static void
fill_message(VpMessage *m, int part, bool tail, bool has_chain, int64 chain_id, int32 lane,
			 int64 position, int64 row_id)
{
	memset(m, 0, sizeof(*m));
	m->part = part;
	m->has_chain = has_chain;
	m->tail = tail;
	m->chain_id = chain_id;
	m->lane = lane;
	m->position = position;
	m->row_id = row_id;
}

/* The leader's own problems, of the part it walks. */
static void
leader_sink(void *arg, bool tail, bool has_chain, int64 chain_id, int32 lane,
			int64 position, int64 row_id, const char *problem)
{
	VpLeader   *ld = arg;
	VpMessage	m;

	fill_message(&m, ld->part, tail, has_chain, chain_id, lane, position, row_id);
	collect(ld, &m, problem);
}

/* A worker's problems go to the leader, in the order found. */
static void
worker_sink(void *arg, bool tail, bool has_chain, int64 chain_id, int32 lane,
			int64 position, int64 row_id, const char *problem)
{
	VpSender   *snd = arg;
	Size		len = strlen(problem) + 1;
	char	   *buf = palloc(sizeof(VpMessage) + len);
	VpMessage	m;

	fill_message(&m, snd->part, tail, has_chain, chain_id, lane, position, row_id);
	memcpy(buf, &m, sizeof(m));
	memcpy(buf + sizeof(m), problem, len);
	if (shm_mq_send(snd->mqh, sizeof(m) + len, buf, false, true) != SHM_MQ_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not send a verification problem to the leader")));
	pfree(buf);
}

/*
 * What the workers sent so far; with wait, everything, until every worker
 * has detached from its queue (done, or failed: its error is then raised
 * by CHECK_FOR_INTERRUPTS() or WaitForParallelWorkersToFinish()).
 */
static void
drain(VpLeader *ld, bool wait)
{
	for (;;)
	{
		bool		open = false;
		bool		got = false;

		for (int i = 0; i < ld->nqueues; i++)
		{
			Size		n;
			void	   *data;
			shm_mq_result res;

			if (ld->done[i])
				continue;
			res = shm_mq_receive(ld->mqh[i], &n, &data, true);
			if (res == SHM_MQ_SUCCESS)
			{
				VpMessage	m;

				if (n <= sizeof(m) || ((char *) data)[n - 1] != '\0')
					elog(ERROR, "malformed verification problem from a parallel worker");
				memcpy(&m, data, sizeof(m));
				if (m.part < 0 || m.part >= ld->nparts)
					elog(ERROR, "malformed verification problem from a parallel worker");
				collect(ld, &m, (char *) data + sizeof(m));
				got = true;
				open = true;
			}
			else if (res == SHM_MQ_DETACHED)
				ld->done[i] = true;
			else
				open = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (!open || (!wait && !got))
			return;
		if (!got)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

/*
 * The problems of the parts, in the serial walk's order: part by part, each
 * in chain order; but the serial walk meets the rows with no chain id (last
 * in the index, the last part) before it closes the last lane it read, so
 * what the parts found after that lane's last row (a digest head past its
 * end, lanes of purge anchors alone) comes after them, while a part past
 * that lane reports its rows in no lane (a chain id, no lane or position)
 * as it meets them, before.  Three passes: before the rows with no chain
 * id, those, after.  (Left: a part's tail comes before the next part's
 * leading rows in no lane, which the serial walk reports first.)
 */
static void
emit(void *walk, const char *table, VpLeader *ld, const TaChainRange *parts)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(ld->desc, &TTSOpsMinimalTuple);
	int			last = -1;

	for (int k = 0; k < ld->nparts; k++)
		if (!parts[k].nulls && parts[k].lanes)
			last = k;
	for (int pass = 0; pass < 3; pass++)
		for (int k = 0; k < ld->nparts; k++)
		{
			if (ld->stores[k] == NULL)
				continue;
			tuplestore_rescan(ld->stores[k]);
			while (tuplestore_gettupleslot(ld->stores[k], true, false, slot))
			{
				MemoryContext old;
				bool		tail;
				int			group;

				CHECK_FOR_INTERRUPTS();
				slot_getallattrs(slot);
				tail = DatumGetBool(slot->tts_values[0]);
				/* a part past the last lane has no lane of its own to close */
				group = parts[k].nulls ? 1 : (k >= last && tail) ? 2 : 0;
				if (group != pass)
					continue;
				old = MemoryContextSwitchTo(ld->tmpcxt);
				ta_verify_report(walk, table, DatumGetBool(slot->tts_values[1]),
								 DatumGetInt64(slot->tts_values[2]), DatumGetInt32(slot->tts_values[3]),
								 DatumGetInt64(slot->tts_values[4]), DatumGetInt64(slot->tts_values[5]),
								 TextDatumGetCString(slot->tts_values[6]));
				MemoryContextSwitchTo(old);
				MemoryContextReset(ld->tmpcxt);
			}
		}
	ExecDropSingleTupleTableSlot(slot);
	for (int k = 0; k < ld->nparts; k++)
		if (ld->stores[k] != NULL)
			tuplestore_end(ld->stores[k]);
}

/*
 * The walk of the table (verify.c's walk state, serialized: state) by
 * nworkers parallel workers at most and this process.
 */
void
ta_verify_parallel_walk(void *walk, const char *table, Relation rel, Relation irel,
						int nworkers, const char *state, Size len)
{
	ParallelContext *pcxt;
	VpShared   *sh;
	char	   *shared_state;
	char	   *queues;
	VpLeader	ld;
	TaChainRange *parts;
	int			nparts;
	int			launched;
	uint32		p;
	void	   *lw;

	parts = plan_parts(rel, irel, VP_PARTS_PER_PROCESS * (nworkers + 1), &nparts);
	memset(&ld, 0, sizeof(ld));
	ld.cxt = CurrentMemoryContext;
	ld.tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "tool_audit parallel verify problem",
									  ALLOCSET_SMALL_SIZES);
	ld.nparts = nparts;
	ld.stores = palloc0(sizeof(Tuplestorestate *) * nparts);
	ld.desc = message_desc();

	EnterParallelMode();
	pcxt = CreateParallelContext("tool_audit", "ta_verify_parallel_main", nworkers);
	shm_toc_estimate_chunk(&pcxt->estimator,
						   add_size(offsetof(VpShared, parts), mul_size(sizeof(TaChainRange), nparts)));
	shm_toc_estimate_chunk(&pcxt->estimator, len);
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(VP_QUEUE_SIZE, Max(nworkers, 1)));
	shm_toc_estimate_keys(&pcxt->estimator, 3);
	InitializeParallelDSM(pcxt);

	sh = shm_toc_allocate(pcxt->toc, add_size(offsetof(VpShared, parts),
											  mul_size(sizeof(TaChainRange), nparts)));
	pg_atomic_init_u32(&sh->next, 0);
	pg_atomic_init_u32(&sh->worker_parts, 0);
	sh->nparts = nparts;
	memcpy(sh->parts, parts, sizeof(TaChainRange) * nparts);
	shm_toc_insert(pcxt->toc, VP_KEY_SHARED, sh);
	shared_state = shm_toc_allocate(pcxt->toc, len);
	memcpy(shared_state, state, len);
	shm_toc_insert(pcxt->toc, VP_KEY_STATE, shared_state);
	queues = shm_toc_allocate(pcxt->toc, mul_size(VP_QUEUE_SIZE, Max(nworkers, 1)));
	shm_toc_insert(pcxt->toc, VP_KEY_QUEUES, queues);

	/* one queue a worker (none when no dynamic shared memory was had) */
	ld.nqueues = pcxt->nworkers;
	ld.mqh = palloc0(sizeof(shm_mq_handle *) * Max(ld.nqueues, 1));
	ld.done = palloc0(sizeof(bool) * Max(ld.nqueues, 1));
	for (int i = 0; i < ld.nqueues; i++)
	{
		shm_mq	   *mq = shm_mq_create(queues + i * VP_QUEUE_SIZE, VP_QUEUE_SIZE);

		shm_mq_set_receiver(mq, MyProc);
		ld.mqh[i] = shm_mq_attach(mq, pcxt->seg, NULL);
	}
	LaunchParallelWorkers(pcxt);
	launched = pcxt->nworkers_launched;
	for (int i = 0; i < ld.nqueues; i++)
	{
		if (i < launched)
			shm_mq_set_handle(ld.mqh[i], pcxt->worker[i].bgwhandle);
		else
		{
			shm_mq_detach(ld.mqh[i]);
			ld.done[i] = true;
		}
	}

	/* the leader walks parts too, from its own copy of the state */
	lw = ta_verify_restore(state, leader_sink, &ld);
	while ((p = pg_atomic_fetch_add_u32(&sh->next, 1)) < (uint32) nparts)
	{
		ld.part = (int32) p;
		sh->parts[p].lanes = ta_verify_walk_part(lw, &sh->parts[p]);
		drain(&ld, false);
	}
	ta_verify_save_reached(lw, shared_state);
	drain(&ld, true);
	WaitForParallelWorkersToFinish(pcxt);
	ta_verify_merge_reached(walk, shared_state);
	ereport(DEBUG1,
			(errmsg_internal("tool_audit verification of %s: %d parts, %d parallel workers launched",
							 table, nparts, launched)));
	ereport(DEBUG2,
			(errmsg_internal("tool_audit verification of %s: parallel workers walked %u of %d parts",
							 table, pg_atomic_read_u32(&sh->worker_parts), nparts)));
	for (int k = 0; k < nparts; k++)
		parts[k].lanes = sh->parts[k].lanes;
	DestroyParallelContext(pcxt);
	ExitParallelMode();

	emit(walk, table, &ld, parts);
	MemoryContextDelete(ld.tmpcxt);
}

/* A parallel worker: parts until none is left. */
void
ta_verify_parallel_main(dsm_segment *seg, shm_toc *toc)
{
	VpShared   *sh = shm_toc_lookup(toc, VP_KEY_SHARED, false);
	char	   *state = shm_toc_lookup(toc, VP_KEY_STATE, false);
	char	   *queues = shm_toc_lookup(toc, VP_KEY_QUEUES, false);
	shm_mq	   *mq = (shm_mq *) (queues + ParallelWorkerNumber * VP_QUEUE_SIZE);
	VpSender	snd;
	void	   *w;
	uint32		p;
	uint32		walked = 0;

	shm_mq_set_sender(mq, MyProc);
	snd.mqh = shm_mq_attach(mq, seg, NULL);
	snd.part = -1;
	w = ta_verify_restore(state, worker_sink, &snd);
	while ((p = pg_atomic_fetch_add_u32(&sh->next, 1)) < (uint32) sh->nparts)
	{
		snd.part = (int32) p;
		sh->parts[p].lanes = ta_verify_walk_part(w, &sh->parts[p]);
		walked++;
	}
	ta_verify_save_reached(w, state);
	pg_atomic_fetch_add_u32(&sh->worker_parts, walked);
	shm_mq_detach(snd.mqh);
}
