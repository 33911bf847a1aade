/*-------------------------------------------------------------------------
 *
 * autonomous_pool.c
 *		A pool of long-lived background workers for the autonomous writes
 *		of autonomous.c (begin_call(), end_call(), "autonomous": true), when
 *		tool_audit is in shared_preload_libraries.
 *
 * Without the pool, each autonomous write starts a dynamic background
 * worker and waits for it: the price of a backend start per write.  With
 * it, a worker started for one write stays, idle, for TA_POOL_IDLE_MS, and
 * takes the next write of the same database and login role.
 *
 * Shared memory (requested at preload): one entry per max_worker_processes,
 * each with a request buffer of TA_POOL_BUF bytes; a larger request goes in
 * a DSM segment the caller creates, whose handle the entry carries.  So the
 * pool's memory is fixed: max_worker_processes * (TA_POOL_BUF + an entry).
 * One LWLock guards the entries; the request and the answer are written by
 * one side while the other waits on its latch.
 *
 * Who the worker is: a worker logs in as one login role of one database
 * (BackgroundWorkerInitializeConnectionByOid(), as the one-shot worker does)
 * and only takes the writes of callers with the same database and the same
 * authenticated role: it can never do more than its caller could, even with
 * SET SESSION AUTHORIZATION.  Each request then carries everything else,
 * as before: the caller's settings (RestoreGUCState() resets the settings
 * the previous request brought), session role, SET ROLE and security
 * context, which autonomous.c applies before each write; nothing of one
 * request's identity or tenant is left for the next.
 *
 * The bound: a worker, idle or busy, is one of
 * tool_audit.max_autonomous_workers (and one of max_worker_processes).  The
 * caller already holds one of the slots of autonomous.c (at most that many
 * writes at once); when the pool is full, an idle worker of another
 * database or role is asked to exit to make room, and the caller waits for
 * that up to the same second as for a slot, then 53400.
 *
 * Failing loudly: a worker that exits during a request (killed, cannot log
 * in) wakes its caller, which raises an error (autonomous.c: 58000); a
 * caller that is cancelled, times out or exits during a request terminates
 * its worker, as with the one-shot worker.  A worker exits quietly when it
 * is idle and gets SIGTERM (postmaster shutdown), and idle workers of a
 * database are asked to leave before DROP DATABASE, ALTER DATABASE,
 * CREATE DATABASE (its template) so that those do not find them connected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "autonomous_pool.h"

#define TA_POOL_BUF				(32 * 1024)	/* inline request, per worker */
#define TA_POOL_IDLE_MS			60000	/* an idle worker exits after */
#define TA_POOL_STALE_MS		30000	/* a worker never started: entry reused */
#define TA_POOL_POLL_MS			10

typedef struct TaPoolEntry
{
	bool		in_use;			/* a worker has it (starting, idle or busy) */
	bool		busy;			/* reserved by a caller until released */
	bool		has_request;	/* sent, not yet taken by the worker */
	bool		answered;		/* the worker has written its answer */
	bool		retire;			/* exit once not busy */
	Oid			database;
	Oid			user;			/* the login (authenticated) role */
	bool		superuser;		/* whether it was one when the worker started */
	uint64		generation;		/* bumped whenever the entry is freed */
	pid_t		pid;			/* 0 until the worker runs */
	int			procno;			/* its latch; -1 until it runs */
	int			caller_procno;	/* whose latch the answer sets */
	TimestampTz since;			/* reserved at (for a start that never came) */
	dsm_handle	seg;			/* DSM_HANDLE_INVALID: request in the buffer */
} TaPoolEntry;

typedef struct TaPool
{
	LWLock	   *lock;
	int			n;
	TaPoolEntry entries[FLEXIBLE_ARRAY_MEMBER];
} TaPool;

struct TaPoolCall
{
	int			index;
	uint64		generation;
	bool		start;			/* we start its worker */
	BackgroundWorkerHandle *handle;
	dsm_segment *seg;
};

static TaPool *pool = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* the worker's own entry */
static TaPoolEntry *my_entry = NULL;
static uint64 my_generation;
static volatile sig_atomic_t got_sigterm = false;
static volatile sig_atomic_t serving = false;

PGDLLEXPORT void ta_pool_main(Datum main_arg);

static Size
pool_entries_size(int n)
{
	return MAXALIGN(add_size(offsetof(TaPool, entries), mul_size(n, sizeof(TaPoolEntry))));
}

static Size
pool_size(void)
{
	return add_size(pool_entries_size(max_worker_processes),
					mul_size(max_worker_processes, TA_POOL_BUF));
}

static char *
entry_buffer(int i)
{
	return (char *) pool + pool_entries_size(pool->n) + (Size) i * TA_POOL_BUF;
}

