#include "lookup.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "cluster.h"
#include "cluster_slot.h"
#include "coherence.h"
#include "config.h"
#include "fetch_table.h"
#include "log.h"

// Up to this, a value is copied into the output buffer; above it, referenced in place. A
// reference is not free: libevent allocates a 1 KiB chain for it, and another for the bytes that
// follow (lookup_add_value), so it pays only for values several times that. Then what an answer
// really holds (about 2 KiB) stays below the value's length, which the client bounds count.
static const size_t COPY_VALUE_MAX = 4096;

// How far monotonic_ms (a coarse clock) may lag monotonic_us: a few 4ms ticks at most.
static const int64_t COARSE_CLOCK_LAG_MS = 10;

// A GET request waiting for its key's flight.
struct GetWaiter {
    FlightWaiter base;  // first: the flight hands this back
    bool in_flight_room;  // the first waiter lives in its flight's allocation, freed with it
    Lookup *lookup;
    Front front;
    LookupDone done;
    void *arg;
    uint64_t started_us;
};

static void count_answer(Lookup *lk, Front front, const LookupResult *r);

static void finish(Lookup *lk, Front front, LookupDone done, void *arg, LookupStatus status)
{
    LookupResult r = {status, false, false, NULL, NULL, 0, 0};
    count_answer(lk, front, &r);
    done(arg, &r);
}

static LookupStatus failure_status(BackendFailure failure)
{
    return failure == BACKEND_TIMEOUT ? LOOKUP_TIMEOUT : LOOKUP_UNAVAILABLE;
}


