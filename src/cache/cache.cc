#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "slab.h"

static_assert(sizeof(CacheEntry) == 56, "an entry header is 7 words: see cache.h");

// An entry's life is a small float: a 10-bit mantissa and a 5-bit exponent of milliseconds,
// rounded down (exact below 1,024 ms, within 0.2% above). All ones means all of the TTL.
static const uint64_t LIFE_FULL = 0x7fff;
static const uint64_t STORED_SPAN_US = 1ULL << 48;    // what an entry's stored_us can count
static const size_t INITIAL_BUCKETS = 16;
static const int GROW_STEP = 4;  // old buckets moved per insert while the table grows

struct Cache {
    CacheClock clock;  // first: cache_entry_stored_us reads it inline (cache.h)
    CacheEntry **buckets;
    size_t bucket_mask;
    // While the table grows: the previous one, whose buckets below `moved` have been moved into
    // `buckets` already (an entry is in the old table exactly when its old bucket is not moved).
    CacheEntry **old;
    size_t old_mask, moved;
    size_t max_buckets;  // the capacity's worth: the table never grows past it
    ListLink lru;  // the recency list: first the most recently read, last the LRU victim
    ListLink age;  // the age list: first the oldest insertion, the first to expire
    size_t count;
    size_t capacity;
    size_t bytes, max_bytes;  // footprints held; 0: no bound
    uint64_t stored_ms_sum;   // the entries' stored_us / 1000, summed (their mean age: INFO)
    size_t digest_bytes;      // 8 when each entry keeps its value's digest after it, else 0
    uint64_t digest_key;
    uint64_t ttl_ms;
    uint64_t grace_ms;
    uint64_t seed;
    WorkerStats *stats;
};

Cache *cache_create(size_t capacity, uint64_t ttl_ms, uint64_t seed, WorkerStats *stats)
{
    Cache *c = (Cache *)calloc(1, sizeof(Cache));
    if (c == NULL)
        return NULL;
    // The table grows with the entries (load factor at most 1), not sized from the capacity at
    // start: a capacity of 10^9 under a max_memory of 16 MB must not cost 8 GB of buckets.
    c->max_buckets = INITIAL_BUCKETS;
    while (c->max_buckets < capacity)
        c->max_buckets *= 2;
    c->buckets = (CacheEntry **)calloc(INITIAL_BUCKETS, sizeof(CacheEntry *));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->bucket_mask = INITIAL_BUCKETS - 1;
    list_init(&c->lru);
    list_init(&c->age);
    c->capacity = capacity;
    c->ttl_ms = ttl_ms;
    c->seed = seed;
    c->stats = stats;
    return c;
}

static void entry_unlink(Cache *c, CacheEntry *e);

size_t cache_entry_footprint(const Cache *c, size_t key_len, size_t value_len)
{
    return slab_footprint(sizeof(CacheEntry) + key_len + value_len + c->digest_bytes);
}

void cache_keep_digests(Cache *c, bool keep, uint64_t key)
{
    c->digest_bytes = keep ? sizeof(uint64_t) : 0;
    c->digest_key = key;
}

uint64_t cache_entry_digest(const Cache *c, const CacheEntry *e)
{
    if (!e->digested)
        return cache_value_digest(c, cache_entry_value(e), e->value_len);
    uint64_t digest;
    memcpy(&digest, e->data + e->key_len + e->value_len, sizeof(digest));
    return digest;
}

void cache_destroy(Cache *c)
{
    if (c == NULL)
        return;
    cache_clear(c);
    free(c->buckets);
    free(c->old);
    free(c);
}

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

// A seeded multiply-mix hash over 8-byte words: fast for short keys, and the per-process random
// seed keeps clients from choosing keys that all land in one bucket.
static uint64_t hash_bytes(uint64_t seed, const char *key, size_t len)
{
    const uint64_t k1 = 0x9e3779b97f4a7c15ULL, k2 = 0xd6e8feb86659fd93ULL;
    uint64_t h = seed ^ (len * k1);
    const unsigned char *p = (const unsigned char *)key;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix(h ^ w, k2);
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    return mix(h ^ w ^ ((uint64_t)len << 59), k1);
}

uint64_t cache_hash(const Cache *c, const char *key, size_t len) { return hash_bytes(c->seed, key, len); }

