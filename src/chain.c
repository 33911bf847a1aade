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
 * Locking protocol.  The first time a transaction writes to a chain, it takes
 * an exclusive lock on one lane of it: an advisory-type heavyweight lock
 * (field4 TA_LOCKTAG_LANE, so it cannot collide with pg_advisory_lock keys),
 * tried without waiting on the lane it used last, then on lanes 0, 1, 2, ...
 * until one is free.  The lock is held to the end of the transaction, so
 *	- within a lane, transactions append one after another, and a lane's
 *	  order is the commit order of its transactions;
 *	- writers never wait for each other: a busy lane is skipped, and a chain
 *	  has as many lanes as it ever had concurrent writers;
 *	- no deadlock is possible: nobody waits.
 * Having the lock, it reads the lane's head (highest chain_seq) through the
 * chain position index with a fresh snapshot, not the transaction's: the
 * previous holder committed before its lock was released, and a REPEATABLE
 * READ snapshot taken before that would fork the chain.  Later rows of the
 * transaction continue from the head it keeps in memory.  The unique index
 * on (chain_id, chain_lane, chain_seq) makes a fork a constraint violation,
 * whatever goes wrong.
 *
 * Rolled back work leaves no hole: an aborted transaction's rows and
 * positions disappear together, and the next holder of the lane reads the
 * head again.  A rolled back subtransaction releases the locks it took and
 * removes its rows, so on subtransaction abort every remembered head is
 * forgotten and read again (the lanes still held are simply re-locked).
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
#include "common/hashfn.h"
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

#include "tool_audit.h"

#define TA_LOCKTAG_LANE			0x5441	/* "TA" */
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

/* ---- lanes held by this transaction ---- */

typedef struct HeldLane
{
	int64		chain_id;
	int32		lane;
	int64		seq;			/* of the lane's head, ours or committed */
	unsigned char link[TA_HASH_LEN];
} HeldLane;

static HeldLane *held = NULL;
static int	nheld = 0;
static int	maxheld = 0;

/* the lane each chain was last written through, kept across transactions */
typedef struct LastLane
{
	int64		chain_id;
	int32		lane;
} LastLane;

static HTAB *last_lanes = NULL;

static bool
try_lane(int64 chain_id, int32 lane, bool wait)
{
	LOCKTAG		tag;

	/*
	 * Two chains whose folded ids collide share lane locks: harmless, a
	 * lane of each is then locked together.
	 */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) chain_id ^ (uint32) ((uint64) chain_id >> 32),
						 (uint32) lane, TA_LOCKTAG_LANE);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

static int32
acquire_lane(int64 chain_id)
{
	LastLane   *last;
	bool		found;
	int32		lane = -1;

	if (last_lanes == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(LastLane);
		last_lanes = hash_create("tool_audit last lanes", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS);
	}
	last = hash_search(last_lanes, &chain_id, HASH_ENTER, &found);
	if (!found)
		last->lane = 0;
	if (try_lane(chain_id, last->lane, false))
		return last->lane;
	for (int32 l = 0; l < MAX_LANES; l++)
	{
		CHECK_FOR_INTERRUPTS();
		if (l != last->lane && try_lane(chain_id, l, false))
		{
			lane = l;
			break;
		}
	}
	if (lane < 0)
	{
		/* absurdly many concurrent writers: queue on our usual lane */
		lane = last->lane;
		(void) try_lane(chain_id, lane, true);
	}
	last->lane = lane;
	return lane;
}

typedef struct ChainIndex
{
	Oid			relid;
	Oid			indexid;
	AttrNumber	seq_attno;
	AttrNumber	hash_attno;
} ChainIndex;

static ChainIndex chain_indexes[4];

