/*-------------------------------------------------------------------------
 *
 * idempotency.h
 *		A retry of a stored tool call recognised by its call id, and the
 *		client's started_at checked (idempotency.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_IDEMPOTENCY_H
#define TA_IDEMPOTENCY_H

#include "access/htup.h"
#include "utils/relcache.h"

#include "layout.h"

extern void ta_check_started_at(const TaLayout *layout, Datum *values, bool *nulls);
extern HeapTuple ta_stored_retry(Relation rel, const TaLayout *layout, Datum *values,
								 bool *nulls, bool event_id_given, bool from_log_call);
extern bool ta_is_stored_row(HeapTuple tuple);

#endif							/* TA_IDEMPOTENCY_H */