static void count_answer(Lookup *lk, Front front, const LookupResult *r)
{
    static const RequestResult of_status[] = {
        RESULT_MISS, RESULT_NOT_FOUND, RESULT_ERROR, RESULT_UNAVAILABLE, RESULT_TIMEOUT, RESULT_ERROR, RESULT_ERROR};
    RequestResult result = r->hit ? RESULT_HIT : of_status[r->status];  // a cached not-found is a hit
    lk->stats->requests[front][result]++;
    histogram_observe(&lk->stats->request_seconds[front], r->wait_us);
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
static LookupResult result_bad_reply(Lookup *lk)
{
    static const char text[] = "redis sent a reply of the wrong type";
    lk->stats->redis_bad_replies++;
    if (lk->cluster != NULL)
        cluster_distrust_reply(lk->cluster);
    else
        backend_distrust(lk->backend);
    return {LOOKUP_BAD_REPLY, false, false, NULL, text, sizeof(text) - 1, 0};
}

static LookupResult result_redis_error(Lookup *lk, const redisReply *reply)
{
    lk->stats->redis_errors++;
    return {LOOKUP_REDIS_ERROR, false, false, NULL, reply->str, reply->len, 0};
}

static LookupResult result_of_entry(CacheEntry *e, bool hit)
{
    if (e->absent)
        return {LOOKUP_NOT_FOUND, hit, false, NULL, NULL, 0, 0};
    return {LOOKUP_FOUND, hit, false, e, cache_entry_value(e), e->value_len, 0};
}

// What is known now of a key's source (coherence.h): the one Redis, or its slot's owner. Whether
// its slot migrates matters for a "not found" only: asked for then (with_migration).
static KeyTrust key_trust(const Lookup *lk, const char *key, size_t len, int *slot)
{
    if (lk->cluster == NULL)
        return {lk->distrusted_us, lk->caching, false};
    *slot = cluster_key_slot(key, len);
    return {cluster_slot_distrusted_us(lk->cluster, *slot), true, false};
}

static void with_migration(const Lookup *lk, int slot, KeyTrust *trust)
{
    if (lk->cluster != NULL)
        trust->migrating = cluster_slot_migrating(lk->cluster, slot);
}

// Inside a reply callback: whether the flight's reply may be cached (coherence.h). With a
// cluster, whether its source may cache is the answering node's (cluster.h).
static bool may_cache(Lookup *lk, const Flight *f, bool absent)
{
    int slot = 0;
    KeyTrust trust = key_trust(lk, f->key, f->key_len, &slot);
    if (lk->cluster != NULL)
        trust.caching = cluster_reply_cacheable(lk->cluster);
    if (absent)
        with_migration(lk, slot, &trust);
    return coherence_reply_cacheable(f, &trust, absent);
}

// Sends a fetch for keys of one slot: to the one Redis, or to the cluster node that owns the slot.
static bool send_fetch(Lookup *lk, int slot, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                       void *arg)
{
    if (lk->cluster != NULL)
        return cluster_command(lk->cluster, slot, argc, argv, lens, fn, arg);
    return backend_command(lk->backend, argc, argv, lens, fn, arg);
}

// A fresh cache entry is a hit only if it was stored after its source was last distrusted
// (coherence.h). If not, it is kept as the answer for when its source cannot be reached (its
// fetch refused or timed out): within its TTL, tracking is never worse than invalidation = off,
// which would have answered it as a hit.
static inline CacheEntry *trusted(Lookup *lk, KeyTrust *trust, int slot, CacheEntry *e, CacheEntry **stale)
{
    if (e == NULL)
        return NULL;
    if (e->absent)
        with_migration(lk, slot, trust);
    if (coherence_entry_is_hit(cache_entry_stored_us(lk->cache, e), e->absent, trust))
        return e;
    *stale = e;
    return NULL;
}

// Turns a string-or-nil reply for a flight's key into a result, caching it when it may be. A
// cached value is answered from the entry's copy: the reply buffer dies when the callback returns.
// follow_key_expiry: how long an entry for the flight's value may live, so that it never
// outlives its key in Redis. -1: as long as the TTL; 0: not cached at all.
static int64_t value_life_ms(const Lookup *lk, const Flight *f, uint64_t now_us)
{
    if (!lk->config->follow_key_expiry || f->key_pttl_ms == -1 || f->key_pttl_ms == FLIGHT_PTTL_REFUSED)
        return -1;
    // Unknown: its answer did not come before the GET's (a cluster retry reordered them). -2: the
    // key was created between the PTTL and the GET. Either way, nothing to go by.
    if (f->key_pttl_ms < 0)
        return 0;
    // Counted from the PTTL's sending, rounded against the entry: it is stored only now, and its
    // expiry is checked on the coarse clock, which may lag this one by a tick or two.
    int64_t elapsed_ms = (int64_t)((now_us - f->sent_us + 999) / 1000) + COARSE_CLOCK_LAG_MS;
    return f->key_pttl_ms > elapsed_ms ? f->key_pttl_ms - elapsed_ms : 0;
}

static LookupResult result_from_value(Lookup *lk, const Flight *f, const redisReply *reply)
{
    bool cache = may_cache(lk, f, reply->type == REDIS_REPLY_NIL);
    uint64_t now_us = monotonic_us();
    if (reply->type == REDIS_REPLY_NIL) {
        if (cache && lk->cache_not_found)
            cache_insert_absent(lk->cache, f->key, f->key_len, f->hash, monotonic_ms(), now_us);
        return {LOOKUP_NOT_FOUND, false, false, NULL, NULL, 0, 0};
    }
    int64_t life = value_life_ms(lk, f, now_us);
    CacheEntry *e = NULL;
    if (cache && life != 0 && reply->len <= (size_t)lk->config->max_value_size)
        e = cache_insert(lk->cache, f->key, f->key_len, f->hash, reply->str, reply->len, monotonic_ms(), now_us);
    if (e != NULL && life > 0)
        cache_entry_limit_life(lk->cache, e, (uint64_t)life);
    return {LOOKUP_FOUND, false, false, e, e ? cache_entry_value(e) : reply->str, reply->len, 0};
}

// Redis could not be reached for this flight: its stale entry if it kept one (stale_if_error),
// else the failure.
static LookupResult result_unreachable(Lookup *lk, const Flight *f, LookupStatus status)
{
    if (f->stale == NULL)
        return {status, false, false, NULL, NULL, 0, 0};
    lk->stats->stale_answers++;
    LookupResult r = result_of_entry(f->stale, false);
    r.stale = true;
    return r;
}

// A failed fetch: Redis could not be reached (its stale entry may answer), or the value is too
// large to be read (Redis is fine, and the value is not what any stale copy holds).
static LookupResult result_failed(Lookup *lk, const Flight *f, BackendFailure failure)
{
    if (failure == BACKEND_TOO_LARGE)
        return {LOOKUP_TOO_LARGE, false, false, NULL, NULL, 0, 0};
    return result_unreachable(lk, f, failure_status(failure));
}

// Answers every request waiting on the flight with one result, then frees it. A large value that
// was not cached (past max_value_size, or not to be trusted) is copied once into an entry of its
// own that every waiter references: a thousand requests for one 8 MiB value cost 8 MiB,
// not 8 GiB.
static void resolve(Lookup *lk, Flight *f, LookupResult r)
{
    fetch_table_remove(lk->flights, f);
    CacheEntry *held = NULL;
    if (r.status == LOOKUP_FOUND && r.entry == NULL && r.value_len > COPY_VALUE_MAX) {
        if ((held = cache_entry_detached(r.value, r.value_len)) != NULL) {
            r.entry = held;
            r.value = cache_entry_value(held);
        }
    } else if (r.entry != NULL && cache_entry_retain(r.entry)) {
        // Held through the answers: a waiter's answer must not evict it from under the next.
        held = r.entry;
    }
    FlightWaiter *next;
    for (FlightWaiter *waiter = f->waiters; waiter != NULL; waiter = next) {
        next = waiter->next;
        waiter->answer(waiter, &r);
    }
    if (held != NULL)
        cache_entry_release(held);
    if (f->stale != NULL)
        cache_entry_release(f->stale);
    f->stale = NULL;
    flight_release(f);  // its PTTL's reply may still point at it
}

static void on_pttl_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    Flight *f = (Flight *)arg;
    Lookup *lk = (Lookup *)f->owner;
    if (failure == BACKEND_OK && reply->type == REDIS_REPLY_INTEGER) {
        // -1 (no expiry), -2 (no such key) or what is left; anything else says nothing.
        f->key_pttl_ms = reply->integer >= -2 ? reply->integer : FLIGHT_PTTL_UNKNOWN;
    } else if (failure == BACKEND_OK && reply->type == REDIS_REPLY_ERROR && !backend_error_is_permanent(reply)) {
        // -BUSY, -LOADING...: nothing learnt, and the value is not cached (its GET likely fails too).
    } else if (failure == BACKEND_OK && reply->type == REDIS_REPLY_ERROR) {
        // An ACL that denies PTTL: entries then live their TTL, as with follow_key_expiry off.
        f->key_pttl_ms = FLIGHT_PTTL_REFUSED;
        if (!lk->pttl_refused_logged)
            log_warn("worker %d: Redis refuses PTTL (%.*s); entries live their whole ttl even if their key expires "
                     "sooner: allow PTTL, or set follow_key_expiry = off", lk->id, (int)reply->len, reply->str);
        lk->pttl_refused_logged = true;
    } else if (failure == BACKEND_OK) {
        result_bad_reply(lk);  // the connection is out of step: dropped once this returns
    }
    flight_release(f);
}

