/*-------------------------------------------------------------------------
 *
 * autonomous.c
 *		Calls that survive the caller's rollback: tool_audit.begin_call(),
 *		tool_audit.end_call() and log_call() with "autonomous": true.
 *
 * The row is written by a background worker, in a transaction of its own
 * that commits (synchronous_commit = on) before the SQL function returns.
 * Without shared_preload_libraries, a dynamic worker per write: it is
 * registered when the function is called (bgw_library_name "tool_audit"),
 * and takes a slot of max_worker_processes while it runs.  Preloaded, a
 * long-lived worker of the pool (autonomous_pool.c) of the caller's
 * database and login role takes it: the same request, the same code
 * (ta_autonomous_serve()), without a backend start per write.
 *
 * What the worker gets, in a DSM segment the caller creates (pooled: in the
 * worker's buffer in shared memory, or a DSM segment when larger):
 *	- who: the database, the authenticated (login) role, the outer role
 *	  (after SET ROLE) and the current role with its security context (a
 *	  SECURITY DEFINER function's owner), as parallel workers get them: the
 *	  worker acts exactly as the caller does, so the row records the same
 *	  recorded_by as a write in the caller's transaction would, and the
 *	  caller can neither write as someone else nor gain a privilege;
 *	- the caller's settings (SerializeGUCState(), as parallel workers and
 *	  pg_background restore them): tool_audit.tenant, application_name, the
 *	  test clock, the rule-related settings;
 *	- the caller's top transaction id (one is assigned), stored in
 *	  caller_txid: pg_xact_status() tells later whether the caller committed;
 *	- the function's arguments (datumSerialize()).
 * The worker runs the same code as log_call() (log_call.c: context spread
 * over the columns, then the insert trigger's work: sanitized, summarized,
 * hashed, chained) and writes back the event_id of the stored row, or the
 * error (SQLSTATE, message, detail, hint), which the caller raises again as
 * its own.
 *
 * Failing loudly: no free worker slot is an error (53400, with a hint about
 * max_worker_processes); a worker that exits without a result (it could not
 * log in, it was killed) is an error (58000); the caller waits on its latch
 * and answers cancels and statement_timeout, and then terminates the
 * worker.  A row is never dropped silently.
 *
 * A bound on the workers: tool_audit.max_autonomous_workers (default 4) of
 * them at once in the whole cluster, so that writers looping on begin_call()
 * cannot take every slot of max_worker_processes from parallel query,
 * logical replication or pg_cron.  A caller takes one of that many "slots"
 * before it registers its worker and gives it back when the worker has
 * answered: a slot is an exclusive advisory-type heavyweight lock on
 * database 0 (so one count for the cluster) with field4 TA_LOCKTAG_SLOT,
 * taken without waiting and retried for up to TA_SLOT_WAIT_MS; then 53400, with
 * nothing recorded.  Callers that find every slot busy are served in turn:
 * the first in line holds a queue lock while it polls, the others wait for
 * that lock in the lock manager's order, so a writer looping on its next
 * call cannot take the slot it just gave back ahead of them (take_slot()).
 * The only lock wait is for that queue lock, whose holder waits for no lock
 * (it polls, and a caller giving a slot back wakes it), so a wait for it is
 * always one the first in line ends: with a slot, or with 53400 after
 * TA_SLOT_WAIT_MS.  The locks live in the shared lock table, so the bound
 * holds with or without shared_preload_libraries, and a lock held by a
 * backend that dies goes with it (nothing to leak).  SQL cannot take a lock
 * on database 0 nor with that field4, so no session can hold slots other
 * than by running autonomous writes.  The transaction-level lock is given
 * back explicitly when the worker answers, and by the abort otherwise.
 *
 * Not waiting for the caller forever: the worker is another backend, so it
 * could wait for a lock the caller holds while the caller waits for it, a
 * deadlock the deadlock detector cannot see.  The insert path takes no lock
 * another writer holds, except
 *	- a chain lane: busy lanes are skipped (chain.c), never waited for;
 *	- an event_id (insert.c), when the context brings one the caller has
 *	  itself inserted, uncommitted, and a call's end (the caller ended the
 *	  call with a plain INSERT, uncommitted);
 *	- a lock on tool_calls itself stronger than the caller's own inserts.
 * So the worker runs with lock_timeout (the caller's if shorter, else
 * TA_WORKER_LOCK_TIMEOUT): such a wait ends in an error (55P03), not a hang.
 * The one that is certain is refused before a worker is started, with the
 * same SQLSTATE and no wait: the caller holding a lock on tool_calls that
 * conflicts with the worker's insert (SHARE or stronger, which only the
 * table's owner or a superuser can take).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/postmaster.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "autonomous.h"
#include "autonomous_pool.h"
#include "catalog.h"
#include "insert.h"
#include "layout.h"
#include "retention.h"
#include "tool_audit.h"

#define TA_WORKER_LOCK_TIMEOUT	5000	/* ms */
#define TA_SLOT_WAIT_MS			1000	/* for a free slot, when all are busy */
#define TA_SLOT_POLL_MS			10	/* by the first caller in line; woken earlier */
#define TA_LOCKTAG_SLOT			0x5457	/* "TW": another field4 than chain.c's */

