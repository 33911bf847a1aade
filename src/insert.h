/*-------------------------------------------------------------------------
 *
 * insert.h
 *		The insert path every audit row takes (insert.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_INSERT_H
#define TA_INSERT_H

#include "access/htup.h"

#include "utils/relcache.h"

extern void ta_insert_init(void);
extern HeapTuple ta_record_tool_call(Relation rel, HeapTuple tuple,
									 Datum *values, bool *nulls);

extern HeapTuple ta_fetch_tool_call(Relation rel, Datum event_id);
extern bool ta_autonomous_writer;
extern void ta_call_not_begun(Datum call) pg_attribute_noreturn();

#endif							/* TA_INSERT_H */
