/*-------------------------------------------------------------------------
 *
 * verify_parallel.h
 *		The walk of a large audit table by parallel workers and the leader,
 *		each walking whole chains (verify_parallel.c), and what verify.c
 *		gives it to walk a part.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_VERIFY_PARALLEL_H
#define TA_VERIFY_PARALLEL_H

#include "storage/dsm.h"
#include "storage/shm_toc.h"
#include "utils/relcache.h"

/* A part of a table's chain position index: chain ids lo to hi, or the rows with none. */
typedef struct TaChainRange
{
	bool		nulls;
	int64		lo;
	int64		hi;
	bool		lanes;			/* set by its walk: it met a row in a lane */
} TaChainRange;

/*
 * Where the walk of a part puts its problems (of the part's table); tail:
 * found after the part's last row (its last lane's end, lanes of purge
 * anchors alone after it).
 */
typedef void (*TaProblemSink) (void *arg, bool tail, bool has_chain, int64 chain_id, int32 lane,
							   int64 position, int64 row_id, const char *problem);

/* verify_parallel.c */
extern int	ta_verify_parallel_workers;
extern int	ta_verify_parallel_min_pages;
extern void ta_verify_parallel_init(void);
extern int	ta_verify_parallel_plan(Relation rel);
extern void ta_verify_parallel_walk(void *walk, const char *table, Relation rel, Relation irel,
									int nworkers, const char *state, Size len);
extern PGDLLEXPORT void ta_verify_parallel_main(dsm_segment *seg, shm_toc *toc);

/* verify.c: a part of the walk of a table, from the run's state */
extern void *ta_verify_restore(const char *state, TaProblemSink sink, void *sink_arg);
extern bool ta_verify_walk_part(void *walk, const TaChainRange *range);
extern void ta_verify_save_reached(void *walk, char *state);
extern void ta_verify_merge_reached(void *walk, const char *state);
extern void ta_verify_report(void *walk, const char *table, bool has_chain, int64 chain_id,
							 int32 lane, int64 position, int64 row_id, const char *problem);

#endif							/* TA_VERIFY_PARALLEL_H */
