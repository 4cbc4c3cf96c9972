// A worker's numbers, in plain structs that live in the scoreboard (shared memory, see
// scoreboard.h): each worker writes only its own record, with plain stores on the hot path,
// and whoever reports sums the records. Counters only ever grow; gauges say how things are now.
#pragma once

#include <stdint.h>
#include <time.h>

#include "clock.h"

enum Front { FRONT_HTTP, FRONT_RESP, FRONT_COUNT };

// How a key asked for was answered (an MGET counts each of its keys).
enum RequestResult {
    RESULT_HIT,          // from the cache
    RESULT_MISS,         // fetched from Redis, found
    RESULT_NOT_FOUND,    // fetched from Redis, no such key
    RESULT_ERROR,        // Redis answered an error, or a reply of the wrong type
    RESULT_UNAVAILABLE,  // no connection to Redis
    RESULT_TIMEOUT,      // Redis did not answer within command_timeout
    RESULT_COUNT
};

// Why a client was closed for what it held (clients_evicted_total{reason}).
enum EvictReason {
    EVICT_REQUEST,  // a command larger than max_request_size
    EVICT_OUTPUT,   // answers not read past max_client_output
    EVICT_MEMORY,   // the most of all while the worker's clients passed max_client_memory
    EVICT_REASONS
};

// Fixed buckets, cheap to bump: upper bounds in microseconds; the last bucket is +Inf.
static const int HISTOGRAM_BUCKETS = 14;
static const uint64_t histogram_bounds_us[HISTOGRAM_BUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000};

struct Histogram {
    uint64_t bucket[HISTOGRAM_BUCKETS];  // not cumulative: each observation bumps one
    uint64_t count;
    uint64_t sum_us;
};

// `n` observations of `us` each.
inline void histogram_observe_n(Histogram *h, uint64_t us, uint64_t n)
{
    int i = 0;
    while (i < HISTOGRAM_BUCKETS - 1 && us > histogram_bounds_us[i])
        i++;
    h->bucket[i] += n;
    h->count += n;
    h->sum_us += us * n;
}

inline void histogram_observe(Histogram *h, uint64_t us) { histogram_observe_n(h, us, 1); }

