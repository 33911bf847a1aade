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
 *	  snapshot taken before that would fork the chain), and after a rolled
 *	  back subtransaction.
 * The unique index on (chain_id, chain_lane, chain_seq) makes a fork a
 * constraint violation, whatever goes wrong.
 *
 * Rolled back work leaves no hole: an aborted transaction's rows disappear
 * and its lanes' heads go back to the last commit; a rolled back
 * subtransaction makes the heads be read again.  Before PREPARE TRANSACTION
 * the session gives up the lanes the transaction wrote, which stay locked
 * by the prepared transaction until it is resolved.  If the session's
 * advisory locks are dropped (pg_advisory_unlock_all(), DISCARD ALL), the
 * next write notices and takes a lane again.  A session keeps at most
 * MAX_SESSION_LANES lanes between transactions, so that a backend writing
 * for many tenants does not fill the shared lock table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "tool_audit.h"

#define TA_LOCKTAG_LANE			0x5441	/* "TA" */
#define TA_LOCKTAG_LANE_XACT	0x5458
#define TA_LOCKTAG_EVENT_ID		0x5445
#define LINK_DOMAIN				"tool_audit link 1"
#define CHAIN_DOMAIN			"tool_audit chain 1"
#define MAX_LANES				100000	/* past this many busy lanes, wait */

/* ---- links ---- */

void
ta_link_hash(int64 chain_id, int32 lane, int64 seq,
			 const unsigned char prev[TA_HASH_LEN],
			 const unsigned char row_hash[TA_HASH_LEN],
			 unsigned char out[TA_HASH_LEN])
{
	unsigned char buf[sizeof(LINK_DOMAIN) + 8 + 4 + 8 + 2 * TA_HASH_LEN];
	unsigned char *p = buf;
	uint64		c = (uint64) chain_id;
	uint32		l = (uint32) lane;
	uint64		s = (uint64) seq;

	memcpy(p, LINK_DOMAIN, sizeof(LINK_DOMAIN));	/* with its 0 byte */
	p += sizeof(LINK_DOMAIN);
	for (int i = 7; i >= 0; i--)
		*p++ = (unsigned char) (c >> (8 * i));
	for (int i = 3; i >= 0; i--)
		*p++ = (unsigned char) (l >> (8 * i));
	for (int i = 7; i >= 0; i--)
		*p++ = (unsigned char) (s >> (8 * i));
	memcpy(p, prev, TA_HASH_LEN);
	p += TA_HASH_LEN;
	memcpy(p, row_hash, TA_HASH_LEN);
	p += TA_HASH_LEN;
	ta_sha256(buf, p - buf, out);
}

static void
check_hash_arg(bytea *b, const char *name)
{
	if (VARSIZE_ANY_EXHDR(b) != TA_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a SHA-256 hash of %d bytes", name, TA_HASH_LEN),
				 errdetail("The value given has %d bytes.", (int) VARSIZE_ANY_EXHDR(b)),
				 errhint("The first row of a lane links to 32 zero bytes.")));
}

/*
 * tool_audit.chain_link(chain_id bigint, chain_lane integer, chain_seq bigint,
 *                       previous bytea, row_hash bytea) RETURNS bytea
 *
 * The chain_hash a row at this position must store, given the chain_hash of
 * the row before it in its lane (32 zero bytes for position 1) and its row
 * hash: section 4 of doc/canonical-encoding.md, for reports and auditors.
 */
PG_FUNCTION_INFO_V1(chain_link);
Datum
chain_link(PG_FUNCTION_ARGS)
{
	bytea	   *prev = PG_GETARG_BYTEA_PP(3);
	bytea	   *row_hash = PG_GETARG_BYTEA_PP(4);
	bytea	   *result;

	check_hash_arg(prev, "previous");
	check_hash_arg(row_hash, "row_hash");
	result = palloc(VARHDRSZ + TA_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + TA_HASH_LEN);
	ta_link_hash(PG_GETARG_INT64(0), PG_GETARG_INT32(1), PG_GETARG_INT64(2),
				 (const unsigned char *) VARDATA_ANY(prev),
				 (const unsigned char *) VARDATA_ANY(row_hash),
				 (unsigned char *) VARDATA(result));
	PG_RETURN_BYTEA_P(result);
}

/*
 * An index scan started with its keys (index_beginscan's arguments changed
 * in PostgreSQL 18).
 */