// Keyed with the digest key rather than the table's seed: the same in every worker that shares it.
uint64_t cache_value_digest(const Cache *c, const char *value, size_t len)
{
    return hash_bytes(c->digest_key ^ 0x6a09e667f3bcc908ULL, value, len);
}

// While the table grows: the old table's bucket, if not moved yet. Kept out of line so that the
// usual path below stays small enough to be inlined into every lookup.
__attribute__((noinline)) static CacheEntry **bucket_while_growing(Cache *c, uint64_t hash)
{
    if ((hash & c->old_mask) >= c->moved)
        return &c->old[hash & c->old_mask];
    return &c->buckets[hash & c->bucket_mask];
}

static inline CacheEntry **bucket_of(Cache *c, uint64_t hash)
{
    if (__builtin_expect(c->old != NULL, 0))
        return bucket_while_growing(c, hash);
    return &c->buckets[hash & c->bucket_mask];
}

// Moves a few buckets of the old table into the new one (Redis's dict does the same): growing is
// O(1) per insert. Each entry's hash is computed again, once per doubling.
static void grow_step(Cache *c)
{
    for (int i = 0; i < GROW_STEP && c->old != NULL; i++) {
        CacheEntry *e = c->old[c->moved];
        c->old[c->moved++] = NULL;
        while (e != NULL) {
            CacheEntry *next = e->hash_next;
            CacheEntry **bucket = &c->buckets[cache_hash(c, e->data, e->key_len) & c->bucket_mask];
            e->hash_next = *bucket;
            *bucket = e;
            e = next;
        }
        if (c->moved > c->old_mask) {
            free(c->old);
            c->old = NULL;
        }
    }
}

// Past a load factor of 1, a table twice the size; its buckets are filled by grow_step. Out of
// memory: the chains grow longer instead.
static void maybe_grow(Cache *c)
{
    if (c->old != NULL) {
        grow_step(c);
        return;
    }
    size_t n = c->bucket_mask + 1;
    if (c->count < n || n >= c->max_buckets)
        return;
    CacheEntry **bigger = (CacheEntry **)calloc(2 * n, sizeof(CacheEntry *));
    if (bigger == NULL)
        return;
    c->old = c->buckets;
    c->old_mask = c->bucket_mask;
    c->moved = 0;
    c->buckets = bigger;
    c->bucket_mask = 2 * n - 1;
    grow_step(c);
}

// Inlined into every lookup: it is the hit path.
__attribute__((always_inline)) static inline CacheEntry **slot_of(Cache *c, const char *key, size_t len, uint64_t hash)
{
    CacheEntry **slot = bucket_of(c, hash);
    for (CacheEntry *e = *slot; e != NULL; slot = &e->hash_next, e = e->hash_next)
        if (e->key_len == len && memcmp(e->data, key, len) == 0)
            return slot;
    return NULL;
}

static inline CacheEntry *entry_of_lru(ListLink *l) { return LIST_ELEMENT(l, CacheEntry, lru); }
static inline CacheEntry *entry_of_age(ListLink *l) { return LIST_ELEMENT(l, CacheEntry, age); }

// Removes an entry from the table and both lists and drops the cache's reference.
static void entry_unlink(Cache *c, CacheEntry *e)
{
    CacheEntry **slot = bucket_of(c, cache_hash(c, e->data, e->key_len));
    while (*slot != e)
        slot = &(*slot)->hash_next;
    *slot = e->hash_next;
    list_remove(&e->lru);
    list_remove(&e->age);
    c->count--;
    c->bytes -= slab_footprint(cache_entry_size(e));
    c->stored_ms_sum -= e->stored_us / 1000;
    c->stats->cache_entries = c->count;
    c->stats->cache_bytes = c->bytes;
    cache_entry_release(e);
}

// When the entry stops being fresh: its TTL, or sooner if its key lives less in Redis.
static uint64_t expires_ms(const Cache *c, const CacheEntry *e)
{
    uint64_t stored_ms = (c->clock.base_us + e->stored_us) / 1000;
    if (e->life == LIFE_FULL)
        return stored_ms + c->ttl_ms;
    uint64_t life = (uint64_t)(e->life & 1023) << (e->life >> 10);
    return stored_ms + (life < c->ttl_ms ? life : c->ttl_ms);
}

void cache_entry_limit_life(const Cache *c, CacheEntry *e, uint64_t life_ms)
{
    if (life_ms >= c->ttl_ms)
        return;
    uint64_t exponent = 0;
    while ((life_ms >> exponent) > 1023)
        exponent++;
    e->life = (exponent << 10) | (life_ms >> exponent);  // rounded down: never longer
}

