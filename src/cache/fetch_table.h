// The keys a worker is fetching from Redis right now, each with the requests waiting for it.
// No I/O: lookup drives it, and tests drive it by hand.
//
// Single flight: a miss for a key already on its way joins that fetch instead of sending one
// more GET, so 200 clients missing one key cost Redis one GET per worker.
//
// The invalidation race: a reply and the invalidation for its key travel on two connections,
// so the invalidation can arrive first. It then unlinks the key's flight from the table: the
// requests already waiting get its reply, uncached, and a request that comes after the
// invalidation starts a new fetch instead of joining one sent before the change. Flights also
// carry when they were sent, for the coherence rules (coherence.h) to compare with distrust.
#pragma once

#include <stddef.h>
#include <stdint.h>

struct CacheEntry;
struct LookupResult;

// What a flight's reply answers. A GET and an MGET of one key are different questions: for a key
// of another type GET answers -WRONGTYPE and MGET nil, so a request joins only a flight of its
// own command, and the table may hold one of each for a key.
enum FlightKind { FLIGHT_GET, FLIGHT_MGET };

// One request waiting for a flight; embedded in whatever owns the request.
struct FlightWaiter {
    FlightWaiter *next;
    void (*answer)(FlightWaiter *self, const LookupResult *result);
};

struct Flight {
    Flight *hash_next;
    uint64_t hash;
    uint64_t sent_us;     // when the fetch was sent (monotonic_us)
    bool invalidated;     // not to be joined or cached: an invalidation came, or it was unlinked
    bool detached;        // unlinked from the table (it still answers its waiters)
    bool in_snapshot;     // sent by the snapshot being set up (lookup_get_snapshot), only then
    FlightKind kind;
    bool resent;          // asked again once, after its connection was cut (lookup_ask_again)
    int slot;             // the key's cluster slot (0 with one Redis), computed once per miss
    FlightWaiter *waiters, **waiters_tail;  // in arrival order
    CacheEntry *stale;    // retained: answered if Redis cannot be reached (stale_if_error)
    void *owner;          // the worker, for the reply callback
    // The key's remaining life in Redis, from a PTTL sent just before the GET: -1 none, -2 no such
    // key, FLIGHT_PTTL_UNKNOWN until its reply comes, FLIGHT_PTTL_REFUSED.
    int64_t key_pttl_ms;
    // Commands whose replies still point at the flight (its GET or MGET, and its PTTL): freed
    // when the last one is done with it (flight_release).
    int refs;
    size_t key_len;
    char key[];
};

static const int64_t FLIGHT_PTTL_UNKNOWN = INT64_MIN;
static const int64_t FLIGHT_PTTL_REFUSED = INT64_MIN + 1;  // Redis answered PTTL with an error

struct FetchTable;

FetchTable *fetch_table_create();
void fetch_table_destroy(FetchTable *t);  // the flights must have been resolved

// The key's flight of that kind in the table, if any.
Flight *fetch_table_find(FetchTable *t, const char *key, size_t len, uint64_t hash, FlightKind kind = FLIGHT_GET);
// A new flight for the key (not yet in the table), with no waiters, held once (for its fetch);
// NULL if out of memory.
// `room` bytes more come in the same allocation (flight_room), for the first waiter: a miss then
// costs one allocation, not two.
Flight *fetch_table_add(FetchTable *t, const char *key, size_t len, uint64_t hash, uint64_t sent_us,
                        size_t room = 0, FlightKind kind = FLIGHT_GET);
void *flight_room(Flight *f);
void fetch_table_join(Flight *f, FlightWaiter *w);
// Takes the flight out of the table (if still there); the caller answers its waiters and
// releases it.
void fetch_table_remove(FetchTable *t, Flight *f);
// Unlinks the flight from the table, marked invalidated: nobody joins it any more, its reply is
// not cached; it stays the caller's (its command's) to answer and free.
void fetch_table_detach(FetchTable *t, Flight *f);
// The key changed in Redis: its flights, if any, are detached, and their stale entries released
// (what changed is no answer, even while Redis cannot be reached). Returns whether there was one.
bool fetch_table_invalidate(FetchTable *t, const char *key, size_t len, uint64_t hash);
size_t fetch_table_count(const FetchTable *t);  // flights in the table (detached ones not counted); for tests

// One command is done with the flight; the last frees it (and its room).
void flight_release(Flight *f);
