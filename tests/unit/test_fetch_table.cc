// The fetch table on its own: flights found by key, waiters in order, invalidation marks.
#include <CppUTest/TestHarness.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch_table.h"

TEST_GROUP(FetchTable)
{
    FetchTable *t = nullptr;
    void setup() override { t = fetch_table_create(); }
    void teardown() override { fetch_table_destroy(t); }

    // Any hash will do for the table: it is the cache's, passed in. Colliding ones on purpose.
    uint64_t hash_of(const char *key) { return strlen(key) % 3; }
    Flight *add(const char *key, uint16_t generation = 7)
    {
        return fetch_table_add(t, key, strlen(key), hash_of(key), generation);
    }
    Flight *find(const char *key) { return fetch_table_find(t, key, strlen(key), hash_of(key)); }
    void remove_and_free(Flight *f)
    {
        fetch_table_remove(t, f);
        free(f);
    }
};

TEST(FetchTable, test_a_flight_is_found_by_its_key_until_removed)
{
    Flight *a = add("a"), *b = add("bb"), *d = add("d");  // a and d share a hash
    POINTERS_EQUAL(a, find("a"));
    POINTERS_EQUAL(b, find("bb"));
    POINTERS_EQUAL(d, find("d"));
    POINTERS_EQUAL(nullptr, find("c"));
    LONGS_EQUAL(7, a->generation);
    CHECK_FALSE(a->invalidated);
    LONGS_EQUAL(3, fetch_table_count(t));
    remove_and_free(a);
    POINTERS_EQUAL(nullptr, find("a"));
    POINTERS_EQUAL(d, find("d"));
    remove_and_free(b);
    remove_and_free(d);
    LONGS_EQUAL(0, fetch_table_count(t));
}

TEST(FetchTable, test_waiters_are_kept_in_arrival_order)
{
    Flight *f = add("k");
    FlightWaiter w[3];
    for (FlightWaiter &x : w)
        fetch_table_join(f, &x);
    POINTERS_EQUAL(&w[0], f->waiters);
    POINTERS_EQUAL(&w[1], w[0].next);
    POINTERS_EQUAL(&w[2], w[1].next);
    POINTERS_EQUAL(nullptr, w[2].next);
    remove_and_free(f);
}

TEST(FetchTable, test_an_invalidation_marks_only_its_key_in_flight)
{
    Flight *a = add("a"), *d = add("d");
    CHECK(fetch_table_invalidate(t, "a", 1, hash_of("a")));
    CHECK(a->invalidated);
    CHECK_FALSE(d->invalidated);
    CHECK_FALSE(fetch_table_invalidate(t, "zz", 2, hash_of("zz")));  // not being fetched
    remove_and_free(a);
    CHECK_FALSE(fetch_table_invalidate(t, "a", 1, hash_of("a")));  // its reply came: nothing to mark
    remove_and_free(d);
}

TEST(FetchTable, test_many_flights_grow_the_table)
{
    char key[16];
    Flight *flights[1000];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        flights[i] = fetch_table_add(t, key, strlen(key), (uint64_t)i * 0x9E3779B97F4A7C15ULL, 0);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        POINTERS_EQUAL(flights[i], fetch_table_find(t, key, strlen(key), (uint64_t)i * 0x9E3779B97F4A7C15ULL));
    }
    for (Flight *f : flights)
        remove_and_free(f);
}

// The orderings of a reply, an invalidation and a new generation, driven by hand as lookup and
// tracking drive them: a reply is cached only if flight_may_cache says so, an invalidation drops
// the key from the cache and marks its flight, a flush or a lost link starts a new generation.
#include "cache.h"

TEST_GROUP(InvalidationRace)
{
    WorkerStats stats;
    Cache *cache = nullptr;
    FetchTable *t = nullptr;
    void setup() override
    {
        memset(&stats, 0, sizeof(stats));
        cache = cache_create(100, 60000, 1, &stats);
        t = fetch_table_create();
    }
    void teardown() override
    {
        fetch_table_destroy(t);
        cache_destroy(cache);
    }
    uint64_t hash(const char *key) { return cache_hash(cache, key, strlen(key)); }
    Flight *send_get(const char *key)
    {
        return fetch_table_add(t, key, strlen(key), hash(key), cache_generation(cache));
    }
    void invalidate(const char *key)  // as lookup_invalidate
    {
        cache_remove(cache, key, strlen(key), hash(key));
        fetch_table_invalidate(t, key, strlen(key), hash(key));
    }
    bool reply(Flight *f, const char *value)  // as lookup's reply path; returns whether cached
    {
        fetch_table_remove(t, f);
        bool cached = flight_may_cache(f, cache_generation(cache)) &&
                      cache_insert(cache, f->key, f->key_len, f->hash, value, strlen(value), 0) != nullptr;
        free(f);
        return cached;
    }
    const char *cached(const char *key)
    {
        CacheEntry *e = cache_find(cache, key, strlen(key), hash(key), 1);
        static char out[64];
        if (e == nullptr)
            return "<none>";
        snprintf(out, sizeof(out), "%.*s", (int)e->value_len, cache_entry_value(e));
        return out;
    }
};

TEST(InvalidationRace, test_reply_then_invalidation_caches_then_drops)
{
    Flight *f = send_get("k");
    CHECK(reply(f, "old"));
    STRCMP_EQUAL("old", cached("k"));
    invalidate("k");
    STRCMP_EQUAL("<none>", cached("k"));
}

TEST(InvalidationRace, test_invalidation_before_its_reply_answers_but_does_not_cache)
{
    Flight *f = send_get("k");
    invalidate("k");  // came first, on the other connection
    CHECK_FALSE(reply(f, "old"));
    STRCMP_EQUAL("<none>", cached("k"));
    // The next fetch, sent after the change, caches.
    CHECK(reply(send_get("k"), "new"));
    STRCMP_EQUAL("new", cached("k"));
}

TEST(InvalidationRace, test_an_invalidation_for_another_key_changes_nothing)
{
    Flight *f = send_get("k");
    invalidate("other");
    CHECK(reply(f, "v"));
}

TEST(InvalidationRace, test_a_flush_between_send_and_reply_keeps_the_reply_out)
{
    CHECK(reply(send_get("before"), "1"));
    Flight *f = send_get("k");
    cache_new_generation(cache, 0);  // FLUSHALL's invalidation, or a lost link
    CHECK_FALSE(reply(f, "pre-flush"));
    STRCMP_EQUAL("<none>", cached("k"));
    STRCMP_EQUAL("<none>", cached("before"));  // what was cached before is no hit either
}

TEST(InvalidationRace, test_tracking_enabled_again_caches_only_what_was_sent_after)
{
    cache_new_generation(cache, 0);  // the link was lost
    Flight *before = send_get("a");  // sent while untracked
    cache_new_generation(cache, 0);  // CLIENT TRACKING sent again: a generation of its own
    Flight *after = send_get("b");
    CHECK_FALSE(reply(before, "1"));
    CHECK(reply(after, "2"));
}
