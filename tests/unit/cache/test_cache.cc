#include <stdio.h>
#include <string.h>

#include <map>
#include <string>
#include <vector>

#include <CppUTest/TestHarness.h>

#include "cache.h"
#include "slab.h"

static const uint64_t TTL = 1000;

TEST_GROUP(Cache)
{
    WorkerStats stats;
    Cache *cache;

    void setup() override
    {
        memset(&stats, 0, sizeof(stats));
        cache = cache_create(3, TTL, 42, &stats);
    }
    void teardown() override { cache_destroy(cache); }

    CacheEntry *put(const char *key, const char *value, uint64_t now)
    {
        return cache_insert(cache, key, strlen(key), cache_hash(cache, key, strlen(key)), value,
                            strlen(value), now);
    }
    CacheEntry *get(const char *key, uint64_t now)
    {
        return cache_find(cache, key, strlen(key), cache_hash(cache, key, strlen(key)), now);
    }
    // A cache for the page bound's tests, of many keys, bounded to max_bytes (0: not yet), over a
    // slab with no quarantined block and no spare page (the bound counts the process's pages).
    Cache *page_bound_cache(size_t max_bytes, uint64_t seed)
    {
        Cache *c = cache_create(10000000, TTL, seed, &stats);
        cache_set_max_bytes(c, max_bytes);
        slab_quarantine_flush();
        while (slab_give_back_spare()) {
        }
        return c;
    }
    std::string value_of(const char *key, uint64_t now)
    {
        CacheEntry *e = get(key, now);
        return e ? std::string(cache_entry_value(e), e->value_len) : std::string("<absent>");
    }
};

TEST(Cache, test_find_returns_inserted_value)
{
    put("a", "alpha", 0);
    STRCMP_EQUAL("alpha", value_of("a", 1).c_str());
    STRCMP_EQUAL("<absent>", value_of("b", 1).c_str());
}

TEST(Cache, test_insert_replaces_existing_key)
{
    put("a", "one", 0);
    put("a", "two", 0);
    STRCMP_EQUAL("two", value_of("a", 0).c_str());
    LONGS_EQUAL(1, cache_count(cache));
}

TEST(Cache, test_binary_keys_and_values)
{
    const char key[] = {'k', '\0', 'x'};
    const char value[] = {'\0', '\xff', '\0', 'v'};
    uint64_t h = cache_hash(cache, key, sizeof(key));
    cache_insert(cache, key, sizeof(key), h, value, sizeof(value), 0);
    CacheEntry *e = cache_find(cache, key, sizeof(key), h, 0);
    CHECK(e != NULL);
    LONGS_EQUAL(sizeof(value), e->value_len);
    MEMCMP_EQUAL(value, cache_entry_value(e), sizeof(value));
    // a key that differs only after the NUL byte is another key
    const char other[] = {'k', '\0', 'y'};
    POINTERS_EQUAL(NULL, cache_find(cache, other, sizeof(other), cache_hash(cache, other, 3), 0));
}

TEST(Cache, test_capacity_is_never_exceeded)
{
    for (int i = 0; i < 100; i++) {
        std::string k = "key" + std::to_string(i);
        put(k.c_str(), "v", 0);
        CHECK(cache_count(cache) <= 3);
    }
    LONGS_EQUAL(3, cache_count(cache));
    LONGS_EQUAL(97, stats.cache_evictions);
}

TEST(Cache, test_lru_evicts_least_recently_read)
{
    put("a", "1", 0);
    put("b", "2", 0);
    put("c", "3", 0);
    get("a", 1);  // a is now the most recently read; b is the least
    put("d", "4", 2);
    STRCMP_EQUAL("<absent>", value_of("b", 3).c_str());
    STRCMP_EQUAL("1", value_of("a", 3).c_str());
    STRCMP_EQUAL("3", value_of("c", 3).c_str());
    STRCMP_EQUAL("4", value_of("d", 3).c_str());
}

TEST(Cache, test_lru_order_is_by_reads_not_insertion)
{
    put("a", "1", 0);
    put("b", "2", 0);
    put("c", "3", 0);
    get("b", 1);
    get("a", 1);
    put("d", "4", 2);  // evicts c, never read
    STRCMP_EQUAL("<absent>", value_of("c", 2).c_str());
    put("e", "5", 2);  // evicts b: read before a, d, e
    STRCMP_EQUAL("<absent>", value_of("b", 2).c_str());
    LONGS_EQUAL(3, cache_count(cache));
}

TEST(Cache, test_entry_expires_ttl_after_insertion)
{
    put("a", "1", 100);
    STRCMP_EQUAL("1", value_of("a", 100 + TTL - 1).c_str());
    STRCMP_EQUAL("<absent>", value_of("a", 100 + TTL).c_str());
    LONGS_EQUAL(0, cache_count(cache));
    LONGS_EQUAL(1, stats.cache_expirations);
}