/* tool_audit.max_autonomous_workers */
int			ta_max_autonomous_workers = 4;
#define TA_NARGS				6	/* log_call()'s five, and the call */
#define TA_MSG_LEN				1024

typedef enum TaAutoStatus
{
	TA_AUTO_PENDING = 0,
	TA_AUTO_DONE,
	TA_AUTO_FAILED
} TaAutoStatus;

/* The DSM segment: the request, then the GUC state and the arguments. */
typedef struct TaAutoShared
{
	/* the request */
	TaAutoKind	kind;
	Oid			database;
	Oid			authenticated_user;
	Oid			outer_user;		/* GetCurrentRoleId(): InvalidOid if no SET ROLE */
	bool		outer_is_superuser;
	Oid			current_user;
	int			sec_context;
	int64		caller_txid;
	int			lock_timeout;
	int			caller_procno;	/* whose latch the worker sets when done */
	Size		guc_offset;
	Size		args_offset;
	/* the answer, written by the worker before it exits */
	TaAutoStatus status;
	pg_uuid_t	event_id;
	int			sqlerrcode;
	char		message[TA_MSG_LEN];
	char		detail[TA_MSG_LEN];
	char		hint[TA_MSG_LEN];
} TaAutoShared;

/* the types of the arguments as serialized: byval, length */
static const struct
{
	bool		byval;
	int16		len;
}			arg_types[TA_NARGS] = {
	{false, -1},				/* tool_name text */
	{false, -1},				/* arguments jsonb */
	{false, -1},				/* result jsonb */
	{FLOAT8PASSBYVAL, 8},		/* duration_ms double precision */
	{false, -1},				/* context jsonb */
	{false, UUID_LEN},			/* the call (end_call) */
};

static const char *const kind_name[] = {
	[TA_AUTO_LOG_CALL] = "log_call",
	[TA_AUTO_BEGIN] = "begin_call",
	[TA_AUTO_END] = "end_call",
};

PGDLLEXPORT void ta_autonomous_main(Datum main_arg);

/* ---- the caller ---- */

static void
raise_worker_error(TaAutoShared *sh)
{
	ereport(ERROR,
			(errcode(sh->sqlerrcode),
			 errmsg_internal("%s", sh->message),
			 sh->detail[0] ? errdetail_internal("%s", sh->detail) : 0,
			 sh->hint[0] ? errhint("%s", sh->hint) : 0,
			 errcontext("autonomous write of tool_audit.%s()", kind_name[sh->kind])));
}

