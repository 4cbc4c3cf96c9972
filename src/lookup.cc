#include "lookup.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "worker.h"

// Below this, copying a value into the output buffer costs less than referencing it, which
// allocates an evbuffer chain and a release callback per reply.
static const size_t COPY_VALUE_MAX = 1024;

// A miss waiting for Redis. Owns a copy of the key (the request's buffer may be gone by the
// time Redis answers) and the hash computed when the request came in.
struct Fetch {
    Worker *worker;
    Front front;
    LookupDone done;
    void *arg;
    uint64_t hash;
    uint64_t started_us;
    size_t key_len;
    char key[];
};

static void count(Worker *w, Front front, const LookupResult *r);

static void finish(Worker *w, Front front, LookupDone done, void *arg, LookupStatus status)
{
    LookupResult r = {status, false, NULL, NULL, 0, 0};
    count(w, front, &r);
    done(arg, &r);
}

static LookupStatus failure_status(BackendFailure failure)
{
    return failure == BACKEND_TIMEOUT ? LOOKUP_TIMEOUT : LOOKUP_UNAVAILABLE;
}

static void count(Worker *w, Front front, const LookupResult *r)
{
    static const RequestResult of_status[] = {
        RESULT_MISS, RESULT_NOT_FOUND, RESULT_ERROR, RESULT_UNAVAILABLE, RESULT_TIMEOUT, RESULT_ERROR};
    RequestResult result = r->hit ? RESULT_HIT : of_status[r->status];
    w->stats->requests[front][result]++;
    histogram_observe(&w->stats->request_seconds[front], r->wait_us);
}

// A GET's reply, or one element of an MGET's: a string or nil. Anything else (an integer, an
// array, a RESP3 type) means Redis, or whatever answers in its place, is not answering what
// was asked: it is an error, and nothing of it is cached.
static bool is_value_reply(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL;
}

// Also tells the backend: a reply that makes no sense for its command means the connection is
// out of step, and it is dropped once this callback returns.
static LookupResult result_bad_reply(Worker *w)
{
    static const char text[] = "redis sent a reply of the wrong type";
    w->stats->redis_bad_replies++;
    backend_distrust(w->backend);
    return {LOOKUP_BAD_REPLY, false, NULL, text, sizeof(text) - 1, 0};
}

static LookupResult result_redis_error(Worker *w, const redisReply *reply)
{
    w->stats->redis_errors++;
    return {LOOKUP_REDIS_ERROR, false, NULL, reply->str, reply->len, 0};
}

// Turns a string-or-nil reply for a key into a result, caching a string that fits. A cached
// value is answered from the entry's copy: the reply buffer dies when the callback returns.
static LookupResult result_from_value(Worker *w, const char *key, size_t key_len, uint64_t hash,
                                      const redisReply *reply)
{
    LookupResult r = {LOOKUP_NOT_FOUND, false, NULL, NULL, 0, 0};
    if (reply->type == REDIS_REPLY_NIL)
        return r;
    CacheEntry *e = NULL;
    if (reply->len <= (size_t)w->config->max_value_size)
        e = cache_insert(w->cache, key, key_len, hash, reply->str, reply->len, monotonic_ms());
    r.status = LOOKUP_FOUND;
    r.entry = e;
    r.value = e ? cache_entry_value(e) : reply->str;
    r.value_len = reply->len;
    return r;
}

static void on_fetch_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    Fetch *f = (Fetch *)arg;
    Worker *w = f->worker;
    w->inflight--;
    LookupResult r = {failure_status(failure), false, NULL, NULL, 0, 0};
    if (failure == BACKEND_OK)
        r = reply->type == REDIS_REPLY_ERROR ? result_redis_error(w, reply)
            : is_value_reply(reply)          ? result_from_value(w, f->key, f->key_len, f->hash, reply)
                                             : result_bad_reply(w);
    r.wait_us = monotonic_us() - f->started_us;
    count(w, f->front, &r);
    f->done(f->arg, &r);
    free(f);
}

void lookup_get(Worker *w, Front front, const char *key, size_t key_len, LookupDone done, void *arg)
{
    uint64_t hash = cache_hash(w->cache, key, key_len);
    CacheEntry *e = cache_find(w->cache, key, key_len, hash, monotonic_ms());
    if (e != NULL) {
        LookupResult r = {LOOKUP_FOUND, true, e, cache_entry_value(e), e->value_len, 0};
        count(w, front, &r);
        done(arg, &r);
        return;
    }
    Fetch *f = (Fetch *)malloc(sizeof(Fetch) + key_len);
    if (f == NULL) {
        finish(w, front, done, arg, LOOKUP_UNAVAILABLE);
        return;
    }
    f->worker = w;
    f->front = front;
    f->done = done;
    f->arg = arg;
    f->hash = hash;
    f->started_us = monotonic_us();
    f->key_len = key_len;
    memcpy(f->key, key, key_len);
    if (!backend_get(w->backend, key, key_len, on_fetch_reply, f)) {
        free(f);
        finish(w, front, done, arg, LOOKUP_UNAVAILABLE);
        return;
    }
    w->inflight++;
}

