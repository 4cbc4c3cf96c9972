#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "slab.h"

static_assert(sizeof(CacheEntry) == 36, "an entry header is 9 32-bit words: see cache.h and docs/design.md");
static_assert(offsetof(CacheEntry, stored_low) % 4 == 0 && offsetof(CacheEntry, key_len) == 32,
              "the stored time's two words are read as one (cache_entry_stored_offset_us)");

// An entry's life is a small float: a 10-bit mantissa and a 5-bit exponent of milliseconds,
// rounded down (exact below 1,024 ms, within 0.2% above). All ones means all of the TTL.
static const uint64_t LIFE_FULL = 0x7fff;
static const uint64_t STORED_SPAN_US = 1ULL << 48;    // what an entry's stored time can count
static const size_t INITIAL_BUCKETS = 16;
static const int GROW_STEP = 4;  // old buckets moved per insert while the table grows
static const EntryRef LARGE = 1u << 31;  // a name with this bit is a place in Cache.large
static const uint32_t NO_PLACE = UINT32_MAX;
// Out of memory, or of the slab's names: at most this many entries are evicted to make room for
// one (then it is answered, not cached).
static const int ALLOC_EVICTIONS = 256;
// Pages emptied to make room for one entry (then it is answered, not cached): one is enough
// unless replies still hold entries of the first ones tried; pages with nothing of the table's
// to evict are passed over, this many at most.
static const int PAGE_EVICTIONS = 4, PAGES_PASSED = 12;

// The ends of a list linked through the entries' EntryLinks.
struct EntryList {
    EntryRef first, last;
};

struct Cache {
    CacheClock clock;  // first: cache_entry_stored_us reads it inline (cache.h)
    EntryRef *buckets;
    size_t bucket_mask;
    // While the table grows: the previous one, whose buckets below `moved` have been moved into
    // `buckets` already (an entry is in the old table exactly when its old bucket is not moved).
    EntryRef *old;
    size_t old_mask, moved;
    size_t max_buckets;  // the capacity's worth: the table never grows past it
    EntryList lru;  // the recency list: first the most recently read, last the LRU victim
    EntryList age;  // the age list: first the oldest insertion, the first to expire
    // Entries larger than the slab's classes (malloc's blocks, which have no SlabRef) by place.
    // A free place holds the next free one, tagged with the low bit.
    CacheEntry **large;
    size_t large_used, large_cap;
    uint32_t large_free;
    size_t count;
    size_t capacity;
    size_t bytes, max_bytes;  // footprints held; 0: no bound
    size_t large_bytes;       // of them, the large entries' (malloc's blocks, outside the slab's pages)
    uint64_t stored_ms_sum;   // the entries' stored times / 1000, summed (their mean age: INFO)
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
    c->buckets = (EntryRef *)calloc(INITIAL_BUCKETS, sizeof(EntryRef));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->bucket_mask = INITIAL_BUCKETS - 1;
    c->large_free = NO_PLACE;
    c->capacity = capacity;
    c->ttl_ms = ttl_ms;
    c->seed = seed;
    c->stats = stats;
    return c;
}

static void entry_unlink(Cache *c, CacheEntry *e, EntryRef ref);

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
    free(c->large);
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
__attribute__((noinline)) static EntryRef *bucket_while_growing(Cache *c, uint64_t hash)
{
    if ((hash & c->old_mask) >= c->moved)
        return &c->old[hash & c->old_mask];
    return &c->buckets[hash & c->bucket_mask];
}

static inline EntryRef *bucket_of(Cache *c, uint64_t hash)
{
    if (__builtin_expect(c->old != NULL, 0))
        return bucket_while_growing(c, hash);
    return &c->buckets[hash & c->bucket_mask];
}

// The entry a name names. Inlined into every lookup: a large entry is the rare case.
static inline CacheEntry *entry_at(const Cache *c, EntryRef ref)
{
    if (__builtin_expect(ref & LARGE, 0))
        return c->large[ref & ~LARGE];
    return (CacheEntry *)slab_block(ref);
}

