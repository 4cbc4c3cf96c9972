// The LRU + TTL store of one worker. No I/O, no libevent, no clock of its own: every call that
// needs the time takes `now_ms`, so tests drive time by hand.
//
// Every operation is O(1):
//   - a chained hash table that grows with the entries (load factor at most 1, up to the
//     capacity's worth), doubling incrementally: a few buckets are moved per insert;
//   - a recency list (head = most recently read) gives the LRU victim at its tail;
//   - an age list (head = oldest insertion). The TTL is global, so insertion order is expiry
//     order for every entry that lives its whole TTL: dropping them never scans. An entry whose
//     key expires sooner in Redis (cache_entry_limit_life) is never found past its end, and its
//     memory goes when it is found, evicted, or reaches the head.
// Past its TTL an entry is no hit; within the grace (stale_if_error) it can still be found as
// stale, for when Redis cannot be reached. Whether an entry is still *trusted* (nothing said
// Redis may have changed since it was stored) is not the cache's to know: each entry keeps when
// it was stored, to the microsecond, for the coherence rules (coherence.h).
//
// Key and value bytes live inline after a 36-byte header, in one block of the slab allocator
// (slab.h): a 16-byte key with a 32-byte value costs 88 bytes plus its bucket's 4 to 8. Links
// are 32-bit names of blocks (SlabRef), not pointers; an entry too large for the slab's classes
// is named by its place in the cache's own table of them (docs/design.md draws the layout). The
// hash is not stored (it is recomputed from the key on removal only). An entry is reference
// counted so that a reply can point at its value bytes (zero copy) while the entry is evicted or
// replaced in the meantime: the bytes stay valid until the last reference is released.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "stats.h"

static const size_t CACHE_MAX_KEY = 65535;
static const size_t CACHE_MAX_VALUE = (1u << 31) - 1;

// An entry's name in its cache: a SlabRef, or with the top bit set a large entry's place; 0: none.
typedef uint32_t EntryRef;

struct EntryLinks {
    EntryRef prev, next;  // 0 at either end
};

struct CacheEntry {
    EntryRef hash_next;  // the next in its bucket's chain
    EntryLinks lru;      // in the recency list: first is the most recently read
    EntryLinks age;      // in the age list: first is the oldest insertion
    // When it was stored, in microseconds after the cache's base (48 bits, low and high: they
    // last 8.9 years; the cache is emptied and rebased before they run out); whether Redis has
    // no such key; and how long it lives: all of the TTL, or less when Redis expires the key
    // sooner (a 15-bit float of milliseconds, rounded down so that it never outlives the key).
    uint32_t stored_low;
    uint32_t stored_high : 16;
    uint32_t absent : 1;  // Redis has no such key: a cached "not found" (value_len 0)
    uint32_t life : 15;
    uint32_t value_len : 31;  // max_value_size is at most 512 MiB
    uint32_t digested : 1;    // the value's 8-byte digest follows it (cache_keep_digests)
    uint16_t key_len;
    uint16_t refs;  // 1 while in the cache, plus one per outstanding reply (more: cache.cc)
    char data[];    // key_len key bytes, then value_len value bytes
};

inline const char *cache_entry_key(const CacheEntry *e) { return e->data; }  // for tests
inline const char *cache_entry_value(const CacheEntry *e) { return e->data + e->key_len; }
// The bytes of its block, as allocated: what it is freed with.
inline size_t cache_entry_size(const CacheEntry *e)
{
    return sizeof(CacheEntry) + e->key_len + e->value_len + (e->digested ? sizeof(uint64_t) : 0);
}

struct Cache;

// capacity: maximum number of keys; ttl_ms: lifetime from insertion; seed: hash seed (random per
// process, against hash flooding); stats: where inserts, evictions and expirations are counted
// and the entries and bytes held are shown.
Cache *cache_create(size_t capacity, uint64_t ttl_ms, uint64_t seed, WorkerStats *stats);
void cache_destroy(Cache *cache);

// Hash a key once per request; pass the result to cache_find and cache_insert.
uint64_t cache_hash(const Cache *cache, const char *key, size_t len);

// A fresh entry for the key (TTL not passed, current generation), marked most recently read;
// NULL if there is none. An entry past its grace is dropped on the way. The pointer is valid
// until the next cache call unless retained. For tests: lookup asks cache_find_or_stale.
CacheEntry *cache_find(Cache *cache, const char *key, size_t len, uint64_t hash, uint64_t now_ms);

// As cache_find; when there is no fresh entry but one within the grace, it is put in *stale
// (not marked read), else *stale is NULL.
CacheEntry *cache_find_or_stale(Cache *cache, const char *key, size_t len, uint64_t hash, uint64_t now_ms,
                                CacheEntry **stale);

