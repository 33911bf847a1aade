/*-------------------------------------------------------------------------
 *
 * chain.c
 *		Chaining audit rows in commit order, at insert time.
 *
 * Every row of an audit table belongs to a chain (one per table and tenant;
 * the chain id is a hash of the two) and to a lane of that chain.  Within a
 * lane, rows carry chain_seq 1, 2, 3, ... and chain_hash = H(..., prev,
 * row_hash) over the previous row's chain_hash (doc/canonical-encoding.md).
 *
 * Locking protocol.  A backend writing to a chain takes a lane of it: an
 * exclusive advisory-type heavyweight lock (field4 TA_LOCKTAG_LANE, so it
 * cannot collide with pg_advisory_lock keys), tried without waiting on the
 * lane it had before, then on lanes 0, 1, 2, ... until one is free.  The
 * lane is locked at session level, so the backend keeps it across its
 * transactions, and at transaction level too in every transaction that
 * writes to it.  Hence
 *	- a lane has one writer at a time, and its order is the commit order of
 *	  that writer's transactions (a session commits one after another);
 *	- writers never wait for each other: a busy lane is skipped, and a chain
 *	  has as many lanes as it had concurrent writing sessions;
 *	- no deadlock is possible: nobody waits;
 *	- the head of a held lane is known without reading it: it is what this
 *	  backend last committed.  It is read from the chain position index only
 *	  when a lane is taken (with a fresh snapshot, not the transaction's: the
 *	  previous holder committed before it let go, and a REPEATABLE READ
 *	  snapshot taken before that would fork the chain), unless the previous
 *	  holder left it in shared memory as it gave the lane back (lane_hint.c,
 *	  preloaded only).
 * The unique index on (chain_id, chain_lane, chain_seq) makes a fork a
 * constraint violation, whatever goes wrong.
 *
 * Rolled back work leaves no hole: an aborted transaction's rows disappear
 * and its lanes' heads go back to the last commit; a rolled back
 * subtransaction takes them back to where it started.  Before PREPARE
 * TRANSACTION the session gives up the lanes the transaction wrote, which
 * stay locked by the prepared transaction until it is resolved.  If the
 * session's advisory locks are dropped (pg_advisory_unlock_all(), DISCARD
 * ALL), the next write notices and takes a lane again.  A session keeps at
 * most MAX_SESSION_LANES lanes between transactions, so that a backend
 * writing for many tenants does not fill the shared lock table.
 *
 * Lanes are given back.  Only the first KEPT_LANES lanes of a chain are kept
 * by a session between its transactions; a session that had to take a
 * higher one (all of those were held) lets go of it at the end of the
 * transaction, and reads the head again the next time.  So a chain has at
 * most KEPT_LANES lanes plus as many as transactions wrote to it at the same
 * time, not one per session that ever wrote while the others were connected
 * (500 idle pooled connections used to leave 500 lanes, each listed by every
 * digest: doc/performance.md).  Nothing else changes: a lane given back is
 * taken like any free lane (both locks, head read with a fresh snapshot
 * after its last writer committed), so order, no fork and no hole hold.
 *
 * Nor does a session keep lanes it would not come back to.  A kept lane
 * saves its session a head read only if the session writes to that chain
 * again before the lane is evicted; meanwhile every other writer of the
 * chain probes past it, and every commit walks it in the local lock table.
 * A session writing for many tenants at random (1,000 tenants, 48
 * sessions: about 3% of its writes find a lane it kept) pays that for
 * nothing, and its chains grow lanes.  So the session measures how often
 * the first write of a chain in a transaction finds the chain among those
 * it remembers (held, or given back: "would have been kept"), as a moving
 * average of its last writes, and while that is below REUSE_KEEP it gives
 * back at the end of the transaction every lane the transaction wrote; it
 * still remembers their chains, so it notices when it comes back to them
 * and keeps lanes again.  A new session starts by keeping.  A lane given
 * back this way is again taken like any free lane: only the cost moves.
 *
 * What a link and a chain id are is hash.c's; which rows take no position
 * (an event_id already taken) is insert.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "chain.h"
#include "hash.h"
#include "lane_hint.h"
#include "purge.h"

#define TA_LOCKTAG_LANE			0x5441	/* "TA" */
#define TA_LOCKTAG_LANE_XACT	0x5458
#define MAX_LANES				100000	/* past this many busy lanes, wait */
#define KEPT_LANES				16	/* lanes kept by a session between
									 * transactions: 0 .. KEPT_LANES - 1 */