TEST(Cache, test_reads_do_not_extend_ttl)
{
    put("a", "1", 0);
    for (uint64_t t = 0; t < TTL; t += 100)
        STRCMP_EQUAL("1", value_of("a", t).c_str());
    STRCMP_EQUAL("<absent>", value_of("a", TTL).c_str());
}

TEST(Cache, test_reinsert_restarts_ttl)
{
    put("a", "1", 0);
    put("a", "2", 500);
    STRCMP_EQUAL("2", value_of("a", TTL + 100).c_str());
    STRCMP_EQUAL("<absent>", value_of("a", 500 + TTL).c_str());
}

TEST(Cache, test_expire_drops_only_expired_entries_from_the_head)
{
    put("a", "1", 0);
    put("b", "2", 10);
    put("c", "3", 20);
    LONGS_EQUAL(0, cache_expire(cache, TTL - 1, 100));
    LONGS_EQUAL(2, cache_expire(cache, TTL + 10, 100));
    LONGS_EQUAL(1, cache_count(cache));
    STRCMP_EQUAL("3", value_of("c", TTL + 10).c_str());
}

TEST(Cache, test_expire_stops_at_max)
{
    put("a", "1", 0);
    put("b", "2", 0);
    put("c", "3", 0);
    LONGS_EQUAL(2, cache_expire(cache, TTL, 2));
    LONGS_EQUAL(1, cache_count(cache));
    LONGS_EQUAL(1, cache_expire(cache, TTL, 2));
}

// Expiry order follows re-insertion: a replaced key moves to the young end of the age list.
TEST(Cache, test_expire_follows_reinsertion_order)
{
    put("a", "1", 0);
    put("b", "2", 10);
    put("a", "3", 20);
    LONGS_EQUAL(1, cache_expire(cache, TTL + 15, 100));
    STRCMP_EQUAL("<absent>", value_of("b", TTL + 15).c_str());
    STRCMP_EQUAL("3", value_of("a", TTL + 15).c_str());
}

TEST(Cache, test_remove)
{
    put("a", "1", 0);
    CHECK_TRUE(cache_remove(cache, "a", 1, cache_hash(cache, "a", 1)));
    CHECK_FALSE(cache_remove(cache, "a", 1, cache_hash(cache, "a", 1)));
    LONGS_EQUAL(0, cache_count(cache));
}

// A reply may still point at an entry's value while the entry leaves the cache.
TEST(Cache, test_retained_entry_outlives_eviction)
{
    CacheEntry *e = put("a", "still here", 0);
    cache_entry_retain(e);
    put("b", "2", 0);
    put("c", "3", 0);
    put("d", "4", 0);  // evicts a
    STRCMP_EQUAL("<absent>", value_of("a", 0).c_str());
    MEMCMP_EQUAL("still here", cache_entry_value(e), 10);  // ASan would flag a use after free
    cache_entry_release(e);
}

TEST(Cache, test_retained_entry_outlives_destroy)
{
    CacheEntry *e = put("a", "v", 0);
    cache_entry_retain(e);
    cache_destroy(cache);
    cache = cache_create(3, TTL, 42, &stats);
    MEMCMP_EQUAL("v", cache_entry_value(e), 1);
    cache_entry_release(e);
}

TEST(Cache, test_retain_counts_past_its_16_bits_and_releases_exactly)
{
    // Once, the 65,536th reference was refused and its answer became a copy of the value.
    CacheEntry *e = put("a", "v", 0);
    CacheEntry *other = put("b", "w", 0);
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        CHECK(cache_entry_retain(e));
        CHECK(cache_entry_retain(other));
    }
    LONGS_EQUAL(n + 1, cache_entry_references(e));
    CHECK(cache_remove(cache, "a", 1, cache_hash(cache, "a", 1)));  // the cache's own reference
    for (int i = 0; i < n - 1; i++)
        cache_entry_release(e);
    LONGS_EQUAL(1, cache_entry_references(e));
    MEMCMP_EQUAL("v", cache_entry_value(e), 1);  // still alive: ASan would flag it otherwise
    cache_entry_release(e);
    for (int i = 0; i < n; i++)
        cache_entry_release(other);
    LONGS_EQUAL(1, cache_entry_references(other));
    STRCMP_EQUAL("w", value_of("b", 0).c_str());
}

