#include "slab.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "list.h"

// Under AddressSanitizer the slab stays the slab (the sanitized build tests the allocator that
// ships) and tells ASan what it does: a block is poisoned while free, so a use after free or an
// overflow into a neighbour is reported as it would be for malloc; and each page is a root for
// LeakSanitizer, which does not scan mmap'd memory and would call what only an entry points at
// a leak.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define SLAB_ROOT_ADD(p, n) __lsan_register_root_region((p), (n))
#define SLAB_ROOT_REMOVE(p, n) __lsan_unregister_root_region((p), (n))
#else
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#define SLAB_ROOT_ADD(p, n) ((void)(p), (void)(n))
#define SLAB_ROOT_REMOVE(p, n) ((void)(p), (void)(n))
#endif

static const size_t PAGE_SIZE = SLAB_PAGE_SIZE;  // also its alignment: a block finds its page by masking
static const size_t CLASSES = SLAB_MAX / 8;

struct FreeBlock {
    FreeBlock *next;
};

// The head of each page: which class it serves, what it has left, and which of its blocks are
// handed out (a bit each, for the cache to find what a page holds: slab_page_next).
struct Page {
    ListLink link;      // in its class's list of pages with room
    FreeBlock *free;    // blocks given back
    char *unused;       // the part never handed out yet
    uint32_t used;      // blocks handed out
    uint32_t size;      // of its blocks
    uint16_t first;     // where its first block starts: past this header and its bits
    bool listed;        // on its class's list
    uint8_t handed_out[];  // a bit per block
};

struct SizeClass {
    ListLink room;  // pages with a free or unused block (set up at the first allocation)
    Page *spare;  // one emptied page kept for this class: a class that empties and refills at
                  // the edge of a page does not map and unmap on every call
    size_t pages;      // its pages in use (not the spare)
    size_t used;       // blocks handed out from them
    uint32_t per_page; // blocks a page holds
    uint16_t first;    // where a page's first block starts
};

static SizeClass classes[CLASSES + 1];
static size_t page_bytes;

// The class of blocks of `size` (1 to SLAB_MAX): classes[size rounded up to 8, in 8-byte units].
static inline size_t class_of(size_t size) { return (size + 7) / 8; }

// A page's layout for blocks of `rounded` bytes: its header, a bit per block, then the blocks.
static void class_layout(SizeClass *c, size_t rounded)
{
    size_t bits = (PAGE_SIZE - sizeof(Page)) / rounded;  // at most this many blocks
    c->first = (uint16_t)((sizeof(Page) + (bits + 7) / 8 + 7) & ~(size_t)7);
    c->per_page = (uint32_t)((PAGE_SIZE - c->first) / rounded);
}

static inline size_t block_index(const Page *p, const void *block)
{
    return (uint32_t)((const char *)block - ((const char *)p + p->first)) / p->size;  // (32-bit: cheaper)
}

// Every page lies in one region of address space, reserved at the first page: page N starts N
// pages into it, so a block's name is its offset in the region in 8-byte units (slab_block) and
// the region is one mapping however pages come and go (a mapping per page would split at each
// page given back, up to vm.max_map_count, where munmap fails). Reserved without access, it costs
// no memory and is charged to no overcommit limit; the pages handed out so far (numbers below
// `numbers_used`) are made writable, one prefix, grown a chunk at a time; a page given back is
// emptied with MADV_DONTNEED and its number reused, last freed first. Where the whole reach
// cannot be reserved (an address-space limit, ulimit -v), half of it is tried, and so on.
char *slab_region;
static size_t region_pages;   // its length in pages
static size_t numbers_used;   // pages handed out at least once: the writable prefix is this long
static size_t writable_pages; // the prefix made writable so far (numbers_used rounded up a chunk)
static uint32_t *free_numbers; // given back, to be reused (a stack)
static size_t free_count, free_cap;
static size_t max_pages = SLAB_PAGES_MAX;
static const size_t WRITABLE_CHUNK = 16;  // pages made writable at a time: 1 MiB