/* ---- lanes ---- */

/*
 * The head a lane had before the first row a (sub)transaction wrote to it:
 * what a rollback of that subtransaction goes back to.  One entry per open
 * subtransaction level that wrote to the lane.
 */
typedef struct SavepointHead
{
	SubTransactionId subid;
	int64		seq;
	unsigned char link[TA_HASH_LEN];
} SavepointHead;

/*
 * What this backend knows of the lane it holds in a chain.  "committed" is
 * the lane's head as of this backend's last commit (exact: nobody else writes
 * to a lane we hold); "head" includes the current transaction's rows.
 */
typedef struct HeldLane
{
	TaChainHead head;			/* chain_id first: the hash key; lane: the one
								 * held, or the last one held */
	bool		held;			/* a lane is held for this chain */
	bool		in_xact;		/* written by the current transaction */
	bool		xact_locked;	/* the transaction's lock is known to be held */
	Oid			relid;			/* the table (for lane_hint.c) */
	uint64		hint_epoch;		/* lane_hint.c's epoch when the lane was taken */
	uint64		last_used;		/* for evicting the least recently used */
	int64		committed_seq;
	unsigned char committed_link[TA_HASH_LEN];
	int			nsub;
	int			maxsub;
	SavepointHead    *sub;
} HeldLane;

static HTAB *lanes = NULL;

/*
 * A lane whose session lock take_lane() took and lane_for_write() has not
 * yet recorded as held (lane -1: none): an error in between (the
 * transaction's lock, the head's read, a cancel) gives the lock back, or
 * the session would keep a lock it does not know it has, and every other
 * writer of the chain would probe past that lane for the session's life.
 */
static int64 unrecorded_chain = 0;
static int32 unrecorded_lane = -1;
static HeldLane **written = NULL;	/* lanes the current transaction wrote to */
static int	nwritten = 0;
static int	maxwritten = 0;
static uint64 use_counter = 0;

/*
 * How often (out of REUSE_ONE) the first write of a chain in a transaction
 * finds the chain among the remembered ones: moving average over about the
 * last REUSE_SPAN such writes.  Below REUSE_KEEP, lanes are not kept.
 */
#define REUSE_ONE				1024
#define REUSE_SPAN				8
#define REUSE_KEEP				(REUSE_ONE / 4)
static int	reuse = REUSE_ONE;

/*
 * Two locks per lane: the session's (field4 TA_LOCKTAG_LANE, held at session
 * level only) and the writing transaction's (TA_LOCKTAG_LANE_XACT, held at
 * transaction level only, so that it passes to a prepared transaction).  A
 * lane is free when both are.  Two chains whose folded ids collide share
 * lane locks: harmless, a lane of each is then locked together.
 */
static void
lane_tag(LOCKTAG *tag, int64 chain_id, int32 lane, bool session)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId,
						 (uint32) chain_id ^ (uint32) ((uint64) chain_id >> 32),
						 (uint32) lane, session ? TA_LOCKTAG_LANE : TA_LOCKTAG_LANE_XACT);
}

/*
 * Transaction-level locks are taken and released as the top transaction's:
 * taken under a portal's or a subtransaction's resource owner, they would go
 * with a closed cursor or a rolled back savepoint while the transaction
 * still has rows that depend on them.
 */
bool
ta_xact_lock(const LOCKTAG *tag, bool wait)
{
	ResourceOwner save = CurrentResourceOwner;
	LockAcquireResult r;

	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		r = LockAcquire(tag, ExclusiveLock, false, !wait);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	return r != LOCKACQUIRE_NOT_AVAIL;
}