TEST(Cache, test_longest_key)
{
    std::string longest(CACHE_MAX_KEY, 'k');
    CHECK(cache_insert(cache, longest.data(), longest.size(), cache_hash(cache, longest.data(), longest.size()),
                       "v", 1, 0) != NULL);
    std::string too_long(CACHE_MAX_KEY + 1, 'k');
    POINTERS_EQUAL(NULL, cache_insert(cache, too_long.data(), too_long.size(),
                                      cache_hash(cache, too_long.data(), too_long.size()), "v", 1, 0));
}

TEST(Cache, test_entries_cost_their_size_rounded_to_8_bytes)
{
    // 36-byte header + 16-byte key + 32-byte value = 84 bytes, rounded to 88: 744 of them fill a
    // 64 KiB page.
    WorkerStats s2;
    memset(&s2, 0, sizeof(s2));
    Cache *big = cache_create(5000, TTL, 7, &s2);
    slab_quarantine_flush();
    size_t before = slab_page_bytes();
    char key[17], value[33];
    memset(value, 'v', 32);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k:%014d", i);
        cache_insert(big, key, 16, cache_hash(big, key, 16), value, 32, 0);
    }
    size_t used = slab_page_bytes() - before;
    CHECK(used <= (5000 / 744 + 2) * 65536);
    cache_destroy(big);
}

TEST(Cache, test_hash_depends_on_seed_and_every_byte)
{
    WorkerStats s2;
    Cache *other = cache_create(3, TTL, 43, &s2);
    CHECK(cache_hash(cache, "abc", 3) != cache_hash(other, "abc", 3));
    cache_destroy(other);
    CHECK(cache_hash(cache, "abcdefghij", 10) != cache_hash(cache, "abcdefghik", 10));
    CHECK(cache_hash(cache, "a\0", 2) != cache_hash(cache, "a", 1));
}

// Many keys in a large cache: every one is found, so bucket chains are walked correctly.
TEST(Cache, test_many_keys)
{
    WorkerStats s2;
    memset(&s2, 0, sizeof(s2));
    Cache *big = cache_create(10000, TTL, 7, &s2);
    for (int i = 0; i < 10000; i++) {
        std::string k = "user:" + std::to_string(i);
        cache_insert(big, k.data(), k.size(), cache_hash(big, k.data(), k.size()), k.data(), k.size(), 0);
    }
    LONGS_EQUAL(10000, cache_count(big));
    for (int i = 0; i < 10000; i++) {
        std::string k = "user:" + std::to_string(i);
        CacheEntry *e = cache_find(big, k.data(), k.size(), cache_hash(big, k.data(), k.size()), 1);
        CHECK(e != NULL);
        MEMCMP_EQUAL(k.data(), cache_entry_value(e), k.size());
    }
    LONGS_EQUAL(0, s2.cache_evictions);
    cache_destroy(big);
}

TEST(Cache, test_an_entry_keeps_when_it_was_stored_to_the_microsecond)
{
    CacheEntry *a = cache_insert(cache, "a", 1, cache_hash(cache, "a", 1), "1", 1, 5, 5000123);
    CacheEntry *b = cache_insert(cache, "b", 1, cache_hash(cache, "b", 1), "2", 1, 5, 5000124);
    LONGS_EQUAL(5000123, cache_entry_stored_us(cache, a));
    LONGS_EQUAL(5000124, cache_entry_stored_us(cache, b));  // one microsecond apart, and told apart
    CacheEntry *c = put("c", "3", 7);                          // no precise time given: the millisecond
    LONGS_EQUAL(7000, cache_entry_stored_us(cache, c));
}

// The stored time is 48 bits in two words, read as one: every bit of it comes back, and the
// flags and the life beside it are neither read into it nor written over by it.
TEST(Cache, test_the_stored_time_keeps_all_its_48_bits_beside_the_flags)
{
    const uint64_t base = 1000;
    cache_insert(cache, "base", 4, cache_hash(cache, "base", 4), "b", 1, 0, base + 1);  // the cache's base
    for (uint64_t offset : {1ULL, 0xffffffffULL, 0x100000000ULL, 0xabcd12345678ULL, (1ULL << 48) - 2}) {
        uint64_t now_us = base + offset;
        CacheEntry *e = cache_insert_absent(cache, "k", 1, cache_hash(cache, "k", 1), now_us / 1000, now_us);
        cache_entry_limit_life(cache, e, 5);
        LONGS_EQUAL(now_us, cache_entry_stored_us(cache, e));
        CHECK(e->absent);
        CHECK(e->life != 0x7fff);
        e->absent = 0;
        e->life = 0x7fff;
        LONGS_EQUAL(now_us, cache_entry_stored_us(cache, e));
        cache_remove(cache, "k", 1, cache_hash(cache, "k", 1));
    }
}

