#include <CppUTest/TestHarness.h>

#include "scoreboard.h"

TEST_GROUP(Scoreboard)
{
    Scoreboard *sb;
    void setup() override { sb = scoreboard_create(2); }
    void teardown() override { scoreboard_destroy(sb); }
};

TEST(Scoreboard, test_two_records_per_slot_for_reloads)
{
    LONGS_EQUAL(4, sb->records);
    LONGS_EQUAL(1, sb->generation);
    WorkerRecord *r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = scoreboard_claim(sb, i % 2);
        CHECK(r[i] != nullptr);
        r[i]->pid = 100 + i;
    }
    POINTERS_EQUAL(nullptr, scoreboard_claim(sb, 0));
    POINTERS_EQUAL(r[2], scoreboard_find(sb, 102));
    scoreboard_retire(sb, r[2]);
    CHECK(scoreboard_claim(sb, 0) == r[2]);  // freed, zeroed, taken again
    LONGS_EQUAL(0, r[2]->stats.cache_inserts);
}

TEST(Scoreboard, test_only_records_ever_claimed_are_scanned)
{
    LONGS_EQUAL(0, sb->used);
    WorkerRecord *a = scoreboard_claim(sb, 0), *b = scoreboard_claim(sb, 1);
    a->pid = 10;
    b->pid = 11;
    LONGS_EQUAL(2, sb->used);
    scoreboard_retire(sb, a);
    LONGS_EQUAL(2, sb->used);  // a high-water mark: b is still in use past a's free record
    POINTERS_EQUAL(b, scoreboard_find(sb, 11));
    POINTERS_EQUAL(a, scoreboard_claim(sb, 0));  // the lowest free record first
    LONGS_EQUAL(2, sb->used);
}

TEST(Scoreboard, test_totals_keep_counters_of_exited_workers_but_not_their_gauges)
{
    WorkerRecord *a = scoreboard_claim(sb, 0), *b = scoreboard_claim(sb, 1);
    a->pid = 10;
    b->pid = 11;
    a->stats.requests[FRONT_HTTP][RESULT_HIT] = 5;
    b->stats.requests[FRONT_HTTP][RESULT_HIT] = 7;
    a->stats.cache_entries = 3;
    b->stats.cache_entries = 4;
    histogram_observe(&a->stats.redis_seconds, 300);
    ScoreboardTotals t;
    scoreboard_totals(sb, &t);
    LONGS_EQUAL(2, t.workers);
    LONGS_EQUAL(12, t.stats.requests[FRONT_HTTP][RESULT_HIT]);
    LONGS_EQUAL(7, t.stats.cache_entries);
    scoreboard_retire(sb, a);
    scoreboard_totals(sb, &t);
    LONGS_EQUAL(1, t.workers);
    LONGS_EQUAL(12, t.stats.requests[FRONT_HTTP][RESULT_HIT]);  // a counter never goes back
    LONGS_EQUAL(4, t.stats.cache_entries);                      // a gauge is how things are now
    LONGS_EQUAL(1, t.stats.redis_seconds.count);
    LONGS_EQUAL(1, t.stats.redis_seconds.bucket[2]);  // 300us: in (250, 500]
}

TEST(Scoreboard, test_histogram_buckets_are_upper_bounds)
{
    Histogram h = {};
    histogram_observe(&h, 0);
    histogram_observe(&h, 100);      // the bound itself is in its bucket
    histogram_observe(&h, 101);
    histogram_observe(&h, 5000000);  // past the last bound: +Inf
    LONGS_EQUAL(2, h.bucket[0]);
    LONGS_EQUAL(1, h.bucket[1]);
    LONGS_EQUAL(1, h.bucket[HISTOGRAM_BUCKETS - 1]);
    LONGS_EQUAL(4, h.count);
    LONGS_EQUAL(5000201, h.sum_us);
}
