#include "fetch_table.h"

#include <stdlib.h>
#include <string.h>

#include "cache.h"

// Chained, doubling when the flights outnumber the buckets: the table holds at most what is
// pipelined to Redis, usually a handful.
struct FetchTable {
    Flight **buckets;
    size_t mask;
    size_t count;
};

FetchTable *fetch_table_create()
{
    FetchTable *t = (FetchTable *)calloc(1, sizeof(FetchTable));
    if (t == NULL)
        return NULL;
    t->mask = 63;
    t->buckets = (Flight **)calloc(t->mask + 1, sizeof(Flight *));
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void fetch_table_destroy(FetchTable *t)
{
    if (t == NULL)
        return;
    free(t->buckets);
    free(t);
}

Flight *fetch_table_find(FetchTable *t, const char *key, size_t len, uint64_t hash, FlightKind kind)
{
    for (Flight *f = t->buckets[hash & t->mask]; f != NULL; f = f->hash_next)
        if (f->hash == hash && f->kind == kind && f->key_len == len && memcmp(f->key, key, len) == 0)
            return f;
    return NULL;
}

static void grow(FetchTable *t)
{
    size_t mask = t->mask * 2 + 1;
    Flight **buckets = (Flight **)calloc(mask + 1, sizeof(Flight *));
    if (buckets == NULL)
        return;  // longer chains, still correct
    for (size_t i = 0; i <= t->mask; i++) {
        Flight *next;
        for (Flight *f = t->buckets[i]; f != NULL; f = next) {
            next = f->hash_next;
            f->hash_next = buckets[f->hash & mask];
            buckets[f->hash & mask] = f;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->mask = mask;
}

static size_t room_offset(size_t key_len) { return (sizeof(Flight) + key_len + 15) & ~(size_t)15; }

void *flight_room(Flight *f) { return (char *)f + room_offset(f->key_len); }

Flight *fetch_table_add(FetchTable *t, const char *key, size_t len, uint64_t hash, uint64_t sent_us, size_t room,
                        FlightKind kind)
{
    Flight *f = (Flight *)malloc(room_offset(len) + room);
    if (f == NULL)
        return NULL;
    if (t->count > t->mask)
        grow(t);
    f->hash = hash;
    f->sent_us = sent_us;
    f->invalidated = false;
    f->detached = false;
    f->in_snapshot = false;
    f->kind = kind;
    f->resent = false;
    f->slot = 0;
    f->waiters = NULL;
    f->waiters_tail = &f->waiters;
    f->stale = NULL;
    f->owner = NULL;
    f->key_pttl_ms = FLIGHT_PTTL_UNKNOWN;
    f->refs = 1;
    f->key_len = len;
    memcpy(f->key, key, len);
    Flight **bucket = &t->buckets[hash & t->mask];
    f->hash_next = *bucket;
    *bucket = f;
    t->count++;
    return f;
}

void fetch_table_join(Flight *f, FlightWaiter *w)
{
    w->next = NULL;
    *f->waiters_tail = w;
    f->waiters_tail = &w->next;
}

void fetch_table_remove(FetchTable *t, Flight *f)
{
    if (f->detached)
        return;
    Flight **slot = &t->buckets[f->hash & t->mask];
    while (*slot != f)
        slot = &(*slot)->hash_next;
    *slot = f->hash_next;
    f->hash_next = NULL;
    f->detached = true;
    t->count--;
}

void fetch_table_detach(FetchTable *t, Flight *f)
{
    fetch_table_remove(t, f);
    f->invalidated = true;
}

bool fetch_table_invalidate(FetchTable *t, const char *key, size_t len, uint64_t hash)
{
    bool found = false;
    static const FlightKind kinds[] = {FLIGHT_GET, FLIGHT_MGET};
    for (FlightKind kind : kinds) {
        Flight *f = fetch_table_find(t, key, len, hash, kind);
        if (f != NULL) {
            fetch_table_detach(t, f);
            // Its stale entry is what the invalidation said changed: never an answer now, not even
            // if Redis cannot be reached.
            if (f->stale != NULL)
                cache_entry_release(f->stale);
            f->stale = NULL;
            found = true;
        }
    }
    return found;
}

size_t fetch_table_count(const FetchTable *t) { return t->count; }

void flight_release(Flight *f)
{
    if (--f->refs == 0)
        free(f);
}