// An MGET whose misses wait for Redis. One allocation holds the results, the misses and copies
// of their keys. Every entry a result points at is retained until `done` has run: inserting
// the fetched values may evict the very entries the hits point at.
struct MultiFetch {
    Worker *worker;
    Front front;
    LookupManyDone done;
    void *arg;
    uint64_t started_us;
    size_t n, misses;
    LookupResult *results;  // n
    struct Miss {
        size_t index;  // into results
        uint64_t hash;
        const char *key;
        size_t len;
    } * miss;  // misses
};

static void multi_finish(MultiFetch *m)
{
    for (size_t i = 0; i < m->n; i++)
        count(m->worker, m->front, &m->results[i]);
    m->done(m->arg, m->results, m->n);
    for (size_t i = 0; i < m->n; i++)
        if (m->results[i].entry != NULL)
            cache_entry_release(m->results[i].entry);
    free(m);
}

// An MGET's reply is an array with one string-or-nil per key asked, in order.
static bool is_values_reply(const redisReply *r, size_t n)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_value_reply(r->element[i]))
            return false;
    return true;
}

static void on_multi_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    MultiFetch *m = (MultiFetch *)arg;
    Worker *w = m->worker;
    w->inflight--;
    // The whole reply is checked before anything of it is cached: one element of the wrong shape
    // and none of it is trusted.
    bool values = failure == BACKEND_OK && is_values_reply(reply, m->misses);
    for (size_t i = 0; i < m->misses; i++) {
        const MultiFetch::Miss *miss = &m->miss[i];
        LookupResult *r = &m->results[miss->index];
        if (failure != BACKEND_OK) {
            r->status = failure_status(failure);
        } else if (values) {
            const redisReply *element = reply->element[i];
            *r = result_from_value(w, miss->key, miss->len, miss->hash, element);
            if (r->entry != NULL && !cache_entry_retain(r->entry)) {
                r->entry = NULL;  // answer from Redis's buffer, valid until done() returns
                r->value = element->str;
            }
        } else if (reply->type == REDIS_REPLY_ERROR) {
            *r = result_redis_error(w, reply);  // no entry: nothing for multi_finish to release
        } else {
            *r = result_bad_reply(w);
        }
        r->wait_us = monotonic_us() - m->started_us;
    }
    multi_finish(m);
}

void lookup_get_many(Worker *w, Front front, const LookupKey *keys, size_t n, LookupManyDone done, void *arg)
{
    size_t key_bytes = 0;
    for (size_t i = 0; i < n; i++)
        key_bytes += keys[i].len;
    size_t size = sizeof(MultiFetch) + n * (sizeof(LookupResult) + sizeof(MultiFetch::Miss)) +
                  (n + 1) * (sizeof(const char *) + sizeof(size_t)) + key_bytes;
    MultiFetch *m = (MultiFetch *)malloc(size);
    LookupResult *results = m ? (LookupResult *)(m + 1) : NULL;
    if (m == NULL) {
        done(arg, NULL, 0);
        return;
    }
    m->worker = w;
    m->front = front;
    m->done = done;
    m->arg = arg;
    m->n = n;
    m->misses = 0;
    m->results = results;
    m->miss = (MultiFetch::Miss *)(results + n);
    const char **argv = (const char **)(m->miss + n);
    size_t *lens = (size_t *)(argv + n + 1);
    char *key_copy = (char *)(lens + n + 1);
    uint64_t now = monotonic_ms();
    for (size_t i = 0; i < n; i++) {
        uint64_t hash = cache_hash(w->cache, keys[i].ptr, keys[i].len);
        CacheEntry *e = cache_find(w->cache, keys[i].ptr, keys[i].len, hash, now);
        if (e != NULL && cache_entry_retain(e)) {  // (a saturated count: fetch it instead)
            results[i] = {LOOKUP_FOUND, true, e, cache_entry_value(e), e->value_len, 0};
            continue;
        }
        results[i] = {LOOKUP_NOT_FOUND, false, NULL, NULL, 0, 0};
        memcpy(key_copy, keys[i].ptr, keys[i].len);
        m->miss[m->misses++] = {i, hash, key_copy, keys[i].len};
        key_copy += keys[i].len;
    }
    if (m->misses == 0) {
        multi_finish(m);
        return;
    }
    m->started_us = monotonic_us();
    argv[0] = "MGET";
    lens[0] = 4;
    for (size_t i = 0; i < m->misses; i++) {
        argv[i + 1] = m->miss[i].key;
        lens[i + 1] = m->miss[i].len;
    }
    w->inflight++;  // on_multi_reply decrements it, also when called here
    if (!backend_command(w->backend, (int)m->misses + 1, argv, lens, on_multi_reply, m))
        on_multi_reply(m, NULL, BACKEND_UNAVAILABLE);
}

static void release_entry(const void *, size_t, void *extra) { cache_entry_release((CacheEntry *)extra); }

void lookup_add_value(evbuffer *out, const LookupResult *r)
{
    // Referenced in place only when it is large, cached, and can take one more reference.
    if (r->entry != NULL && r->value_len > COPY_VALUE_MAX && cache_entry_retain(r->entry)) {
        if (evbuffer_add_reference(out, r->value, r->value_len, release_entry, r->entry) == 0)
            return;
        cache_entry_release(r->entry);
    }
    evbuffer_add(out, r->value, r->value_len);
}
