// STL headers before CppUTest's, whose leak detector redefines new.
#include <set>

#include <CppUTest/TestHarness.h>
#include <stdint.h>
#include <string.h>

#include "slab.h"

TEST_GROUP(Slab){};

TEST(Slab, test_blocks_are_distinct_aligned_and_writable)
{
    std::set<char *> seen;
    char *blocks[1000];
    for (int i = 0; i < 1000; i++) {
        blocks[i] = (char *)slab_alloc(104);
        CHECK(blocks[i] != NULL);
        LONGS_EQUAL(0, (uintptr_t)blocks[i] % 8);
        memset(blocks[i], i & 0xff, 104);
        CHECK(seen.insert(blocks[i]).second);
    }
    for (int i = 0; i < 1000; i++) {
        CHECK(blocks[i][0] == (char)(i & 0xff) && blocks[i][103] == (char)(i & 0xff));
        slab_free(blocks[i], 104);
    }
}

#if !defined(__SANITIZE_ADDRESS__)  // under ASan every block is a malloc block
TEST(Slab, test_freed_block_is_reused_by_its_class)
{
    void *a = slab_alloc(100);  // rounds to the 104-byte class
    slab_free(a, 100);
    POINTERS_EQUAL(a, slab_alloc(104));
    slab_free(a, 104);
}

TEST(Slab, test_no_header_between_blocks)
{
    void *a = slab_alloc(48);
    void *b = slab_alloc(48);
    LONGS_EQUAL(48, (char *)b - (char *)a);
    slab_free(b, 48);
    slab_free(a, 48);
}

#endif

TEST(Slab, test_large_blocks_come_from_malloc)
{
    size_t before = slab_page_bytes();
    char *big = (char *)slab_alloc(SLAB_MAX + 1);
    memset(big, 1, SLAB_MAX + 1);
    slab_free(big, SLAB_MAX + 1);
    LONGS_EQUAL(before, slab_page_bytes());
}
