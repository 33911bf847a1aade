/*-------------------------------------------------------------------------
 *
 * time_order.h
 *		Time along a lane: the checks verify() and verify_digest() make of
 *		each row's time of recording (time_order.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_TIME_ORDER_H
#define TA_TIME_ORDER_H

#include "datatype/timestamp.h"

/* tool_audit.time_tolerance, in seconds */
extern int	ta_time_tolerance;

extern void ta_time_order_init(void);

/*
 * What is wrong with a row recorded at "at" after rows of its lane the
 * latest of which was recorded at "latest" (at position latest_seq); NULL
 * when nothing is.
 */
extern char *ta_time_order_problem(TimestampTz at, TimestampTz latest, int64 latest_seq);

/*
 * What is wrong with a row recorded at "at" that a digest taken at
 * "taken_at" does not cover; NULL when nothing is.
 */
extern char *ta_time_uncovered_problem(TimestampTz at, TimestampTz taken_at, bool lane_in_digest);

#endif							/* TA_TIME_ORDER_H */