void
ta_autonomous_init(void)
{
	DefineCustomIntVariable("tool_audit.max_autonomous_workers",
							"Most background workers writing autonomously (begin_call(), end_call(), \"autonomous\": true) at once, in the whole cluster.",
							"Writes that find them all busy wait in turn, the first in line up to a second, then fail; 0 refuses autonomous writes.",
							&ta_max_autonomous_workers,
							4, 0, MAX_BACKENDS,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		ta_pool_init();			/* long-lived workers (autonomous_pool.c) */
}

static void
slot_tag(LOCKTAG *tag, int slot)
{
	SET_LOCKTAG_ADVISORY(*tag, InvalidOid, 0, (uint32) slot, TA_LOCKTAG_SLOT);
}

/*
 * The queue for the slots: a caller takes it before trying them, and the
 * one that finds them all busy keeps it while it waits for one, so that a
 * writer coming back for its next call queues behind the callers already
 * waiting instead of taking the slot it just gave back (the lock manager
 * grants a lock in the order it was asked for, and refuses a conditional
 * request while one is waited for).  Same lock space as the slots (database
 * 0, field4 TA_LOCKTAG_SLOT), field2 1 so that no slot number is it.
 */
static void
queue_tag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, InvalidOid, 1, 0, TA_LOCKTAG_SLOT);
}

/* A free slot, taken without waiting; -1 if all are busy. */
static int
try_slots(int cap)
{
	/* start at a different slot per backend: fewer failed attempts */
	int			first = MyProcPid % cap;

	for (int i = 0; i < cap; i++)
	{
		int			slot = (first + i) % cap;
		LOCKTAG		tag;

		slot_tag(&tag, slot);
		if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
			return slot;
	}
	return -1;
}

/*
 * Take one of the max_autonomous_workers slots, in turn: callers that find
 * them all busy are served first come, first served (the queue above), the
 * first in line polling for a free slot up to TA_SLOT_WAIT_MS, then an
 * error.  Returns the slot.
 */
static int
take_slot(TaAutoKind kind)
{
	int			cap = ta_max_autonomous_workers;
	TimestampTz deadline;
	LOCKTAG		queue;
	int			slot;

	if (cap == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("tool_audit.%s() cannot write autonomously: tool_audit.max_autonomous_workers is 0",
						kind_name[kind]),
				 errdetail("Nothing was recorded."),
				 errhint("Ask an administrator to raise tool_audit.max_autonomous_workers, or record the call with log_call() in the transaction.")));
	queue_tag(&queue);
	/* behind those already waiting (cancel and statement_timeout apply) */
	if (LockAcquire(&queue, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		(void) LockAcquire(&queue, ExclusiveLock, false, false);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TA_SLOT_WAIT_MS);
	while ((slot = try_slots(cap)) < 0)
	{
		if (GetCurrentTimestamp() >= deadline)
		{
			(void) LockRelease(&queue, ExclusiveLock, false);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("tool_audit.%s() could not start its autonomous write: all %d autonomous workers are busy",
							kind_name[kind], cap),
					 errdetail("Nothing was recorded. tool_audit.max_autonomous_workers bounds the autonomous writes running at once in the cluster; none ended within %d ms.",
							   TA_SLOT_WAIT_MS),
					 errhint("Retry, or ask an administrator to raise tool_audit.max_autonomous_workers (each takes one of max_worker_processes while it runs).")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 TA_SLOT_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	(void) LockRelease(&queue, ExclusiveLock, false);
	return slot;
}

static void
give_back_slot(int slot)
{
	LOCKTAG		tag;
	VirtualTransactionId *first_in_line;

	slot_tag(&tag, slot);
	(void) LockRelease(&tag, ExclusiveLock, false);
	/* the caller first in line, if any, polls: wake it now rather than later */
	queue_tag(&tag);
	first_in_line = GetLockConflicts(&tag, ExclusiveLock, NULL);
	for (VirtualTransactionId *v = first_in_line; VirtualTransactionIdIsValid(*v); v++)
	{
		PGPROC	   *proc = BackendIdGetProc(v->backendId);

		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
	pfree(first_in_line);
}

/*
 * The caller's own lock on tool_calls that the worker's insert (ROW
 * EXCLUSIVE) would wait for: SHARE and stronger.  Refused now rather than
 * after the worker's lock_timeout.
 */
static void
refuse_self_lock(TaAutoKind kind)
{
	static const char *const mode_name[] = {
		[ShareLock] = "SHARE",
		[ShareRowExclusiveLock] = "SHARE ROW EXCLUSIVE",
		[ExclusiveLock] = "EXCLUSIVE",
		[AccessExclusiveLock] = "ACCESS EXCLUSIVE",
	};
	Oid			relid = ta_schema_relid("tool_calls", true);
	LOCKTAG		tag;

	if (!OidIsValid(relid))
		return;
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, relid);
	for (LOCKMODE mode = ShareLock; mode <= AccessExclusiveLock; mode++)
		if (LockHeldByMe(&tag, mode))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("tool_audit.%s() cannot write autonomously while this transaction holds a lock on tool_audit.tool_calls in %s mode",
							kind_name[kind], mode_name[mode]),
					 errdetail("Its worker would wait for this transaction, which would wait for the worker. Nothing was recorded."),
					 errhint("Record the call before taking the lock, or in the transaction with log_call().")));
}