void
ta_xact_unlock(const LOCKTAG *tag)
{
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = TopTransactionResourceOwner;
	(void) LockRelease(tag, ExclusiveLock, false);
	CurrentResourceOwner = save;
}

static bool
lock_lane(int64 chain_id, int32 lane, bool session, bool wait)
{
	LOCKTAG		tag;

	lane_tag(&tag, chain_id, lane, session);
	if (!session)
		return ta_xact_lock(&tag, wait);
	return LockAcquire(&tag, ExclusiveLock, true, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

static bool
session_holds(HeldLane *ln)
{
	LOCKTAG		tag;

	lane_tag(&tag, ln->head.chain_id, ln->head.lane, true);
	return LockHeldByMe(&tag, ExclusiveLock);
}

/*
 * Let go of the session's lock of a lane, if it still has it.  With a hint,
 * its head is left for the next taker (lane_hint.c): only between
 * transactions (the head is then the committed one) and only while the
 * session still holds the lane: one whose lock was dropped may be someone
 * else's already.
 */
static void
release_lane(HeldLane *ln, bool hint)
{
	LOCKTAG		tag;

	lane_tag(&tag, ln->head.chain_id, ln->head.lane, true);
	if (LockHeldByMe(&tag, ExclusiveLock))
	{
		if (hint)
			ta_lane_hint_put(ln->relid, &ln->head, ln->hint_epoch);
		(void) LockRelease(&tag, ExclusiveLock, true);
	}
	ln->held = false;
}

/*
 * A session holds at most MAX_SESSION_LANES lanes between transactions, so
 * that a backend serving many tenants does not fill the shared lock table:
 * beyond that, the least recently used lanes are given back, and the
 * chains it remembers go down to EVICT_TO at once (two passes every
 * MAX_SESSION_LANES - EVICT_TO new chains, not a scan per commit).
 */
#define MAX_SESSION_LANES 32
#define EVICT_TO		  16

/* A chain the session stops remembering: its lane given back if held. */
static void
forget_lane(HeldLane *ln)
{
	int64		chain_id = ln->head.chain_id;

	if (ln->held)
		release_lane(ln, true);
	if (ln->sub != NULL)
		pfree(ln->sub);
	(void) hash_search(lanes, &chain_id, HASH_REMOVE, NULL);
}

/*
 * Called at transaction end (end_of_xact()), once no lane is the
 * transaction's any more: keeps the EVICT_TO chains used last.  Two passes,
 * no allocation: the EVICT_TO newest last_used values (distinct: a
 * counter), then every chain used before them is forgotten.
 */
static void
evict_lanes(void)
{
	HASH_SEQ_STATUS status;
	HeldLane   *ln;
	uint64		newest[EVICT_TO];	/* ascending */
	int			n = 0;

	hash_seq_init(&status, lanes);
	while ((ln = hash_seq_search(&status)) != NULL)
	{
		int			i;

		if (n < EVICT_TO)
		{
			/* insert in place */
			for (i = n++; i > 0 && newest[i - 1] > ln->last_used; i--)
				newest[i] = newest[i - 1];
			newest[i] = ln->last_used;
		}
		else if (ln->last_used > newest[0])
		{
			/* the oldest of them goes: shift down to the place */
			for (i = 0; i + 1 < EVICT_TO && newest[i + 1] < ln->last_used; i++)
				newest[i] = newest[i + 1];
			newest[i] = ln->last_used;
		}
	}
	if (n < EVICT_TO)
		return;
	hash_seq_init(&status, lanes);
	while ((ln = hash_seq_search(&status)) != NULL)
		if (ln->last_used < newest[0])
			forget_lane(ln);	/* removing the entry just returned is allowed */
}

/*
 * A free lane of the chain, locked for the session and the transaction: the
 * last one first when it is one a session keeps, then 0, 1, 2, ...  (lowest
 * first, so that a chain does not grow lanes it does not need).  Nobody waits
 * for anybody.
 */
static int32
take_lane(int64 chain_id, int32 preferred)
{
	for (int32 i = -1; i < MAX_LANES; i++)
	{
		int32		l = i < 0 ? preferred : i;
		LOCKTAG		tag;

		CHECK_FOR_INTERRUPTS();
		if (i < 0 && preferred >= KEPT_LANES)
			continue;
		if (i >= 0 && l == preferred && preferred < KEPT_LANES)
			continue;
		if (!lock_lane(chain_id, l, true, false))
			continue;
		unrecorded_chain = chain_id;
		unrecorded_lane = l;
		if (lock_lane(chain_id, l, false, false))
			return l;
		/* a prepared transaction still holds it */
		lane_tag(&tag, chain_id, l, true);
		(void) LockRelease(&tag, ExclusiveLock, true);
		unrecorded_lane = -1;
	}
	/* absurdly many concurrent writers: queue on the usual lane */
	(void) lock_lane(chain_id, preferred, true, true);
	unrecorded_chain = chain_id;
	unrecorded_lane = preferred;
	(void) lock_lane(chain_id, preferred, false, true);
	return preferred;
}

/*
 * After an error between take_lane() and the lane's being recorded as held:
 * the session lock goes (the transaction's goes with the transaction).
 */
static void
release_unrecorded_lane(void)
{
	LOCKTAG		tag;

	if (unrecorded_lane < 0)
		return;
	lane_tag(&tag, unrecorded_chain, unrecorded_lane, true);
	unrecorded_lane = -1;
	if (LockHeldByMe(&tag, ExclusiveLock))
		(void) LockRelease(&tag, ExclusiveLock, true);
}

/*
 * The head of a lane as committed (or written by this transaction in an
 * earlier command): its last row, or the last purge anchor when that is
 * beyond it; seq 0 and a zero link for a lane that never had a row.
 */
static void
read_head(Relation rel, const TaLayout *layout, TaChainHead *h)
{
	Relation	irel = index_open(ta_chain_index(layout), AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(h->chain_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(h->lane));
	scan = ta_index_scan(rel, irel, snap, keys, 2);
	h->seq = 0;
	memset(h->link, 0, TA_HASH_LEN);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		seq_null,
					hash_null;
		Datum		seq = slot_getattr(slot, layout->column[TA_COL_CHAIN_SEQ] + 1, &seq_null);
		Datum		link = slot_getattr(slot, layout->column[TA_COL_CHAIN_HASH] + 1, &hash_null);

		if (seq_null || !ta_stored_hash(link, hash_null, h->link))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("head of chain " INT64_FORMAT " lane %d of tool_audit.%s is damaged",
							h->chain_id, h->lane, layout->name),
					 errhint("Run tool_audit.verify() to see what is wrong.")));
		h->seq = DatumGetInt64(seq);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	/*
	 * A purge that removed the lane's last rows left their link in an
	 * anchor: the lane goes on from there, neither forked nor restarted.
	 */
	{
		int64		aseq;
		unsigned char alink[TA_HASH_LEN];

		if (ta_anchor_head(layout->name, h->chain_id, h->lane, snap, &aseq, alink) &&
			aseq > h->seq)
		{
			h->seq = aseq;
			memcpy(h->link, alink, TA_HASH_LEN);
		}
	}
	UnregisterSnapshot(snap);
	/* the lock stays to the end of the transaction, which writes the table */
	index_close(irel, NoLock);
}

/*
 * The lane a row of this chain goes to, locked for the session and for the
 * transaction, with its head known.
 */
static HeldLane *
lane_for_write(Relation rel, const TaLayout *layout, int64 chain_id)
{
	HeldLane   *ln;
	bool		found;
	SubTransactionId cur = GetCurrentSubTransactionId();

	if (lanes == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(HeldLane);
		lanes = hash_create("tool_audit lanes", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	ln = hash_search(lanes, &chain_id, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) ln) + sizeof(int64), 0, sizeof(HeldLane) - sizeof(int64));
		ln->held = false;
	}
	if (!ln->in_xact)
		reuse += ((found ? REUSE_ONE : 0) - reuse) / REUSE_SPAN;
	ln->last_used = ++use_counter;

	if (!(ln->held && ln->in_xact && ln->xact_locked))
	{
		/*
		 * The session's advisory locks were dropped (pg_advisory_unlock_all,
		 * DISCARD ALL) since the lane was last written: someone else may have
		 * taken it.  (A lane this transaction wrote does not get here: it
		 * keeps it by the transaction's lock, in_xact and xact_locked being
		 * set and cleared together.)
		 */
		if (ln->held && !session_holds(ln))
		{
			Assert(!ln->in_xact);
			ln->held = false;
		}
		if (!ln->held)
		{
			TaChainHead head = ln->head;
			uint64		epoch = 0;

			/*
			 * Nothing is recorded before the head is known: on an error the
			 * entry stays as it was (not held), and the lock taken goes.
			 */
			PG_TRY();
			{
				head.lane = take_lane(chain_id, head.lane);
				/* the epoch before the head: a change after it voids our hint */
				epoch = ta_lane_hint_epoch();
				if (!ta_lane_hint_take(RelationGetRelid(rel), &head))
					read_head(rel, layout, &head);
			}
			PG_CATCH();
			{
				release_unrecorded_lane();
				PG_RE_THROW();
			}
			PG_END_TRY();
			unrecorded_lane = -1;
			ln->head = head;
			ln->hint_epoch = epoch;
			ln->relid = RelationGetRelid(rel);
			ln->held = true;	/* only with its head known */
			ln->committed_seq = ln->head.seq;
			memcpy(ln->committed_link, ln->head.link, TA_HASH_LEN);
			if (!ln->in_xact)
				ln->nsub = 0;
		}
		else if (!lock_lane(chain_id, ln->head.lane, false, false))
			elog(ERROR, "tool_audit lane %d of chain " INT64_FORMAT " is locked by another transaction",
				 ln->head.lane, chain_id);
		ln->xact_locked = true;
		if (!ln->in_xact)
		{
			ln->head.seq = ln->committed_seq;
			memcpy(ln->head.link, ln->committed_link, TA_HASH_LEN);
			if (nwritten == maxwritten)
			{
				maxwritten = Max(8, maxwritten * 2);
				written = written == NULL ?
					MemoryContextAlloc(TopMemoryContext, sizeof(HeldLane *) * maxwritten) :
					repalloc(written, sizeof(HeldLane *) * maxwritten);
			}
			written[nwritten++] = ln;
			ln->in_xact = true;
		}
	}

	/* remember where this subtransaction level started in the lane */
	if (ln->nsub == 0 || ln->sub[ln->nsub - 1].subid < cur)
	{
		if (ln->nsub == ln->maxsub)
		{
			ln->maxsub = Max(4, ln->maxsub * 2);
			ln->sub = ln->sub == NULL ?
				MemoryContextAlloc(TopMemoryContext, sizeof(SavepointHead) * ln->maxsub) :
				repalloc(ln->sub, sizeof(SavepointHead) * ln->maxsub);
		}
		ln->sub[ln->nsub].subid = cur;
		ln->sub[ln->nsub].seq = ln->head.seq;
		memcpy(ln->sub[ln->nsub].link, ln->head.link, TA_HASH_LEN);
		ln->nsub++;
	}
	return ln;
}

