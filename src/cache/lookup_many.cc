// MGET through the cache: the hits from it, the misses fetched together with one MGET per slot.
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lookup_internal.h"

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
    bool snapshot;  // a snapshot's (lookup_get_snapshot): its keys are answered together or not
    bool resent;    // asked again once, after its connection was cut (lookup_ask_again)
    size_t n;
    Flight *flights[];
};

static void multi_finish(MultiFetch *m)
{
    // When some key was fetched, every key's answer (the hits' too) was ready only now.
    bool fetched = false;
    for (size_t i = 0; i < m->n && !fetched; i++)
        fetched = !m->results[i].hit;
    uint64_t waited = fetched ? monotonic_us() - m->started_us : 0;
    for (size_t i = 0; i < m->n; i++) {
        if (fetched && m->results[i].hit) {  // a hit, answered with the keys fetched
            m->lookup->stats->requests[m->front][RESULT_HIT]++;
            histogram_observe(&m->lookup->stats->request_seconds[m->front], waited);
        } else {
            lookup_count_answer(m->lookup, m->front, &m->results[i]);
        }
    }
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
    // already is: lookup_resolve).
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

static void on_mget_reply(void *arg, redisReply *reply, BackendFailure failure);

// A command for n flights (set by the caller); NULL when out of memory.
static MgetCommand *mget_command_new(Lookup *lk, size_t n, bool snapshot)
{
    MgetCommand *cmd = (MgetCommand *)malloc(sizeof(MgetCommand) + n * sizeof(Flight *));
    if (cmd != NULL)
        *cmd = {lk, snapshot, false, n};
    return cmd;
}

// Sends MGET of the command's flights' keys to the slot's source; false if it could not be sent
// (on_mget_reply is then not called).
static bool send_mget_command(Lookup *lk, MgetCommand *cmd, int slot)
{
    const char *small_argv[17];
    size_t small_lens[17];
    bool small = cmd->n < 17;
    const char **argv = small ? small_argv : (const char **)malloc((cmd->n + 1) * sizeof(const char *));
    size_t *lens = small ? small_lens : (size_t *)malloc((cmd->n + 1) * sizeof(size_t));
    bool sent = false;
    if (argv != NULL && lens != NULL) {
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t i = 0; i < cmd->n; i++) {
            argv[i + 1] = cmd->flights[i]->key;
            lens[i + 1] = cmd->flights[i]->key_len;
        }
        sent = lookup_send_fetch(lk, slot, (int)cmd->n + 1, argv, lens, on_mget_reply, cmd);
    }
    if (!small) {
        free(argv);
        free(lens);
    }
    return sent;
}

// Sends the command (its PTTLs first, with follow_key_expiry); answered through on_mget_reply
// either way, at once when it could not be sent.
static void send_mget(Lookup *lk, MgetCommand *cmd, int slot)
{
    for (size_t i = 0; i < cmd->n; i++)
        lookup_ask_key_life(lk, slot, cmd->flights[i]);
    lk->stats->fetches_waiting++;  // on_mget_reply decrements it, also when called here
    if (!send_mget_command(lk, cmd, slot))
        on_mget_reply(cmd, NULL, BACKEND_UNAVAILABLE);
}

// One flight of an MGET whose answer as a whole passed max_reply_size, fetched again on its own:
// with an MGET of its one key, whose answer is still MGET's (nil for a key of another type). Its
// PTTL's answer is known already.
static void refetch_alone(Lookup *lk, Flight *f)
{
    MgetCommand *cmd = mget_command_new(lk, 1, false);
    if (cmd == NULL) {
        lookup_resolve(lk, f, lookup_result_unreachable(lk, f, LOOKUP_UNAVAILABLE));
        return;
    }
    cmd->flights[0] = f;
    int slot = f->slot;
    lk->stats->fetches_waiting++;  // on_mget_reply decrements it, also when called here
    if (!send_mget_command(lk, cmd, slot))
        on_mget_reply(cmd, NULL, BACKEND_UNAVAILABLE);
}