/* The request: who the caller is, its settings, the arguments. */
static void
fill_request(TaAutoShared *sh, TaAutoKind kind, Size gucsize, Datum *args, bool *argnulls)
{
	char	   *p;

	memset(sh, 0, sizeof(TaAutoShared));
	sh->kind = kind;
	sh->database = MyDatabaseId;
	sh->authenticated_user = GetAuthenticatedUserId();
	sh->outer_user = GetCurrentRoleId();
	sh->outer_is_superuser = OidIsValid(sh->outer_user) ? superuser_arg(sh->outer_user) : false;
	GetUserIdAndSecContext(&sh->current_user, &sh->sec_context);
	/* the caller's transaction id, assigned now if it had none */
	sh->caller_txid = (int64) U64FromFullTransactionId(GetTopFullTransactionId());
	sh->lock_timeout = (LockTimeout > 0 && LockTimeout < TA_WORKER_LOCK_TIMEOUT) ?
		LockTimeout : TA_WORKER_LOCK_TIMEOUT;
	sh->caller_procno = MyProc->pgprocno;
	sh->guc_offset = MAXALIGN(sizeof(TaAutoShared));
	sh->args_offset = sh->guc_offset + MAXALIGN(gucsize);
	SerializeGUCState(gucsize, (char *) sh + sh->guc_offset);
	p = (char *) sh + sh->args_offset;
	for (int i = 0; i < TA_NARGS; i++)
		datumSerialize(args[i], argnulls[i], arg_types[i].byval, arg_types[i].len, &p);
}

/*
 * Without the pool: a dynamic worker for this one write.  The answer is
 * copied into *answer (status PENDING: the worker ended without one).
 */
static void
run_one_shot(TaAutoKind kind, Size size, Size gucsize, Datum *args, bool *argnulls,
			 TaAutoShared *answer)
{
	dsm_segment *seg;
	TaAutoShared *sh;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	volatile BgwHandleStatus status = BGWH_STARTED;

	seg = dsm_create(size, 0);
	sh = dsm_segment_address(seg);
	fill_request(sh, kind, gucsize, args, argnulls);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "tool_audit", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "ta_autonomous_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "tool_audit autonomous write for PID %d", MyProcPid);
	strlcpy(worker.bgw_type, "tool_audit autonomous write", BGW_MAXLEN);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("tool_audit.%s() could not start its autonomous write: no background worker slot is free",
						kind_name[kind]),
				 errdetail("Nothing was recorded."),
				 errhint("Raise max_worker_processes (a restart is needed): each autonomous write takes one worker while it runs.")));

	/*
	 * Wait for the worker's answer, not for its exit (the postmaster reports
	 * an exit only after reaping it): the worker sets our latch when it has
	 * written the answer; a worker that stops without one is seen stopped.
	 * Interruptible: a cancel or statement_timeout stops the worker too.
	 */
	PG_TRY();
	{
		for (;;)
		{
			pid_t		pid;
			int			rc;
			BgwHandleStatus now;

			CHECK_FOR_INTERRUPTS();
			pg_read_barrier();
			if (sh->status != TA_AUTO_PENDING)
				break;
			now = GetBackgroundWorkerPid(handle, &pid);
			if (now == BGWH_STOPPED)
			{
				pg_read_barrier();	/* an answer written just before it stopped */
				break;
			}
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_POSTMASTER_DEATH, -1,
						   PG_WAIT_EXTENSION);
			if (rc & WL_POSTMASTER_DEATH)
			{
				status = BGWH_POSTMASTER_DIED;
				break;
			}
			ResetLatch(MyLatch);
		}
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (status == BGWH_POSTMASTER_DIED)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster exited during an autonomous write of tool_audit.%s()",
						kind_name[kind])));
	pg_read_barrier();
	memcpy(answer, sh, sizeof(TaAutoShared));
	dsm_detach(seg);
}

