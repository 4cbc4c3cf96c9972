// Lookup wired to a real backend, against a Redis the test plays by hand over a unix socket: what
// goes on the wire for hits, misses, single flight and snapshots, and what is cached when an
// invalidation or a distrust comes between a fetch and its reply (the coherence rules
// themselves are test_coherence.cc's; this is that lookup applies them).
#include <CppUTest/TestHarness.h>

#include <event2/event.h>
#include <string.h>

#include <string>
#include <vector>

#include "backend.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "fetch_table.h"
#include "log.h"
#include "lookup.h"
#include "../peer_socket.h"

struct Answers {
    std::vector<std::string> values;  // "<nil>", or the value; "!" + status for a failure
    std::vector<bool> hits;
};

static std::string text_of(const LookupResult *r)
{
    if (r->status == LOOKUP_FOUND)
        return std::string(r->value, r->value_len);
    if (r->status == LOOKUP_NOT_FOUND)
        return "<nil>";
    return "!" + std::to_string((int)r->status);
}

static void on_one(void *arg, const LookupResult *r)
{
    Answers *a = (Answers *)arg;
    a->values.push_back(text_of(r));
    a->hits.push_back(r->hit);
}

static void on_many(void *arg, const LookupResult *results, size_t n)
{
    Answers *a = (Answers *)arg;
    for (size_t i = 0; i < n; i++)
        on_one(a, &results[i]);
}

TEST_GROUP(Lookup)
{
    Config config;
    event_base *base;
    WorkerStats stats;
    PeerSocket sock;  // the Redis the test plays
    Lookup lk;

    void setup() override
    {
        log_set_level(-1);
        config_defaults(&config);
        config.follow_key_expiry = 0;  // no PTTL beside each GET: the wire shows the fetches only
        base = event_base_new();
        memset(&stats, 0, sizeof(stats));
        sock.listen_as("test_lookup", base);
        memset(&lk, 0, sizeof(lk));
        lk.config = &config;
        lk.stats = &stats;
        lk.cache = cache_create(100, 60000, 1, &stats);
        lk.flights = fetch_table_create();
        lk.caching = true;
        BackendTarget target;
        char err[256];
        CHECK(backend_target_resolve(sock.address().c_str(), &target, err, sizeof(err)));
        BackendHooks hooks = {};
        lk.backend = backend_create(base, &config, &target, &stats, 42, &hooks);
        CHECK(lk.backend != nullptr);
        sock.accept_one();
        sock.run_until([&] { return backend_ready(lk.backend); });
    }

    void teardown() override
    {
        backend_destroy(lk.backend);  // answers what is outstanding: every flight is resolved
        fetch_table_destroy(lk.flights);
        cache_destroy(lk.cache);
        sock.close_all();
        event_base_free(base);
        log_set_level(2);
    }

    template <typename F> void run_until(F done) { sock.run_until(done); }
    // What lookup sent to Redis, once it has sent `expect` bytes (and nothing more came).
    std::string peer_reads(size_t expect)
    {
        std::string got = sock.reads(expect);  // (first: the operands of + have no order)
        return got + sock.more();
    }
    std::string nothing_more() { return sock.more(); }
    void peer_writes(const std::string &bytes) { sock.writes(bytes); }

    void get(const char *key, Answers *a) { lookup_get(&lk, FRONT_RESP, key, strlen(key), on_one, a); }

    void snapshot(std::vector<const char *> keys, Answers *a)
    {
        std::vector<LookupKey> lookup_keys;
        for (const char *k : keys)
            lookup_keys.push_back({k, strlen(k)});
        lookup_get_snapshot(&lk, FRONT_RESP, lookup_keys.data(), lookup_keys.size(), on_many, a);
    }
};

static const char *GET_K = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
static const char *GET_K_C = "*2\r\n$3\r\nGET\r\n$1\r\nc\r\n";

TEST(Lookup, test_a_miss_is_fetched_cached_and_then_a_hit)
{
    Answers a, b;
    get("k", &a);
    STRCMP_EQUAL(GET_K, peer_reads(strlen(GET_K)).c_str());
    peer_writes("$1\r\nv\r\n");
    run_until([&] { return a.values.size() == 1; });
    STRCMP_EQUAL("v", a.values[0].c_str());
    CHECK_FALSE(a.hits[0]);
    get("k", &b);  // answered at once, from the cache
    LONGS_EQUAL(1, b.values.size());
    CHECK(b.hits[0]);
    STRCMP_EQUAL("", nothing_more().c_str());
}

