// The three decisions that keep the cache coherent with Redis, made in one place for one Redis
// and for a Redis Cluster alike (lookup asks them; tests drive them by hand). Pure: no I/O, no
// clock; times are monotonic microseconds the caller passes (monotonic_us: exact enough that a
// store or a send never ties with the distrust it follows).
//
// Trust is a time per source of keys (the one Redis; a cluster slot's owner): since when what
// was read from it says nothing about Redis now (a lost invalidation link, a flush, a tracking
// handshake under way, a slot that changed owner). A cached entry stored, or a fetch sent, at or
// before that time is not trusted.
//
// The orderings this settles, for a key K:
//   - request, reply: the reply is cached (if its source may cache) and answers the request;
//   - request, invalidation of K, reply: the fetch is unlinked at the invalidation (fetch_table);
//     its waiters get its reply, uncached; a request after the invalidation starts a new fetch;
//   - request, distrust (flush, lost link, slot move), request: the second does not join the
//     first's fetch (sent before the distrust), it starts its own; neither caches the first's;
//   - store, distrust, read: no hit (stale at most, for stale_if_error when Redis is unreachable);
//   - a cached "not found" in a cluster slot being migrated: no hit, and none cached there (the
//     key may exist on the importing node, which the slot's owner sends us to with ASK).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "fetch_table.h"

// What is known now of the source of one key.
struct KeyTrust {
    uint64_t distrusted_us;  // since when its reads are not trusted; 0: always trusted
    bool caching;            // its replies may be cached now (tracking established, or off; in a
                             // cluster, the reply came from the slot's owner, not through ASK)
    bool migrating;          // a cluster slot being migrated: "not found" says nothing (needed
                             // only for absent entries and nil replies)
};

// A cache entry stored at stored_us (absent: a cached "not found") may be answered as a hit.
inline bool coherence_entry_is_hit(uint64_t stored_us, bool absent, const KeyTrust *trust)
{
    return stored_us > trust->distrusted_us && !(absent && trust->migrating);
}

// A new request for the key may wait for this fetch instead of sending its own: the fetch was
// not invalidated and was sent after the key's source was last distrusted.
inline bool coherence_may_join(const Flight *f, const KeyTrust *trust)
{
    return !f->invalidated && f->sent_us > trust->distrusted_us;
}

// The fetch a new request for the key waits for, if it may (above); NULL if there is none it may
// join. One it may not join (sent before a distrust) is unlinked from the table on the way, so
// that the request's own fetch takes its place; its waiters still get its reply, uncached.
// Only a flight of the request's own command (kind) is joined.
Flight *coherence_joinable_flight(FetchTable *t, const char *key, size_t len, uint64_t hash, const KeyTrust *trust,
                                  FlightKind kind = FLIGHT_GET);

// The fetch's reply (absent: "not found") may be cached: it may be joined (above), and its
// source may cache now.
inline bool coherence_reply_cacheable(const Flight *f, const KeyTrust *trust, bool absent)
{
    return trust->caching && !(absent && trust->migrating) && coherence_may_join(f, trust);
}