static void on_mget_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    MgetCommand *cmd = (MgetCommand *)arg;
    Lookup *lk = cmd->lookup;
    if (lookup_ask_again(lk, &cmd->resent, failure) && send_mget_command(lk, cmd, 0))
        return;  // (one Redis: slot 0 serves every key)
    lk->stats->fetches_waiting--;
    if (failure == BACKEND_TOO_LARGE && cmd->n > 1 && !cmd->snapshot) {
        // The answer as a whole passed max_reply_size, not necessarily any value in it: each key
        // is fetched again on its own, so that only a value too large by itself fails, and the
        // requests that joined these flights (other clients' GETs) are not failed with the MGET.
        // Not a snapshot's: fetched apart, its answers would no longer be one moment of Redis.
        for (size_t i = 0; i < cmd->n; i++)
            refetch_alone(lk, cmd->flights[i]);
        free(cmd);
        return;
    }
    // The whole reply is checked before anything of it is cached: one element of the wrong shape
    // and none of it is trusted.
    bool values = failure == BACKEND_OK && is_values_reply(reply, cmd->n);
    bool error = failure == BACKEND_OK && !values && reply->type == REDIS_REPLY_ERROR;
    LookupResult bad = {LOOKUP_UNAVAILABLE, false, false, NULL, NULL, 0, 0};
    if (failure == BACKEND_OK && !values && !error)
        bad = lookup_result_bad_reply(lk);
    if (error)
        lk->stats->redis_errors++;
    for (size_t i = 0; i < cmd->n; i++) {
        Flight *f = cmd->flights[i];
        if (failure != BACKEND_OK)
            lookup_resolve(lk, f, lookup_result_failed(lk, f, failure));
        else if (values)
            lookup_resolve(lk, f, lookup_result_from_value(lk, f, reply->element[i]));
        else if (error)
            lookup_resolve(lk, f, lookup_result_redis_error(lk, f, reply));  // each key its stale entry
        else
            lookup_resolve(lk, f, bad);
    }
    free(cmd);
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
static void send_mget_by_slot(Lookup *lk, MgetCommand *cmd)
{
    SlotFlight *order = (SlotFlight *)malloc(cmd->n * sizeof(SlotFlight));
    if (order == NULL) {
        lk->stats->fetches_waiting++;
        on_mget_reply(cmd, NULL, BACKEND_UNAVAILABLE);
        return;
    }
    for (size_t i = 0; i < cmd->n; i++)
        order[i] = {cmd->flights[i]->slot, i, cmd->flights[i]};
    qsort(order, cmd->n, sizeof(SlotFlight), by_slot);
    for (size_t from = 0, to; from < cmd->n; from = to) {
        for (to = from + 1; to < cmd->n && order[to].slot == order[from].slot; to++) {
        }
        MgetCommand *group = mget_command_new(lk, to - from, cmd->snapshot);
        if (group == NULL) {
            for (size_t i = from; i < to; i++)
                lookup_resolve(lk, order[i].flight, lookup_result_unreachable(lk, order[i].flight, LOOKUP_UNAVAILABLE));
            continue;
        }
        for (size_t i = from; i < to; i++)
            group->flights[i - from] = order[i].flight;
        send_mget(lk, group, order[from].slot);
    }
    free(order);
    free(cmd);
}

// A snapshot's flight for a key: the one it already sent for an earlier repeat of the key, else a
// new one. A flight sent before the snapshot is taken out of the table (it still answers its own
// waiters, uncached), so that the key's fetch from here on is the snapshot's.
static Flight *snapshot_flight(Lookup *lk, const LookupKey *key, uint64_t hash, CacheEntry *stale, bool *sent_now)
{
    Flight *f = fetch_table_find(lk->flights, key->ptr, key->len, hash, FLIGHT_MGET);
    *sent_now = false;
    if (f != NULL && f->in_snapshot)
        return f;
    if (f != NULL)
        fetch_table_detach(lk->flights, f);
    int slot = lk->cluster != NULL ? cluster_key_slot(key->ptr, key->len) : 0;
    if ((f = lookup_new_flight(lk, key->ptr, key->len, hash, slot, stale, 0, FLIGHT_MGET)) != NULL) {
        f->in_snapshot = true;
        *sent_now = true;
    }
    return f;
}