/*
 * With the pool (preloaded): a long-lived worker of this database and
 * login role takes the write (autonomous_pool.c).
 */
static void
run_pooled(TaAutoKind kind, Size size, Size gucsize, Datum *args, bool *argnulls,
		   TaAutoShared *answer)
{
	TaPoolCall *pc;
	TaAutoShared *volatile sh = NULL;

	pc = ta_pool_reserve(kind_name[kind], ta_max_autonomous_workers, TA_SLOT_WAIT_MS);
	PG_TRY();
	{
		sh = ta_pool_request_space(pc, size);
		fill_request(sh, kind, gucsize, args, argnulls);
	}
	PG_CATCH();
	{
		ta_pool_release(pc);	/* not sent: the worker is free again */
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (ta_pool_run(pc, kind_name[kind]))
		memcpy(answer, sh, sizeof(TaAutoShared));
	else
		answer->status = TA_AUTO_PENDING;	/* ended without an answer */
	ta_pool_release(pc);
}

/*
 * Write one row autonomously: have a worker write it, wait for it, raise
 * its error or return what the function returns (the stored row if
 * return_row, else the event_id as a uuid).
 */
Datum
ta_autonomous_call(TaAutoKind kind, Datum *fargs, bool *fargnulls, pg_uuid_t *call,
				   bool return_row)
{
	Datum		args[TA_NARGS];
	bool		argnulls[TA_NARGS];
	Size		gucsize,
				argsize = 0,
				size;
	TaAutoShared *answer;
	pg_uuid_t  *event_id;
	int			slot;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("tool calls cannot be recorded during recovery")));
	refuse_self_lock(kind);

	for (int i = 0; i < TA_NARGS - 1; i++)
	{
		argnulls[i] = fargnulls[i];
		args[i] = fargs[i];
		if (!argnulls[i] && !arg_types[i].byval)
			args[i] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(args[i]));
	}
	argnulls[TA_NARGS - 1] = call == NULL;
	args[TA_NARGS - 1] = call == NULL ? (Datum) 0 : UUIDPGetDatum(call);
	for (int i = 0; i < TA_NARGS; i++)
		argsize = add_size(argsize, datumEstimateSpace(args[i], argnulls[i],
													   arg_types[i].byval, arg_types[i].len));
	gucsize = EstimateGUCStateSpace();
	size = add_size(add_size(MAXALIGN(sizeof(TaAutoShared)), MAXALIGN(gucsize)), argsize);

	answer = palloc0(sizeof(TaAutoShared));
	slot = take_slot(kind);
	if (ta_pool_active())
		run_pooled(kind, size, gucsize, args, argnulls, answer);
	else
		run_one_shot(kind, size, gucsize, args, argnulls, answer);
	give_back_slot(slot);
	if (answer->status == TA_AUTO_FAILED)
		raise_worker_error(answer);
	if (answer->status != TA_AUTO_DONE)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("the autonomous write of tool_audit.%s() ended without a result",
						kind_name[kind]),
				 errdetail("Its worker exited before it reported a commit or an error; the server log says why."),
				 errhint("Whether the row was stored can be checked with the tool_audit.calls view.")));

	event_id = palloc(sizeof(pg_uuid_t));
	*event_id = answer->event_id;

	/* tool_audit.call: the call in progress, for the rest of the transaction */
	if (kind == TA_AUTO_BEGIN)
		(void) set_config_option("tool_audit.call",
								 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(event_id))),
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	else if (kind == TA_AUTO_END && ta_call != NULL && ta_call[0] != '\0' &&
			 DatumGetBool(DirectFunctionCall2(uuid_eq, UUIDPGetDatum(call),
											  DirectFunctionCall1(uuid_in, CStringGetDatum(ta_call)))))
		(void) set_config_option("tool_audit.call", "",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	if (return_row)
	{
		Relation	rel;
		const TaLayout *layout;
		HeapTuple	stored;
		Datum		result;

		rel = ta_layout_open("tool_calls", AccessShareLock, &layout);
		stored = ta_fetch_tool_call(rel, UUIDPGetDatum(event_id));
		if (stored == NULL)		/* committed: purged or erased already? */
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("the row written by tool_audit.%s() cannot be read back", kind_name[kind])));
		result = heap_copy_tuple_as_datum(stored, RelationGetDescr(rel));
		table_close(rel, NoLock);
		return result;
	}
	return UUIDPGetDatum(event_id);
}