void slab_set_max_pages(size_t pages) { max_pages = pages < SLAB_PAGES_MAX ? pages : SLAB_PAGES_MAX; }

static bool region_reserve()
{
    for (size_t pages = SLAB_PAGES_MAX; pages >= WRITABLE_CHUNK; pages /= 2) {
        size_t len = (pages + 1) * PAGE_SIZE;  // a page more: the start is aligned to a page
        char *raw = (char *)mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw == MAP_FAILED)
            continue;
        char *start = (char *)(((uintptr_t)raw + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1));
        if (start > raw)
            munmap(raw, (size_t)(start - raw));
        if (raw + len > start + pages * PAGE_SIZE)
            munmap(start + pages * PAGE_SIZE, (size_t)(raw + len - (start + pages * PAGE_SIZE)));
        slab_region = start;
        region_pages = pages;
        return true;
    }
    return false;
}

static bool number_take(uint32_t *number)
{
    if (page_bytes / PAGE_SIZE >= max_pages)
        return false;
    if (free_count > 0) {
        *number = free_numbers[--free_count];
        return true;
    }
    if (slab_region == NULL && !region_reserve())
        return false;
    if (numbers_used == region_pages)
        return false;
    if (numbers_used == writable_pages) {
        size_t chunk = region_pages - writable_pages < WRITABLE_CHUNK ? region_pages - writable_pages : WRITABLE_CHUNK;
        if (mprotect(slab_region + writable_pages * PAGE_SIZE, chunk * PAGE_SIZE, PROT_READ | PROT_WRITE) != 0)
            return false;
        writable_pages += chunk;
    }
    // Room to give it back later, so that giving back never fails.
    if (free_cap < numbers_used + 1) {
        size_t cap = free_cap ? 2 * free_cap : 64;
        uint32_t *grown = (uint32_t *)realloc(free_numbers, cap * sizeof(uint32_t));
        if (grown == NULL)
            return false;
        free_numbers = grown;
        free_cap = cap;
    }
    *number = (uint32_t)numbers_used++;
    return true;
}

static void number_give_back(uint32_t number) { free_numbers[free_count++] = number; }

static void room_add(SizeClass *c, Page *p)
{
    list_push_front(&c->room, &p->link);
    p->listed = true;
}

static void room_remove(Page *p)
{
    list_remove(&p->link);
    p->listed = false;
}

// A page aligned to its size, from the region (above): not from malloc's heap, where the
// short-lived allocations of a miss would fill the gaps between pages and keep the heap from
// ever shrinking back; and given back to the kernel when its last block is freed.
static Page *page_map(const SizeClass *c, size_t size)
{
    uint32_t number;
    if (!number_take(&number))
        return NULL;  // no memory, or past the names' reach
    char *start = slab_region + (size_t)number * PAGE_SIZE;
    page_bytes += PAGE_SIZE;
    Page *p = (Page *)start;
    p->size = (uint32_t)size;
    p->first = c->first;
    SLAB_ROOT_ADD(start, PAGE_SIZE);
    SLAB_POISON(start + p->first, PAGE_SIZE - p->first);
    return p;
}

static void page_unmap(Page *p)
{
    number_give_back((uint32_t)(((char *)p - slab_region) / PAGE_SIZE));
    SLAB_UNPOISON(p, PAGE_SIZE);
    SLAB_ROOT_REMOVE(p, PAGE_SIZE);
    madvise(p, PAGE_SIZE, MADV_DONTNEED);  // its memory goes back; the mapping stays whole
    page_bytes -= PAGE_SIZE;
}

// A block given back with another size than it was allocated with would go on another class's
// free list: memory handed out twice. It costs one compare, so it is checked in every build; a
// wrong size is a bug in the caller, never input. (A malloc block given to the slab is not
// caught surely: its "page" is whatever lies below it, read as a header; ASan sees that read.)
static void check_class(const Page *p, size_t rounded, const void *ptr)
{
    if (p->size != rounded) {
        fprintf(stderr, "slab_free(%p, size of class %zu): the block belongs to class %u\n", ptr, rounded,
                (unsigned)p->size);
        abort();
    }
}

