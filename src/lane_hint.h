/*
 * lane_hint.h
 *		Heads of lanes given back, in shared memory (lane_hint.c).
 */
#ifndef TA_LANE_HINT_H
#define TA_LANE_HINT_H

#include "chain.h"

extern void ta_lane_hint_settings(void);
extern void ta_lane_hint_init(void);
extern uint64 ta_lane_hint_epoch(void);
extern bool ta_lane_hint_take(Oid relid, TaChainHead *head);
extern void ta_lane_hint_put(Oid relid, const TaChainHead *head, uint64 taken_epoch);
extern void ta_lane_hint_invalidate(void);

#endif
