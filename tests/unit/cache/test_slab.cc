// STL headers before CppUTest's, whose leak detector redefines new.
#include <set>
#include <string>
#include <vector>

#include <CppUTest/TestHarness.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "slab.h"

// Each test starts with the quarantine (ASan builds) empty, and empties it where it counts pages or
// looks for a block's reuse.
TEST_GROUP(Slab)
{
    void setup() override { slab_quarantine_flush(); }
};

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

TEST(Slab, test_freed_block_is_reused_by_its_class)
{
    void *a = slab_alloc(100);  // rounds to the 104-byte class
    slab_free(a, 100);
    slab_quarantine_flush();
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

// Once, pages stayed with their size class for ever: with max_memory = 8m, RSS went from 12.8 to
// 101 MB over 12 size classes while the cache held 8 MB.
TEST(Slab, test_pages_a_class_empties_go_back_so_another_class_can_use_the_memory)
{
    size_t before = slab_page_bytes();
    const size_t n = 20000;  // about 2 MB per class
    static void *blocks[n];
    size_t most = 0;
    for (size_t size = 64; size <= SLAB_MAX; size += 32) {
        for (size_t i = 0; i < n; i++)
            blocks[i] = slab_alloc(size);
        size_t held = slab_page_bytes() - before;
        most = held > most ? held : most;
        for (size_t i = 0; i < n; i++)
            slab_free(blocks[(i * 7919) % n], size);  // in no particular order
        slab_quarantine_flush();
    }
    // What is left: a spare page per class used, not every class's pages.
    CHECK(slab_page_bytes() - before <= 15 * 64 * 1024);
    CHECK(most <= (n * SLAB_MAX) * 11 / 10 + 15 * 64 * 1024);
}

TEST(Slab, test_a_page_with_room_again_is_used_again)
{
    size_t before = slab_page_bytes();
    const size_t n = 5000;  // 520 KB of 104-byte blocks: several pages
    static void *blocks[n];
    for (size_t i = 0; i < n; i++)
        blocks[i] = slab_alloc(104);
    size_t full = slab_page_bytes();
    for (size_t i = 0; i < n; i += 2)
        slab_free(blocks[i], 104);  // half of every page
    slab_quarantine_flush();
    for (size_t i = 0; i < n; i += 2)
        blocks[i] = slab_alloc(104);  // fills the holes: no new page
    LONGS_EQUAL(full, slab_page_bytes());
    for (size_t i = 0; i < n; i++)
        slab_free(blocks[i], 104);
    slab_quarantine_flush();
    CHECK(slab_page_bytes() - before <= 64 * 1024);
}

TEST(Slab, test_large_blocks_come_from_malloc)
{
    size_t before = slab_page_bytes();
    char *big = (char *)slab_alloc(SLAB_MAX + 1);
    memset(big, 1, SLAB_MAX + 1);
    slab_free(big, SLAB_MAX + 1);
    LONGS_EQUAL(before, slab_page_bytes());
}

// A block's 32-bit name leads back to it, in every class and on every page, also after pages
// were given back to the kernel and their numbers handed out again to new pages.
TEST(Slab, test_a_named_block_is_found_by_its_name)
{
    const int n = 3000;
    std::vector<char *> blocks(n);
    std::vector<SlabRef> names(n);
    std::set<SlabRef> distinct;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < n; i++) {
            size_t size = 8 + (size_t)(i * 37 + round * 11) % (SLAB_MAX - 8);
            blocks[i] = (char *)slab_alloc_named(size, &names[i]);
            CHECK(blocks[i] != NULL && names[i] != 0);
            POINTERS_EQUAL(blocks[i], slab_block(names[i]));
            CHECK(distinct.insert(names[i]).second);
            CHECK((names[i] >> 31) == 0);  // the top bit is the cache's
        }
        for (int i = 0; i < n; i++)
            POINTERS_EQUAL(blocks[i], slab_block(names[i]));  // still, with every page in use
        for (int i = 0; i < n; i++)
            slab_free(blocks[i], 8 + (size_t)(i * 37 + round * 11) % (SLAB_MAX - 8));
        slab_quarantine_flush();
        distinct.clear();
    }
    void *none = slab_alloc_named(SLAB_MAX + 1, &names[0]);  // no name past the classes
    POINTERS_EQUAL(NULL, none);
}

static size_t mappings()
{
    FILE *f = fopen("/proc/self/maps", "r");
    size_t n = 0;
    for (int ch; f != NULL && (ch = fgetc(f)) != EOF;)
        n += ch == '\n';
    if (f != NULL)
        fclose(f);
    return n;
}

// The slab's pages are not a mapping each, nor split into ever more of them as pages in the
// middle are given back (the kernel allows vm.max_map_count mappings, 65,530: 4 GiB of pages
// mapped one by one): every page lies in one region, emptied in place. Their memory still goes.
TEST(Slab, test_pages_taken_and_given_back_stay_in_one_mapping)
{
    const int per_page = (int)slab_blocks_per_page(104), pages = 200;
    std::vector<void *> blocks((size_t)(per_page * pages));
    size_t before = mappings();
    for (auto &b : blocks)
        b = slab_alloc(104);
    size_t held = slab_page_bytes();
    CHECK_TEXT(mappings() <= before + 2, std::to_string(mappings() - before).c_str());
    for (int page = 0; page < pages; page += 2)  // every other page emptied
        for (int i = 0; i < per_page; i++)
            slab_free(blocks[(size_t)(page * per_page + i)], 104);
    slab_quarantine_flush();
    CHECK(slab_page_bytes() <= held - (pages / 2 - 2) * 64 * 1024);
    CHECK_TEXT(mappings() <= before + 2, std::to_string(mappings() - before).c_str());
    for (int page = 1; page < pages; page += 2)
        for (int i = 0; i < per_page; i++)
            slab_free(blocks[(size_t)(page * per_page + i)], 104);
    slab_quarantine_flush();
}