// follow_key_expiry: a PTTL for the flight's key, sent just before its GET (or MGET) on the same
// connection, so that its answer is known when the value comes. Redis's tracking reports a key's
// expiry only when Redis deletes it, which for a key nobody else reads may be long after.
static void ask_key_life(Lookup *lk, int slot, Flight *f)
{
    if (!lk->config->follow_key_expiry)
        return;
    const char *argv[2] = {"PTTL", f->key};
    size_t lens[2] = {4, f->key_len};
    if (send_fetch(lk, slot, 2, argv, lens, on_pttl_reply, f))
        f->refs++;
}

static void answer_get(FlightWaiter *self, const LookupResult *result)
{
    GetWaiter *g = (GetWaiter *)self;
    LookupResult r = *result;
    r.wait_us = monotonic_us() - g->started_us;
    count_answer(g->lookup, g->front, &r);
    g->done(g->arg, &r);
    if (!g->in_flight_room)
        free(g);
}

static void on_get_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    Flight *f = (Flight *)arg;
    Lookup *lk = (Lookup *)f->owner;
    lk->inflight--;
    LookupResult r = failure != BACKEND_OK              ? result_failed(lk, f, failure)
                     : reply->type == REDIS_REPLY_ERROR ? result_redis_error(lk, reply)
                     : is_value_reply(reply)            ? result_from_value(lk, f, reply)
                                                        : result_bad_reply(lk);
    resolve(lk, f, r);
}

// A flight for a key not in the table: it keeps the key's stale entry, if any, for when Redis
// cannot be reached. The caller sends its command.
static Flight *new_flight(Lookup *lk, const char *key, size_t len, uint64_t hash, CacheEntry *stale, size_t room)
{
    Flight *f = fetch_table_add(lk->flights, key, len, hash, monotonic_us(), room);
    if (f == NULL)
        return NULL;
    f->owner = lk;
    if (stale != NULL && cache_entry_retain(stale))
        f->stale = stale;
    return f;
}