TEST(Cache, test_a_life_shorter_than_the_ttl_ends_the_entry_sooner_never_later)
{
    CacheEntry *e = put("k", "v", 1000);
    cache_entry_limit_life(cache, e, 250);  // Redis expires the key 250 ms after it was read
    CHECK(get("k", 1200) != nullptr);
    POINTERS_EQUAL(nullptr, get("k", 1250));
    e = put("long", "v", 1000);
    cache_entry_limit_life(cache, e, TTL * 2);  // the key outlives the TTL: the TTL holds
    CHECK(get("long", 1000 + TTL - 1) != nullptr);
    POINTERS_EQUAL(nullptr, get("long", 1000 + TTL));
    for (uint64_t life = 0; life < TTL; life += 7) {  // rounded, always down
        e = put("r", "v", 0);
        cache_entry_limit_life(cache, e, life);
        POINTERS_EQUAL(nullptr, get("r", life));
    }
}

TEST(Cache, test_a_short_life_under_a_long_ttl_is_kept_closely)
{
    // A year's TTL and a key that lives ten minutes, or two seconds: the entry lives that long,
    // to within 0.2%, never longer.
    WorkerStats s2;
    memset(&s2, 0, sizeof(s2));
    const uint64_t year = 365ULL * 24 * 3600 * 1000;
    Cache *c = cache_create(10, year, 7, &s2);
    for (uint64_t life : {600000ULL, 2000ULL, 1023ULL, 1ULL}) {
        CacheEntry *e = cache_insert(c, "k", 1, cache_hash(c, "k", 1), "v", 1, 1000);
        cache_entry_limit_life(c, e, life);
        CHECK(cache_find(c, "k", 1, cache_hash(c, "k", 1), 1000 + life - life / 500 - 1) != nullptr);
        POINTERS_EQUAL(nullptr, cache_find(c, "k", 1, cache_hash(c, "k", 1), 1000 + life));
    }
    cache_destroy(c);
}

TEST(Cache, test_running_out_of_stored_time_span_empties_the_cache)
{
    cache_insert(cache, "a", 1, cache_hash(cache, "a", 1), "1", 1, 0, 1000);
    LONGS_EQUAL(1, cache_count(cache));
    // 8.9 years later (a worker never restarted): "a" could no longer say when it was stored.
    uint64_t later_us = 1000 + (1ULL << 48);
    cache_insert(cache, "b", 1, cache_hash(cache, "b", 1), "2", 1, later_us / 1000, later_us);
    LONGS_EQUAL(1, cache_count(cache));
    LONGS_EQUAL(later_us, cache_entry_stored_us(cache, cache_find(cache, "b", 1, cache_hash(cache, "b", 1), later_us / 1000)));
}

TEST(Cache, test_stale_entries_are_found_as_stale_within_the_grace_only)
{
    cache_set_grace(cache, 500);
    put("expired", "old", 0);  // fresh until TTL
    CacheEntry *stale;
    uint64_t hash = cache_hash(cache, "expired", 7);
    POINTERS_EQUAL(nullptr, cache_find_or_stale(cache, "expired", 7, hash, TTL + 100, &stale));
    CHECK(stale != nullptr);
    STRCMP_EQUAL("old", std::string(cache_entry_value(stale), stale->value_len).c_str());
    POINTERS_EQUAL(nullptr, get("expired", TTL + 100));  // never a hit
    LONGS_EQUAL(0, cache_expire(cache, TTL + 499, 10));   // kept through the grace
    POINTERS_EQUAL(nullptr, cache_find_or_stale(cache, "expired", 7, hash, TTL + 500, &stale));
    POINTERS_EQUAL(nullptr, stale);  // past it: gone
    LONGS_EQUAL(0, cache_count(cache));

}

TEST(Cache, test_absent_keys_are_cached_as_such)
{
    CacheEntry *e = cache_insert_absent(cache, "nope", 4, cache_hash(cache, "nope", 4), 0);
    CHECK(e != nullptr);
    e = get("nope", 1);
    CHECK(e != nullptr);
    CHECK(e->absent);
    LONGS_EQUAL(0, e->value_len);
    CHECK_FALSE(put("yes", "v", 2)->absent);
}