static void page_reset(Page *p)
{
    p->free = NULL;
    p->unused = (char *)p + p->first;
    p->used = 0;
    memset(p->handed_out, 0, p->first - sizeof(Page));
}

void *slab_alloc(size_t size)
{
    if (size > SLAB_MAX || size == 0)
        return malloc(size);
    size_t rounded = (size + 7) & ~(size_t)7;
    SizeClass *c = &classes[class_of(size)];
    if (c->room.next == NULL) {
        list_init(&c->room);
        class_layout(c, rounded);
    }
    Page *p = list_empty(&c->room) ? NULL : LIST_ELEMENT(list_first(&c->room), Page, link);
    if (p == NULL) {
        if (c->spare != NULL) {
            p = c->spare;
            c->spare = NULL;
        } else if ((p = page_map(c, rounded)) == NULL) {
            return NULL;
        }
        page_reset(p);
        room_add(c, p);
        c->pages++;
    }
    void *block;
    if (p->free != NULL) {
        block = p->free;
        SLAB_UNPOISON(block, sizeof(FreeBlock));
        p->free = p->free->next;
    } else {
        block = p->unused;
        p->unused += rounded;
    }
    p->used++;
    c->used++;
    size_t i = block_index(p, block);
    p->handed_out[i / 8] |= (uint8_t)(1u << (i % 8));
    if (p->free == NULL && p->unused + rounded > (char *)p + PAGE_SIZE)
        room_remove(p);  // full
    SLAB_UNPOISON(block, size);  // the rounding's tail stays poisoned: an overflow into it is caught
    return block;
}

void *slab_alloc_named(size_t size, SlabRef *ref)
{
    if (size > SLAB_MAX || size == 0)
        return NULL;
    char *block = (char *)slab_alloc(size);
    if (block == NULL)
        return NULL;
    *ref = slab_ref_of(block);
    return block;
}

// Gives a block back to its page (checked and poisoned already).
static void release_block(void *ptr, size_t rounded)
{
    SizeClass *c = &classes[class_of(rounded)];
    Page *p = (Page *)((uintptr_t)ptr & ~(uintptr_t)(PAGE_SIZE - 1));
    FreeBlock *b = (FreeBlock *)ptr;
    SLAB_UNPOISON(b, sizeof(FreeBlock));
    b->next = p->free;
    SLAB_POISON(b, sizeof(FreeBlock));
    p->free = b;
    size_t i = block_index(p, ptr);
    p->handed_out[i / 8] &= (uint8_t)~(1u << (i % 8));
    c->used--;
    if (--p->used > 0) {
        if (!p->listed)
            room_add(c, p);
        return;
    }
    // Empty: kept as the class's spare, or given back, so that memory a class no longer needs
    // can serve another (what memcached's slab rebalancer does by moving pages).
    if (p->listed)
        room_remove(p);
    c->pages--;
    if (c->spare == NULL) {
        c->spare = p;
    } else {
        page_unmap(p);
    }
}

#if defined(__SANITIZE_ADDRESS__)
// Under ASan a freed block waits, poisoned, behind the last QUARANTINE freed before it is handed
// out again, as malloc's quarantine does: a use after free then finds poisoned bytes, not a block
// already reused (the free lists are LIFO: the next allocation of its class would take it).
static const size_t QUARANTINE = 4096;
static struct {
    void *ptr;
    size_t rounded;
} quarantine[QUARANTINE];
static size_t quarantine_next, quarantine_count;

void slab_quarantine_flush()
{
    for (; quarantine_count > 0; quarantine_count--) {
        size_t i = (quarantine_next + QUARANTINE - quarantine_count) % QUARANTINE;
        release_block(quarantine[i].ptr, quarantine[i].rounded);
    }
}
#else
void slab_quarantine_flush() {}
#endif

