/*-------------------------------------------------------------------------
 *
 * autonomous.h
 *		Calls that survive the caller's rollback: begin_call(), end_call()
 *		and log_call() with "autonomous": true, written by a dynamic
 *		background worker (autonomous.c); the row itself is built by
 *		log_call.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_AUTONOMOUS_H
#define TA_AUTONOMOUS_H

#include "access/htup.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* Which half of a call a row is, and how it is written. */
typedef struct TaCallRow
{
	const char *phase;			/* NULL (one-row call), "started", "ended" */
	HeapTuple	started;		/* an ended row: the started row it closes */
	bool		autonomous;		/* written by the worker: caller_txid is set */
	int64		caller_txid;	/* the caller's top transaction id */
} TaCallRow;

typedef enum TaAutoKind
{
	TA_AUTO_LOG_CALL,
	TA_AUTO_BEGIN,
	TA_AUTO_END
} TaAutoKind;

/* log_call.c */
extern Datum ta_record_call(Datum *args, bool *argnulls, const TaCallRow *call,
							pg_uuid_t *event_id);
extern bool ta_context_autonomous(Jsonb *ctx);

/* autonomous.c */
extern int	ta_max_autonomous_workers;
extern void ta_autonomous_init(void);
extern Datum ta_autonomous_call(TaAutoKind kind, Datum *args, bool *argnulls,
								pg_uuid_t *call, bool return_row);

#endif							/* TA_AUTONOMOUS_H */