// A block for an entry of `size` bytes and its name; NULL if out of memory.
static CacheEntry *entry_alloc(Cache *c, size_t size, EntryRef *ref)
{
    if (size <= SLAB_MAX)
        return (CacheEntry *)slab_alloc_named(size, ref);
    if (c->large_free == NO_PLACE && c->large_used == c->large_cap) {
        size_t cap = c->large_cap ? 2 * c->large_cap : 16;
        CacheEntry **grown = cap <= LARGE ? (CacheEntry **)realloc(c->large, cap * sizeof(CacheEntry *)) : NULL;
        if (grown == NULL)
            return NULL;
        c->large = grown;
        c->large_cap = cap;
    }
    CacheEntry *e = (CacheEntry *)slab_alloc(size);
    if (e == NULL)
        return NULL;
    uint32_t place;
    if (c->large_free != NO_PLACE) {
        place = c->large_free;
        c->large_free = (uint32_t)((uintptr_t)c->large[place] >> 1);
    } else {
        place = (uint32_t)c->large_used++;
    }
    c->large[place] = e;
    *ref = LARGE | place;
    return e;
}

// A large entry's place is free once it leaves the cache (its block lives on while referenced).
static void entry_name_release(Cache *c, EntryRef ref)
{
    if (!(ref & LARGE))
        return;
    uint32_t place = ref & ~LARGE;
    c->large[place] = (CacheEntry *)(((uintptr_t)c->large_free << 1) | 1);
    c->large_free = place;
}