void lookup_get(Lookup *lk, Front front, const char *key, size_t key_len, LookupDone done, void *arg)
{
    uint64_t hash = cache_hash(lk->cache, key, key_len);
    int slot = 0;
    KeyTrust trust = key_trust(lk, key, key_len, &slot);
    CacheEntry *stale;
    CacheEntry *e =
        trusted(lk, &trust, slot, cache_find_or_stale(lk->cache, key, key_len, hash, monotonic_ms(), &stale), &stale);
    if (e != NULL) {
        LookupResult r = result_of_entry(e, true);
        count_answer(lk, front, &r);
        done(arg, &r);
        return;
    }
    Flight *f = coherence_joinable_flight(lk->flights, key, key_len, hash, &trust);
    GetWaiter *g;
    if (f != NULL) {  // already on its way: wait for the same reply
        if ((g = (GetWaiter *)malloc(sizeof(GetWaiter))) == NULL) {
            finish(lk, front, done, arg, LOOKUP_UNAVAILABLE);
            return;
        }
        *g = {{NULL, answer_get}, false, lk, front, done, arg, monotonic_us()};
        lk->stats->coalesced++;
        fetch_table_join(f, &g->base);
        return;
    }
    if ((f = new_flight(lk, key, key_len, hash, stale, sizeof(GetWaiter))) == NULL) {
        finish(lk, front, done, arg, LOOKUP_UNAVAILABLE);
        return;
    }
    g = (GetWaiter *)flight_room(f);
    *g = {{NULL, answer_get}, true, lk, front, done, arg, monotonic_us()};
    fetch_table_join(f, &g->base);
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, key_len};
    ask_key_life(lk, slot, f);
    if (!send_fetch(lk, slot, 2, argv, lens, on_get_reply, f)) {
        resolve(lk, f, result_unreachable(lk, f, LOOKUP_UNAVAILABLE));
        return;
    }
    lk->inflight++;
}

// An MGET: its hits come from the cache; each miss waits on its key's flight, new or already
// on its way; the new ones go to Redis together in one MGET. One allocation holds the results,
// the waiters and the arguments. Every entry a result points at is retained until `done` has
// run: caching fetched values may evict the very entries the hits point at.
struct MultiFetch {
    Lookup *lookup;
    Front front;
    LookupManyDone done;
    void *arg;
    uint64_t started_us;
    size_t n, pending;
    LookupResult *results;  // n
    struct Waiter {
        FlightWaiter base;  // first: the flight hands this back
        MultiFetch *owner;
        size_t index;  // into results
    } * waiters;  // n
};

// The flights one MGET command fetches, in the order of its arguments.
struct MgetCommand {
    Lookup *lookup;
    size_t n;
    Flight *flights[];
};

static void multi_finish(MultiFetch *m)
{
    for (size_t i = 0; i < m->n; i++)
        count_answer(m->lookup, m->front, &m->results[i]);
    m->done(m->arg, m->results, m->n);
    for (size_t i = 0; i < m->n; i++)
        if (m->results[i].entry != NULL)
            cache_entry_release(m->results[i].entry);
    free(m);
}

static void answer_multi(FlightWaiter *self, const LookupResult *result)
{
    MultiFetch::Waiter *waiter = (MultiFetch::Waiter *)self;
    MultiFetch *m = waiter->owner;
    LookupResult *r = &m->results[waiter->index];
    *r = *result;
    r->wait_us = monotonic_us() - m->started_us;
    // The MGET may still wait for other keys, after this reply's buffer is gone: an error text or
    // a small value that is not in a cache entry is copied into one of its own (a large one
    // already is: resolve).
    if (r->value != NULL && (r->entry == NULL || !cache_entry_retain(r->entry))) {
        r->entry = cache_entry_detached(r->value, r->value_len);
        r->value = r->entry ? cache_entry_value(r->entry) : NULL;
        if (r->entry == NULL)
            *r = {LOOKUP_UNAVAILABLE, false, false, NULL, NULL, 0, r->wait_us};  // out of memory
    }
    if (--m->pending == 0)
        multi_finish(m);
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

// One flight of an MGET whose answer as a whole passed max_reply_size, fetched again on its own.
static void refetch_alone(Lookup *lk, Flight *f)
{
    int slot = lk->cluster != NULL ? cluster_key_slot(f->key, f->key_len) : 0;
    const char *argv[2] = {"GET", f->key};
    size_t lens[2] = {3, f->key_len};
    lk->inflight++;
    if (!send_fetch(lk, slot, 2, argv, lens, on_get_reply, f)) {
        lk->inflight--;
        resolve(lk, f, result_unreachable(lk, f, LOOKUP_UNAVAILABLE));
    }
}

static void on_mget_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    MgetCommand *cmd = (MgetCommand *)arg;
    Lookup *lk = cmd->lookup;
    lk->inflight--;
    if (failure == BACKEND_TOO_LARGE && cmd->n > 1) {
        // The answer as a whole passed max_reply_size, not necessarily any value in it: each key
        // is fetched again on its own, so that only a value too large by itself fails, and the
        // requests that joined these flights (other clients' GETs) are not failed with the MGET.
        for (size_t i = 0; i < cmd->n; i++)
            refetch_alone(lk, cmd->flights[i]);
        free(cmd);
        return;
    }
    // The whole reply is checked before anything of it is cached: one element of the wrong shape
    // and none of it is trusted.
    bool values = failure == BACKEND_OK && is_values_reply(reply, cmd->n);
    LookupResult shared = {LOOKUP_UNAVAILABLE, false, false, NULL, NULL, 0, 0};
    if (failure == BACKEND_OK && !values)
        shared = reply->type == REDIS_REPLY_ERROR ? result_redis_error(lk, reply) : result_bad_reply(lk);
    for (size_t i = 0; i < cmd->n; i++) {
        Flight *f = cmd->flights[i];
        if (failure != BACKEND_OK)
            resolve(lk, f, result_failed(lk, f, failure));
        else if (values)
            resolve(lk, f, result_from_value(lk, f, reply->element[i]));
        else
            resolve(lk, f, shared);
    }
    free(cmd);
}