TEST(Lookup, test_misses_for_one_key_share_one_fetch)
{
    Answers a, b;
    get("k", &a);
    get("k", &b);
    STRCMP_EQUAL(GET_K, peer_reads(strlen(GET_K)).c_str());  // one GET, not two
    peer_writes("$1\r\nv\r\n");
    run_until([&] { return b.values.size() == 1; });
    STRCMP_EQUAL("v", a.values[0].c_str());
    STRCMP_EQUAL("v", b.values[0].c_str());
    LONGS_EQUAL(1, stats.coalesced);
}

TEST(Lookup, test_a_request_after_an_invalidation_does_not_join_the_fetch_sent_before_it)
{
    Answers before, after, later;
    get("k", &before);
    peer_reads(strlen(GET_K));
    lookup_invalidate(&lk, "k", 1);  // the key changed in Redis: what is on its way may be old
    get("k", &after);
    STRCMP_EQUAL(GET_K, peer_reads(strlen(GET_K)).c_str());  // a fetch of its own
    peer_writes("$3\r\nold\r\n$3\r\nnew\r\n");
    run_until([&] { return after.values.size() == 1; });
    STRCMP_EQUAL("old", before.values[0].c_str());  // answered what it waited for ...
    STRCMP_EQUAL("new", after.values[0].c_str());
    get("k", &later);  // ... but only the reply read after the change was cached
    STRCMP_EQUAL("new", later.values[0].c_str());
    CHECK(later.hits[0]);
}

TEST(Lookup, test_a_reply_to_a_fetch_sent_before_a_distrust_is_answered_not_cached)
{
    Answers a, b;
    get("k", &a);
    peer_reads(strlen(GET_K));
    lk.distrusted_us = monotonic_us();  // e.g. the invalidation link was lost meanwhile
    peer_writes("$1\r\nv\r\n");
    run_until([&] { return a.values.size() == 1; });
    STRCMP_EQUAL("v", a.values[0].c_str());
    get("k", &b);  // not a hit: fetched again
    STRCMP_EQUAL(GET_K, peer_reads(strlen(GET_K)).c_str());
    peer_writes("$1\r\nw\r\n");
    run_until([&] { return b.values.size() == 1; });
    STRCMP_EQUAL("w", b.values[0].c_str());
}

TEST(Lookup, test_a_snapshot_with_a_miss_fetches_every_key_in_one_mget)
{
    Answers warm, cold, all_hits;
    get("a", &warm);
    peer_reads(20);
    peer_writes("$2\r\na1\r\n");
    run_until([&] { return warm.values.size() == 1; });
    snapshot({"a", "b", "a"}, &cold);  // b misses: a is fetched again with it, once
    const char *mget = "*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n";
    STRCMP_EQUAL(mget, peer_reads(strlen(mget)).c_str());
    peer_writes("*2\r\n$2\r\na2\r\n$-1\r\n");
    run_until([&] { return cold.values.size() == 3; });
    CHECK(cold.values == std::vector<std::string>({"a2", "<nil>", "a2"}));  // one moment of Redis
    CHECK(cold.hits == std::vector<bool>({false, false, false}));
    snapshot({"a"}, &all_hits);  // every key a hit: from the cache, nothing sent
    CHECK(all_hits.values == std::vector<std::string>({"a2"}));
    CHECK(all_hits.hits[0]);
    STRCMP_EQUAL("", nothing_more().c_str());
}

TEST(Lookup, test_a_snapshot_joins_no_fetch_sent_before_it)
{
    Answers earlier, snap, later;
    get("b", &earlier);
    peer_reads(20);
    snapshot({"b"}, &snap);
    const char *mget = "*2\r\n$4\r\nMGET\r\n$1\r\nb\r\n";
    STRCMP_EQUAL(mget, peer_reads(strlen(mget)).c_str());
    peer_writes("$2\r\nb1\r\n*1\r\n$2\r\nb2\r\n");
    run_until([&] { return snap.values.size() == 1; });
    STRCMP_EQUAL("b1", earlier.values[0].c_str());
    STRCMP_EQUAL("b2", snap.values[0].c_str());
    get("b", &later);  // the snapshot's reply is the one cached
    STRCMP_EQUAL("b2", later.values[0].c_str());
    CHECK(later.hits[0]);
}