CacheEntry *cache_find_or_stale(Cache *c, const char *key, size_t len, uint64_t hash, uint64_t now_ms,
                                CacheEntry **stale)
{
    if (stale != NULL)
        *stale = NULL;
    CacheEntry **slot = slot_of(c, key, len, hash);
    if (slot == NULL)
        return NULL;
    CacheEntry *e = *slot;
    uint64_t expires = expires_ms(c, e);
    if (now_ms >= expires) {
        if (now_ms - expires >= c->grace_ms) {
            entry_unlink(c, e);
            c->stats->cache_expirations++;
        } else if (stale != NULL) {
            *stale = e;
        }
        return NULL;
    }
    if (list_first(&c->lru) != &e->lru) {
        list_remove(&e->lru);
        list_push_front(&c->lru, &e->lru);
    }
    return e;
}

CacheEntry *cache_find(Cache *c, const char *key, size_t len, uint64_t hash, uint64_t now_ms)
{
    return cache_find_or_stale(c, key, len, hash, now_ms, NULL);
}

static CacheEntry *insert(Cache *c, const char *key, size_t key_len, uint64_t hash, const char *value,
                          size_t value_len, bool absent, uint64_t now_ms, uint64_t now_us)
{
    if (key_len > CACHE_MAX_KEY || value_len > CACHE_MAX_VALUE)
        return NULL;
    if (now_us == 0)
        now_us = now_ms * 1000;
    if (c->count == 0 || now_us - c->clock.base_us >= STORED_SPAN_US) {
        // Empty: counting starts here. Full span (once in 8.9 years): what is held could no
        // longer say when it was stored, so it goes.
        cache_clear(c);
        c->clock.base_us = now_us > 0 ? now_us - 1 : 0;
    }
    size_t footprint = cache_entry_footprint(c, key_len, value_len);
    if (c->max_bytes != 0 && footprint + INITIAL_BUCKETS * sizeof(CacheEntry *) > c->max_bytes)
        return NULL;  // could never fit: answered, not cached
    CacheEntry *e = (CacheEntry *)slab_alloc(sizeof(CacheEntry) + key_len + value_len + c->digest_bytes);
    if (e == NULL)
        return NULL;
    CacheEntry **old = slot_of(c, key, key_len, hash);
    if (old != NULL)
        entry_unlink(c, *old);
    // Least recently read first, until both bounds hold with the new entry. One insert may evict
    // several small entries for a large one; each entry is evicted at most once, so it stays
    // O(1) per insert on average.
    while (c->count > 0 && (c->count >= c->capacity ||
                            (c->max_bytes != 0 && c->bytes + cache_table_bytes(c) + footprint > c->max_bytes))) {
        entry_unlink(c, entry_of_lru(list_last(&c->lru)));
        c->stats->cache_evictions++;
    }
    e->stored_us = now_us - c->clock.base_us;
    e->absent = absent;
    e->life = LIFE_FULL;
    e->key_len = (uint16_t)key_len;
    e->value_len = (uint32_t)value_len;
    e->digested = c->digest_bytes > 0;
    e->refs = 1;
    memcpy(e->data, key, key_len);
    memcpy(e->data + key_len, value, value_len);
    if (c->digest_bytes > 0) {
        uint64_t digest = cache_value_digest(c, value, value_len);
        memcpy(e->data + key_len + value_len, &digest, sizeof(digest));
    }
    maybe_grow(c);
    CacheEntry **bucket = bucket_of(c, hash);
    e->hash_next = *bucket;
    *bucket = e;
    list_push_front(&c->lru, &e->lru);
    list_push_back(&c->age, &e->age);
    c->count++;
    c->bytes += footprint;
    c->stored_ms_sum += e->stored_us / 1000;
    c->stats->cache_inserts++;
    c->stats->cache_entries = c->count;
    c->stats->cache_bytes = c->bytes;
    return e;
}

CacheEntry *cache_insert(Cache *c, const char *key, size_t key_len, uint64_t hash, const char *value,
                         size_t value_len, uint64_t now_ms, uint64_t now_us)
{
    return insert(c, key, key_len, hash, value, value_len, false, now_ms, now_us);
}

