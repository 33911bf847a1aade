/*-------------------------------------------------------------------------
 *
 * lane_hint.c
 *		The heads of lanes given back, in shared memory, so that the next
 *		taker need not read them from the chain position index.
 *
 * A backend that takes a lane reads the lane's head (its last row, or the
 * purge anchor beyond it) from the chain position index with a fresh
 * snapshot (chain.c).  With many tenants a session gives its lanes back at
 * the end of nearly every transaction, so nearly every write pays that
 * read: an index descent, a heap fetch and the anchor probe.  But the
 * backend that gave the lane back knew its head exactly: nobody else
 * writes to a lane it holds.  So, when the library is preloaded, it leaves
 * the head here as it lets go of the lane, and the next taker, once it
 * holds both of the lane's locks, takes the hint out instead of reading
 * the index.  Without shared_preload_libraries there is no hint and every
 * head is read.
 *
 * Why a hint is exact.  A hint is put only by the lane's holder, after its
 * transaction ended (commit or abort: the head is then what it last
 * committed) and before it releases the session's lock of the lane; it is
 * removed by the next taker, under that lock, whether it uses it or not.
 * So while a hint is present the lane has been free since it was put, and
 * the head has not moved, unless something wrote to the lane without taking
 * it.  The extension's own paths that do (a superuser's restored rows,
 * which bring their position) and those that change stored rows (purge,
 * erasure, the upgrade that chains 1.0 rows), creating or dropping the
 * extension and dropping a database all move the epoch, now and again at
 * the end of their transaction; a hint is used only if the epoch did not
 * move between the taking of the lane by the backend that put it and its
 * use.  What remains is a superuser writing chain positions with the
 * triggers disabled: a row forged after the head makes the next write
 * collide with it in the unique index (one failed insert: the hint is gone
 * by then, and a lane whose transaction wrote to it and rolled back is
 * given back without one, chain.c's end_of_xact(), so the next taker reads
 * the index), a deleted head row is chained after and verify() reports
 * the gap, as it would report the forged row.
 *
 * Bounded: HINT_SLOTS entries of 72 bytes, allocated at start (about 0.7
 * MB of shared memory); when the table is full, it is emptied and fills
 * again.
 * A crash empties it with the rest of shared memory.  One LWLock, held for
 * a hash lookup.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"

#include "lane_hint.h"

#define HINT_SLOTS 8192

typedef struct HintKey
{
	Oid			dbid;
	Oid			relid;
	int64		chain_id;
	int32		lane;
	int32		pad;			/* hashed as bytes: always zero */
} HintKey;

typedef struct HintEntry
{
	HintKey		key;
	uint64		epoch;			/* when the lane was taken by who put this */
	int64		seq;
	unsigned char link[TA_HASH_LEN];
} HintEntry;

typedef struct HintShared
{
	LWLock	   *lock;
	pg_atomic_uint64 epoch;
} HintShared;

static HintShared *shared = NULL;
static HTAB *hints = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;
static bool bump_at_end = false;

static void
hint_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(add_size(MAXALIGN(sizeof(HintShared)),
									hash_estimate_size(HINT_SLOTS, sizeof(HintEntry))));
	RequestNamedLWLockTranche("tool_audit lane hints", 1);
}

static void
hint_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("tool_audit lane hints", sizeof(HintShared), &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("tool_audit lane hints"))->lock;
		pg_atomic_init_u64(&shared->epoch, 1);
	}
	ctl.keysize = sizeof(HintKey);
	ctl.entrysize = sizeof(HintEntry);
	hints = ShmemInitHash("tool_audit lane hints table", HINT_SLOTS, HINT_SLOTS,
						  &ctl, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	LWLockRelease(AddinShmemInitLock);
}

static void
hint_xact_callback(XactEvent event, void *arg)
{
	if (!bump_at_end)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		bump_at_end = false;
		if (shared != NULL)
			pg_atomic_fetch_add_u64(&shared->epoch, 1);
	}
}

void
ta_lane_hint_init(void)
{
	RegisterXactCallback(hint_xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = hint_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = hint_shmem_startup;
}

uint64
ta_lane_hint_epoch(void)
{
	return shared == NULL ? 0 : pg_atomic_read_u64(&shared->epoch);
}

void
ta_lane_hint_invalidate(void)
{
	if (shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&shared->epoch, 1);
	/* and again once the change is visible (or gone) */
	bump_at_end = true;
}

static void
make_key(HintKey *key, Oid relid, int64 chain_id, int32 lane)
{
	memset(key, 0, sizeof(HintKey));
	key->dbid = MyDatabaseId;
	key->relid = relid;
	key->chain_id = chain_id;
	key->lane = lane;
}

bool
ta_lane_hint_take(Oid relid, TaChainHead *head)
{
	HintKey		key;
	HintEntry  *e;
	bool		usable = false;

	if (shared == NULL)
		return false;
	make_key(&key, relid, head->chain_id, head->lane);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	e = hash_search(hints, &key, HASH_FIND, NULL);
	if (e != NULL)
	{
		/* read the epoch under the lock: a move after this is a later change */
		usable = e->epoch == pg_atomic_read_u64(&shared->epoch);
		if (usable)
		{
			head->seq = e->seq;
			memcpy(head->link, e->link, TA_HASH_LEN);
		}
		(void) hash_search(hints, &key, HASH_REMOVE, NULL);
	}
	LWLockRelease(shared->lock);
	return usable;
}

void
ta_lane_hint_put(Oid relid, const TaChainHead *head, uint64 taken_epoch)
{
	HintKey		key;
	HintEntry  *e;

	if (shared == NULL || taken_epoch != pg_atomic_read_u64(&shared->epoch))
		return;
	make_key(&key, relid, head->chain_id, head->lane);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	e = hash_search(hints, &key, HASH_ENTER_NULL, NULL);
	if (e == NULL)
	{
		/* full: empty it (hints of lanes nobody took again) and start over */
		HASH_SEQ_STATUS status;
		HintEntry  *old;

		hash_seq_init(&status, hints);
		while ((old = hash_seq_search(&status)) != NULL)
			(void) hash_search(hints, &old->key, HASH_REMOVE, NULL);
		e = hash_search(hints, &key, HASH_ENTER_NULL, NULL);
	}
	if (e != NULL)
	{
		e->epoch = taken_epoch;
		e->seq = head->seq;
		memcpy(e->link, head->link, TA_HASH_LEN);
	}
	LWLockRelease(shared->lock);
}