// A block freed with a size of another class would go on that class's free list: the slab
// refuses it at once, in every build (it once let an entry with an ETag digest be freed
// without it, which served values with a heap pointer in them).
TEST(Slab, test_a_block_freed_with_another_class_s_size_aborts)
{
    pid_t child = fork();
    if (child == 0) {
        close(2);  // its message is expected
        void *a = slab_alloc(104);
        slab_free(a, 112);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    LONGS_EQUAL(SIGABRT, WTERMSIG(status));
}

#if defined(__SANITIZE_ADDRESS__)
// Under ASan the slab is the slab, and ASan knows which of its bytes are handed out.
TEST(Slab, test_asan_sees_free_blocks_and_the_rounding_tail_as_poisoned)
{
    char *a = (char *)slab_alloc(100);  // the 104-byte class
    CHECK(!__asan_address_is_poisoned(a) && !__asan_address_is_poisoned(a + 99));
    CHECK(__asan_address_is_poisoned(a + 100));
    char *b = (char *)slab_alloc(104);
    CHECK(__asan_address_is_poisoned(b + 104) || (uintptr_t)(b + 104) % 65536 == 0);
    slab_free(a, 100);
    CHECK(__asan_address_is_poisoned(a) && __asan_address_is_poisoned(a + 50));
    char *c = (char *)slab_alloc(100);  // the quarantine holds a back: a use after free is seen
    CHECK(c != a);
    CHECK(__asan_address_is_poisoned(a));
    slab_free(b, 104);
    slab_free(c, 100);
}
#endif

// The cache empties a page by evicting what it holds (cache.cc, page_room): a page names exactly
// the blocks handed out from it, also after some are freed, and none once it is given back.
TEST(Slab, test_a_page_names_exactly_its_blocks_handed_out)
{
    const size_t size = 200, n = slab_blocks_per_page(size);
    std::vector<void *> blocks(n);
    for (auto &b : blocks)
        b = slab_alloc(size);
    void *page = (void *)((uintptr_t)blocks[0] & ~(uintptr_t)(SLAB_PAGE_SIZE - 1));
    LONGS_EQUAL(size, slab_block_size(page));
    std::set<void *> held;
    for (size_t i = 0; i < n; i++) {
        CHECK((void *)((uintptr_t)blocks[i] & ~(uintptr_t)(SLAB_PAGE_SIZE - 1)) == page);  // one page
        if (i % 3 == 0)
            slab_free(blocks[i], size);
        else
            held.insert(blocks[i]);
    }
    slab_quarantine_flush();
    std::set<void *> named;
    size_t index = 0;
    for (void *b; (b = slab_page_next(page, &index)) != NULL;)
        CHECK(named.insert(b).second);
    CHECK(named == held);
    // Freed while walked, down to the last: the walk ends where the page went back.
    index = 0;
    size_t walked = 0;
    for (void *b; (b = slab_page_next(page, &index)) != NULL; walked++) {
        slab_free(b, size);
        slab_quarantine_flush();
    }
    LONGS_EQUAL(held.size(), walked);
}

// The page to empty is the one that costs the fewest blocks of those looked at, in the class
// with the most room; spare pages go back first; a class with no room takes a page.
TEST(Slab, test_the_roomiest_page_is_the_emptiest_of_the_class_with_the_most_room)
{
    while (slab_give_back_spare()) {
    }
    const size_t big = 480, small = 120;
    CHECK(slab_takes_page(big));
    size_t per_page = slab_blocks_per_page(big);
    std::vector<void *> a(3 * per_page), b(slab_blocks_per_page(small));
    for (auto &p : a)
        p = slab_alloc(big);
    CHECK(slab_takes_page(big));  // three pages, all full
    for (auto &p : b)
        p = slab_alloc(small);
    for (size_t i = per_page; i < 2 * per_page - 2; i++)  // the second page keeps two blocks
        slab_free(a[i], big);
    for (size_t i = 2 * per_page; i < 2 * per_page + 3; i++)  // the third, all but three
        slab_free(a[i], big);
    for (size_t i = 0; i < b.size() / 2; i++)  // the small class: half its page
        slab_free(b[i], small);
    slab_quarantine_flush();
    CHECK_FALSE(slab_takes_page(big));
    void *page = slab_roomiest_page();
    POINTERS_EQUAL((void *)((uintptr_t)a[2 * per_page - 1] & ~(uintptr_t)(SLAB_PAGE_SIZE - 1)), page);
    // Emptied, it is the class's spare: given back on demand, once.
    size_t held = slab_page_bytes();
    slab_free(a[2 * per_page - 2], big);
    slab_free(a[2 * per_page - 1], big);
    slab_quarantine_flush();
    LONGS_EQUAL(held, slab_page_bytes());
    CHECK(slab_give_back_spare());
    LONGS_EQUAL(held - SLAB_PAGE_SIZE, slab_page_bytes());
    CHECK_FALSE(slab_give_back_spare());
    for (size_t i = 0; i < per_page; i++)
        slab_free(a[i], big);
    for (size_t i = 2 * per_page + 3; i < 3 * per_page; i++)
        slab_free(a[i], big);
    for (size_t i = b.size() / 2; i < b.size(); i++)
        slab_free(b[i], small);
    slab_quarantine_flush();
}