// Moves a few buckets of the old table into the new one (Redis's dict does the same): growing is
// O(1) per insert. Each entry's hash is computed again, once per doubling.
static void grow_step(Cache *c)
{
    for (int i = 0; i < GROW_STEP && c->old != NULL; i++) {
        EntryRef ref = c->old[c->moved];
        c->old[c->moved++] = 0;
        while (ref != 0) {
            CacheEntry *e = entry_at(c, ref);
            EntryRef next = e->hash_next;
            EntryRef *bucket = &c->buckets[cache_hash(c, e->data, e->key_len) & c->bucket_mask];
            e->hash_next = *bucket;
            *bucket = ref;
            ref = next;
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
    EntryRef *bigger = (EntryRef *)calloc(2 * n, sizeof(EntryRef));
    if (bigger == NULL)
        return;
    c->old = c->buckets;
    c->old_mask = c->bucket_mask;
    c->moved = 0;
    c->buckets = bigger;
    c->bucket_mask = 2 * n - 1;
    grow_step(c);
}

// The link in the chain that names the key's entry (its bucket, or the entry before it), and
// the entry in *found; NULL if there is none. Inlined into every lookup: it is the hit path.
__attribute__((always_inline)) static inline EntryRef *slot_of(Cache *c, const char *key, size_t len, uint64_t hash,
                                                               CacheEntry **found)
{
    EntryRef *slot = bucket_of(c, hash);
    while (*slot != 0) {
        CacheEntry *e = entry_at(c, *slot);
        if (e->key_len == len && memcmp(e->data, key, len) == 0) {
            *found = e;
            return slot;
        }
        slot = &e->hash_next;
    }
    return NULL;
}

// The recency and the age lists: `member` is the offset of the entries' EntryLinks for the list.
static inline EntryLinks *links_of(const Cache *c, EntryRef ref, size_t member)
{
    return (EntryLinks *)((char *)entry_at(c, ref) + member);
}

static inline void list_unlink(Cache *c, EntryList *l, EntryLinks *k, size_t member)
{
    if (k->prev != 0)
        links_of(c, k->prev, member)->next = k->next;
    else
        l->first = k->next;
    if (k->next != 0)
        links_of(c, k->next, member)->prev = k->prev;
    else
        l->last = k->prev;
}

static inline void list_push_front(Cache *c, EntryList *l, EntryRef ref, EntryLinks *k, size_t member)
{
    k->prev = 0;
    k->next = l->first;
    if (l->first != 0)
        links_of(c, l->first, member)->prev = ref;
    else
        l->last = ref;
    l->first = ref;
}

static inline void list_push_back(Cache *c, EntryList *l, EntryRef ref, EntryLinks *k, size_t member)
{
    k->next = 0;
    k->prev = l->last;
    if (l->last != 0)
        links_of(c, l->last, member)->next = ref;
    else
        l->first = ref;
    l->last = ref;
}

static const size_t LRU = offsetof(CacheEntry, lru), AGE = offsetof(CacheEntry, age);

// The link to an entry (named ref) in its hash chain; NULL if it is not in the table (an entry
// only a reply holds, out of the cache already, or another cache's).
static EntryRef *chain_link_of(Cache *c, const CacheEntry *e, EntryRef ref)
{
    EntryRef *slot = bucket_of(c, cache_hash(c, e->data, e->key_len));
    while (*slot != 0 && *slot != ref)
        slot = &entry_at(c, *slot)->hash_next;
    return *slot == ref ? slot : NULL;
}

// Takes an entry out of the table, the lists and the counts; `link` is its chain_link_of.
static void entry_unlink_at(Cache *c, CacheEntry *e, EntryRef ref, EntryRef *link)
{
    *link = e->hash_next;
    list_unlink(c, &c->lru, &e->lru, LRU);
    list_unlink(c, &c->age, &e->age, AGE);
    entry_name_release(c, ref);
    c->count--;
    c->bytes -= slab_footprint(cache_entry_size(e));
    if (ref & LARGE)
        c->large_bytes -= slab_footprint(cache_entry_size(e));
    c->stored_ms_sum -= cache_entry_stored_offset_us(e) / 1000;
    c->stats->cache_entries = c->count;
    c->stats->cache_bytes = c->bytes;
    cache_entry_release(e);
}

// Removes an entry (named ref) from the table and both lists and drops the cache's reference.
static void entry_unlink(Cache *c, CacheEntry *e, EntryRef ref)
{
    entry_unlink_at(c, e, ref, chain_link_of(c, e, ref));
}

// When the entry stops being fresh: its TTL, or sooner if its key lives less in Redis.
static uint64_t expires_ms(const Cache *c, const CacheEntry *e)
{
    uint64_t stored_ms = (c->clock.base_us + cache_entry_stored_offset_us(e)) / 1000;
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
    CacheEntry *e;
    EntryRef *slot = slot_of(c, key, len, hash, &e);
    if (slot == NULL)
        return NULL;
    EntryRef ref = *slot;
    uint64_t expires = expires_ms(c, e);
    if (now_ms >= expires) {
        if (now_ms - expires >= c->grace_ms) {
            entry_unlink(c, e, ref);
            c->stats->cache_expirations++;
        } else if (stale != NULL) {
            *stale = e;
        }
        return NULL;
    }
    if (c->lru.first != ref) {
        list_unlink(c, &c->lru, &e->lru, LRU);
        list_push_front(c, &c->lru, ref, &e->lru, LRU);
    }
    return e;
}

CacheEntry *cache_find(Cache *c, const char *key, size_t len, uint64_t hash, uint64_t now_ms)
{
    return cache_find_or_stale(c, key, len, hash, now_ms, NULL);
}

// Evicts every entry of the table in a slab page, and says how many: once replies release what
// they hold of it, the page is empty and goes back. Every block of the slab is a cache entry
// (cache_entry_detached's copies are malloc's), of this cache or of another in the process.
static size_t evict_page(Cache *c, void *page)
{
    // (The quarantine is empty here: page_room gave it back, so that the walk reads no freed
    // block; it is given back again after, so that the page empties.)
    size_t size = slab_block_size(page), index = 0, evicted = 0;
    for (void *block; (block = slab_page_next(page, &index)) != NULL;) {
        CacheEntry *e = (CacheEntry *)block;
        EntryRef ref = slab_ref_of(block), *link;
        if (slab_footprint(cache_entry_size(e)) != size || (link = chain_link_of(c, e, ref)) == NULL)
            continue;  // (the size check: a block that is not an entry would be a bug of ours)
        entry_unlink_at(c, e, ref, link);
        c->stats->cache_page_evictions++;
        evicted++;
    }
    slab_quarantine_flush();
    return evicted;
}

// Whether an entry of `size` takes memory the cache does not hold yet: a new page of the slab, or
// (a large entry) a block of malloc's.
static bool takes_new_memory(size_t size)
{
    return size > SLAB_MAX || slab_takes_page(size);
}

// What the cache holds: the slab's pages, the large entries and the table, with what an entry of
// `size` adds (a new page, or its own block), within max_bytes and a slack for the room inside
// partly filled pages: an eighth of the bound, and a page for each size class in use, the new
// entry's counted (each may be filling one).
static bool pages_fit(const Cache *c, size_t size)
{
    size_t slack = c->max_bytes / 8 + slab_classes_in_use(size) * SLAB_PAGE_SIZE;
    size_t adds = size <= SLAB_MAX ? SLAB_PAGE_SIZE : slab_footprint(size);
    return slab_page_bytes() + c->large_bytes + adds + cache_table_bytes(c) <= c->max_bytes + slack;
}

// An entry is about to take a new page of the slab, or a block of malloc's (a large one). max_bytes
// bounds what the entries' blocks take, least recently read evicted first; but freed blocks leave
// holes in pages, and a page with one entry still read is a whole page: read one entry per page,
// size class after size class, and the pages would hold many times the bound (or, beside large
// entries filling the bound, twice it). So what is held is bounded too, with the slack above:
// past it, spare pages go back first, then the entries of the roomiest page are evicted, whatever
// their recency (memcached's slab rebalancer moves pages between classes alike). False: no room
// (replies still hold entries of the pages emptied), the entry is not cached.
static bool page_room(Cache *c, size_t size)
{
    // Under ASan, blocks freed by evictions wait in a quarantine, and their pages have no room:
    // given back first, they may leave the class room enough. (Nothing without ASan.)
    slab_quarantine_flush();
    if (!takes_new_memory(size))
        return true;
    void *passed[PAGE_EVICTIONS + PAGES_PASSED];
    size_t tried = 0;
    for (int emptied = 0;;) {
        while (!pages_fit(c, size) && slab_give_back_spare()) {
        }
        if (pages_fit(c, size))
            return true;
        // (A page a reply holds entries of is not emptied: not tried again.)
        void *page = emptied < PAGE_EVICTIONS && tried < sizeof(passed) / sizeof(passed[0])
                         ? slab_roomiest_page(passed, tried)
                         : NULL;
        if (page == NULL)
            return false;
        passed[tried++] = page;
        if (evict_page(c, page) > 0)  // (emptied, it may be its class's spare: given back above)
            emptied++;
    }
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
    if (c->max_bytes != 0 && footprint + INITIAL_BUCKETS * sizeof(EntryRef) > c->max_bytes)
        return NULL;  // could never fit: answered, not cached
    // The key's old entry goes first, whether the new one can be stored or not: it is not the
    // value Redis holds now.
    CacheEntry *old;
    EntryRef *old_slot = slot_of(c, key, key_len, hash, &old);
    if (old_slot != NULL)
        entry_unlink(c, old, *old_slot);
    // Least recently read first, until both bounds hold with the new entry. One insert may evict
    // several small entries for a large one; each entry is evicted at most once, so it stays
    // O(1) per insert on average.
    while (c->count > 0 && (c->count >= c->capacity ||
                            (c->max_bytes != 0 && c->bytes + cache_table_bytes(c) + footprint > c->max_bytes))) {
        entry_unlink(c, entry_at(c, c->lru.last), c->lru.last);
        c->stats->cache_evictions++;
    }
    EntryRef ref;
    size_t size = sizeof(CacheEntry) + key_len + value_len + c->digest_bytes;
    if (c->max_bytes != 0 && takes_new_memory(size) && !page_room(c, size))
        return NULL;
    CacheEntry *e = entry_alloc(c, size, &ref);
    // No memory, or the slab's names have reached their 16 GiB: the least recently read entries
    // make room, as under max_memory, so that the cache keeps the keys read now.
    for (int i = 0; e == NULL && i < ALLOC_EVICTIONS && c->count > 0; i++) {
        entry_unlink(c, entry_at(c, c->lru.last), c->lru.last);
        c->stats->cache_evictions++;
        e = entry_alloc(c, size, &ref);
    }
    if (e == NULL)
        return NULL;
    uint64_t stored = now_us - c->clock.base_us;
    e->stored_low = (uint32_t)stored;
    e->stored_high = (uint32_t)(stored >> 32);
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
    EntryRef *bucket = bucket_of(c, hash);
    e->hash_next = *bucket;
    *bucket = ref;
    list_push_front(c, &c->lru, ref, &e->lru, LRU);
    list_push_back(c, &c->age, ref, &e->age, AGE);
    c->count++;
    c->bytes += footprint;
    if (ref & LARGE)
        c->large_bytes += footprint;
    c->stored_ms_sum += stored / 1000;
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
    CacheEntry *e;
    EntryRef *slot = slot_of(c, key, len, hash, &e);
    if (slot == NULL)
        return false;
    entry_unlink(c, e, *slot);
    return true;
}

size_t cache_expire(Cache *c, uint64_t now_ms, size_t max)
{
    size_t n = 0;
    while (n < max && c->age.first != 0 && now_ms >= expires_ms(c, entry_at(c, c->age.first)) + c->grace_ms) {
        entry_unlink(c, entry_at(c, c->age.first), c->age.first);
        n++;
    }
    c->stats->cache_expirations += n;
    return n;
}

void cache_clear(Cache *c)
{
    while (c->age.first != 0)
        entry_unlink(c, entry_at(c, c->age.first), c->age.first);
}

size_t cache_count(const Cache *c) { return c->count; }

uint64_t cache_ttl_left_sum_ms(const Cache *c, uint64_t now_ms)
{
    uint64_t since_base_ms = now_ms * 1000 > c->clock.base_us ? (now_ms * 1000 - c->clock.base_us) / 1000 : 0;
    // Each entry's age is since_base_ms - its stored time / 1000.
    __uint128_t ages = (__uint128_t)c->count * since_base_ms - c->stored_ms_sum;
    __uint128_t lives = (__uint128_t)c->count * c->ttl_ms;
    return lives > ages ? (uint64_t)(lives - ages) : 0;
}

size_t cache_table_bytes(const Cache *c)
{
    size_t buckets = c->bucket_mask + 1 + (c->old != NULL ? c->old_mask + 1 : 0);
    return buckets * sizeof(EntryRef) + c->large_cap * sizeof(CacheEntry *);
}

CacheEntry *cache_entry_detached(const char *value, size_t len)
{
    if (len > CACHE_MAX_VALUE)
        return NULL;
    // From malloc, not the slab: a copy that lives while its answers are written takes no page of
    // the slab, whose pages max_bytes bounds (page_room); slab_free gives it to free.
    CacheEntry *e = (CacheEntry *)malloc(sizeof(CacheEntry) + len);
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
// Each such entry stands for at least 256 MiB of answers pending (a value is referenced only past
// 4 KiB), which the client memory bounds keep rare: a short list, searched only when the count
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
