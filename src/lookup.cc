#include "lookup.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "worker.h"

// A miss waiting for Redis. Owns a copy of the key (the request's buffer may be gone by the
// time Redis answers) and the hash computed when the request came in.
struct Fetch {
    Worker *worker;
    LookupDone done;
    void *arg;
    uint64_t hash;
    size_t key_len;
    char key[];
};

static void finish(LookupDone done, void *arg, LookupStatus status, const char *value, size_t len)
{
    LookupResult r = {status, false, NULL, value, len};
    done(arg, &r);
}

static void on_fetch_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    Fetch *f = (Fetch *)arg;
    Worker *w = f->worker;
    w->inflight--;
    if (failure == BACKEND_TIMEOUT) {
        w->stats->redis_timeouts++;
        finish(f->done, f->arg, LOOKUP_TIMEOUT, NULL, 0);
    } else if (failure != BACKEND_OK) {
        w->stats->redis_unavailable++;
        finish(f->done, f->arg, LOOKUP_UNAVAILABLE, NULL, 0);
    } else if (reply->type == REDIS_REPLY_STRING) {
        CacheEntry *e = NULL;
        if (reply->len <= (size_t)w->config->max_value_size)
            e = cache_insert(w->cache, f->key, f->key_len, f->hash, reply->str, reply->len, monotonic_ms());
        // When cached, answer from the entry's copy: the reply buffer dies when we return.
        LookupResult r = {LOOKUP_FOUND, false, e, e ? cache_entry_value(e) : reply->str, reply->len};
        f->done(f->arg, &r);
    } else if (reply->type == REDIS_REPLY_NIL) {
        w->stats->not_found++;
        finish(f->done, f->arg, LOOKUP_NOT_FOUND, NULL, 0);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        w->stats->redis_errors++;
        finish(f->done, f->arg, LOOKUP_REDIS_ERROR, reply->str, reply->len);
    } else {
        static const char unexpected[] = "ERR unexpected reply type from Redis";
        w->stats->redis_errors++;
        finish(f->done, f->arg, LOOKUP_REDIS_ERROR, unexpected, sizeof(unexpected) - 1);
    }
    free(f);
}

void lookup_get(Worker *w, const char *key, size_t key_len, LookupDone done, void *arg)
{
    uint64_t hash = cache_hash(w->cache, key, key_len);
    CacheEntry *e = cache_find(w->cache, key, key_len, hash, monotonic_ms());
    if (e != NULL) {
        w->stats->hits++;
        LookupResult r = {LOOKUP_FOUND, true, e, cache_entry_value(e), e->value_len};
        done(arg, &r);
        return;
    }
    w->stats->misses++;
    Fetch *f = (Fetch *)malloc(sizeof(Fetch) + key_len);
    if (f == NULL) {
        finish(done, arg, LOOKUP_UNAVAILABLE, NULL, 0);
        return;
    }
    f->worker = w;
    f->done = done;
    f->arg = arg;
    f->hash = hash;
    f->key_len = key_len;
    memcpy(f->key, key, key_len);
    if (!backend_get(w->backend, key, key_len, on_fetch_reply, f)) {
        free(f);
        w->stats->redis_unavailable++;
        finish(done, arg, LOOKUP_UNAVAILABLE, NULL, 0);
        return;
    }
    w->inflight++;
}