TEST(Cache, test_max_bytes_evicts_least_recently_read_until_the_new_entry_fits)
{
    cache_destroy(cache);
    cache = cache_create(100, TTL, 42, &stats);
    size_t small = cache_entry_footprint(cache, 1, 10);
    cache_set_max_bytes(cache, 4 * small + cache_table_bytes(cache));  // the table counts too
    std::string ten(10, 'x');
    put("a", ten.c_str(), 0);
    put("b", ten.c_str(), 0);
    put("c", ten.c_str(), 0);
    put("d", ten.c_str(), 0);
    get("a", 1);  // a is now the most recently read
    LONGS_EQUAL(4 * small, stats.cache_bytes);
    // A value the size of two small entries: b and c (least recently read) make room.
    std::string big(cache_entry_footprint(cache, 1, 10) * 2 - cache_entry_footprint(cache, 1, 0), 'y');
    CHECK(put("e", big.c_str(), 2) != nullptr);
    CHECK(stats.cache_bytes <= 4 * small);
    POINTERS_EQUAL(nullptr, get("b", 3));
    POINTERS_EQUAL(nullptr, get("c", 3));
    CHECK(get("a", 3) != nullptr);
    CHECK(get("d", 3) != nullptr);
    LONGS_EQUAL(2, stats.cache_evictions);
    // One that could never fit is not cached, and evicts nothing.
    std::string huge(5 * small + cache_table_bytes(cache), 'z');
    POINTERS_EQUAL(nullptr, put("f", huge.c_str(), 4));
    LONGS_EQUAL(3, cache_count(cache));
}

TEST(Cache, test_bytes_count_what_the_slab_allocates)
{
    put("key", "value", 0);  // 36 + 3 + 5 = 44: rounded to 48
    LONGS_EQUAL(48, stats.cache_bytes);
    put("k2", "v", 0);  // 39: rounded to 40
    LONGS_EQUAL(88, stats.cache_bytes);
    std::string large(1000, 'x');
    put("k3", large.c_str(), 0);  // above the slab's largest class: malloc's size
    LONGS_EQUAL(88 + ((36 + 2 + 1000 + 8 + 15) & ~15), stats.cache_bytes);
}

TEST(Cache, test_the_table_grows_with_the_entries_not_with_the_capacity)
{
    cache_destroy(cache);
    cache = cache_create(1000000000, TTL, 42, &stats);  // a capacity of 10^9 keys
    LONGS_EQUAL(16 * sizeof(EntryRef), cache_table_bytes(cache));
    const int n = 100000;
    char key[16];
    for (int i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "k%d", i);
        CHECK(cache_insert(cache, key, (size_t)len, cache_hash(cache, key, (size_t)len), "v", 1, 0) != NULL);
    }
    // Every key is found, while the table doubled and moved its buckets along the way.
    for (int i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "k%d", i);
        CacheEntry *e = cache_find(cache, key, (size_t)len, cache_hash(cache, key, (size_t)len), 1);
        CHECK(e != NULL && memcmp(cache_entry_key(e), key, (size_t)len) == 0);
    }
    CHECK(cache_table_bytes(cache) <= 3 * 131072 * sizeof(EntryRef));  // at most both tables of a doubling
    for (int i = 0; i < n; i += 2) {
        int len = snprintf(key, sizeof(key), "k%d", i);
        CHECK(cache_remove(cache, key, (size_t)len, cache_hash(cache, key, (size_t)len)));
    }
    LONGS_EQUAL(n / 2, cache_count(cache));
}

TEST(Cache, test_max_bytes_counts_the_table_so_it_bounds_the_whole_cache)
{
    cache_destroy(cache);
    cache = cache_create(1000000000, TTL, 42, &stats);
    size_t bound = 4 * 1024 * 1024;
    cache_set_max_bytes(cache, bound);
    char key[16];
    for (int i = 0; i < 200000; i++) {
        int len = snprintf(key, sizeof(key), "k%d", i);
        cache_insert(cache, key, (size_t)len, cache_hash(cache, key, (size_t)len), "0123456789", 10, 0);
        // (a doubling may pass the bound by its new table until the next insert evicts for it)
        CHECK(stats.cache_bytes + cache_table_bytes(cache) <= bound + 2 * cache_table_bytes(cache) / 3);
    }
    CHECK(stats.cache_bytes + cache_table_bytes(cache) <= bound);
}

TEST(Cache, test_kept_digests_are_the_values_and_cost_their_bytes)
{
    LONGS_EQUAL(slab_footprint(sizeof(CacheEntry) + 1 + 100), cache_entry_footprint(cache, 1, 100));
    cache_keep_digests(cache, true, 1234);
    LONGS_EQUAL(slab_footprint(sizeof(CacheEntry) + 1 + 100 + 8), cache_entry_footprint(cache, 1, 100));
    std::string value(100, 'v');
    CacheEntry *e = put("a", value.c_str(), 0);
    CHECK(cache_entry_digest(cache, e) == cache_value_digest(cache, value.data(), value.size()));
    // The same in every cache given the same key, whatever its seed (each worker's has its own);
    // another under another key; and per value.
    Cache *other = cache_create(3, TTL, 7, &stats);
    cache_keep_digests(other, true, 1234);
    CacheEntry *o = cache_insert(other, "b", 1, cache_hash(other, "b", 1), value.data(), value.size(), 0);
    CHECK(cache_entry_digest(cache, o) == cache_entry_digest(cache, e));
    cache_keep_digests(other, true, 1235);
    CHECK(cache_value_digest(other, value.data(), value.size()) != cache_entry_digest(cache, e));
    CHECK(cache_value_digest(cache, "x", 1) != cache_value_digest(cache, "y", 1));
    CHECK(cache_value_digest(cache, "", 0) != cache_value_digest(cache, "\0", 1));
    cache_destroy(other);
}

