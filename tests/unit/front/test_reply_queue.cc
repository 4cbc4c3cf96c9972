#include <CppUTest/TestHarness.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "reply_queue.h"

TEST_GROUP(ReplyQueue)
{
    ReplySlotPool pool;
    ReplyQueue q;
    int owner;

    void setup() override
    {
        pool.free = NULL;
        memset(&q, 0, sizeof(q));
        q.out = evbuffer_new();
        q.owner = &owner;
    }
    void teardown() override
    {
        reply_queue_abandon(&q);
        evbuffer_free(q.out);
        reply_pool_free(&pool);
    }

    void answer(ReplySlot *s, const char *text)
    {
        evbuffer *out = reply_slot_output(s);
        CHECK(out != NULL);
        evbuffer_add(out, text, strlen(text));
    }
    std::string sent()
    {
        size_t n = evbuffer_get_length(q.out);
        std::string s(n, '\0');
        evbuffer_remove(q.out, &s[0], n);
        return s;
    }
    void *finish(ReplySlot *s)
    {
        void *owner_of_slot;
        return reply_slot_finish(s, &owner_of_slot);
    }
    size_t pooled()
    {
        size_t n = 0;
        for (ReplySlot *s = pool.free; s != NULL; s = *(ReplySlot **)s)  // next is the first field
            n++;
        return n;
    }
};

TEST(ReplyQueue, test_answers_in_order_leave_at_once)
{
    ReplySlot *a = reply_queue_push(&q, &pool, 0);
    answer(a, "A");
    POINTERS_EQUAL(&owner, finish(a));
    STRCMP_EQUAL("A", sent().c_str());
    LONGS_EQUAL(0, q.pending);
}

TEST(ReplyQueue, test_later_answer_waits_for_an_earlier_one)
{
    ReplySlot *miss = reply_queue_push(&q, &pool, 0);
    ReplySlot *hit = reply_queue_push(&q, &pool, 0);
    answer(hit, "hit;");
    POINTERS_EQUAL(NULL, finish(hit));  // nothing can leave yet
    STRCMP_EQUAL("", sent().c_str());
    answer(miss, "miss;");
    POINTERS_EQUAL(&owner, finish(miss));
    STRCMP_EQUAL("miss;hit;", sent().c_str());
    LONGS_EQUAL(0, q.pending);
}

TEST(ReplyQueue, test_many_answers_completing_in_reverse_order)
{
    ReplySlot *slots[10];
    for (int i = 0; i < 10; i++)
        slots[i] = reply_queue_push(&q, &pool, 0);
    for (int i = 9; i >= 0; i--) {
        answer(slots[i], std::to_string(i).c_str());
        finish(slots[i]);
    }
    STRCMP_EQUAL("0123456789", sent().c_str());
}

TEST(ReplyQueue, test_immediate_answer_goes_straight_out_when_nothing_waits)
{
    ReplySlot *slot;
    evbuffer *out = reply_queue_immediate(&q, &pool, &slot);
    POINTERS_EQUAL(q.out, out);
    POINTERS_EQUAL(NULL, slot);
    LONGS_EQUAL(0, q.pending);
}

TEST(ReplyQueue, test_immediate_answer_queues_behind_a_waiting_one)
{
    ReplySlot *miss = reply_queue_push(&q, &pool, 0);
    ReplySlot *slot;
    evbuffer *out = reply_queue_immediate(&q, &pool, &slot);
    CHECK(slot != NULL);
    evbuffer_add(out, "PONG;", 5);
    finish(slot);
    STRCMP_EQUAL("", sent().c_str());
    answer(miss, "value;");
    finish(miss);
    STRCMP_EQUAL("value;PONG;", sent().c_str());
}

TEST(ReplyQueue, test_abandoned_slot_is_dropped_when_its_answer_arrives)
{
    ReplySlot *waiting = reply_queue_push(&q, &pool, 0);
    ReplySlot *done = reply_queue_push(&q, &pool, 0);
    answer(done, "x");
    finish(done);
    reply_queue_abandon(&q);  // the client went away
    LONGS_EQUAL(1, pooled());
    POINTERS_EQUAL(NULL, reply_slot_output(waiting));
    POINTERS_EQUAL(NULL, finish(waiting));
    LONGS_EQUAL(2, pooled());
    STRCMP_EQUAL("", sent().c_str());
}

TEST(ReplyQueue, test_slots_are_recycled)
{
    for (int round = 0; round < 3; round++) {
        ReplySlot *a = reply_queue_push(&q, &pool, 0);
        ReplySlot *b = reply_queue_push(&q, &pool, 0);
        answer(b, "b");
        finish(b);
        answer(a, "a");
        finish(a);
        STRCMP_EQUAL("ab", sent().c_str());
        LONGS_EQUAL(2, pooled());
    }
}

// libevent's allocator, failing on demand: an answer's own buffer that cannot be had.
static bool fail_allocations;
static void *failing_malloc(size_t n) { return fail_allocations ? NULL : malloc(n); }
static void *failing_realloc(void *p, size_t n) { return fail_allocations ? NULL : realloc(p, n); }

TEST(ReplyQueue, test_an_answer_without_memory_fails_the_queue_instead_of_skipping_a_slot)
{
    ReplySlot *a = reply_queue_push(&q, &pool, 0);  // waits for Redis, at the head
    ReplySlot *b = reply_queue_push(&q, &pool, 0);  // ready before its turn: needs a buffer of its own
    event_set_mem_functions(failing_malloc, failing_realloc, free);
    fail_allocations = true;
    POINTERS_EQUAL(NULL, reply_slot_output(b));
    fail_allocations = false;
    event_set_mem_functions(NULL, NULL, NULL);
    CHECK(q.failed);
    // The connection hears of it at once, though nothing new is ready to send: it must close.
    POINTERS_EQUAL(&owner, finish(b));
    answer(a, "A");
    POINTERS_EQUAL(&owner, finish(a));
}

TEST(ReplyQueue, test_held_counts_lookups_under_way_then_answers_waiting_for_their_turn)
{
    ReplySlot *miss = reply_queue_push(&q, &pool, 1000);  // an MGET under way
    ReplySlot *other = reply_queue_push(&q, &pool, 300);
    LONGS_EQUAL(1300, q.held);
    answer(other, "0123456789");
    finish(other);
    LONGS_EQUAL(1010, q.held);  // its answer waits behind the MGET
    answer(miss, "m");
    finish(miss);
    LONGS_EQUAL(0, q.held);  // both in out now
    STRCMP_EQUAL("m0123456789", sent().c_str());
    ReplySlot *orphan = reply_queue_push(&q, &pool, 50);
    reply_queue_abandon(&q);
    LONGS_EQUAL(0, q.held);
    POINTERS_EQUAL(NULL, finish(orphan));  // its lookup ends later: recycled
    LONGS_EQUAL(0, q.held);
}