/* The next position of a lane: seq + 1, linked to the previous one. */
void
ta_chain_advance(TaChainHead *head, const unsigned char row_hash[TA_HASH_LEN])
{
	head->seq++;
	ta_link_hash(head->chain_id, head->lane, head->seq, head->link, row_hash, head->link);
}

/*
 * Give a row (its row hash computed) the next position of a lane of its
 * chain, taking the lane if this backend holds none: *placed is where it
 * goes and the link it stores.
 */
void
ta_chain_append(Relation rel, const TaLayout *layout, int64 chain_id,
				const unsigned char row_hash[TA_HASH_LEN], TaChainHead *placed)
{
	HeldLane   *ln = lane_for_write(rel, layout, chain_id);

	ta_chain_advance(&ln->head, row_hash);
	*placed = ln->head;
}

/* Write a row's hash and chain position into its columns. */
void
ta_chain_store(const TaLayout *layout, Datum *values, bool *nulls,
			   const unsigned char row_hash[TA_HASH_LEN], const TaChainHead *placed)
{
	const int  *col = layout->column;

	Assert(layout->chained);
	values[col[TA_COL_ROW_HASH]] = ta_hash_datum(row_hash);
	values[col[TA_COL_CHAIN_ID]] = Int64GetDatum(placed->chain_id);
	values[col[TA_COL_CHAIN_LANE]] = Int32GetDatum(placed->lane);
	values[col[TA_COL_CHAIN_SEQ]] = Int64GetDatum(placed->seq);
	values[col[TA_COL_CHAIN_HASH]] = ta_hash_datum(placed->link);
	for (int c = TA_FIRST_CHAIN_COLUMN; c < TA_NCOLUMNS; c++)
		nulls[col[c]] = false;
}