/*
 * tool_audit.begin_call(tool_name text, arguments jsonb, context jsonb)
 *	RETURNS uuid
 */
PG_FUNCTION_INFO_V1(begin_call);
Datum
begin_call(PG_FUNCTION_ARGS)
{
	Datum		args[5] = {0};
	bool		argnulls[5] = {true, true, true, true, true};

	if (PG_ARGISNULL(0) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tool_name must not be empty")));
	for (int i = 0; i < 3; i++)
	{
		int			to = (i == 2) ? 4 : i;	/* context is log_call()'s fifth */

		argnulls[to] = PG_ARGISNULL(i);
		if (!argnulls[to])
			args[to] = PG_GETARG_DATUM(i);
	}
	if (!argnulls[4])
		(void) ta_context_autonomous(DatumGetJsonbP(args[4]));	/* checks its type */
	return ta_autonomous_call(TA_AUTO_BEGIN, args, argnulls, NULL, false);
}

/*
 * tool_audit.end_call(call uuid, result jsonb, duration_ms double precision
 *					   DEFAULT NULL) RETURNS tool_audit.tool_calls
 */
PG_FUNCTION_INFO_V1(end_call);
Datum
end_call(PG_FUNCTION_ARGS)
{
	Datum		args[5] = {0};
	bool		argnulls[5] = {true, true, true, true, true};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("call must not be null"),
				 errhint("Pass the uuid that tool_audit.begin_call() returned.")));
	argnulls[2] = PG_ARGISNULL(1);
	if (!argnulls[2])
		args[2] = PG_GETARG_DATUM(1);
	argnulls[3] = PG_ARGISNULL(2);
	if (!argnulls[3])
		args[3] = PG_GETARG_DATUM(2);
	return ta_autonomous_call(TA_AUTO_END, args, argnulls, PG_GETARG_UUID_P(0), true);
}

/* ---- the worker ---- */

static void
copy_message(char *to, const char *from)
{
	if (from != NULL)
		strlcpy(to, from, TA_MSG_LEN);
}