static ChainIndex *
chain_index(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	char	   *name;
	ChainIndex *ci = NULL;

	for (int i = 0; i < (int) lengthof(chain_indexes); i++)
	{
		if (chain_indexes[i].relid == relid)
			return &chain_indexes[i];
		if (ci == NULL && !OidIsValid(chain_indexes[i].relid))
			ci = &chain_indexes[i];
	}
	if (ci == NULL)
		ci = &chain_indexes[0];
	name = psprintf("%s_chain_position", RelationGetRelationName(rel));
	ci->indexid = get_relname_relid(name, RelationGetNamespace(rel));
	if (!OidIsValid(ci->indexid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index tool_audit.%s is missing", name)));
	ci->seq_attno = get_attnum(relid, "chain_seq");
	ci->hash_attno = get_attnum(relid, "chain_hash");
	ci->relid = relid;
	return ci;
}

/*
 * The head of a lane as committed (or written by this transaction in an
 * earlier command): seq 0 and a zero link for an empty lane.
 */
static void
read_head(Relation rel, HeldLane *h)
{
	ChainIndex *ci = chain_index(rel);
	Relation	irel = index_open(ci->indexid, AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(h->chain_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(h->lane));
#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(rel, irel, snap, NULL, 2, 0);
#else
	scan = index_beginscan(rel, irel, snap, 2, 0);
#endif
	index_rescan(scan, keys, 2, NULL, 0);
	h->seq = 0;
	memset(h->link, 0, TA_HASH_LEN);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		seq_null,
					hash_null;
		Datum		seq = slot_getattr(slot, ci->seq_attno, &seq_null);
		Datum		link = slot_getattr(slot, ci->hash_attno, &hash_null);
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

static HeldLane *
held_lane(Relation rel, int64 chain_id)
{
	HeldLane   *h;

	for (int i = 0; i < nheld; i++)
		if (held[i].chain_id == chain_id)
			return &held[i];
	if (nheld == maxheld)
	{
		int			newmax = Max(8, maxheld * 2);

		if (held == NULL)
			held = MemoryContextAlloc(TopMemoryContext, sizeof(HeldLane) * newmax);
		else
			held = repalloc(held, sizeof(HeldLane) * newmax);
		maxheld = newmax;
	}
	h = &held[nheld];
	h->chain_id = chain_id;
	h->lane = acquire_lane(chain_id);
	read_head(rel, h);
	nheld++;					/* only once the head is known */
	return h;
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
	HeldLane   *h;

	ta_chain_columns(rel, &cols);
	ta_row_hash(rel, values, nulls, row_hash);
	tenant = nulls[cols.tenant_id] ? NULL : DatumGetTextPP(values[cols.tenant_id]);
	h = held_lane(rel, ta_chain_id(RelationGetRelationName(rel),
								   tenant ? VARDATA_ANY(tenant) : NULL,
								   tenant ? VARSIZE_ANY_EXHDR(tenant) : 0));
	ta_link_hash(h->chain_id, h->lane, h->seq + 1, h->link, row_hash, link);
	h->seq++;
	memcpy(h->link, link, TA_HASH_LEN);

	values[cols.row_hash] = PointerGetDatum(ta_hash_bytea(row_hash));
	nulls[cols.row_hash] = false;
	values[cols.chain_id] = Int64GetDatum(h->chain_id);
	nulls[cols.chain_id] = false;
	values[cols.chain_lane] = Int32GetDatum(h->lane);
	nulls[cols.chain_lane] = false;
	values[cols.chain_seq] = Int64GetDatum(h->seq);
	nulls[cols.chain_seq] = false;
	values[cols.chain_hash] = PointerGetDatum(ta_hash_bytea(link));
	nulls[cols.chain_hash] = false;
}

bytea *
ta_hash_bytea(const unsigned char hash[TA_HASH_LEN])
{
	bytea	   *b = palloc(VARHDRSZ + TA_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + TA_HASH_LEN);
	memcpy(VARDATA(b), hash, TA_HASH_LEN);
	return b;
}

static void
forget_lanes(void)
{
	nheld = 0;
}

static void
chain_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			forget_lanes();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			forget_lanes();
			break;
		default:
			break;
	}
}

static void
chain_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_lanes();
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
	}
	PG_END_TRY();
	SPI_cursor_close(portal);
	SPI_finish();
	table_close(rel, NoLock);
	PG_RETURN_INT64(count);
}
