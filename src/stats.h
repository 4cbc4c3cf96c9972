// A worker's counters, all in one plain struct so they can later live in shared memory and be
// summed by the master. Bumped on the hot path without locks: each worker writes only its own.
#pragma once

#include <stdint.h>

struct WorkerStats {
    uint64_t requests;          // requests answered, both fronts
    uint64_t hits;              // answered from the cache
    uint64_t misses;            // sent to Redis
    uint64_t not_found;         // Redis said nil
    uint64_t redis_errors;      // Redis answered an error reply
    uint64_t redis_bad_replies; // Redis answered a reply of the wrong shape (502)
    uint64_t redis_unavailable; // answered 503: no connection to Redis
    uint64_t redis_timeouts;    // answered 504: Redis too slow
    uint64_t bad_requests;      // 4xx for malformed requests
    uint64_t cache_inserts;
    uint64_t cache_evictions;   // dropped by LRU to make room
    uint64_t cache_expirations; // dropped because their TTL passed
    uint64_t clients_accepted;
    uint64_t clients_open;
    uint64_t redis_connects;    // successful (re)connections to Redis
    uint64_t redis_out_of_step; // connections dropped for extra, unreadable or wrong-type replies
};