IndexScanDesc
ta_index_scan(Relation rel, Relation irel, Snapshot snap, ScanKey keys, int nkeys)
{
	IndexScanDesc scan;

#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(rel, irel, snap, NULL, nkeys, 0);
#else
	scan = index_beginscan(rel, irel, snap, nkeys, 0);
#endif
	index_rescan(scan, keys, nkeys, NULL, 0);
	return scan;
}

/* ---- chain ids ---- */

/*
 * A chain is named by its table and tenant (spec section 4): derived, not
 * registered, so the first writer of a new tenant waits for nobody and a
 * verifier can tell a row that was moved to another chain.
 */
int64
ta_chain_id(const char *table, const char *tenant, int tenant_len)
{
	StringInfoData buf;
	unsigned char h[TA_HASH_LEN];
	uint64		id = 0;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, CHAIN_DOMAIN, sizeof(CHAIN_DOMAIN));	/* with its 0 */
	appendStringInfoChar(&buf, (char) strlen(table));
	appendStringInfoString(&buf, table);
	if (tenant == NULL)
		appendStringInfoChar(&buf, 0);
	else
	{
		appendStringInfoChar(&buf, 1);
		ta_append_utf8(&buf, tenant, tenant_len);
	}
	ta_sha256(buf.data, buf.len, h);
	pfree(buf.data);
	for (int i = 0; i < 8; i++)
		id = (id << 8) | h[i];
	return (int64) id;
}

/*
 * The chain of a row: the last (table, tenant) seen is remembered, since a
 * backend mostly writes for one tenant at a time.
 */
static Oid	last_relid = InvalidOid;
static bool last_tenant_null;
static char *last_tenant = NULL;
static int	last_tenant_len = 0;
static int64 last_chain_id;

int64
ta_row_chain_id(Relation rel, text *tenant)
{
	const char *t = tenant ? VARDATA_ANY(tenant) : NULL;
	int			len = tenant ? VARSIZE_ANY_EXHDR(tenant) : 0;

	if (last_relid == RelationGetRelid(rel) && last_tenant_null == (tenant == NULL) &&
		(tenant == NULL || (len == last_tenant_len && memcmp(t, last_tenant, len) == 0)))
		return last_chain_id;
	last_chain_id = ta_chain_id(RelationGetRelationName(rel), t, len);
	last_relid = RelationGetRelid(rel);
	last_tenant_null = (tenant == NULL);
	if (last_tenant != NULL)
		pfree(last_tenant);
	last_tenant = tenant ? MemoryContextAlloc(TopMemoryContext, len + 1) : NULL;
	if (tenant)
		memcpy(last_tenant, t, len);
	last_tenant_len = len;
	return last_chain_id;
}

/* ---- lanes ---- */

/*
 * The head a lane had before the first row a (sub)transaction wrote to it:
 * what a rollback of that subtransaction goes back to.  One entry per open
 * subtransaction level that wrote to the lane.
 */
typedef struct SubHead
{
	SubTransactionId subid;
	int64		seq;
	unsigned char link[TA_HASH_LEN];
} SubHead;

/*
 * What this backend knows of the lane it holds in a chain.  "committed" is
 * the lane's head as of this backend's last commit (exact: nobody else writes
 * to a lane we hold); "seq"/"link" include the current transaction's rows.
 */
typedef struct Lane
{
	int64		chain_id;		/* hash key */
	bool		held;			/* a lane is held for this chain */
	int32		lane;			/* the lane held, or the last one held */
	bool		in_xact;		/* written by the current transaction */
	bool		xact_locked;	/* the transaction's lock is known to be held */
	bool		session_lost;	/* the session lock went (pg_advisory_unlock_all) */
	uint64		last_used;		/* for evicting the least recently used */
	int64		committed_seq;
	unsigned char committed_link[TA_HASH_LEN];
	int64		seq;
	unsigned char link[TA_HASH_LEN];
	int			nsub;
	int			maxsub;
	SubHead    *sub;
} Lane;

static HTAB *lanes = NULL;
static Lane **written = NULL;	/* lanes the current transaction wrote to */
static int	nwritten = 0;
static int	maxwritten = 0;
static uint64 use_counter = 0;

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
static bool
xact_lock(const LOCKTAG *tag, bool wait)
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

