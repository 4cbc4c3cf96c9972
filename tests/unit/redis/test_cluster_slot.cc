// The slot function against what a real Redis says (CLUSTER KEYSLOT, recorded in
// keyslot_cases.inc by make_keyslot_cases.py): hash tags, their corner cases, binary keys.
#include <CppUTest/TestHarness.h>

#include <stdio.h>

#include "cluster_slot.h"

struct KeySlotCase {
    const char *key;
    size_t len;
    int slot;
};

static const KeySlotCase cases[] = {
#include "keyslot_cases.inc"
};

TEST_GROUP(ClusterSlot){};

TEST(ClusterSlot, test_crc16_is_xmodem)
{
    LONGS_EQUAL(0x31C3, cluster_crc16("123456789", 9));  // the reference check value
}

TEST(ClusterSlot, test_every_recorded_key_gets_the_slot_redis_gives_it)
{
    CHECK(sizeof(cases) / sizeof(cases[0]) >= 400);
    for (const KeySlotCase &c : cases) {
        char what[64];
        snprintf(what, sizeof(what), "a key of %zu bytes", c.len);
        LONGS_EQUAL_TEXT(c.slot, cluster_key_slot(c.key, c.len), what);
    }
}

TEST(ClusterSlot, test_hash_tags)
{
    LONGS_EQUAL(cluster_key_slot("user1000", 8), cluster_key_slot("{user1000}.following", 20));
    LONGS_EQUAL(cluster_key_slot("bar", 3), cluster_key_slot("foo{bar}{zap}", 13));      // the first tag
    LONGS_EQUAL(cluster_key_slot("foo{}{bar}", 10), cluster_crc16("foo{}{bar}", 10) & 16383);  // "{}": none
    LONGS_EQUAL(cluster_crc16("{bar", 4) & 16383, cluster_key_slot("foo{{bar}}zap", 13));   // tag "{bar"
    LONGS_EQUAL(cluster_crc16("a}", 2) & 16383, cluster_key_slot("a}", 2));                  // no '{'
    LONGS_EQUAL(cluster_crc16("{a", 2) & 16383, cluster_key_slot("{a", 2));                  // no '}' after it
}