struct WorkerStats {
    // counters
    uint64_t requests[FRONT_COUNT][RESULT_COUNT];
    uint64_t bad_requests[FRONT_COUNT];  // malformed requests answered with an error
    uint64_t refused_requests[FRONT_COUNT];  // well-formed, for what a read-only cache does not do
                                             // (a write, another HTTP method, an unknown command)
    uint64_t clients_accepted[FRONT_COUNT];
    uint64_t clients_denied[FRONT_COUNT];  // refused by protected mode: not loopback, and no [users]
    uint64_t auth_failures[FRONT_COUNT];   // credentials refused: a wrong password, an unknown or disabled user
    uint64_t forbidden_requests[FRONT_COUNT];  // refused for who asked: no login (401, NOAUTH), a key outside its patterns (403, NOPERM)
    uint64_t auth_timeouts;                // RESP clients closed for not logging in within request_timeout
    uint64_t admin_auth_failures;          // /metrics asked without its [admin] token
    uint64_t admin_clients_denied;         // admin connections protected mode refused (no token)
    uint64_t tls_handshakes[FRONT_COUNT];  // TLS clients whose handshake finished
    uint64_t tls_handshake_failures[FRONT_COUNT];  // TLS clients gone before it did: refused, cut off, too slow
    uint64_t admin_tls_handshakes;
    uint64_t admin_tls_handshake_failures;
    uint64_t resp_commands;  // RESP commands run (INFO's total_commands_processed, with HTTP requests)
    uint64_t connections_handed_over;  // RESP connections taken over from a retiring worker (reload)
    uint64_t clients_timed_out[FRONT_COUNT];  // closed for not reading their answers within client_timeout
    uint64_t clients_evicted[EVICT_REASONS];  // closed for what they held (client_memory.h)
    Histogram request_seconds[FRONT_COUNT];  // from a request's arrival to its answer
    Histogram redis_seconds;                 // a command's round trip to Redis
    uint64_t redis_commands;    // commands sent to Redis
    uint64_t redis_errors;      // Redis answered an error reply
    uint64_t redis_timeouts;    // commands answered as timed out (command_timeout)
    uint64_t redis_bad_replies; // Redis answered a reply of the wrong shape (502)
    uint64_t redis_connects;    // successful (re)connections to Redis
    uint64_t redis_tls_failures; // TLS handshakes with Redis that failed (a wrong CA, name, protocol)
    uint64_t redis_out_of_step; // connections dropped for extra, unreadable or wrong-type replies
    uint64_t redis_replies_too_large; // replies past max_reply_size: skipped, their request failed
    uint64_t cache_inserts;
    uint64_t cache_evictions;   // dropped by LRU to make room
    uint64_t cache_expirations; // dropped because their TTL passed (or they were no longer trusted)
    uint64_t cache_page_evictions; // dropped with their slab page, to keep the pages within max_memory
    uint64_t coalesced;         // misses that joined a fetch already on its way (single flight)
    uint64_t stale_answers;     // answered stale because Redis could not be reached (stale_if_error)
    uint64_t invalidations;     // cached keys dropped because Redis said they changed
    uint64_t invalidated_fetches; // fetches an invalidation overtook: answered, not cached, not joined
    uint64_t invalidation_flushes; // the whole cache made stale: FLUSHALL/FLUSHDB in Redis
    uint64_t tracking_losses;   // the invalidation link lost: the whole cache made stale
    uint64_t tracking_refusals; // Redis refused a tracking command for now: retried with back-off
    uint64_t cluster_moved;     // MOVED answers followed (Redis Cluster): the slot's owner changed
    uint64_t cluster_asks;      // ASK answers followed: the slot is being migrated
    uint64_t cluster_retries;   // commands tried again after CLUSTERDOWN or TRYAGAIN
    uint64_t cluster_map_refreshes; // slot maps asked for (CLUSTER SLOTS)
    uint64_t cluster_unaddressable_nodes; // primaries a map named without an IP: their slots unserved
    uint64_t access_log_lines;    // lines written to the access log ([log] access)
    uint64_t access_log_dropped;  // lines dropped: the file could not take them without waiting
    // gauges: not carried over when a worker exits
    uint64_t clients_open[FRONT_COUNT];
    uint64_t cache_entries;
    uint64_t cache_bytes;       // bytes of the entries held, as the slab allocates them
    uint64_t client_memory;     // bytes the clients hold: input, answers unread, lookups (client_memory.h)
    uint64_t redis_connected;   // 1 while connected to Redis past AUTH/SELECT
    uint64_t redis_tried;       // 1 once the first attempt to reach Redis has ended, either way
    uint64_t accepting;         // 1 while the worker's listeners are open
    uint64_t tracking;          // 1 while Redis tracks this worker's reads (invalidation live)
    uint64_t ops_per_sec;       // commands and HTTP requests per second, over the last 1.6 s
    uint64_t cache_ttl_left_ms; // the time left of their TTL, summed over the entries held
    uint64_t fetches_waiting;   // commands of lookup's sent to Redis and not answered yet
};

// Commands and HTTP requests answered so far (INFO's total_commands_processed).
inline uint64_t stats_commands(const WorkerStats *s)
{
    uint64_t n = s->resp_commands + s->bad_requests[FRONT_HTTP] + s->refused_requests[FRONT_HTTP];
    for (int r = 0; r < RESULT_COUNT; r++)
        n += s->requests[FRONT_HTTP][r];
    return n;
}

// INFO's instantaneous_ops_per_sec, as Redis computes it: samples every 100 ms, the rate over
// the last 16 of them.
struct OpsRate {
    static const int SAMPLES = 16;
    uint64_t ops[SAMPLES], ms[SAMPLES];
    int next, taken;
};

inline uint64_t ops_rate_sample(OpsRate *r, uint64_t ops, uint64_t now_ms)
{
    int oldest = r->taken < OpsRate::SAMPLES ? 0 : r->next;
    uint64_t rate = 0;
    if (r->taken > 0 && now_ms > r->ms[oldest])
        rate = (ops - r->ops[oldest]) * 1000 / (now_ms - r->ms[oldest]);
    r->ops[r->next] = ops;
    r->ms[r->next] = now_ms;
    r->next = (r->next + 1) % OpsRate::SAMPLES;
    if (r->taken < OpsRate::SAMPLES)
        r->taken++;
    return rate;
}
