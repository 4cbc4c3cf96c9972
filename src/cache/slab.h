// A process-wide allocator for cache entries: blocks in size classes 8 bytes apart, carved from
// 64 KiB pages, with no header per block (a bit per block in its page's header says whether it
// is handed out). malloc spends 8 bytes of header on every block and
// rounds to 16: for a typical entry (a 36-byte header, a 16-byte key, a 32-byte value: 84 bytes)
// that is 96 bytes. Here it is 88. O(1) both ways: each page keeps its own free blocks
// and count, and a class lists its pages with room. A page whose last block is freed goes back
// to the kernel (one per class is kept as a spare), so memory a class no longer needs serves
// another: with max_memory, what the process holds follows what the cache holds whatever the
// mix of sizes. Sizes above SLAB_MAX go to malloc.
// Like malloc, it belongs to the process: an entry can outlive the cache it was made for.
//
// A block of up to SLAB_MAX bytes also has a 32-bit name (SlabRef): its page's number and its
// offset in 8-byte units, so that the cache links its entries with 4-byte references rather
// than 8-byte pointers. The names reach SLAB_PAGES_MAX pages: 16 GiB of blocks per process
// (less where an address-space limit allows less); past it an allocation fails as when out of
// memory (and the cache evicts to make room).
#pragma once

#include <stddef.h>
#include <stdint.h>

static const size_t SLAB_MAX = 512;

typedef uint32_t SlabRef;                      // 0: none (no block starts at a page's offset 0)
// 16 GiB: names in 8-byte units keep a SlabRef's top bit 0 (the cache's own).
static const size_t SLAB_PAGES_MAX = 1u << 18;
static const size_t SLAB_PAGE_SIZE = 64 * 1024;

void *slab_alloc(size_t size);
// size as given to slab_alloc. A block from malloc (of any size) may be given here too: where a
// block lies says whose it is.
void slab_free(void *p, size_t size);

// A block from the slab's pages (size at most SLAB_MAX) and its name; NULL if out of memory or
// past the names' reach.
void *slab_alloc_named(size_t size, SlabRef *ref);

// The block a name names: page N lies N pages into one region of address space (slab.cc), so a
// name is the block's offset in it in 8-byte units. Inline: the cache follows its links with it.
extern char *slab_region;
inline void *slab_block(SlabRef ref) { return slab_region + ((size_t)ref << 3); }
inline SlabRef slab_ref_of(const void *block) { return (SlabRef)(((const char *)block - slab_region) >> 3); }

// What a block of `size` really takes: its size class, or for malloc's blocks an estimate of
// glibc's (8 bytes of header, 16-byte rounding). The cache's byte bound counts this.
inline size_t slab_footprint(size_t size)
{
    return size <= SLAB_MAX ? (size + 7) & ~(size_t)7 : (size + 8 + 15) & ~(size_t)15;
}

// Bytes held in pages (used or free): what the slab takes from the system.
size_t slab_page_bytes();

// What a cache needs to keep the pages it holds within its bound (memcached's slab rebalancer
// moves pages between classes for the same reason): blocks freed here and there leave pages
// partly empty, and a page with one block in use is still a whole page.
//
// The size classes with pages in use (each may hold a partly filled page), counting the class of
// blocks of `also` among them (one about to take a page); 0: none.
size_t slab_classes_in_use(size_t also);
// Whether slab_alloc(size) would take a new page (its class has no room and no spare).
bool slab_takes_page(size_t size);
// Gives one class's kept spare page back; false when no class keeps one.
bool slab_give_back_spare();
// A page with blocks handed out and room: of the class with the most room in its pages, the
// emptiest of the first few (bounded work), other than the `skipped` pages at `skip` (tried
// already). NULL when no page has room.
void *slab_roomiest_page(void *const *skip = NULL, size_t skipped = 0);
// The size of a page's blocks, and its blocks handed out, one by one: the first at or after
// block *index, which is moved past it; NULL after the last. Blocks may be freed in between (the
// page may then be given back: NULL from there).
size_t slab_block_size(const void *page);
// How many blocks of `size` a page holds (its header and a bit per block come first).
size_t slab_blocks_per_page(size_t size);
void *slab_page_next(void *page, size_t *index);

// At most this many pages at once (SLAB_PAGES_MAX, the names' reach, unless lowered): for tests
// of what happens when the reach is met.
void slab_set_max_pages(size_t pages);

// Under AddressSanitizer, freed blocks wait (poisoned) in a quarantine before they can be handed
// out again; this gives them all back now. For tests that count pages; nothing without ASan.
void slab_quarantine_flush();