static void
pool_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(pool_size());
	RequestNamedLWLockTranche("tool_audit autonomous pool", 1);
}

static void
pool_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pool = ShmemInitStruct("tool_audit autonomous pool", pool_size(), &found);
	if (!found)
	{
		memset(pool, 0, pool_entries_size(max_worker_processes));
		pool->lock = &(GetNamedLWLockTranche("tool_audit autonomous pool"))->lock;
		pool->n = max_worker_processes;
		for (int i = 0; i < pool->n; i++)
		{
			pool->entries[i].procno = -1;
			pool->entries[i].caller_procno = -1;
			pool->entries[i].seg = DSM_HANDLE_INVALID;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

bool
ta_pool_active(void)
{
	return pool != NULL && pool->n > 0;
}

/* under the lock: the entry goes back to the free list */
static void
free_entry(TaPoolEntry *e)
{
	e->in_use = false;
	e->busy = false;
	e->has_request = false;
	e->answered = false;
	e->retire = false;
	e->generation++;
	e->pid = 0;
	e->procno = -1;
	e->caller_procno = -1;
	e->seg = DSM_HANDLE_INVALID;
}

static void
wake(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * Ask the idle workers (of every database: a CREATE DATABASE's template is
 * one too) to exit.  Returns how many were asked.
 */
static int
retire_idle(void)
{
	int			asked = 0;

	LWLockAcquire(pool->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pool->n; i++)
	{
		TaPoolEntry *e = &pool->entries[i];

		if (e->in_use && !e->busy)
		{
			e->retire = true;
			wake(e->procno);
			asked++;
		}
	}
	LWLockRelease(pool->lock);
	return asked;
}

/*
 * Ask up to "count" running idle workers, not yet asked, to exit, first
 * entries first, passing over entry "skip" (-1: none).  The caller holds
 * pool->lock exclusively.
 */
static void
retire_running_idle(int skip, int count)
{
	int			asked = 0;

	for (int i = 0; i < pool->n && asked < count; i++)
	{
		TaPoolEntry *e = &pool->entries[i];

		if (i != skip && e->in_use && !e->busy && !e->retire && e->pid != 0)
		{
			e->retire = true;
			wake(e->procno);
			asked++;
		}
	}
}

/* ---- the caller ---- */

TaPoolCall *
ta_pool_reserve(const char *fname, int cap, int wait_ms)
{
	TaPoolCall *pc = palloc0(sizeof(TaPoolCall));
	Oid			user = GetAuthenticatedUserId();
	bool		user_is_superuser = superuser_arg(user);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	cap = Min(cap, pool->n);
	for (;;)
	{
		int			live = 0,
					unused = -1;
		TaPoolEntry *e;
		TimestampTz now = GetCurrentTimestamp();

		pc->index = -1;
		LWLockAcquire(pool->lock, LW_EXCLUSIVE);
		for (int i = 0; i < pool->n; i++)
		{
			e = &pool->entries[i];
			/* a start that never came (its caller gave up before it ran) */
			if (e->in_use && e->pid == 0 && !e->busy &&
				TimestampDifferenceExceeds(e->since, now, TA_POOL_STALE_MS))
				free_entry(e);
			if (!e->in_use)
			{
				if (unused < 0)
					unused = i;
				continue;
			}
			live++;
			if (pc->index < 0 && !e->busy && !e->retire && e->pid != 0 &&
				e->database == MyDatabaseId && e->user == user &&
				e->superuser == user_is_superuser)
				pc->index = i;
		}
		if (pc->index < 0 && live < cap && unused >= 0)
		{
			/* a new worker */
			e = &pool->entries[unused];
			free_entry(e);		/* a new generation */
			e->in_use = true;
			e->database = MyDatabaseId;
			e->user = user;
			e->superuser = user_is_superuser;
			e->since = now;
			pc->index = unused;
			pc->start = true;
		}
		/* the setting lowered: idle workers past it leave */
		if (live > cap)
			retire_running_idle(pc->index, live - cap);
		if (pc->index >= 0)
		{
			e = &pool->entries[pc->index];
			e->busy = true;
			e->has_request = false;
			e->answered = false;
			e->caller_procno = MyProc->pgprocno;
			e->seg = DSM_HANDLE_INVALID;
			pc->generation = e->generation;
			LWLockRelease(pool->lock);
			return pc;
		}
		/* full: make room, an idle worker of another database or role */
		retire_running_idle(-1, 1);
		LWLockRelease(pool->lock);

		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("tool_audit.%s() could not start its autonomous write: all %d autonomous workers are busy",
							fname, cap),
					 errdetail("Nothing was recorded. tool_audit.max_autonomous_workers bounds the autonomous workers in the cluster, idle or writing; none was free within %d ms.",
							   wait_ms),
					 errhint("Retry, or ask an administrator to raise tool_audit.max_autonomous_workers (each takes one of max_worker_processes).")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 TA_POOL_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void *
ta_pool_request_space(TaPoolCall *pc, Size size)
{
	if (size <= TA_POOL_BUF)
		return entry_buffer(pc->index);
	pc->seg = dsm_create(size, 0);
	return dsm_segment_address(pc->seg);
}

/*
 * A caller that errors or exits while its worker writes: the worker is
 * terminated (as the one-shot worker is), or, not started yet, told to
 * exit at once; answered: just released.
 */
static void
pool_call_cleanup(int code, Datum arg)
{
	TaPoolCall *pc = (TaPoolCall *) DatumGetPointer(arg);
	TaPoolEntry *e = &pool->entries[pc->index];
	pid_t		pid = 0;
	bool		terminate_handle = false;

	LWLockAcquire(pool->lock, LW_EXCLUSIVE);
	if (e->generation == pc->generation && e->busy)
	{
		if (e->answered)
		{
			e->busy = false;
			e->caller_procno = -1;
			wake(e->procno);
		}
		else if (e->pid != 0)
			pid = e->pid;		/* its exit frees the entry */
		else
		{
			e->retire = true;
			e->busy = false;
			e->caller_procno = -1;
			terminate_handle = pc->handle != NULL;
		}
	}
	LWLockRelease(pool->lock);
	if (pid != 0)
		(void) kill(pid, SIGTERM);
	if (terminate_handle)
		TerminateBackgroundWorker(pc->handle);
}

/*
 * Send the request and wait for the answer: true when the worker answered
 * (the answer is in the request), false when it ended without one.
 */
bool
ta_pool_run(TaPoolCall *pc, const char *fname)
{
	TaPoolEntry *e = &pool->entries[pc->index];
	int			procno;
	bool		answered = false;

	pg_write_barrier();
	LWLockAcquire(pool->lock, LW_EXCLUSIVE);
	e->seg = pc->seg ? dsm_segment_handle(pc->seg) : DSM_HANDLE_INVALID;
	e->has_request = true;
	procno = e->procno;
	LWLockRelease(pool->lock);
	wake(procno);

	if (pc->start)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_ConsistentState;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		strlcpy(worker.bgw_library_name, "tool_audit", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "ta_pool_main", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "tool_audit autonomous writer %d", pc->index);
		strlcpy(worker.bgw_type, "tool_audit autonomous write", BGW_MAXLEN);
		worker.bgw_main_arg = Int32GetDatum(pc->index);
		memcpy(worker.bgw_extra, &pc->generation, sizeof(uint64));
		worker.bgw_notify_pid = MyProcPid;
		if (!RegisterDynamicBackgroundWorker(&worker, &pc->handle))
		{
			LWLockAcquire(pool->lock, LW_EXCLUSIVE);
			if (e->generation == pc->generation)
				free_entry(e);
			LWLockRelease(pool->lock);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("tool_audit.%s() could not start its autonomous write: no background worker slot is free",
							fname),
					 errdetail("Nothing was recorded."),
					 errhint("Raise max_worker_processes (a restart is needed): each autonomous worker takes one while it runs.")));
		}
	}

	PG_ENSURE_ERROR_CLEANUP(pool_call_cleanup, PointerGetDatum(pc));
	{
		for (;;)
		{
			bool		gone;
			pid_t		pid;

			CHECK_FOR_INTERRUPTS();
			LWLockAcquire(pool->lock, LW_SHARED);
			gone = e->generation != pc->generation;
			answered = !gone && e->answered;
			LWLockRelease(pool->lock);
			if (gone || answered)
				break;
			/* our own start: the postmaster could not fork it, or it died early */
			if (pc->handle != NULL &&
				GetBackgroundWorkerPid(pc->handle, &pid) == BGWH_STOPPED)
			{
				LWLockAcquire(pool->lock, LW_EXCLUSIVE);
				answered = e->generation == pc->generation && e->answered;
				if (e->generation == pc->generation && !answered)
					free_entry(e);
				LWLockRelease(pool->lock);
				break;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(pool_call_cleanup, PointerGetDatum(pc));
	pg_read_barrier();
	return answered;
}

void
ta_pool_release(TaPoolCall *pc)
{
	TaPoolEntry *e = &pool->entries[pc->index];

	LWLockAcquire(pool->lock, LW_EXCLUSIVE);
	if (e->generation == pc->generation && e->pid == 0 && pc->handle == NULL)
		free_entry(e);			/* reserved to start, never started */
	else if (e->generation == pc->generation)
	{
		e->busy = false;
		e->answered = false;
		e->caller_procno = -1;
		e->seg = DSM_HANDLE_INVALID;
		if (e->retire)
			wake(e->procno);
	}
	LWLockRelease(pool->lock);
	if (pc->seg)
		dsm_detach(pc->seg);
	pfree(pc);
}

/* ---- the worker ---- */

static void
pool_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (serving)
		die(postgres_signal_arg);	/* mid-write: as the one-shot worker */
	else
	{
		got_sigterm = true;
		SetLatch(MyLatch);
	}
	errno = save_errno;
}

/* the worker exits: its entry is free, and a caller waiting is woken */
static void
pool_worker_exit(int code, Datum arg)
{
	int			caller = -1;

	if (my_entry == NULL)
		return;
	LWLockAcquire(pool->lock, LW_EXCLUSIVE);
	if (my_entry->generation == my_generation)
	{
		if (my_entry->busy)
			caller = my_entry->caller_procno;
		free_entry(my_entry);
	}
	LWLockRelease(pool->lock);
	my_entry = NULL;
	wake(caller);
}

static void
serve_one(TaPoolEntry *e, int index, dsm_handle h, MemoryContext cxt)
{
	dsm_segment *seg = NULL;
	void	   *request;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	if (h != DSM_HANDLE_INVALID)
	{
		seg = dsm_attach(h);
		if (seg == NULL)
		{
			MemoryContextSwitchTo(old);
			return;				/* the caller is gone: nobody waits */
		}
		request = dsm_segment_address(seg);
	}
	else
		request = entry_buffer(index);
	serving = true;
	ta_autonomous_serve(request);
	serving = false;
	pgstat_report_activity(STATE_IDLE, NULL);
	if (seg)
		dsm_detach(seg);
	MemoryContextSwitchTo(old);
	MemoryContextReset(cxt);
}

void
ta_pool_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	TaPoolEntry *e;
	Oid			database,
				user;
	MemoryContext cxt;
	TimestampTz last;

	pqsignal(SIGTERM, pool_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (pool == NULL || index < 0 || index >= pool->n)
		proc_exit(0);
	e = &pool->entries[index];
	memcpy(&my_generation, MyBgworkerEntry->bgw_extra, sizeof(uint64));
	LWLockAcquire(pool->lock, LW_EXCLUSIVE);
	if (!e->in_use || e->generation != my_generation || e->retire || e->pid != 0)
	{
		/* its caller gave up, or it was reclaimed */
		if (e->in_use && e->generation == my_generation && e->pid == 0)
			free_entry(e);
		LWLockRelease(pool->lock);
		proc_exit(0);
	}
	e->pid = MyProcPid;
	e->procno = MyProc->pgprocno;
	database = e->database;
	user = e->user;
	my_entry = e;
	LWLockRelease(pool->lock);
	on_shmem_exit(pool_worker_exit, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(database, user, 0);
	cxt = AllocSetContextCreate(TopMemoryContext, "tool_audit autonomous request",
								ALLOCSET_DEFAULT_SIZES);
	last = GetCurrentTimestamp();
	for (;;)
	{
		long		left;

		LWLockAcquire(pool->lock, LW_EXCLUSIVE);
		if (e->has_request)
		{
			dsm_handle	h = e->seg;
			int			caller;

			e->has_request = false;
			LWLockRelease(pool->lock);
			serve_one(e, index, h, cxt);
			pg_write_barrier();
			LWLockAcquire(pool->lock, LW_EXCLUSIVE);
			e->answered = true;
			caller = e->caller_procno;
			LWLockRelease(pool->lock);
			wake(caller);
			last = GetCurrentTimestamp();
			continue;
		}
		left = TA_POOL_IDLE_MS -
			(long) ((GetCurrentTimestamp() - last) / 1000);
		if (!e->busy && (e->retire || got_sigterm || left <= 0))
		{
			free_entry(e);
			my_entry = NULL;
			LWLockRelease(pool->lock);
			proc_exit(0);
		}
		if (e->busy)
			left = TA_POOL_IDLE_MS; /* reserved: the request comes next */
		LWLockRelease(pool->lock);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(left, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * Statements that need no other session in a database: the idle workers
 * leave first (those statements wait a few seconds for the others to go).
 * Called by guard.c's ProcessUtility hook, before the statement.
 */
void
ta_pool_before_utility(Node *stmt)
{
	if (pool == NULL)
		return;
	if (IsA(stmt, DropdbStmt) || IsA(stmt, CreatedbStmt) ||
		IsA(stmt, AlterDatabaseStmt) ||
		(IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE))
		(void) retire_idle();
}

void
ta_pool_init(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = pool_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = pool_shmem_startup;
}