// An entry with a digest is 8 bytes larger, and is freed with them: at 449-456 bytes of key and
// value it was allocated from malloc and freed into the slab (workers crashed, values were
// served with a heap pointer in them). Each size across the slab's last classes and past it,
// replaced, evicted and removed, with digests on and then off for the entries still held.
TEST(Cache, test_entries_with_digests_are_freed_as_they_were_allocated)
{
    Cache *c = cache_create(4, TTL, 9, &stats);
    slab_quarantine_flush();
    size_t pages = slab_page_bytes();
    cache_keep_digests(c, true, 77);
    std::string value(600, 'v');
    for (size_t len = 380; len <= 470; len++) {
        char key[8];
        snprintf(key, sizeof(key), "k%zu", len % 6);  // 2 bytes: key and value span every class edge
        cache_insert(c, key, 2, cache_hash(c, key, 2), value.data(), len, 0);
        if (len % 7 == 0)
            cache_remove(c, key, 2, cache_hash(c, key, 2));
        if (len == 430)
            cache_keep_digests(c, false, 77);  // entries stored before keep theirs
        if (len == 450)
            cache_keep_digests(c, true, 77);
    }
    cache_clear(c);
    LONGS_EQUAL(0, stats.cache_bytes);
    cache_destroy(c);
    slab_quarantine_flush();
    CHECK(slab_page_bytes() <= pages + 12 * 65536);  // at most the classes' spares
}

TEST(Cache, test_ttl_left_sum_counts_each_entrys_time_left)
{
    LONGS_EQUAL(0, cache_ttl_left_sum_ms(cache, 5));
    put("a", "1", 100);  // 1000 ms of life from 100
    put("b", "2", 400);  // from 400
    LONGS_EQUAL(600 + 900, cache_ttl_left_sum_ms(cache, 500));
    cache_remove(cache, "a", 1, cache_hash(cache, "a", 1));
    LONGS_EQUAL(900, cache_ttl_left_sum_ms(cache, 500));
    LONGS_EQUAL(0, cache_ttl_left_sum_ms(cache, 2000));  // past its TTL: nothing left
}

// Entries are linked by 32-bit names: slab blocks by page and offset, larger ones by their place
// in the cache's table. A model (the keys in recency order and in insertion order) against the
// cache through random inserts, reads, removals and expiry, with values on both sides of the
// slab's largest class: every eviction takes the model's least recently read key, every expiry
// its oldest, and the table of large entries never holds more places than the capacity.
TEST(Cache, test_named_links_keep_recency_and_age_order_across_small_and_large_entries)
{
    const size_t capacity = 64;
    Cache *c = cache_create(capacity, TTL, 11, &stats);
    std::vector<std::string> recency, age;  // front: most recently read / oldest insertion
    std::map<std::string, uint64_t> stored;
    auto drop = [](std::vector<std::string> &v, const std::string &k) {
        for (size_t i = 0; i < v.size(); i++)
            if (v[i] == k) {
                v.erase(v.begin() + (long)i);
                return true;
            }
        return false;
    };
    uint64_t rng = 12345, now = 0;
    auto next = [&rng](uint64_t n) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return (rng >> 33) % n;
    };
    std::string value(2000, 'v');
    for (int step = 0; step < 20000; step++) {
        std::string key = "key:" + std::to_string(next(150));
        uint64_t h = cache_hash(c, key.data(), key.size());
        switch (next(10)) {
        case 0:
            CHECK_EQUAL(drop(recency, key), cache_remove(c, key.data(), key.size(), h));
            drop(age, key);
            break;
        case 1:
            now += next(40);
            while (!age.empty() && now >= stored[age[0]] + TTL) {  // the model's expiry: insertion order
                drop(recency, age[0]);
                age.erase(age.begin());
            }
            cache_expire(c, now, 1000);
            break;
        case 2:
        case 3:
        case 4: {
            size_t len = next(2) ? next(40) : 400 + next(1000);  // small, or around and past SLAB_MAX
            CHECK(cache_insert(c, key.data(), key.size(), h, value.data(), len, now) != NULL);
            drop(recency, key);
            drop(age, key);
            if (recency.size() == capacity) {
                drop(age, recency.back());  // the model's LRU victim
                recency.pop_back();
            }
            recency.insert(recency.begin(), key);
            age.push_back(key);
            stored[key] = now;
            break;
        }
        default: {
            CacheEntry *e = cache_find(c, key.data(), key.size(), h, now);
            bool held = drop(recency, key);
            CHECK_EQUAL(held, e != NULL);
            if (held) {
                STRCMP_EQUAL(key.c_str(), std::string(cache_entry_key(e), e->key_len).c_str());
                recency.insert(recency.begin(), key);
            }
        }
        }
        LONGS_EQUAL(recency.size(), cache_count(c));
    }
    for (const std::string &k : recency)  // the model's keys are the cache's, in both orders
        CHECK(cache_find(c, k.data(), k.size(), cache_hash(c, k.data(), k.size()), now) != NULL);
    CHECK(cache_table_bytes(c) <= 2 * 256 * sizeof(EntryRef) + 2 * capacity * sizeof(void *));
    cache_destroy(c);
}

