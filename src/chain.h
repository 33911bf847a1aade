/*-------------------------------------------------------------------------
 *
 * chain.h
 *		Giving rows their place in a chain, in commit order (chain.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_CHAIN_H
#define TA_CHAIN_H

#include "storage/lock.h"

#include "crypto.h"
#include "layout.h"

/* A position in a chain lane and the link stored there (seq 0: empty lane). */
typedef struct TaChainHead
{
	int64		chain_id;
	int32		lane;
	int64		seq;
	unsigned char link[TA_HASH_LEN];
} TaChainHead;

extern void ta_chain_init(void);
extern void ta_chain_append(Relation rel, const TaLayout *layout, int64 chain_id,
							const unsigned char row_hash[TA_HASH_LEN],
							TaChainHead *placed);
extern void ta_chain_advance(TaChainHead *head,
							 const unsigned char row_hash[TA_HASH_LEN]);
extern void ta_chain_store(const TaLayout *layout, Datum *values, bool *nulls,
						   const unsigned char row_hash[TA_HASH_LEN],
						   const TaChainHead *placed);
extern bool ta_xact_lock(const LOCKTAG *tag, bool wait);
extern void ta_xact_unlock(const LOCKTAG *tag);

#endif							/* TA_CHAIN_H */
