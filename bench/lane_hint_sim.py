#!/usr/bin/env python3
"""How often a lane written before finds its head hint (src/lane_hint.c), by
the slot policy alone: LANES lanes written at random, one at a time, each
write taking its lane's hint out of its set and putting it back after, into
an empty slot of the set or over another lane's hint (round robin), as
ta_lane_hint_take() and ta_lane_hint_put() do.  A model of the policy, not a
measurement of the server: sessions that keep their lanes, concurrent
writers and epoch moves are left out.
    python3 bench/lane_hint_sim.py     (about a minute)
"""
import random

def sim(nlanes, nslots, ways, writes=600000, seed=1):
    random.seed(seed)
    nsets=(nslots+ways-1)//ways
    sets=[[None]*ways for _ in range(nsets)]
    setof=[random.randrange(nsets) for _ in range(nlanes)]
    seen=set(); hits=0; eligible=0; rr=0
    for i in range(writes):
        l=random.randrange(nlanes)
        s=sets[setof[l]]
        hit = l in s
        if l in seen:
            eligible+=1; hits+=hit
        if hit: s[s.index(l)]=None
        seen.add(l)
        # put
        if None in s: s[s.index(None)]=l
        else: s[rr%ways]=l; rr+=1
    return hits/eligible
for nslots in (65536,131072,262144):
    print(nslots, 'direct %.2f'%sim(100000,nslots,1), '4-way %.2f'%sim(100000,nslots,4), '16-way %.2f'%sim(100000,nslots,16))