// When the slab can map no more pages (its names' 16 GiB reach, or no memory), an insert makes
// room by evicting the least recently read entries, as under max_memory: the keys read now are
// still cached, not refused for as long as the old ones stay. (Under ASan freed blocks wait in a
// quarantine first: the first inserts past the reach may be refused while it fills.)
TEST(Cache, test_past_the_slabs_reach_inserts_evict_the_least_recently_read)
{
    Cache *c = cache_create(1000000, TTL, 5, &stats);
    slab_quarantine_flush();
    slab_set_max_pages(slab_page_bytes() / SLAB_PAGE_SIZE + 12);  // about 7,400 entries of this size
    char key[32], value[64];
    memset(value, 'v', sizeof(value));
    int refused_late = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "key:%08d", i);
        CacheEntry *e = cache_insert(c, key, (size_t)len, cache_hash(c, key, (size_t)len), value, sizeof(value), 0);
        if (e == NULL && i >= n - 1000)
            refused_late++;
    }
    slab_set_max_pages(SIZE_MAX);
    LONGS_EQUAL(0, refused_late);
    CHECK_TEXT(cache_count(c) > 1000 && cache_count(c) < 8000, std::to_string(cache_count(c)).c_str());
    CHECK(stats.cache_evictions >= (uint64_t)(n - 8000));
    for (int i = n - 1000; i < n; i++) {  // the latest are held, the earliest gone
        int len = snprintf(key, sizeof(key), "key:%08d", i);
        CHECK(cache_find(c, key, (size_t)len, cache_hash(c, key, (size_t)len), 0) != NULL);
    }
    POINTERS_EQUAL(NULL, cache_find(c, "key:00000000", 12, cache_hash(c, "key:00000000", 12), 0));
    cache_destroy(c);
}

// Found by an attack on the worker: size class after size class, a page's worth of entries is
// stored, and the first of each page is read again with all those kept before. max_bytes evicts
// the rest, least recently read first; each kept entry held its whole page, and 40 classes held
// about 40 times the bound. The slab's pages now stay within the bound and its slack: pages are
// emptied, and an entry a reply holds outlives its page's eviction.
TEST(Cache, test_max_bytes_bounds_the_slab_s_pages_when_one_entry_per_page_stays_read)
{
    const size_t bound = 1 << 20;
    Cache *c = page_bound_cache(bound, 7);
    size_t before = slab_page_bytes(), most = 0;
    std::vector<std::string> kept;
    char key[16];
    for (size_t size = 64; size < 64 + 8 * 40; size += 8) {
        std::string value(size - sizeof(CacheEntry) - 8, 'v');
        size_t per_page = slab_blocks_per_page(size), count = bound * 12 / 10 / size;
        for (size_t i = 0; i < count; i++) {
            snprintf(key, sizeof(key), "%03zu%05zu", size % 1000, i);
            cache_insert(c, key, 8, cache_hash(c, key, 8), value.data(), value.size(), 0);
            if (i % per_page == 0)
                kept.push_back(key);
            if (i % per_page == per_page - 1 || i == count - 1)
                for (auto &k : kept)
                    cache_find(c, k.data(), 8, cache_hash(c, k.data(), 8), 0);
            most = slab_page_bytes() - before > most ? slab_page_bytes() - before : most;
        }
        CHECK(cache_find(c, key, 8, cache_hash(c, key, 8), 0) != NULL);  // the latest is cached
    }
    // The bound, and the slack for the holes in pages: an eighth of the bound and a page for each of
    // the 40 size classes (without the bound of pages: about 40 MB).
    CHECK_TEXT(most <= bound + bound / 8 + 40 * SLAB_PAGE_SIZE, std::to_string(most).c_str());
    CHECK(stats.cache_bytes <= bound);
    cache_destroy(c);
    slab_quarantine_flush();
}

