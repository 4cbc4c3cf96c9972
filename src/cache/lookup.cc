#include "lookup.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "lookup_internal.h"
#include "redis_error.h"

// Up to this, a value is copied into the output buffer; above it, referenced in place. A
// reference is not free: libevent allocates a chain for it, and one for the CRLF referenced after
// it, and the answer's next bytes start a chain of their own (lookup_add_value), so it pays only
// for values several times a chain's size. Then what an answer really holds stays below the
// value's length, which the client bounds count.
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

static void finish(Lookup *lk, Front front, LookupDone done, void *arg, LookupStatus status)
{
    LookupResult r = {status, false, false, NULL, NULL, 0, 0};
    lookup_count_answer(lk, front, &r);
    done(arg, &r);
}

static LookupStatus failure_status(BackendFailure failure)
{
    return failure == BACKEND_TIMEOUT ? LOOKUP_TIMEOUT : LOOKUP_UNAVAILABLE;
}

void lookup_count_answer(Lookup *lk, Front front, const LookupResult *r)
{
    static const RequestResult of_status[] = {
        RESULT_MISS, RESULT_NOT_FOUND, RESULT_ERROR, RESULT_UNAVAILABLE, RESULT_TIMEOUT, RESULT_ERROR, RESULT_ERROR};
    RequestResult result = r->hit ? RESULT_HIT : of_status[r->status];  // a cached not-found is a hit
    lk->stats->requests[front][result]++;
    if (r->hit)
        lk->hits_unobserved++;  // its duration: the front's, at the end of its read
    else
        histogram_observe(&lk->stats->request_seconds[front], r->wait_us);
}

void lookup_observe_hits(Lookup *lk, Front front, uint64_t us)
{
    if (lk->hits_unobserved > 0)
        histogram_observe_n(&lk->stats->request_seconds[front], us, lk->hits_unobserved);
    lk->hits_unobserved = 0;
}

// Also tells the backend: a reply that makes no sense for its command means the connection is
// out of step, and it is dropped once this callback returns.
LookupResult lookup_result_bad_reply(Lookup *lk)
{
    static const char text[] = "redis sent a reply of the wrong type";
    lk->stats->redis_bad_replies++;
    if (lk->cluster != NULL)
        cluster_distrust_reply(lk->cluster);
    else
        backend_distrust(lk->backend);
    return {LOOKUP_BAD_REPLY, false, false, NULL, text, sizeof(text) - 1, 0};
}

// Redis answered the flight's command with an error. One that says Redis cannot serve for now
// (redis_error_class) is taken as Redis not being reachable: the flight's stale entry answers if
// it kept one, as during an outage (after a restart, -LOADING must not make tracking less
// available than invalidation = off, whose entries would still be hits).
// The caller counts the error (redis_errors), once per reply.
LookupResult lookup_result_redis_error(Lookup *lk, const Flight *f, const redisReply *reply)
{
    if (f != NULL && f->stale != NULL && redis_error_class(reply->str, reply->len) == REDIS_ERROR_TRANSIENT)
        return lookup_result_unreachable(lk, f, LOOKUP_UNAVAILABLE);
    return {LOOKUP_REDIS_ERROR, false, false, NULL, reply->str, reply->len, 0};
}

// Inside a reply callback: whether the flight's reply may be cached (coherence.h). With a
// cluster, whether its source may cache is the answering node's (cluster.h).
static bool may_cache(Lookup *lk, const Flight *f, bool absent)
{
    KeyTrust trust = slot_trust(lk, f->slot);
    if (lk->cluster != NULL)
        trust.caching = cluster_reply_cacheable(lk->cluster);
    if (absent)
        with_migration(lk, f->slot, &trust);
    return coherence_reply_cacheable(f, &trust, absent);
}