/* The row, in the worker's transaction. */
static void
write_row(TaAutoShared *sh)
{
	char	   *p = (char *) sh + sh->args_offset;
	Datum		args[TA_NARGS];
	bool		argnulls[TA_NARGS];
	TaCallRow	call = {0};

	for (int i = 0; i < TA_NARGS; i++)
		args[i] = datumRestore(&p, &argnulls[i]);
	call.autonomous = true;
	call.caller_txid = sh->caller_txid;
	if (sh->kind == TA_AUTO_BEGIN)
		call.phase = "started";
	else if (sh->kind == TA_AUTO_END)
	{
		Relation	rel;
		const TaLayout *layout;

		call.phase = "ended";
		rel = ta_layout_open("tool_calls", RowExclusiveLock, &layout);
		call.started = ta_fetch_tool_call(rel, args[TA_NARGS - 1]);
		if (call.started == NULL)
			ta_call_not_begun(args[TA_NARGS - 1]);
		if (argnulls[3])
		{
			/* the duration from the started row's time to now */
			bool		isnull;
			Datum		began = heap_getattr(call.started,
											 ta_column(layout, TA_COL_RECORDED_AT) + 1,
											 RelationGetDescr(rel), &isnull);

			args[3] = Float8GetDatum(Max(0.0, (double) (ta_record_time() - DatumGetTimestampTz(began)) / 1000.0));
			argnulls[3] = false;
		}
		table_close(rel, NoLock);
	}
	(void) ta_record_call(args, argnulls, &call, &sh->event_id);
}

/*
 * One request, in a worker (the one-shot worker, or one of the pool's):
 * become the caller (its settings, roles and security context), write the
 * row in a transaction of its own, and put the answer in the request: the
 * event_id once committed, or the error.
 */
void
ta_autonomous_serve(void *request)
{
	TaAutoShared *sh = (TaAutoShared *) request;
	MemoryContext cxt = CurrentMemoryContext;
	char		timeout[32];

	PG_TRY();
	{
		/*
		 * Who the caller is, and its settings.  A pooled worker first drops
		 * what the previous request set: its security context (a SECURITY
		 * DEFINER caller's), SET ROLE and SET SESSION AUTHORIZATION (resetting
		 * session_authorization to its default changes nothing: its assign
		 * hook ignores it); RestoreGUCState() then resets the settings a
		 * previous caller brought and sets this caller's,
		 * session_authorization among them.
		 */
		SetUserIdAndSecContext(GetSessionUserId(), 0);
		SetCurrentRoleId(InvalidOid, false);
		StartTransactionCommand();
		SetSessionAuthorization(GetAuthenticatedUserId(), superuser_arg(GetAuthenticatedUserId()));
		RestoreGUCState((char *) sh + sh->guc_offset);
		CommitTransactionCommand();
		SetCurrentRoleId(sh->outer_user, sh->outer_is_superuser);
		SetUserIdAndSecContext(sh->current_user, sh->sec_context);

		/*
		 * The worker's own settings, over the caller's (PGC_S_SESSION: a
		 * caller's SET has that source, and a lower one would not replace
		 * it).  A read-only session may still record its calls (it could SET
		 * this too).
		 */
		snprintf(timeout, sizeof(timeout), "%d", sh->lock_timeout);
		SetConfigOption("lock_timeout", timeout, PGC_SUSET, PGC_S_SESSION);
		SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_SESSION);
		SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_SESSION);

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, kind_name[sh->kind]);
		ta_autonomous_writer = true;
		write_row(sh);
		ta_autonomous_writer = false;
		PopActiveSnapshot();
		CommitTransactionCommand();
		pg_write_barrier();
		sh->status = TA_AUTO_DONE;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		ta_autonomous_writer = false;
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		sh->sqlerrcode = edata->sqlerrcode;
		copy_message(sh->message, edata->message);
		copy_message(sh->detail, edata->detail);
		copy_message(sh->hint, edata->hint);
		FreeErrorData(edata);
		pg_write_barrier();
		sh->status = TA_AUTO_FAILED;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}

void
ta_autonomous_main(Datum main_arg)
{
	dsm_segment *seg;
	TaAutoShared *sh;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller is gone: nobody waits */
	sh = dsm_segment_address(seg);

	BackgroundWorkerInitializeConnectionByOid(sh->database, sh->authenticated_user, 0);
	ta_autonomous_serve(sh);
	SetLatch(&ProcGlobal->allProcs[sh->caller_procno].procLatch);

	pgstat_report_activity(STATE_IDLE, NULL);
	dsm_detach(seg);
	proc_exit(0);
}