static void
xact_unlock(const LOCKTAG *tag)
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
		return xact_lock(&tag, wait);
	return LockAcquire(&tag, ExclusiveLock, true, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

static bool
session_holds(Lane *ln)
{
	LOCKTAG		tag;

	lane_tag(&tag, ln->chain_id, ln->lane, true);
	return LockHeldByMe(&tag, ExclusiveLock);
}

static bool
xact_holds(Lane *ln)
{
	LOCKTAG		tag;

	lane_tag(&tag, ln->chain_id, ln->lane, false);
	return LockHeldByMe(&tag, ExclusiveLock);
}

/* Let go of the session's lock of a lane, if it still has it. */
static void
release_lane(Lane *ln)
{
	LOCKTAG		tag;

	lane_tag(&tag, ln->chain_id, ln->lane, true);
	if (LockHeldByMe(&tag, ExclusiveLock))
		(void) LockRelease(&tag, ExclusiveLock, true);
	ln->held = false;
}

/*
 * A session holds at most MAX_SESSION_LANES lanes between transactions, so
 * that a backend serving many tenants does not fill the shared lock table:
 * beyond that, the least recently used lanes are given back.
 */
#define MAX_SESSION_LANES 32

static void
evict_lanes(void)
{
	HASH_SEQ_STATUS status;
	Lane	   *ln,
			   *oldest;

	while (hash_get_num_entries(lanes) > MAX_SESSION_LANES)
	{
		oldest = NULL;
		hash_seq_init(&status, lanes);
		while ((ln = hash_seq_search(&status)) != NULL)
			if (!ln->in_xact && (oldest == NULL || ln->last_used < oldest->last_used))
				oldest = ln;
		if (oldest == NULL)
			return;				/* all written by this transaction */
		if (oldest->held)
			release_lane(oldest);
		if (oldest->sub != NULL)
			pfree(oldest->sub);
		(void) hash_search(lanes, &oldest->chain_id, HASH_REMOVE, NULL);
	}
}

/*
 * A free lane of the chain, locked for the session and the transaction: the
 * last one first, then 0, 1, 2, ...  Nobody waits for anybody.
 */
static int32
take_lane(int64 chain_id, int32 preferred)
{
	for (int32 i = -1; i < MAX_LANES; i++)
	{
		int32		l = i < 0 ? preferred : i;
		LOCKTAG		tag;

		CHECK_FOR_INTERRUPTS();
		if (i >= 0 && l == preferred)
			continue;
		if (!lock_lane(chain_id, l, true, false))
			continue;
		if (lock_lane(chain_id, l, false, false))
			return l;
		/* a prepared transaction still holds it */
		lane_tag(&tag, chain_id, l, true);
		(void) LockRelease(&tag, ExclusiveLock, true);
	}
	/* absurdly many concurrent writers: queue on the usual lane */
	(void) lock_lane(chain_id, preferred, true, true);
	(void) lock_lane(chain_id, preferred, false, true);
	return preferred;
}

/*
 * The chain position index of an audit table, looked up each time (only
 * when a lane is taken): REINDEX CONCURRENTLY gives it a new oid.
 */
static Oid
chain_index_oid(Relation rel)
{
	char	   *name = psprintf("%s_chain_position", RelationGetRelationName(rel));
	Oid			indexid = get_relname_relid(name, RelationGetNamespace(rel));

	if (!OidIsValid(indexid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index tool_audit.%s is missing", name)));
	return indexid;
}

/*
 * The head of a lane as committed (or written by this transaction in an
 * earlier command): seq 0 and a zero link for an empty lane.
 */
static void
read_head(Relation rel, Lane *h)
{
	TaChainColumns cols;
	Relation	irel = index_open(chain_index_oid(rel), AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	ta_chain_columns(rel, &cols);
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
		Datum		seq = slot_getattr(slot, cols.chain_seq + 1, &seq_null);
		Datum		link = slot_getattr(slot, cols.chain_hash + 1, &hash_null);
		bytea	   *b = hash_null ? NULL : DatumGetByteaPP(link);

		if (seq_null || b == NULL || VARSIZE_ANY_EXHDR(b) != TA_HASH_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("head of chain " INT64_FORMAT " lane %d of tool_audit.%s is damaged",
							h->chain_id, h->lane, RelationGetRelationName(rel)),
					 errhint("Run tool_audit.verify() to see what is wrong.")));
		h->seq = DatumGetInt64(seq);
		memcpy(h->link, VARDATA_ANY(b), TA_HASH_LEN);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	index_close(irel, AccessShareLock);
}

/*
 * The lane a row of this chain goes to, locked for the session and for the
 * transaction, with its head known.
 */
static Lane *
lane_for_write(Relation rel, int64 chain_id)
{
	Lane	   *ln;
	bool		found;
	SubTransactionId cur = GetCurrentSubTransactionId();

	if (lanes == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(Lane);
		lanes = hash_create("tool_audit lanes", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	ln = hash_search(lanes, &chain_id, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) ln) + sizeof(int64), 0, sizeof(Lane) - sizeof(int64));
		ln->held = false;
	}
	ln->last_used = ++use_counter;

	if (!(ln->held && ln->in_xact && ln->xact_locked))
	{
		/*
		 * The session's advisory locks were dropped (pg_advisory_unlock_all,
		 * DISCARD ALL): the lane is still ours while this transaction holds
		 * its own lock on it (its rows are there), else someone else may
		 * have taken it.
		 */
		if (ln->held && !session_holds(ln))
		{
			if (ln->in_xact && xact_holds(ln))
				ln->session_lost = true;
			else
				ln->held = false;
		}
		if (!ln->held)
		{
			ln->lane = take_lane(chain_id, ln->lane);
			ln->session_lost = false;
			read_head(rel, ln);
			ln->held = true;	/* only with its head known */
			ln->committed_seq = ln->seq;
			memcpy(ln->committed_link, ln->link, TA_HASH_LEN);
			if (!ln->in_xact)
				ln->nsub = 0;
		}
		else if (!lock_lane(chain_id, ln->lane, false, false))
			elog(ERROR, "tool_audit lane %d of chain " INT64_FORMAT " is locked by another transaction",
				 ln->lane, chain_id);
		ln->xact_locked = true;
		if (!ln->in_xact)
		{
			ln->seq = ln->committed_seq;
			memcpy(ln->link, ln->committed_link, TA_HASH_LEN);
			if (nwritten == maxwritten)
			{
				maxwritten = Max(8, maxwritten * 2);
				written = written == NULL ?
					MemoryContextAlloc(TopMemoryContext, sizeof(Lane *) * maxwritten) :
					repalloc(written, sizeof(Lane *) * maxwritten);
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
				MemoryContextAlloc(TopMemoryContext, sizeof(SubHead) * ln->maxsub) :
				repalloc(ln->sub, sizeof(SubHead) * ln->maxsub);
		}
		ln->sub[ln->nsub].subid = cur;
		ln->sub[ln->nsub].seq = ln->seq;
		memcpy(ln->sub[ln->nsub].link, ln->link, TA_HASH_LEN);
		ln->nsub++;
	}
	return ln;
}

/* the event_id lock of the last row that brought one, if still held */
static LOCKTAG event_id_lock;
static bool event_id_locked = false;

static void
release_event_id_lock(void)
{
	if (event_id_locked && IsTransactionState())
		xact_unlock(&event_id_lock);
	event_id_locked = false;
}

/*
 * Will this row be stored?  An INSERT ... ON CONFLICT DO NOTHING skips a row
 * whose event_id is taken *after* the BEFORE trigger gave it a position, which
 * would leave a hole in the chain.  So when the caller brings an event_id,
 * the trigger first serializes on it (a transaction-level lock on its value)
 * and looks for a live row holding it, its own transaction's rows included;
 * an insert still in progress elsewhere is waited for, as a unique index
 * would.  A row whose event_id is taken gets no chain position: it is either
 * skipped (DO NOTHING) or refused by the unique index (23505), never stored.
 */
bool
ta_event_id_taken(Relation rel, Datum event_id)
{
	Oid			indexid;
	Relation	irel;
	SnapshotData dirty;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	LOCKTAG		tag;
	const unsigned char *u = DatumGetUUIDP(event_id)->data;
	bool		taken;

	/*
	 * The previous row's lock is not needed any more: that row is in the
	 * unique index now, where the probe below (with a dirty snapshot) sees
	 * it, and waits for its transaction.  So a transaction holds one such
	 * lock at a time, however many rows it inserts.
	 */
	release_event_id_lock();
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 ((uint32) u[0] << 24) | (u[1] << 16) | (u[2] << 8) | u[3],
						 ((uint32) u[12] << 24) | (u[13] << 16) | (u[14] << 8) | u[15],
						 TA_LOCKTAG_EVENT_ID);
	(void) xact_lock(&tag, true);
	event_id_lock = tag;
	event_id_locked = true;

	indexid = get_relname_relid(psprintf("%s_event_id_key", RelationGetRelationName(rel)),
								RelationGetNamespace(rel));
	if (!OidIsValid(indexid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index tool_audit.%s_event_id_key is missing",
						RelationGetRelationName(rel))));
	irel = index_open(indexid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	for (;;)
	{
		TransactionId xwait;

		InitDirtySnapshot(dirty);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, event_id);
		scan = ta_index_scan(rel, irel, &dirty, &key, 1);
		taken = index_getnext_slot(scan, ForwardScanDirection, slot);
		xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		index_endscan(scan);
		if (!taken || !TransactionIdIsValid(xwait))
			break;
		/* another transaction is inserting or deleting it: wait, look again */
		XactLockTableWait(xwait, rel, NULL, XLTW_InsertIndex);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, AccessShareLock);
	/* a row that will not be stored needs no lock: nobody waits for it */
	if (taken)
		release_event_id_lock();
	return taken;
}

/*
 * While the upgrade script chains the rows 1.0 recorded, it holds a lock on
 * the table that keeps writers out: heads are kept here, every chain in lane
 * 0, with no lane locks (a table with many tenants would need one lock per
 * tenant in one transaction).
 */
static HTAB *seal_heads = NULL;

static Lane *
seal_head(int64 chain_id)
{
	bool		found;
	Lane	   *h = hash_search(seal_heads, &chain_id, HASH_ENTER, &found);

	if (!found)
	{
		memset(((char *) h) + sizeof(int64), 0, sizeof(Lane) - sizeof(int64));
		h->lane = 0;
	}
	return h;
}

static bytea *
hash_bytea(const unsigned char hash[TA_HASH_LEN])
{
	bytea	   *b = palloc(VARHDRSZ + TA_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + TA_HASH_LEN);
	memcpy(VARDATA(b), hash, TA_HASH_LEN);
	return b;
}

/*
 * Hash a row about to be inserted and give it its place in a chain: fills
 * row_hash, chain_id, chain_lane, chain_seq and chain_hash in values/nulls
 * (heap_deform_tuple's layout for the relation).
 */
void
ta_chain_row(Relation rel, Datum *values, bool *nulls)
{
	TaChainColumns cols;
	unsigned char row_hash[TA_HASH_LEN];
	unsigned char link[TA_HASH_LEN];
	text	   *tenant;
	Lane	   *h;

	ta_chain_columns(rel, &cols);
	ta_row_hash(rel, values, nulls, row_hash);
	tenant = nulls[cols.tenant_id] ? NULL : DatumGetTextPP(values[cols.tenant_id]);
	if (seal_heads != NULL)
		h = seal_head(ta_row_chain_id(rel, tenant));
	else
		h = lane_for_write(rel, ta_row_chain_id(rel, tenant));
	ta_link_hash(h->chain_id, h->lane, h->seq + 1, h->link, row_hash, link);
	h->seq++;
	memcpy(h->link, link, TA_HASH_LEN);

	values[cols.row_hash] = PointerGetDatum(hash_bytea(row_hash));
	nulls[cols.row_hash] = false;
	values[cols.chain_id] = Int64GetDatum(h->chain_id);
	nulls[cols.chain_id] = false;
	values[cols.chain_lane] = Int32GetDatum(h->lane);
	nulls[cols.chain_lane] = false;
	values[cols.chain_seq] = Int64GetDatum(h->seq);
	nulls[cols.chain_seq] = false;
	values[cols.chain_hash] = PointerGetDatum(hash_bytea(link));
	nulls[cols.chain_hash] = false;
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
	event_id_locked = false;	/* transaction locks are gone */
	for (int i = 0; i < nwritten; i++)
	{
		Lane	   *ln = written[i];

		if (commit)
		{
			ln->committed_seq = ln->seq;
			memcpy(ln->committed_link, ln->link, TA_HASH_LEN);
		}
		else
		{
			ln->seq = ln->committed_seq;
			memcpy(ln->link, ln->committed_link, TA_HASH_LEN);
		}
		if (ln->session_lost)
			ln->held = false;
		ln->in_xact = false;
		ln->xact_locked = false;
		ln->session_lost = false;
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
			event_id_locked = false;	/* passes to the prepared transaction */
			for (int i = 0; i < nwritten; i++)
			{
				Lane	   *ln = written[i];

				if (ln->held)
					release_lane(ln);
				ln->in_xact = false;
				ln->xact_locked = false;
				ln->session_lost = false;
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
		Lane	   *ln = written[i];

		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			while (ln->nsub > 0 && ln->sub[ln->nsub - 1].subid >= mySubid)
			{
				ln->nsub--;
				ln->seq = ln->sub[ln->nsub].seq;
				memcpy(ln->link, ln->sub[ln->nsub].link, TA_HASH_LEN);
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

/*
 * tool_audit.chain_existing_rows(regclass) RETURNS bigint
 *
 * For the 1.0 -> 1.1 upgrade script only: hashes and chains the rows
 * recorded before chains existed, in id order (their commit order is not
 * known any more), and returns how many.  The function is dropped again by
 * the same script.
 */
PG_FUNCTION_INFO_V1(chain_existing_rows);
Datum
chain_existing_rows(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	int		   *spi_col;
	SPIPlanPtr	update;
	Portal		portal;
	volatile int64 count = 0;
	char	   *table;
	Oid			argtypes[6] = {BYTEAOID, INT8OID, INT4OID, INT8OID, BYTEAOID, INT8OID};
	MemoryContext rowcxt;

	if (!ta_in_own_script() || !ta_is_protected_relation(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("chain_existing_rows() is for tool_audit's upgrade script only")));

	rel = table_open(relid, ShareRowExclusiveLock);
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(Lane);
		ctl.hcxt = CurrentMemoryContext;
		seal_heads = hash_create("tool_audit chain heads", 1024, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	desc = RelationGetDescr(rel);
	table = RelationGetRelationName(rel);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	spi_col = palloc(sizeof(int) * desc->natts);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "chain_existing_rows",
								   ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	update = SPI_prepare(psprintf("UPDATE tool_audit.%s SET row_hash = $1, chain_id = $2,"
								  " chain_lane = $3, chain_seq = $4, chain_hash = $5"
								  " WHERE id OPERATOR(pg_catalog.=) $6", table),
						 6, argtypes);
	if (update == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT * FROM tool_audit.%s"
												" WHERE row_hash IS NULL ORDER BY id", table),
									   0, NULL, NULL, NULL, true, 0);
	ta_allow_sealing(true);
	PG_TRY();
	{
		for (;;)
		{
			SPITupleTable *tt;
			uint64		nrows;

			SPI_cursor_fetch(portal, true, 1000);
			nrows = SPI_processed;
			if (nrows == 0)
				break;
			tt = SPI_tuptable;
			for (int i = 0; i < desc->natts; i++)
				spi_col[i] = TupleDescAttr(desc, i)->attisdropped ? 0 :
					SPI_fnumber(tt->tupdesc, NameStr(TupleDescAttr(desc, i)->attname));
			for (uint64 r = 0; r < nrows; r++)
			{
				MemoryContext old = MemoryContextSwitchTo(rowcxt);
				TaChainColumns cols;
				Datum		args[6];
				int			rc;

				CHECK_FOR_INTERRUPTS();
				for (int i = 0; i < desc->natts; i++)
				{
					nulls[i] = true;
					values[i] = (Datum) 0;
					if (spi_col[i] > 0)
						values[i] = SPI_getbinval(tt->vals[r], tt->tupdesc, spi_col[i], &nulls[i]);
				}
				ta_chain_row(rel, values, nulls);
				ta_chain_columns(rel, &cols);
				args[0] = values[cols.row_hash];
				args[1] = values[cols.chain_id];
				args[2] = values[cols.chain_lane];
				args[3] = values[cols.chain_seq];
				args[4] = values[cols.chain_hash];
				args[5] = values[cols.id];
				rc = SPI_execute_plan(update, args, NULL, false, 0);
				if (rc != SPI_OK_UPDATE || SPI_processed != 1)
					elog(ERROR, "could not chain row " INT64_FORMAT " of tool_audit.%s",
						 DatumGetInt64(args[5]), table);
				MemoryContextSwitchTo(old);
				MemoryContextReset(rowcxt);
				count++;
			}
			SPI_freetuptable(tt);
		}
	}
	PG_FINALLY();
	{
		ta_allow_sealing(false);
		seal_heads = NULL;
	}
	PG_END_TRY();
	SPI_cursor_close(portal);
	SPI_finish();
	table_close(rel, NoLock);
	PG_RETURN_INT64(count);
}