TEST(Lookup, test_an_invalidation_during_a_snapshot_leaves_its_reply_uncached)
{
    Answers snap, later;
    snapshot({"c"}, &snap);
    const char *mget = "*2\r\n$4\r\nMGET\r\n$1\r\nc\r\n";
    peer_reads(strlen(mget));
    lookup_invalidate(&lk, "c", 1);
    peer_writes("*1\r\n$3\r\nold\r\n");
    run_until([&] { return snap.values.size() == 1; });
    STRCMP_EQUAL("old", snap.values[0].c_str());
    get("c", &later);  // not cached: fetched again
    STRCMP_EQUAL(GET_K_C, peer_reads(strlen(GET_K_C)).c_str());
    peer_writes("$3\r\nnew\r\n");
    run_until([&] { return later.values.size() == 1; });
    STRCMP_EQUAL("new", later.values[0].c_str());
}

// A transient error (-LOADING after a restart) is Redis not serving yet: the entry it no longer
// trusts is answered (stale), as during an outage; unless its invalidation came meanwhile.
TEST(Lookup, test_a_transient_error_answers_the_stale_entry_unless_it_was_invalidated)
{
    Answers first, stale, after_invalidation;
    get("k", &first);
    peer_reads(strlen(GET_K));
    peer_writes("$1\r\nv\r\n");
    run_until([&] { return first.values.size() == 1; });
    lk.distrusted_us = monotonic_us();  // e.g. Redis restarted: the entry is no hit any more
    get("k", &stale);
    peer_reads(strlen(GET_K));
    peer_writes("-LOADING Redis is loading the dataset in memory\r\n");
    run_until([&] { return stale.values.size() == 1; });
    STRCMP_EQUAL("v", stale.values[0].c_str());
    get("k", &after_invalidation);
    peer_reads(strlen(GET_K));
    lookup_invalidate(&lk, "k", 1);
    peer_writes("-LOADING Redis is loading the dataset in memory\r\n");
    run_until([&] { return after_invalidation.values.size() == 1; });
    STRCMP_EQUAL(("!" + std::to_string((int)LOOKUP_REDIS_ERROR)).c_str(), after_invalidation.values[0].c_str());
}

// A connection cut under a Redis that is up: tried again at once, and the fetch it cut asked again
// on the new one, rather than failed.
TEST(Lookup, test_a_fetch_cut_with_its_connection_is_asked_again_on_the_next)
{
    usleep(120 * 1000);  // the connection has lasted (one dropped at once is a failed attempt: below)
    Answers a;
    get("k", &a);
    peer_reads(strlen(GET_K));
    close(sock.peer);
    run_until([&] { return !backend_ready(lk.backend); });
    sock.accept_one();
    STRCMP_EQUAL(GET_K, peer_reads(strlen(GET_K)).c_str());
    peer_writes("$1\r\nv\r\n");
    run_until([&] { return a.values.size() == 1; });
    STRCMP_EQUAL("v", a.values[0].c_str());
    LONGS_EQUAL(0, stats.fetches_waiting);
}

// A server that accepts and then closes at once (at maxclients, in protected mode) is a failed
// attempt, backed off: not a cut to come back from at once, or the proxy would reconnect in a loop
// as fast as it accepts. The fetch it cut fails (a stale entry would answer it).
TEST(Lookup, test_a_connection_dropped_right_after_it_was_made_is_not_retried_at_once)
{
    Answers a;
    get("k", &a);
    peer_reads(strlen(GET_K));
    close(sock.peer);
    run_until([&] { return a.values.size() == 1; });
    STRCMP_EQUAL(("!" + std::to_string((int)LOOKUP_UNAVAILABLE)).c_str(), a.values[0].c_str());
    CHECK_FALSE(backend_reconnecting_at_once(lk.backend));
    LONGS_EQUAL(0, stats.fetches_waiting);
}

// An MGET cut with its connection is asked again whole, on the next connection, once.
TEST(Lookup, test_an_mget_cut_with_its_connection_is_asked_again_whole)
{
    usleep(120 * 1000);  // the connection has lasted
    static const char *MGET_AB = "*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n";
    Answers a;
    std::vector<LookupKey> keys = {{"a", 1}, {"b", 1}};
    lookup_get_many(&lk, FRONT_RESP, keys.data(), keys.size(), on_many, &a);
    STRCMP_EQUAL(MGET_AB, peer_reads(strlen(MGET_AB)).c_str());
    close(sock.peer);
    run_until([&] { return !backend_ready(lk.backend); });
    sock.accept_one();
    STRCMP_EQUAL(MGET_AB, peer_reads(strlen(MGET_AB)).c_str());
    peer_writes("*2\r\n$1\r\nA\r\n$-1\r\n");
    run_until([&] { return a.values.size() == 2; });
    STRCMP_EQUAL("A", a.values[0].c_str());
    STRCMP_EQUAL("<nil>", a.values[1].c_str());
    LONGS_EQUAL(0, stats.fetches_waiting);
}