// Whether every key is a hit now (nothing is retained or fetched).
static bool all_hits(Lookup *lk, const LookupKey *keys, size_t n)
{
    uint64_t now = monotonic_ms();
    KeyLookup k;
    for (size_t i = 0; i < n; i++)
        if (find_trusted(lk, keys[i].ptr, keys[i].len, now, &k) == NULL)
            return false;
    return true;
}

static void get_many(Lookup *lk, Front front, const LookupKey *keys, size_t n, LookupManyDone done, void *arg,
                     bool refetch_all)
{
    size_t size = sizeof(MultiFetch) + n * (sizeof(LookupResult) + sizeof(MultiFetch::Waiter));
    MultiFetch *m = (MultiFetch *)malloc(size);
    MgetCommand *cmd = mget_command_new(lk, n, refetch_all);
    if (m == NULL || cmd == NULL) {
        free(m);
        free(cmd);
        done(arg, NULL, 0);
        return;
    }
    *m = {lk, front, done, arg, monotonic_us(), n, 1, (LookupResult *)(m + 1), NULL};
    m->waiters = (MultiFetch::Waiter *)(m->results + n);
    cmd->n = 0;  // the flights it sends, added below
    uint64_t now = monotonic_ms();
    for (size_t i = 0; i < n; i++) {
        KeyLookup k;
        CacheEntry *e = find_trusted(lk, keys[i].ptr, keys[i].len, now, &k);
        if (refetch_all && e != NULL) {
            k.stale = e;  // fetched again all the same; answered if Redis cannot be reached
            e = NULL;
        }
        if (e != NULL && (e->absent || cache_entry_retain(e))) {  // (out of memory: fetch it)
            m->results[i] = result_of_entry(e, true);
            continue;
        }
        m->results[i] = {LOOKUP_UNAVAILABLE, false, false, NULL, NULL, 0, 0};
        m->waiters[i] = {{NULL, answer_multi}, m, i};
        bool sent_now = false;
        // An earlier key of this same MGET may have started the flight.
        Flight *f = refetch_all ? snapshot_flight(lk, &keys[i], k.hash, k.stale, &sent_now)
                                : coherence_joinable_flight(lk->flights, keys[i].ptr, keys[i].len, k.hash, &k.trust,
                                                            FLIGHT_MGET);
        if (sent_now) {
            cmd->flights[cmd->n++] = f;
        } else if (f != NULL) {
            lk->stats->coalesced++;
        } else if (!refetch_all && (f = lookup_new_flight(lk, keys[i].ptr, keys[i].len, k.hash, k.slot, k.stale, 0,
                                                          FLIGHT_MGET)) != NULL) {
            cmd->flights[cmd->n++] = f;
        } else {
            continue;  // out of memory: answered unavailable
        }
        fetch_table_join(f, &m->waiters[i].base);
        m->pending++;
    }
    for (size_t i = 0; i < cmd->n; i++)
        cmd->flights[i]->in_snapshot = false;  // sent: others may join them from now on
    if (cmd->n == 0)
        free(cmd);
    else if (lk->cluster == NULL)
        send_mget(lk, cmd, 0);
    else
        send_mget_by_slot(lk, cmd);
    // The one pending count held by this function itself: every key may already be answered.
    if (--m->pending == 0)
        multi_finish(m);
}

void lookup_get_many(Lookup *lk, Front front, const LookupKey *keys, size_t n, LookupManyDone done, void *arg)
{
    get_many(lk, front, keys, n, done, arg, false);
}

void lookup_get_snapshot(Lookup *lk, Front front, const LookupKey *keys, size_t n, LookupManyDone done, void *arg)
{
    get_many(lk, front, keys, n, done, arg, !all_hits(lk, keys, n));
}