/*
 * Transaction end: a commit makes the transaction's heads the committed
 * ones; an abort takes them back.  Before PREPARE, the session lets go of
 * the lanes the transaction wrote: their transaction-level locks pass to the
 * prepared transaction and keep them closed until COMMIT/ROLLBACK PREPARED.
 */
static void
end_of_xact(bool commit)
{
	for (int i = 0; i < nwritten; i++)
	{
		HeldLane   *ln = written[i];

		if (commit)
		{
			ln->committed_seq = ln->head.seq;
			memcpy(ln->committed_link, ln->head.link, TA_HASH_LEN);
		}
		else
		{
			ln->head.seq = ln->committed_seq;
			memcpy(ln->head.link, ln->committed_link, TA_HASH_LEN);

			/*
			 * No hint for this lane from now on (epoch 0 never matches): the
			 * abort may be the unique index refusing a head that was wrong
			 * (a hint taken, a row forged after it), and a hint put back
			 * would refuse every later taker's write in turn.  The next
			 * taker reads the index.
			 */
			ln->hint_epoch = 0;
		}
		if (ln->held && (ln->head.lane >= KEPT_LANES || reuse < REUSE_KEEP))
			release_lane(ln, true); /* see "Lanes are given back" */
		ln->in_xact = false;
		ln->xact_locked = false;
		ln->nsub = 0;
	}
	nwritten = 0;
	if (lanes != NULL && hash_get_num_entries(lanes) > MAX_SESSION_LANES)
		evict_lanes();
}

