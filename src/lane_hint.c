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
 * Bounded: tool_audit.lane_hints slots (a server setting, default 131,072,
 * rounded up to a multiple of HINT_WAYS) of 72 bytes, allocated at start
 * (about 9 MB by default; 0 turns hints off).  A lane's hint goes into one
 * set of HINT_WAYS slots, chosen by a hash of the lane: into an empty slot
 * of the set, else over one of the others' hints, that lane's next taker
 * then reading the index as without a hint.  So no put ever has to make
 * room.  Simulated, with writes for lanes drawn at random: a lane written
 * before finds its hint 67% of the time with 100,000 lanes and 65,536 slots
 * (direct-mapped slots, one way: 55%), 91% with 131,072 (one way: 72%),
 * 99% with 262,144 (doc/performance.md, "Lane head hints").  Sets
 * are guarded by HINT_LOCKS LWLocks (set modulo HINT_LOCKS), each held for a
 * look at one set, so that takers of different lanes seldom wait for each
 * other.  A crash empties the table with the rest of shared memory.
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
#include "common/hashfn.h"
#include "utils/guc.h"

#include "lane_hint.h"

#define HINT_LOCKS 64
#define HINT_WAYS 4

/* tool_audit.lane_hints: the slots, fixed at server start */
static int	hint_slots = 131072;

typedef struct HintKey
{
	Oid			dbid;
	Oid			relid;			/* InvalidOid: the slot is empty */
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
	LWLockPadded *locks;		/* HINT_LOCKS of them */
	pg_atomic_uint64 epoch;
	int			nsets;
	HintEntry	slot[FLEXIBLE_ARRAY_MEMBER];	/* nsets * HINT_WAYS */
} HintShared;

static HintShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;
static bool bump_at_end = false;

static int
hint_sets(void)
{
	return (hint_slots + HINT_WAYS - 1) / HINT_WAYS;
}

static Size
hint_shmem_size(void)
{
	return add_size(offsetof(HintShared, slot),
					mul_size(mul_size(hint_sets(), HINT_WAYS), sizeof(HintEntry)));
}

static void
hint_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	if (hint_slots == 0)
		return;
	RequestAddinShmemSpace(hint_shmem_size());
	RequestNamedLWLockTranche("tool_audit lane hints", HINT_LOCKS);
}

static void
hint_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	if (hint_slots == 0)
		return;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("tool_audit lane hints", hint_shmem_size(), &found);
	if (!found)
	{
		shared->locks = GetNamedLWLockTranche("tool_audit lane hints");
		pg_atomic_init_u64(&shared->epoch, 1);
		shared->nsets = hint_sets();
		/* all empty: relid InvalidOid */
		memset(shared->slot, 0, mul_size(mul_size(shared->nsets, HINT_WAYS), sizeof(HintEntry)));
	}
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

/* before the prefix is reserved (tool_audit.c) */
void
ta_lane_hint_settings(void)
{
	/* a server-start setting can only be defined while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("tool_audit.lane_hints",
							"Slots for the heads of lanes given back, in shared memory (preloaded only).",
							"Each slot takes 72 bytes; 0 turns the hints off, and every lane taken has its head read from the chain position index.",
							&hint_slots,
							131072, 0, 4194304,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
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

/* the lane's set (HINT_WAYS slots), and the lock that guards it */
static HintEntry *
set_of(const HintKey *key, LWLock **lock)
{
	uint32		h = hash_bytes((const unsigned char *) key, sizeof(HintKey));
	uint32		i = h % (uint32) shared->nsets;

	*lock = &shared->locks[i % HINT_LOCKS].lock;
	return &shared->slot[i * HINT_WAYS];
}

bool
ta_lane_hint_take(Oid relid, TaChainHead *head)
{
	HintKey		key;
	HintEntry  *set;
	LWLock	   *lock;
	bool		usable = false;

	if (shared == NULL)
		return false;
	make_key(&key, relid, head->chain_id, head->lane);
	set = set_of(&key, &lock);
	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (int w = 0; w < HINT_WAYS; w++)
	{
		HintEntry  *e = &set[w];

		if (memcmp(&e->key, &key, sizeof(HintKey)) != 0)
			continue;
		/* read the epoch under the lock: a move after this is a later change */
		usable = e->epoch == pg_atomic_read_u64(&shared->epoch);
		if (usable)
		{
			head->seq = e->seq;
			memcpy(head->link, e->link, TA_HASH_LEN);
		}
		/* used or not, it goes */
		e->key.relid = InvalidOid;
		break;
	}
	LWLockRelease(lock);
	return usable;
}

void
ta_lane_hint_put(Oid relid, const TaChainHead *head, uint64 taken_epoch)
{
	static uint32 next_victim = 0;
	HintKey		key;
	HintEntry  *set;
	HintEntry  *e = NULL;
	LWLock	   *lock;

	if (shared == NULL || taken_epoch != pg_atomic_read_u64(&shared->epoch))
		return;
	make_key(&key, relid, head->chain_id, head->lane);
	set = set_of(&key, &lock);
	LWLockAcquire(lock, LW_EXCLUSIVE);
	/* the lane's own slot (none: the taker removed it), else an empty one */
	for (int w = 0; w < HINT_WAYS && e == NULL; w++)
		if (memcmp(&set[w].key, &key, sizeof(HintKey)) == 0)
			e = &set[w];
	for (int w = 0; w < HINT_WAYS && e == NULL; w++)
		if (!OidIsValid(set[w].key.relid))
			e = &set[w];
	/* else another lane's hint is lost: its next taker reads the index */
	if (e == NULL)
		e = &set[next_victim++ % HINT_WAYS];
	e->key = key;
	e->epoch = taken_epoch;
	e->seq = head->seq;
	memcpy(e->link, head->link, TA_HASH_LEN);
	LWLockRelease(lock);
}
