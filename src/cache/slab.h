// A process-wide allocator for cache entries: blocks in size classes 8 bytes apart, carved from
// 64 KiB pages, with no header per block. malloc spends 8 bytes of header on every block and
// rounds to 16: for a typical entry (a 56-byte header, a 16-byte key, a 32-byte value) that is
// 128 bytes for 104 used. Here it is 104. O(1) both ways: each page keeps its own free blocks
// and count, and a class lists its pages with room. A page whose last block is freed goes back
// to the kernel (one per class is kept as a spare), so memory a class no longer needs serves
// another: with max_memory, what the process holds follows what the cache holds whatever the
// mix of sizes. Sizes above SLAB_MAX go to malloc.
// Like malloc, it belongs to the process: an entry can outlive the cache it was made for.
#pragma once

#include <stddef.h>

static const size_t SLAB_MAX = 512;

void *slab_alloc(size_t size);
void slab_free(void *p, size_t size);  // size as given to slab_alloc

// What a block of `size` really takes: its size class, or for malloc's blocks an estimate of
// glibc's (8 bytes of header, 16-byte rounding). The cache's byte bound counts this.
inline size_t slab_footprint(size_t size)
{
    return size <= SLAB_MAX ? (size + 7) & ~(size_t)7 : (size + 8 + 15) & ~(size_t)15;
}

// Bytes held in pages (used or free). For tests.
size_t slab_page_bytes();

// Under AddressSanitizer, freed blocks wait (poisoned) in a quarantine before they can be handed
// out again; this gives them all back now. For tests that count pages; nothing without ASan.
void slab_quarantine_flush();