// Pages of one size class that each hold one entry are the roomiest when another class grows:
// they are emptied, whatever their entries' recency. One entry a reply holds: evicted with its
// page, not freed, its bytes valid until the reply lets go.
TEST(Cache, test_an_entry_a_reply_holds_outlives_the_eviction_of_its_page)
{
    Cache *c = page_bound_cache(0, 9);  // no max_bytes while the pages are filled
    const int per_page = (int)slab_blocks_per_page(64), pages = 24;
    std::string small(64 - sizeof(CacheEntry) - 8, 's'), big(200 - sizeof(CacheEntry) - 8, 'b');
    char key[16];
    for (int i = 0; i < pages * per_page; i++) {
        snprintf(key, sizeof(key), "a%07d", i % 10000000);
        CHECK(cache_insert(c, key, 8, cache_hash(c, key, 8), small.data(), small.size(), 0) != NULL);
    }
    // Each page keeps its first entry; the first page's is the one a reply holds, and, emptied
    // last, its page is the first its class offers.
    CacheEntry *held = cache_find(c, "a0000000", 8, cache_hash(c, "a0000000", 8), 0);
    CHECK(held != NULL && cache_entry_retain(held));
    for (int i = pages * per_page - 1; i >= 0; i--) {
        snprintf(key, sizeof(key), "a%07d", i % 10000000);
        if (i % per_page != 0)
            cache_remove(c, key, 8, cache_hash(c, key, 8));
    }
    slab_quarantine_flush();
    cache_set_max_bytes(c, 1 << 20);  // 24 pages of 64 KiB are past it and its slack
    uint64_t evictions = stats.cache_page_evictions;
    // Each insert empties up to 4 pages: 24 pages come within the bound in two.
    bool stored = false;
    for (int i = 0; i < 3 && !stored; i++) {
        snprintf(key, sizeof(key), "b%07d", i);
        stored = cache_insert(c, key, 8, cache_hash(c, key, 8), big.data(), big.size(), 0) != NULL;
    }
    CHECK(stored);
    CHECK(stats.cache_page_evictions > evictions);
    POINTERS_EQUAL(NULL, cache_find(c, "a0000000", 8, cache_hash(c, "a0000000", 8), 0));
    LONGS_EQUAL(1, cache_entry_references(held));
    CHECK(std::string(cache_entry_value(held), held->value_len) == small);
    cache_entry_release(held);
    cache_destroy(c);
    slab_quarantine_flush();
}

// Found by an attack: small entries' pages, one entry kept read in each, beside large entries
// (malloc's blocks) that fill the bound by themselves: the pages were bounded alone, and the two
// together held twice max_bytes. What the cache holds, pages and large entries, stays within it.
TEST(Cache, test_max_bytes_bounds_pages_and_large_entries_together)
{
    const size_t bound = 1 << 20;
    Cache *c = page_bound_cache(bound, 11);
    size_t before = slab_page_bytes();
    const size_t per_page = slab_blocks_per_page(88);
    std::string small(88 - sizeof(CacheEntry) - 8, 's'), large(1000, 'l');
    std::vector<std::string> kept;
    char key[16];
    for (size_t i = 0; i < 11000; i++) {  // about a megabyte of small entries: every page full
        snprintf(key, sizeof(key), "s%07zu", i % 10000000);
        cache_insert(c, key, 8, cache_hash(c, key, 8), small.data(), small.size(), 0);
        if (i % per_page == 0)
            kept.push_back(key);
    }
    // Large entries held, from the count and the bytes: n_small * fs + n_large * fl = bytes.
    const size_t fs = cache_entry_footprint(c, 8, small.size()), fl = cache_entry_footprint(c, 8, large.size());
    size_t large_held = 0, most = 0;
    for (size_t i = 0; i < 3000; i++) {  // three megabytes of large ones, the kept ones read all along
        snprintf(key, sizeof(key), "l%07zu", i % 10000000);
        if (cache_insert(c, key, 8, cache_hash(c, key, 8), large.data(), large.size(), 0) != NULL)
            large_held++;
        for (auto &k : kept)
            cache_find(c, k.data(), 8, cache_hash(c, k.data(), 8), 0);
        size_t large_bytes = (stats.cache_bytes - cache_count(c) * fs) / (fl - fs) * fl;
        size_t held = slab_page_bytes() - before + large_bytes;
        most = held > most ? held : most;
    }
    CHECK(large_held > 2000);  // large entries are cached all along
    // The bound and its slack: an eighth, and a page for each of the two classes in use.
    CHECK_TEXT(most <= bound + bound / 8 + 2 * SLAB_PAGE_SIZE, std::to_string(most).c_str());
    cache_destroy(c);
    slab_quarantine_flush();
}
