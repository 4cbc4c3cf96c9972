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
    Flight *add(const char *key, uint64_t sent_us = 7)
    {
        return fetch_table_add(t, key, strlen(key), hash_of(key), sent_us);
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
    LONGS_EQUAL(7, a->sent_us);
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

TEST(FetchTable, test_an_invalidation_unlinks_only_its_keys_flight)
{
    Flight *a = add("a"), *d = add("d");
    CHECK(fetch_table_invalidate(t, "a", 1, hash_of("a")));
    CHECK(a->invalidated);
    CHECK(a->detached);
    POINTERS_EQUAL(nullptr, find("a"));  // a request from now on starts a new fetch
    POINTERS_EQUAL(d, find("d"));        // (its bucket neighbour untouched)
    CHECK_FALSE(d->invalidated);
    LONGS_EQUAL(1, fetch_table_count(t));
    CHECK_FALSE(fetch_table_invalidate(t, "zz", 2, hash_of("zz")));  // not being fetched
    CHECK_FALSE(fetch_table_invalidate(t, "a", 1, hash_of("a")));    // no longer in the table
    Flight *again = add("a");
    POINTERS_EQUAL(again, find("a"));
    remove_and_free(a);  // a detached flight's reply: removing it again is harmless
    POINTERS_EQUAL(again, find("a"));
    remove_and_free(again);
    remove_and_free(d);
    LONGS_EQUAL(0, fetch_table_count(t));
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

// A GET and an MGET of one key ask different questions (a list: -WRONGTYPE against nil): each
// finds only its own command's flight, and an invalidation of the key unlinks both.
TEST(FetchTable, test_a_get_and_an_mget_of_one_key_are_apart_and_both_invalidated)
{
    Flight *get = add("k");
    POINTERS_EQUAL(nullptr, fetch_table_find(t, "k", 1, hash_of("k"), FLIGHT_MGET));
    Flight *mget = fetch_table_add(t, "k", 1, hash_of("k"), 7, 0, FLIGHT_MGET);
    POINTERS_EQUAL(get, find("k"));
    POINTERS_EQUAL(mget, fetch_table_find(t, "k", 1, hash_of("k"), FLIGHT_MGET));
    CHECK(fetch_table_invalidate(t, "k", 1, hash_of("k")));
    CHECK(get->invalidated && mget->invalidated);
    LONGS_EQUAL(0, fetch_table_count(t));
    free(get);
    free(mget);
}
