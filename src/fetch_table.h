// The keys a worker is fetching from Redis right now, each with the requests waiting for it.
// No I/O: lookup drives it, and tests drive it by hand.
//
// Single flight: a miss for a key already on its way joins that fetch instead of sending one
// more GET, so 200 clients missing one key cost Redis one GET per worker.
//
// The invalidation race: a reply and the invalidation for its key travel on two connections,
// so the invalidation can arrive first. It then marks the key's flight, and the reply it
// invalidates is answered but not cached. Flights also carry the cache generation they were
// sent in: a reply is cached only in that same generation (a flush or a lost link meanwhile
// starts a new one).
#pragma once

#include <stddef.h>
#include <stdint.h>

struct CacheEntry;
struct LookupResult;

// One request waiting for a flight; embedded in whatever owns the request.
struct FlightWaiter {
    FlightWaiter *next;
    void (*answer)(FlightWaiter *self, const LookupResult *result);
};

struct Flight {
    Flight *hash_next;
    uint64_t hash;
    uint16_t generation;  // the cache's when the fetch was sent
    bool invalidated;     // an invalidation for the key came while it was on its way
    FlightWaiter *waiters, **waiters_tail;  // in arrival order
    CacheEntry *stale;    // retained: answered if Redis cannot be reached (stale_if_error)
    void *owner;          // the worker, for the reply callback
    size_t key_len;
    char key[];
};

struct FetchTable;

FetchTable *fetch_table_create();
void fetch_table_destroy(FetchTable *t);  // the flights must have been resolved

Flight *fetch_table_find(FetchTable *t, const char *key, size_t len, uint64_t hash);
// A new flight for the key (not yet in the table), with no waiters; NULL if out of memory.
// `room` bytes more come in the same allocation (flight_room), for the first waiter: a miss then
// costs one allocation, not two.
Flight *fetch_table_add(FetchTable *t, const char *key, size_t len, uint64_t hash, uint16_t generation,
                        size_t room = 0);
void *flight_room(Flight *f);
void fetch_table_join(Flight *f, FlightWaiter *w);
// Takes the flight out of the table; the caller answers its waiters and frees it (free(), which
// frees its room too).
void fetch_table_remove(FetchTable *t, Flight *f);
// The key changed in Redis: a flight for it must not cache its reply. Returns whether one was.
bool fetch_table_invalidate(FetchTable *t, const char *key, size_t len, uint64_t hash);
size_t fetch_table_count(const FetchTable *t);

// Whether a flight's reply may be cached, as far as the flight knows: no invalidation for its key
// came while it was on its way, and the cache is still in the generation it was sent in.
inline bool flight_may_cache(const Flight *f, uint16_t cache_generation)
{
    return !f->invalidated && f->generation == cache_generation;
}
