/*-------------------------------------------------------------------------
 *
 * autonomous_pool.h
 *		Long-lived background workers for the autonomous writes of
 *		autonomous.c, when tool_audit is in shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_AUTONOMOUS_POOL_H
#define TA_AUTONOMOUS_POOL_H

#include "nodes/nodes.h"

typedef struct TaPoolCall TaPoolCall;

/* _PG_init() while preloading: shared memory and hooks */
extern void ta_pool_init(void);
/* the pool is there (preloaded) */
extern bool ta_pool_active(void);
/* guard.c's ProcessUtility hook: idle workers leave before database DDL */
extern void ta_pool_before_utility(Node *stmt);

/*
 * The caller: reserve a worker of this database and login role (waiting a
 * while when the pool is full, then 53400), get room for a request of that
 * size (in shared memory), run it and wait for the answer (false: the
 * worker ended without one), release the worker.
 */
extern TaPoolCall *ta_pool_reserve(const char *fname, int cap, int wait_ms);
extern void *ta_pool_request_space(TaPoolCall *pc, Size size);
extern bool ta_pool_run(TaPoolCall *pc, const char *fname);
extern void ta_pool_release(TaPoolCall *pc);

/* autonomous.c: one request, in the worker (writes its answer in it) */
extern void ta_autonomous_serve(void *request);

#endif							/* TA_AUTONOMOUS_POOL_H */