// Sends a fetch for keys of one slot: to the one Redis, or to the cluster node that owns the slot.
bool lookup_send_fetch(Lookup *lk, int slot, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                       void *arg)
{
    if (lk->cluster != NULL)
        return cluster_command(lk->cluster, slot, argc, argv, lens, fn, arg);
    return backend_command(lk->backend, argc, argv, lens, fn, arg);
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

LookupResult lookup_result_from_value(Lookup *lk, const Flight *f, const redisReply *reply)
{
    bool cache = may_cache(lk, f, reply->type == REDIS_REPLY_NIL);
    uint64_t now_us = monotonic_us();
    if (reply->type == REDIS_REPLY_NIL) {
        // MGET's nil is also its answer for a key of another type, where GET answers -WRONGTYPE:
        // it says "no such key" only when the PTTL before it said so too.
        bool absent = f->kind == FLIGHT_GET || f->key_pttl_ms == -2;
        if (cache && absent && lk->cache_not_found)
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
LookupResult lookup_result_unreachable(Lookup *lk, const Flight *f, LookupStatus status)
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
LookupResult lookup_result_failed(Lookup *lk, const Flight *f, BackendFailure failure)
{
    if (failure == BACKEND_TOO_LARGE)
        return {LOOKUP_TOO_LARGE, false, false, NULL, NULL, 0, 0};
    return lookup_result_unreachable(lk, f, failure_status(failure));
}

// Answers every request waiting on the flight with one result, then frees it. A large value that
// was not cached (past max_value_size, or not to be trusted) is copied once into an entry of its
// own that every waiter references: a thousand requests for one 8 MiB value cost 8 MiB,
// not 8 GiB.
void lookup_resolve(Lookup *lk, Flight *f, LookupResult r)
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
    RedisErrorClass error = failure == BACKEND_OK && reply->type == REDIS_REPLY_ERROR
                                ? redis_error_class(reply->str, reply->len)
                                : REDIS_ERROR_ANSWER;
    if (failure == BACKEND_OK && reply->type == REDIS_REPLY_INTEGER) {
        // -1 (no expiry), -2 (no such key) or what is left; anything else says nothing.
        f->key_pttl_ms = reply->integer >= -2 ? reply->integer : FLIGHT_PTTL_UNKNOWN;
    } else if (failure == BACKEND_OK && reply->type == REDIS_REPLY_ERROR && error == REDIS_ERROR_REFUSED) {
        // An ACL that denies PTTL: entries then live their TTL, as with follow_key_expiry off.
        f->key_pttl_ms = FLIGHT_PTTL_REFUSED;
        if (!lk->pttl_refused_logged)
            log_warn("worker %d: Redis refuses PTTL (%.*s); entries live their whole ttl even if their key expires "
                     "sooner: allow PTTL, or set follow_key_expiry = off", lk->id, (int)reply->len, reply->str);
        lk->pttl_refused_logged = true;
    } else if (failure == BACKEND_OK && reply->type == REDIS_REPLY_ERROR) {
        // -BUSY, -LOADING...: nothing learnt, and the value is not cached (its GET likely fails too).
    } else if (failure == BACKEND_OK) {
        lookup_result_bad_reply(lk);  // the connection is out of step: dropped once this returns
    }
    flight_release(f);
}

// follow_key_expiry: a PTTL for the flight's key, sent just before its GET (or MGET) on the same
// connection, so that its answer is known when the value comes. Redis's tracking reports a key's
// expiry only when Redis deletes it, which for a key nobody else reads may be long after.
void lookup_ask_key_life(Lookup *lk, int slot, Flight *f)
{
    if (!lk->config->follow_key_expiry)
        return;
    const char *argv[2] = {"PTTL", f->key};
    size_t lens[2] = {4, f->key_len};
    if (lookup_send_fetch(lk, slot, 2, argv, lens, on_pttl_reply, f))
        f->refs++;
}

static void answer_get(FlightWaiter *self, const LookupResult *result)
{
    GetWaiter *g = (GetWaiter *)self;
    LookupResult r = *result;
    r.wait_us = monotonic_us() - g->started_us;
    lookup_count_answer(g->lookup, g->front, &r);
    g->done(g->arg, &r);
    if (!g->in_flight_room)
        free(g);
}

// A fetch cut with its connection, which is coming back at once (backend_reconnecting_at_once):
// asked again on the new connection, once, rather than answered from a stale entry. Its answer is
// current; with tracking it is not cached (it was sent before the new connection is tracked).
bool lookup_ask_again(Lookup *lk, bool *resent, BackendFailure failure)
{
    return failure == BACKEND_UNAVAILABLE && !*resent && lk->backend != NULL &&
           backend_reconnecting_at_once(lk->backend) && (*resent = true);
}

static void on_get_reply(void *arg, redisReply *reply, BackendFailure failure);

// GET of the flight's key, to the slot's source; false if it could not be sent.
static bool send_get(Lookup *lk, int slot, Flight *f)
{
    const char *argv[2] = {"GET", f->key};
    size_t lens[2] = {3, f->key_len};
    return lookup_send_fetch(lk, slot, 2, argv, lens, on_get_reply, f);
}

static void on_get_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    Flight *f = (Flight *)arg;
    Lookup *lk = (Lookup *)f->owner;
    if (lookup_ask_again(lk, &f->resent, failure) && send_get(lk, 0, f))
        return;  // (one Redis: slot 0 serves every key)
    lk->stats->fetches_waiting--;
    if (failure == BACKEND_OK && reply->type == REDIS_REPLY_ERROR)
        lk->stats->redis_errors++;
    LookupResult r = failure != BACKEND_OK              ? lookup_result_failed(lk, f, failure)
                     : reply->type == REDIS_REPLY_ERROR ? lookup_result_redis_error(lk, f, reply)
                     : is_value_reply(reply)            ? lookup_result_from_value(lk, f, reply)
                                                        : lookup_result_bad_reply(lk);
    lookup_resolve(lk, f, r);
}

// A flight for a key not in the table: it keeps the key's stale entry, if any, for when Redis
// cannot be reached. The caller sends its command.
Flight *lookup_new_flight(Lookup *lk, const char *key, size_t len, uint64_t hash, int slot, CacheEntry *stale,
                          size_t room, FlightKind kind)
{
    Flight *f = fetch_table_add(lk->flights, key, len, hash, monotonic_us(), room, kind);
    if (f == NULL)
        return NULL;
    f->owner = lk;
    f->slot = slot;
    if (stale != NULL && cache_entry_retain(stale))
        f->stale = stale;
    return f;
}

void lookup_get(Lookup *lk, Front front, const char *key, size_t key_len, LookupDone done, void *arg)
{
    KeyLookup k;
    CacheEntry *e = find_trusted(lk, key, key_len, monotonic_ms(), &k);
    if (e != NULL) {
        LookupResult r = result_of_entry(e, true);
        lookup_count_answer(lk, front, &r);
        done(arg, &r);
        return;
    }
    Flight *f = coherence_joinable_flight(lk->flights, key, key_len, k.hash, &k.trust);
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
    if ((f = lookup_new_flight(lk, key, key_len, k.hash, k.slot, k.stale, sizeof(GetWaiter), FLIGHT_GET)) == NULL) {
        finish(lk, front, done, arg, LOOKUP_UNAVAILABLE);
        return;
    }
    g = (GetWaiter *)flight_room(f);
    *g = {{NULL, answer_get}, true, lk, front, done, arg, monotonic_us()};
    fetch_table_join(f, &g->base);
    lookup_ask_key_life(lk, k.slot, f);
    if (!send_get(lk, k.slot, f)) {
        lookup_resolve(lk, f, lookup_result_unreachable(lk, f, LOOKUP_UNAVAILABLE));
        return;
    }
    lk->stats->fetches_waiting++;
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
// last chain's length (doubled, up to 4 KiB), so two bytes copied after a 1 MiB value would take a
// 1 MiB chain, for every answer. They are static (a CRLF), so they are referenced too: a chain of
// their own length, after which the next answer's bytes get a small chain.
static bool add_after_reference(evbuffer *out, const char *bytes, size_t len)
{
    return evbuffer_add_reference(out, bytes, len, NULL, NULL) == 0;
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

uint64_t lookup_value_digest(const Lookup *lk, const LookupResult *r)
{
    if ((r->hit || r->stale) && r->entry != NULL)
        return cache_entry_digest(lk->cache, r->entry);
    return cache_value_digest(lk->cache, r->value, r->value_len);
}

uint64_t lookup_value_age_s(const Lookup *lk, const LookupResult *r)
{
    if (!(r->hit || r->stale) || r->entry == NULL)
        return 0;
    uint64_t stored = cache_entry_stored_us(lk->cache, r->entry), now = monotonic_us();
    return now > stored ? (now - stored) / 1000000 : 0;
}