// Sends one MGET for the command's flights (argv, lens: room for them all), all of one slot.
static void send_mget(Lookup *lk, MgetCommand *cmd, int slot, const char **argv, size_t *lens)
{
    argv[0] = "MGET";
    lens[0] = 4;
    for (size_t i = 0; i < cmd->n; i++) {
        argv[i + 1] = cmd->flights[i]->key;
        lens[i + 1] = cmd->flights[i]->key_len;
        ask_key_life(lk, slot, cmd->flights[i]);
    }
    lk->inflight++;  // on_mget_reply decrements it, also when called here
    if (!send_fetch(lk, slot, (int)cmd->n + 1, argv, lens, on_mget_reply, cmd))
        on_mget_reply(cmd, NULL, BACKEND_UNAVAILABLE);
}

struct SlotFlight {
    int slot;
    size_t index;
    Flight *flight;
};

static int by_slot(const void *a, const void *b)
{
    const SlotFlight *x = (const SlotFlight *)a, *y = (const SlotFlight *)b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

// A cluster refuses an MGET whose keys are in different slots (CROSSSLOT), even on one node: one
// MGET per slot, all sent at once, each to its slot's owner. Frees cmd.
static void send_mget_by_slot(Lookup *lk, MgetCommand *cmd, const char **argv, size_t *lens)
{
    SlotFlight *order = (SlotFlight *)malloc(cmd->n * sizeof(SlotFlight));
    if (order == NULL) {
        lk->inflight++;
        on_mget_reply(cmd, NULL, BACKEND_UNAVAILABLE);
        return;
    }
    for (size_t i = 0; i < cmd->n; i++)
        order[i] = {cluster_key_slot(cmd->flights[i]->key, cmd->flights[i]->key_len), i, cmd->flights[i]};
    qsort(order, cmd->n, sizeof(SlotFlight), by_slot);
    for (size_t from = 0, to; from < cmd->n; from = to) {
        for (to = from + 1; to < cmd->n && order[to].slot == order[from].slot; to++) {
        }
        MgetCommand *group = (MgetCommand *)malloc(sizeof(MgetCommand) + (to - from) * sizeof(Flight *));
        if (group == NULL) {
            for (size_t i = from; i < to; i++)
                resolve(lk, order[i].flight, result_unreachable(lk, order[i].flight, LOOKUP_UNAVAILABLE));
            continue;
        }
        group->lookup = lk;
        group->n = to - from;
        for (size_t i = from; i < to; i++)
            group->flights[i - from] = order[i].flight;
        send_mget(lk, group, order[from].slot, argv, lens);
    }
    free(order);
    free(cmd);
}

void lookup_get_many(Lookup *lk, Front front, const LookupKey *keys, size_t n, LookupManyDone done, void *arg)
{
    size_t size = sizeof(MultiFetch) + n * (sizeof(LookupResult) + sizeof(MultiFetch::Waiter));
    MultiFetch *m = (MultiFetch *)malloc(size);
    MgetCommand *cmd = (MgetCommand *)malloc(sizeof(MgetCommand) + n * sizeof(Flight *));
    const char **argv = (const char **)malloc((n + 1) * (sizeof(const char *) + sizeof(size_t)));
    if (m == NULL || cmd == NULL || argv == NULL) {
        free(m);
        free(cmd);
        free(argv);
        done(arg, NULL, 0);
        return;
    }
    size_t *lens = (size_t *)(argv + n + 1);
    *m = {lk, front, done, arg, monotonic_us(), n, 1, (LookupResult *)(m + 1), NULL};
    m->waiters = (MultiFetch::Waiter *)(m->results + n);
    cmd->lookup = lk;
    cmd->n = 0;
    uint64_t now = monotonic_ms();
    for (size_t i = 0; i < n; i++) {
        uint64_t hash = cache_hash(lk->cache, keys[i].ptr, keys[i].len);
        int slot = 0;
        KeyTrust trust = key_trust(lk, keys[i].ptr, keys[i].len, &slot);
        CacheEntry *stale;
        CacheEntry *e = trusted(lk, &trust, slot,
                                cache_find_or_stale(lk->cache, keys[i].ptr, keys[i].len, hash, now, &stale), &stale);
        if (e != NULL && (e->absent || cache_entry_retain(e))) {  // (out of memory: fetch it)
            m->results[i] = result_of_entry(e, true);
            continue;
        }
        m->results[i] = {LOOKUP_UNAVAILABLE, false, false, NULL, NULL, 0, 0};
        m->waiters[i] = {{NULL, answer_multi}, m, i};
        // An earlier key of this same MGET may have started the flight.
        Flight *f = coherence_joinable_flight(lk->flights, keys[i].ptr, keys[i].len, hash, &trust);
        if (f != NULL) {
            lk->stats->coalesced++;
        } else if ((f = new_flight(lk, keys[i].ptr, keys[i].len, hash, stale, 0)) != NULL) {
            cmd->flights[cmd->n++] = f;
        } else {
            continue;  // out of memory: answered unavailable
        }
        fetch_table_join(f, &m->waiters[i].base);
        m->pending++;
    }
    if (cmd->n == 0)
        free(cmd);
    else if (lk->cluster == NULL)
        send_mget(lk, cmd, 0, argv, lens);
    else
        send_mget_by_slot(lk, cmd, argv, lens);
    free(argv);
    // The one pending count held by this function itself: every key may already be answered.
    if (--m->pending == 0)
        multi_finish(m);
}

void lookup_invalidate(Lookup *lk, const char *key, size_t len)
{
    uint64_t hash = cache_hash(lk->cache, key, len);
    if (cache_remove(lk->cache, key, len, hash))
        lk->stats->invalidations++;
    if (fetch_table_invalidate(lk->flights, key, len, hash))
        lk->stats->invalidated_fetches++;
}

static void release_entry(const void *, size_t, void *extra) { cache_entry_release((CacheEntry *)extra); }

// Bytes written right after a reference: libevent sizes the chain it allocates for them from the
// reference's length (doubled, up to 4 KiB), so two bytes after a 1 MiB value would take a 1 MiB
// chain, for every answer. Written into a buffer of their own instead, they get a small chain,
// which is then moved (not copied) behind the reference; later writes fill the rest of it.
static bool add_after_reference(evbuffer *out, const char *bytes, size_t len)
{
    static evbuffer *scratch;  // the worker is one thread; empty between calls
    if (scratch == NULL && (scratch = evbuffer_new()) == NULL)
        return false;
    if (evbuffer_add(scratch, bytes, len) != 0)
        return false;
    if (evbuffer_add_buffer(out, scratch) == 0)
        return true;
    evbuffer_drain(scratch, evbuffer_get_length(scratch));
    return false;
}

bool lookup_add_value(evbuffer *out, const LookupResult *r, const char *suffix, size_t suffix_len)
{
    // Referenced in place only when it is large and in an entry.
    if (r->entry != NULL && r->value_len > COPY_VALUE_MAX && cache_entry_retain(r->entry)) {
        if (evbuffer_add_reference(out, r->value, r->value_len, release_entry, r->entry) == 0)
            return suffix_len == 0 || add_after_reference(out, suffix, suffix_len);
        cache_entry_release(r->entry);
    }
    return evbuffer_add(out, r->value, r->value_len) == 0 &&
           (suffix_len == 0 || evbuffer_add(out, suffix, suffix_len) == 0);
}
