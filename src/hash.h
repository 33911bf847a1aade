/*-------------------------------------------------------------------------
 *
 * hash.h
 *		The canonical encoding of doc/canonical-encoding.md and the hashes
 *		built on it: row hashes, chain ids, links (hash.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_HASH_H
#define TA_HASH_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "crypto.h"
#include "layout.h"

extern void ta_append_utf8(StringInfo buf, const char *s, int len);
extern void ta_canonical_json(StringInfo buf, Jsonb *j);
extern void ta_row_hash(const TaLayout *layout, Datum *values, bool *nulls,
						unsigned char out[TA_HASH_LEN]);
extern int64 ta_chain_id(const TaLayout *layout, Datum *values, bool *nulls);
extern Datum ta_hash_datum(const unsigned char hash[TA_HASH_LEN]);
extern bool ta_stored_hash(Datum d, bool isnull, unsigned char out[TA_HASH_LEN]);
extern bool ta_stored_hash_attr(HeapTuple tup, TupleDesc desc, int attnum,
								unsigned char out[TA_HASH_LEN]);
extern void ta_link_hash(int64 chain_id, int32 lane, int64 seq,
						 const unsigned char prev[TA_HASH_LEN],
						 const unsigned char row_hash[TA_HASH_LEN],
						 unsigned char out[TA_HASH_LEN]);

#endif							/* TA_HASH_H */
