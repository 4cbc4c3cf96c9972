// Lookup's own parts, shared by its GET path (lookup.cc) and its MGET path (lookup_many.cc).
// Internal to the cache layer. The small ones every hit uses are inline here.
#pragma once

#include <hiredis/hiredis.h>

#include "backend.h"
#include "cache.h"
#include "cluster.h"
#include "cluster_slot.h"
#include "coherence.h"
#include "fetch_table.h"
#include "lookup.h"

// A GET's reply, or one element of an MGET's: a string or nil. Anything else (an integer, an
// array, a RESP3 type) means Redis, or whatever answers in its place, is not answering what
// was asked: it is an error, and nothing of it is cached.
static inline bool is_value_reply(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL;
}

static inline LookupResult result_of_entry(CacheEntry *e, bool hit)
{
    if (e->absent)
        return {LOOKUP_NOT_FOUND, hit, false, NULL, NULL, 0, 0};
    return {LOOKUP_FOUND, hit, false, e, cache_entry_value(e), e->value_len, 0};
}

// What is known now of a key's source (coherence.h): the one Redis, or its slot's owner. Whether
// its slot migrates matters for a "not found" only: asked for then (with_migration). By slot,
// for a key whose slot is known (a flight's); key_trust finds the slot first (once a lookup).
static inline KeyTrust slot_trust(const Lookup *lk, int slot)
{
    if (lk->cluster == NULL)
        return {lk->distrusted_us, lk->caching, false};
    return {cluster_slot_distrusted_us(lk->cluster, slot), true, false};
}

static inline KeyTrust key_trust(const Lookup *lk, const char *key, size_t len, int *slot)
{
    if (lk->cluster != NULL)
        *slot = cluster_key_slot(key, len);
    return slot_trust(lk, *slot);
}

static inline void with_migration(const Lookup *lk, int slot, KeyTrust *trust)
{
    if (lk->cluster != NULL)
        trust->migrating = cluster_slot_migrating(lk->cluster, slot);
}

// A fresh cache entry is a hit only if it was stored after its source was last distrusted
// (coherence.h). If not, it is kept as the answer for when its source cannot be reached (its
// fetch refused or timed out): within its TTL, tracking is never worse than invalidation = off,
// which would have answered it as a hit.
static inline CacheEntry *trusted(Lookup *lk, KeyTrust *trust, int slot, CacheEntry *e, CacheEntry **stale)
{
    if (e == NULL)
        return NULL;
    if (e->absent)
        with_migration(lk, slot, trust);
    if (coherence_entry_is_hit(cache_entry_stored_us(lk->cache, e), e->absent, trust))
        return e;
    *stale = e;
    return NULL;
}

// Where a key stands now: its hash, its slot, what is known of its source, and the entry to
// answer if Redis cannot be reached (find_trusted).
struct KeyLookup {
    uint64_t hash;
    int slot;
    KeyTrust trust;
    CacheEntry *stale;
};

// The key's entry if it is a hit now (fresh and trusted), else NULL; either way *k says where the
// key stands, for a fetch of it. Every lookup starts here: GET, MGET, a snapshot's test.
static inline CacheEntry *find_trusted(Lookup *lk, const char *key, size_t len, uint64_t now_ms, KeyLookup *k)
{
    k->hash = cache_hash(lk->cache, key, len);
    k->slot = 0;
    k->trust = key_trust(lk, key, len, &k->slot);
    return trusted(lk, &k->trust, k->slot, cache_find_or_stale(lk->cache, key, len, k->hash, now_ms, &k->stale),
                   &k->stale);
}

// lookup.cc
void lookup_count_answer(Lookup *lk, Front front, const LookupResult *r);  // in the request metrics
LookupResult lookup_result_bad_reply(Lookup *lk);
LookupResult lookup_result_redis_error(Lookup *lk, const Flight *f, const redisReply *reply);
LookupResult lookup_result_from_value(Lookup *lk, const Flight *f, const redisReply *reply);
LookupResult lookup_result_unreachable(Lookup *lk, const Flight *f, LookupStatus status);
LookupResult lookup_result_failed(Lookup *lk, const Flight *f, BackendFailure failure);
void lookup_resolve(Lookup *lk, Flight *f, LookupResult r);  // answers every waiter, frees f
bool lookup_send_fetch(Lookup *lk, int slot, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                       void *arg);
void lookup_ask_key_life(Lookup *lk, int slot, Flight *f);  // follow_key_expiry's PTTL
bool lookup_ask_again(Lookup *lk, bool *resent, BackendFailure failure);
Flight *lookup_new_flight(Lookup *lk, const char *key, size_t len, uint64_t hash, int slot, CacheEntry *stale,
                          size_t room, FlightKind kind);
