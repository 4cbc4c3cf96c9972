// The one path both fronts use to answer a GET: a live cache entry, or a miss fetched from Redis
// with GET, cached, and answered. The answer flows back through one callback, called exactly
// once: synchronously (inside lookup_get) for hits and immediate failures, later for fetches.
#pragma once

#include <stddef.h>

#include "cache.h"

struct Worker;

enum LookupStatus {
    LOOKUP_FOUND,        // value below
    LOOKUP_NOT_FOUND,    // Redis has no such key (not cached)
    LOOKUP_REDIS_ERROR,  // Redis answered an error (text in value; not cached)
    LOOKUP_UNAVAILABLE,  // no connection to Redis
    LOOKUP_TIMEOUT,      // Redis did not answer within command_timeout
};

struct LookupResult {
    LookupStatus status;
    bool hit;            // answered from the cache without asking Redis
    CacheEntry *entry;   // the cached entry holding value, or NULL if the value was not cached
                         // (too large); valid during the callback, retain it to keep it longer
    const char *value;   // value bytes (or error text), valid during the callback
    size_t value_len;
};

typedef void (*LookupDone)(void *arg, const LookupResult *result);

void lookup_get(Worker *w, const char *key, size_t key_len, LookupDone done, void *arg);