void slab_free(void *ptr, size_t size)
{
    if (ptr == NULL)
        return;
    if ((char *)ptr < slab_region || (char *)ptr >= slab_region + region_pages * PAGE_SIZE) {
        free(ptr);  // malloc's: a large block, or one its owner took from malloc itself
        return;
    }
    size_t rounded = (size + 7) & ~(size_t)7;
    check_class((Page *)((uintptr_t)ptr & ~(uintptr_t)(PAGE_SIZE - 1)), rounded, ptr);
    SLAB_POISON(ptr, rounded);
#if defined(__SANITIZE_ADDRESS__)
    if (quarantine_count == QUARANTINE) {
        release_block(quarantine[quarantine_next].ptr, quarantine[quarantine_next].rounded);
        quarantine_count--;
    }
    quarantine[quarantine_next] = {ptr, rounded};
    quarantine_next = (quarantine_next + 1) % QUARANTINE;
    quarantine_count++;
#else
    release_block(ptr, rounded);
#endif
}

size_t slab_page_bytes() { return page_bytes; }

size_t slab_classes_in_use(size_t also)
{
    size_t n = 0, also_class = also > 0 && also <= SLAB_MAX ? class_of(also) : 0;
    for (size_t i = 1; i <= CLASSES; i++)
        n += classes[i].pages > 0 || i == also_class;
    return n;
}

bool slab_takes_page(size_t size)
{
    if (size > SLAB_MAX || size == 0)
        return false;
    const SizeClass *c = &classes[class_of(size)];
    return c->spare == NULL && (c->room.next == NULL || list_empty(&c->room));
}

bool slab_give_back_spare()
{
    for (size_t i = 1; i <= CLASSES; i++) {
        if (classes[i].spare != NULL) {
            page_unmap(classes[i].spare);
            classes[i].spare = NULL;
            return true;
        }
    }
    return false;
}

// Of the classes with the most room in their pages, the first with a page not to skip among the
// first few of its pages with room, and of those the emptiest: bounded work (64 classes, 8 pages
// each at most), and the page that costs the fewest blocks to empty of those looked at.
void *slab_roomiest_page(void *const *skip, size_t skipped)
{
    static const int LOOKED_AT = 8;
    Page *best = NULL;
    size_t best_room = 0;
    for (size_t i = 1; i <= CLASSES; i++) {
        SizeClass *c = &classes[i];
        size_t room = c->pages > 0 ? (c->pages * c->per_page - c->used) * i * 8 : 0;
        if (room <= best_room)
            continue;
        Page *emptiest = NULL;
        int n = 0;
        for (ListLink *l = list_first(&c->room); l != &c->room && n < LOOKED_AT; l = l->next, n++) {
            Page *p = LIST_ELEMENT(l, Page, link);
            bool skip_it = false;
            for (size_t k = 0; k < skipped; k++)
                skip_it = skip_it || skip[k] == p;
            if (!skip_it && p->used > 0 && (emptiest == NULL || p->used < emptiest->used))
                emptiest = p;
        }
        if (emptiest != NULL) {
            best = emptiest;
            best_room = room;
        }
    }
    return best;
}

size_t slab_block_size(const void *page) { return ((const Page *)page)->size; }

size_t slab_blocks_per_page(size_t size)
{
    SizeClass c;
    class_layout(&c, (size + 7) & ~(size_t)7);
    return c.per_page;
}

void *slab_page_next(void *page, size_t *index)
{
    Page *p = (Page *)page;
    if (p->used == 0)
        return NULL;  // (also a page given back meanwhile: its header reads as zeros)
    size_t end = (uint32_t)(p->unused - ((char *)p + p->first)) / p->size;
    for (size_t i = *index; i < end; i++) {
        if (p->handed_out[i / 8] & (1u << (i % 8))) {
            *index = i + 1;
            return (char *)p + p->first + i * p->size;
        }
    }
    *index = end;
    return NULL;
}
