// The coherence rules (coherence.h) over every ordering of a request, its reply, an invalidation
// of its key, and a distrust of its source (a flush, a lost link, a tracking handshake, a slot
// that changed owner), driven by hand with the fetch table and the times lookup would pass.
// These are the very functions lookup asks (a cluster's ASK reply comes as caching false), so a
// broken rule fails here.
#include <CppUTest/TestHarness.h>

#include <stdlib.h>
#include <string.h>

#include "coherence.h"
#include "fetch_table.h"

TEST_GROUP(Coherence)
{
    FetchTable *t = nullptr;
    uint64_t now = 1000;           // microseconds, moved by hand
    KeyTrust trust = {0, true, false};  // the key's source: trusted, caching, no migration
    void setup() override { t = fetch_table_create(); }
    void teardown() override { fetch_table_destroy(t); }

    uint64_t tick() { return ++now; }
    uint64_t hash(const char *key) { return strlen(key); }
    // A request that misses: it joins the key's flight if it may, else starts one, as lookup
    // does with the same call.
    Flight *request(const char *key)
    {
        Flight *f = coherence_joinable_flight(t, key, strlen(key), hash(key), &trust);
        return f != nullptr ? f : fetch_table_add(t, key, strlen(key), hash(key), tick());
    }
    void invalidate(const char *key) { fetch_table_invalidate(t, key, strlen(key), hash(key)); }
    void distrust() { trust.distrusted_us = tick(); }
    // The reply: whether it may be cached; the flight is done with.
    bool reply(Flight *f, bool absent = false)
    {
        tick();
        bool cacheable = coherence_reply_cacheable(f, &trust, absent);
        fetch_table_remove(t, f);
        free(f);
        return cacheable;
    }
};

TEST(Coherence, test_request_then_reply_caches)
{
    CHECK(reply(request("k")));
}

TEST(Coherence, test_requests_for_one_key_share_one_fetch)
{
    Flight *f = request("k");
    POINTERS_EQUAL(f, request("k"));
    CHECK(reply(f));
}

TEST(Coherence, test_an_invalidation_before_the_reply_keeps_it_out_of_the_cache)
{
    Flight *f = request("k");
    invalidate("k");  // came first, on the other connection
    CHECK_FALSE(reply(f));
}

TEST(Coherence, test_a_request_after_an_invalidation_starts_its_own_fetch)
{
    Flight *before = request("k");
    invalidate("k");
    Flight *after = request("k");  // must not be answered the value read before the change
    CHECK(after != before);
    CHECK_FALSE(reply(before));
    CHECK(reply(after));
}

TEST(Coherence, test_an_invalidation_after_the_reply_finds_no_fetch)
{
    CHECK(reply(request("k")));
    invalidate("k");  // drops the cached entry (lookup's cache_remove); no fetch to touch
    CHECK(reply(request("k")));
}

TEST(Coherence, test_an_invalidation_for_another_key_changes_nothing)
{
    Flight *f = request("k");
    invalidate("other");
    POINTERS_EQUAL(f, request("k"));
    CHECK(reply(f));
}

TEST(Coherence, test_a_distrust_between_send_and_reply_keeps_the_reply_out)
{
    Flight *f = request("k");
    distrust();  // FLUSHALL, a lost link, the slot moved
    CHECK_FALSE(reply(f));
}

TEST(Coherence, test_a_request_after_a_distrust_does_not_join_a_fetch_sent_before)
{
    Flight *before = request("k");
    distrust();
    Flight *after = request("k");
    CHECK(after != before);
    CHECK(before->detached);
    CHECK_FALSE(reply(before));
    CHECK(reply(after));
}

TEST(Coherence, test_only_what_is_sent_after_tracking_is_enabled_caches)
{
    trust.caching = false;       // the link was lost
    Flight *untracked = request("a");
    distrust();                  // CLIENT TRACKING sent: what came before was read untracked
    Flight *tracked = request("b");
    trust.caching = true;        // ... and confirmed
    CHECK_FALSE(reply(untracked));
    CHECK(reply(tracked));
}

TEST(Coherence, test_nothing_caches_while_the_source_may_not)
{
    trust.caching = false;
    CHECK_FALSE(reply(request("k")));
}

TEST(Coherence, test_an_entry_stored_before_a_distrust_is_no_hit)
{
    uint64_t stored = tick();
    CHECK(coherence_entry_is_hit(stored, false, &trust));
    distrust();
    CHECK_FALSE(coherence_entry_is_hit(stored, false, &trust));
    CHECK(coherence_entry_is_hit(tick(), false, &trust));  // stored after it: a hit
}

TEST(Coherence, test_a_slot_move_distrusts_only_that_slot)
{
    KeyTrust moved = {0, true, false}, stayed = {0, true, false};
    uint64_t stored = tick();
    Flight *f = fetch_table_add(t, "m", 1, 1, tick());
    moved.distrusted_us = tick();
    CHECK_FALSE(coherence_entry_is_hit(stored, false, &moved));
    CHECK(coherence_entry_is_hit(stored, false, &stayed));
    CHECK_FALSE(coherence_may_join(f, &moved));
    CHECK(coherence_may_join(f, &stayed));
    fetch_table_remove(t, f);
    free(f);
}

TEST(Coherence, test_a_not_found_says_nothing_while_its_slot_migrates)
{
    uint64_t stored = tick();
    trust.migrating = true;  // a node reported the slot migrating or importing
    CHECK_FALSE(coherence_entry_is_hit(stored, true, &trust));  // it may exist on the importing node
    CHECK(coherence_entry_is_hit(stored, false, &trust));       // a value cached is still the value
    CHECK_FALSE(reply(request("absent"), true));                // nor is a new "not found" cached
    CHECK(reply(request("present")));
    trust.migrating = false;
    CHECK(coherence_entry_is_hit(stored, true, &trust));
    CHECK(reply(request("absent"), true));
}