static void
chain_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			end_of_xact(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			end_of_xact(false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			for (int i = 0; i < nwritten; i++)
			{
				HeldLane   *ln = written[i];

				if (ln->held)
					release_lane(ln, false);	/* not committed yet: no hint */
				ln->in_xact = false;
				ln->xact_locked = false;
				ln->nsub = 0;
			}
			nwritten = 0;
			break;
		default:
			break;
	}
}

/*
 * A rolled back subtransaction removed its rows: the lanes it wrote go back
 * to where they were when it started (its rows, and its children's, are the
 * last ones of each lane).  A committed one hands its start positions to its
 * parent.  The transaction-level locks belong to the top transaction and stay.
 */
static void
chain_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{

	for (int i = 0; i < nwritten; i++)
	{
		HeldLane   *ln = written[i];

		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			while (ln->nsub > 0 && ln->sub[ln->nsub - 1].subid >= mySubid)
			{
				ln->nsub--;
				ln->head.seq = ln->sub[ln->nsub].seq;
				memcpy(ln->head.link, ln->sub[ln->nsub].link, TA_HASH_LEN);
			}
		}
		else if (event == SUBXACT_EVENT_COMMIT_SUB &&
				 ln->nsub > 0 && ln->sub[ln->nsub - 1].subid == mySubid)
		{
			if (ln->nsub >= 2 && ln->sub[ln->nsub - 2].subid == parentSubid)
				ln->nsub--;
			else
				ln->sub[ln->nsub - 1].subid = parentSubid;
		}
	}
}

void
ta_chain_init(void)
{
	RegisterXactCallback(chain_xact_callback, NULL);
	RegisterSubXactCallback(chain_subxact_callback, NULL);
}