CacheEntry *cache_insert_absent(Cache *c, const char *key, size_t key_len, uint64_t hash, uint64_t now_ms,
                                uint64_t now_us)
{
    return insert(c, key, key_len, hash, "", 0, true, now_ms, now_us);
}


void cache_set_grace(Cache *c, uint64_t grace_ms) { c->grace_ms = grace_ms; }

void cache_set_max_bytes(Cache *c, size_t max_bytes) { c->max_bytes = max_bytes; }

bool cache_remove(Cache *c, const char *key, size_t len, uint64_t hash)
{
    CacheEntry **slot = slot_of(c, key, len, hash);
    if (slot == NULL)
        return false;
    entry_unlink(c, *slot);
    return true;
}

size_t cache_expire(Cache *c, uint64_t now_ms, size_t max)
{
    size_t n = 0;
    while (n < max && !list_empty(&c->age) &&
           now_ms >= expires_ms(c, entry_of_age(list_first(&c->age))) + c->grace_ms) {
        entry_unlink(c, entry_of_age(list_first(&c->age)));
        n++;
    }
    c->stats->cache_expirations += n;
    return n;
}

void cache_clear(Cache *c)
{
    while (!list_empty(&c->age))
        entry_unlink(c, entry_of_age(list_first(&c->age)));
}

size_t cache_count(const Cache *c) { return c->count; }

uint64_t cache_ttl_left_sum_ms(const Cache *c, uint64_t now_ms)
{
    uint64_t since_base_ms = now_ms * 1000 > c->clock.base_us ? (now_ms * 1000 - c->clock.base_us) / 1000 : 0;
    // Each entry's age is since_base_ms - its stored_us / 1000.
    __uint128_t ages = (__uint128_t)c->count * since_base_ms - c->stored_ms_sum;
    __uint128_t lives = (__uint128_t)c->count * c->ttl_ms;
    return lives > ages ? (uint64_t)(lives - ages) : 0;
}

size_t cache_table_bytes(const Cache *c)
{
    size_t buckets = c->bucket_mask + 1 + (c->old != NULL ? c->old_mask + 1 : 0);
    return buckets * sizeof(CacheEntry *);
}

CacheEntry *cache_entry_detached(const char *value, size_t len)
{
    if (len > CACHE_MAX_VALUE)
        return NULL;
    CacheEntry *e = (CacheEntry *)slab_alloc(sizeof(CacheEntry) + len);
    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->value_len = (uint32_t)len;
    e->refs = 1;
    memcpy(e->data, value, len);
    return e;
}

// References past the 16 bits of an entry's count (65,535 answers waiting to be written with
// one value) are counted here, beside it: an answer is never a copy because a value is popular.
// Each such entry stands for at least 64 MiB of answers pending (a value is referenced only past
// 1 KiB), which the client memory bounds keep rare: a short list, searched only when the count
// is full.
struct RefOverflow {
    const CacheEntry *entry;
    uint64_t extra;
};
static RefOverflow *overflows;
static size_t overflow_count, overflow_cap;

static RefOverflow *overflow_of(const CacheEntry *e)
{
    for (size_t i = 0; i < overflow_count; i++)
        if (overflows[i].entry == e)
            return &overflows[i];
    return NULL;
}

bool cache_entry_retain(CacheEntry *e)
{
    if (e->refs < UINT16_MAX) {
        e->refs++;
        return true;
    }
    RefOverflow *o = overflow_of(e);
    if (o == NULL) {
        if (overflow_count == overflow_cap) {
            size_t cap = overflow_cap ? overflow_cap * 2 : 4;
            RefOverflow *grown = (RefOverflow *)realloc(overflows, cap * sizeof(RefOverflow));
            if (grown == NULL)
                return false;
            overflows = grown;
            overflow_cap = cap;
        }
        o = &overflows[overflow_count++];
        *o = {e, 0};
    }
    o->extra++;
    return true;
}

void cache_entry_release(CacheEntry *e)
{
    if (e->refs == UINT16_MAX) {
        RefOverflow *o = overflow_of(e);
        if (o != NULL) {
            if (--o->extra == 0)
                *o = overflows[--overflow_count];
            return;
        }
    }
    if (--e->refs == 0)
        slab_free(e, cache_entry_size(e));
}

size_t cache_entry_references(const CacheEntry *e)
{
    const RefOverflow *o = e->refs == UINT16_MAX ? overflow_of(e) : NULL;
    return e->refs + (o != NULL ? o->extra : 0);
}
