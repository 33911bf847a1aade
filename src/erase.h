/*-------------------------------------------------------------------------
 *
 * erase.h
 *		erase_subject() and what verify() needs to accept its erasures
 *		(erase.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_ERASE_H
#define TA_ERASE_H

#include "fmgr.h"
#include "lib/stringinfo.h"

#include "crypto.h"
#include "layout.h"

/* the markers an erasure writes over personal fields (doc/retention.md) */
#define TA_ERASED_TEXT		"tool_audit:erased"
#define TA_ERASED_KEY		"tool_audit:erased"
#define TA_ERASED_JSONB		"{\"" TA_ERASED_KEY "\": true}"

/* the payload member of a tool_audit.retention.erase event that commits to its erasures rows */
#define TA_ERASURES_HASH_KEY "erasures_hash"

/*
 * The erasures commitment (doc/canonical-encoding.md, "Erasures"): entries
 * are added in (table name bytes, row id) order, then finished.
 */
typedef struct TaErasuresHash
{
	StringInfoData buf;
	int64		count;
} TaErasuresHash;

extern void ta_erasures_hash_begin(TaErasuresHash *h);
extern void ta_erasures_hash_add(TaErasuresHash *h, const char *table, int64 row_id,
								 Datum erased_columns,
								 const unsigned char row_hash_after[TA_HASH_LEN]);
extern void ta_erasures_hash_end(TaErasuresHash *h, unsigned char out[TA_HASH_LEN]);
extern bool ta_is_erasure_marker(char tag, Datum value);
extern bool ta_row_has_erasure_marker(const TaLayout *layout, Datum *values, bool *nulls);

#endif							/* TA_ERASE_H */
