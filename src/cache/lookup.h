// The one path both fronts use to answer a GET: a live cache entry, or a miss fetched from Redis
// with GET, cached, and answered. The answer flows back through one callback, called exactly
// once: synchronously (inside lookup_get) for hits and immediate failures, later for fetches.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "stats.h"

struct evbuffer;
struct Config;
struct FetchTable;
struct Backend;
struct Cluster;

// What lookup works with: one worker's cache, the fetches under way, its Redis (one, or a
// cluster), and what the coherence rules know of them (coherence.h). The worker owns it and sets
// it up; lookup and the worker's tracking callbacks keep it.
struct Lookup {
    const Config *config;
    WorkerStats *stats;
    int id;                    // the worker's, for logs
    Cache *cache;
    FetchTable *flights;       // keys being fetched, with their waiting requests
    Backend *backend;          // one Redis ([redis] address); NULL with a cluster
    Cluster *cluster;          // a Redis Cluster ([redis] cluster); NULL with one Redis
    bool caching;              // replies may be cached (with tracking: only while it is established)
    uint64_t distrusted_us;    // one Redis: since when what was read from it is not trusted
    bool cache_not_found;      // a nil reply is cached too (cache_not_found)
    bool pttl_refused_logged;
    // Hits counted but not yet in the request-duration histogram: a hit is answered within the
    // read that brought its request, and its front observes that time once for all of them
    // (lookup_observe_hits), rather than reading the clock per hit.
    uint64_t hits_unobserved;
};

enum LookupStatus {
    LOOKUP_FOUND,        // value below
    LOOKUP_NOT_FOUND,    // Redis has no such key (cached as such with cache_not_found)
    LOOKUP_REDIS_ERROR,  // Redis answered an error (text in value; not cached)
    LOOKUP_UNAVAILABLE,  // no connection to Redis
    LOOKUP_TIMEOUT,      // Redis did not answer within command_timeout
    LOOKUP_BAD_REPLY,    // Redis answered with a reply of the wrong shape for the command
    LOOKUP_TOO_LARGE,    // the value (or an MGET's whole answer) is larger than max_reply_size
};

struct LookupResult {
    LookupStatus status;
    bool hit;            // answered from the cache without asking Redis
    bool stale;          // Redis could not be reached: a stale copy, within stale_if_error
    CacheEntry *entry;   // the entry holding value: cached, or detached when it could not be
                         // cached; NULL for a small uncached value (or out of memory). Valid
                         // during the callback, retain it to keep it longer
    const char *value;   // value bytes (or error text), valid during the callback
    size_t value_len;
    uint64_t wait_us;    // how long it waited for Redis (0 when answered at once)
};

typedef void (*LookupDone)(void *arg, const LookupResult *result);

// Puts the hits answered since the last call into the request-duration histogram, each with
// `us`: the time the front spent from reading their requests to having answered them.
void lookup_observe_hits(Lookup *lookup, Front front, uint64_t us);

// `front` says who asks: each answer is counted under it (result and wait) before `done` runs.
void lookup_get(Lookup *lookup, Front front, const char *key, size_t key_len, LookupDone done, void *arg);

struct LookupKey {
    const char *ptr;
    size_t len;
};

typedef void (*LookupManyDone)(void *arg, const LookupResult *results, size_t n);

// Many keys at once (MGET): hits come from the cache, and the misses not already being fetched
// are fetched from Redis with a single MGET, cached, and answered together, in the order of keys. Called like
// lookup_get: synchronously when every key is a hit, else once Redis has answered.
// results is NULL (and n 0) only when out of memory.
void lookup_get_many(Lookup *lookup, Front front, const LookupKey *keys, size_t n, LookupManyDone done, void *arg);

// As lookup_get_many, for keys that must be answered as one snapshot (a transaction's): when
// every key is a hit they are answered from the cache; else every key is fetched again, all of
// them in one MGET (one per slot in a cluster) that joins no fetch sent before it, so that the
// answers are what Redis held at one moment.
void lookup_get_snapshot(Lookup *lookup, Front front, const LookupKey *keys, size_t n, LookupManyDone done,
                         void *arg);

// The key changed in Redis (an invalidation): drop it from the cache, and if it is being fetched,
// unlink that fetch: its reply (maybe read before the change) answers those already waiting and
// is not cached; a request from now on sends a fetch of its own.
void lookup_invalidate(Lookup *lookup, const char *key, size_t len);

// A found value's digest (cache_value_digest): kept with its entry when it came from the cache
// (made once when it was stored, with cache_keep_digests), else made now.
uint64_t lookup_value_digest(const Lookup *lookup, const LookupResult *r);
// How long ago a found value was read from Redis, in seconds: 0 unless it came from the cache.
uint64_t lookup_value_age_s(const Lookup *lookup, const LookupResult *r);

// Appends a found value to a reply: small values are copied into the output buffer (cheaper
// than the chain a reference allocates); larger ones are referenced in place with their entry
// retained until libevent has written them, so an eviction meanwhile is harmless, and every
// answer with one value shares its one copy. `suffix` (static bytes, may be empty) follows it.
// False when out of memory: the answer must not be sent as it is.
bool lookup_add_value(evbuffer *out, const LookupResult *r, const char *suffix, size_t suffix_len);
