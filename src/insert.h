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

#endif							/* TA_INSERT_H */