// Stores a copy of key and value, replacing any entry for the key; evicts the least recently
// read entry when full. now_us is the same moment on the precise clock (0: now_ms * 1000), kept
// as when it was stored.
// Returns the new entry (valid as for cache_find), or NULL if out of memory or the key is longer
// than CACHE_MAX_KEY.
CacheEntry *cache_insert(Cache *cache, const char *key, size_t key_len, uint64_t hash,
                         const char *value, size_t value_len, uint64_t now_ms, uint64_t now_us = 0);

// Stores that Redis has no such key (a cached "not found"), as cache_insert.
CacheEntry *cache_insert_absent(Cache *cache, const char *key, size_t key_len, uint64_t hash, uint64_t now_ms,
                                uint64_t now_us = 0);

// Drops the key if present. Returns whether it was present.
bool cache_remove(Cache *cache, const char *key, size_t len, uint64_t hash);

// The entry lives at most life_ms from when it was stored (Redis expires its key then), if that
// is shorter than the TTL.
void cache_entry_limit_life(const Cache *cache, CacheEntry *e, uint64_t life_ms);

// How long past its TTL an entry is kept for answering when Redis cannot be reached
// (stale_if_error). 0 (the default): not kept.
void cache_set_grace(Cache *cache, uint64_t grace_ms);

// A bound on the bytes held: entries as the slab allocates them, and the hash table's buckets.
// Entries are evicted least recently read first until both the count and the bytes fit.
// 0 (the default): the count only.
void cache_set_max_bytes(Cache *cache, size_t max_bytes);

// What an entry with this key and value costs against max_bytes.
size_t cache_entry_footprint(const Cache *cache, size_t key_len, size_t value_len);
// Each entry stored from now on keeps its value's digest (cache_value_digest) after the value,
// computed once when it is stored: 8 bytes more per entry. Off by default.
void cache_keep_digests(Cache *cache, bool keep, uint64_t key);
// The digest kept with an entry stored while cache_keep_digests was on (e->digested), else the
// value's digest made now.
uint64_t cache_entry_digest(const Cache *cache, const CacheEntry *e);
// A digest of a value's bytes under the cache's digest key (an HTTP ETag is made of it): the same
// in every cache given the same key, and unpredictable without it.
uint64_t cache_value_digest(const Cache *cache, const char *value, size_t len);

// The one part of a cache read on every hit outside cache.cc, so that it can be read inline.
struct CacheClock {
    uint64_t base_us;  // entries' stored times count from here (set when the cache is empty)
};

// When the entry was stored (its now_us at insertion).
// The 48 bits of an entry's stored time, read as one word: stored_low and the word after it, whose
// first bit-field is stored_high (the x86-64 and AArch64 ABIs lay bit-fields out from the low bit).
inline uint64_t cache_entry_stored_offset_us(const CacheEntry *e)
{
    uint64_t word;
    memcpy(&word, &e->stored_low, sizeof(word));
    return word & ((1ULL << 48) - 1);
}

inline uint64_t cache_entry_stored_us(const Cache *cache, const CacheEntry *e)
{
    return ((const CacheClock *)cache)->base_us + cache_entry_stored_offset_us(e);
}

// Drops up to `max` expired entries from the head of the age list; returns how many.
size_t cache_expire(Cache *cache, uint64_t now_ms, size_t max);

// Drops every entry: O(n), for when what was cached can no longer be trusted.
void cache_clear(Cache *cache);

size_t cache_count(const Cache *cache);
// The time left of their TTL, summed over the entries held (INFO's avg_ttl is it over their
// count). Each counts its whole TTL, also one whose key expires sooner in Redis.
uint64_t cache_ttl_left_sum_ms(const Cache *cache, uint64_t now_ms);

// Bytes of the hash table's buckets (both tables while it grows: 4 to 8 per entry held), and of
// the table of large entries (8 per entry larger than the slab's classes).
size_t cache_table_bytes(const Cache *cache);

// An entry outside any cache holding a copy of `value` (one reference; release frees it): for an
// answer that must outlive the reply it came in. NULL if out of memory.
CacheEntry *cache_entry_detached(const char *value, size_t len);

// Keeps an entry's bytes alive past the next cache call (e.g. while a reply references them).
// Any number of times: past the 16-bit count, the rest are counted beside the entry. False only
// when out of memory for that.
bool cache_entry_retain(CacheEntry *e);
void cache_entry_release(CacheEntry *e);

// The references an entry has (1 while in the cache, plus one per holder), for tests.
size_t cache_entry_references(const CacheEntry *e);
