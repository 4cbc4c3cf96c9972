// Commands through a Redis Cluster: each to its slot's owner; MOVED and ASK followed, CLUSTERDOWN,
// TRYAGAIN and a loop of redirects retried after a pause, all within the command's deadline.
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster_state.h"
#include "config.h"
#include "log.h"

// Under AddressSanitizer a spare block is poisoned but for its link: a request used after it is
// done is reported as it would be for malloc's.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SPARE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SPARE_POISON(p, n) ((void)(p), (void)(n))
#define SPARE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static void ignore_reply(void *, redisReply *, BackendFailure) {}

// A block for a request of `bytes`: a spare one if it fits, else malloc's.
static ClusterRequest *request_alloc(Cluster *c, size_t bytes)
{
    ClusterRequest *r;
    if (bytes <= CLUSTER_REQUEST_BLOCK && c->spares != NULL) {
        r = c->spares;
        SPARE_UNPOISON(r, CLUSTER_REQUEST_BLOCK);
        c->spares = r->next;
        c->spare_count--;
    } else if ((r = (ClusterRequest *)malloc(bytes <= CLUSTER_REQUEST_BLOCK ? CLUSTER_REQUEST_BLOCK : bytes)) == NULL) {
        return NULL;
    }
    r->spare = bytes <= CLUSTER_REQUEST_BLOCK;
    return r;
}

static void request_free(Cluster *c, ClusterRequest *r)
{
    if (!r->spare || c->spare_count == CLUSTER_REQUEST_SPARES || c->destroying) {
        free(r);
        return;
    }
    r->next = c->spares;
    c->spares = r;
    c->spare_count++;
    size_t link_end = offsetof(ClusterRequest, next) + sizeof(r->next);
    SPARE_POISON(r, offsetof(ClusterRequest, next));
    SPARE_POISON((char *)r + link_end, CLUSTER_REQUEST_BLOCK - link_end);
}

void route_free_spares(Cluster *c)
{
    while (c->spares != NULL) {
        ClusterRequest *r = c->spares;
        SPARE_UNPOISON(r, CLUSTER_REQUEST_BLOCK);
        c->spares = r->next;
        free(r);
    }
    c->spare_count = 0;
}

static void on_reply(void *arg, redisReply *reply, BackendFailure failure);

// Sends the request to node (after ASKING when asked). False if it could not be sent.
static bool send_to(ClusterRequest *r, int node, bool asking)
{
    Cluster *c = r->c;
    if (node < 0 || !map_link_open(c, node))
        return false;
    Backend *b = c->links[node].data;
    r->node = node;
    if (asking) {
        static const char *argv[] = {"ASKING"};
        static const size_t lens[] = {6};
        if (!backend_command(b, 1, argv, lens, ignore_reply, NULL))
            return false;
    }
    return backend_command(b, r->argc, r->argv, r->lens, on_reply, r);
}

void route_unpark(ClusterRequest *r)
{
    Cluster *c = r->c;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->parked = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static bool park(ClusterRequest *r);

static void on_retry_timer(evutil_socket_t, short, void *arg)
{
    ClusterRequest *r = (ClusterRequest *)arg;
    route_unpark(r);
    r->asked = false;
    // A fresh attempt from the slot's owner: the redirects it follows count anew (the limit guards
    // against a loop within one attempt; the command's deadline bounds the attempts). Otherwise
    // a multi-key command refused TRYAGAIN by a slot's importing node, asked again through the
    // migrating one, would run out of redirects while the migration is still going well.
    r->redirects = 0;
    if (!send_to(r, r->c->map.owner[r->slot], false) && !park(r))
        route_deliver(r, NULL, BACKEND_UNAVAILABLE);
}

// CLUSTERDOWN, TRYAGAIN, a loop of redirects, or a redirect to a node still connecting: tried
// again after a pause, while its time lasts. False: past it.
static bool park(ClusterRequest *r)
{
    Cluster *c = r->c;
    uint64_t pause = backoff_ms(CLUSTER_RETRY_MIN_MS, CLUSTER_RETRY_MAX_MS, r->retries);
    if (*c->env->stopping || monotonic_ms() + pause >= r->deadline_ms)
        return false;
    if (r->retry_timer == NULL && (r->retry_timer = evtimer_new(c->env->base, on_retry_timer, r)) == NULL)
        return false;
    r->retries++;
    c->env->stats->cluster_retries++;
    r->prev = NULL;
    r->next = c->parked;
    if (c->parked != NULL)
        c->parked->prev = r;
    c->parked = r;
    struct timeval tv = timeval_of_ms(pause);
    evtimer_add(r->retry_timer, &tv);
    return true;
}

// A MOVED or an ASK: resend where it says. False if it could not be sent.
static bool follow(ClusterRequest *r, const ClusterRedirect *to)
{
    Cluster *c = r->c;
    // By IP, or by a name a known node announces; a name nobody announces cannot be followed
    // until the map is read again (the plan asked for that): never an address guessed.
    int node = slot_map_endpoint(&c->map, to->to.ip, to->to.port);
    if (node < 0)
        return false;
    r->redirects++;
    if (to->ask) {
        c->env->stats->cluster_asks++;
        r->asked = true;
    } else {
        c->env->stats->cluster_moved++;
        map_set_owner(c, to->slot, node);
    }
    return send_to(r, node, to->ask);
}

void route_deliver(ClusterRequest *r, redisReply *reply, BackendFailure failure)
{
    Cluster *c = r->c;
    const NodeLink *l = r->node >= 0 ? &c->links[r->node] : NULL;
    bool saved_cacheable = c->reply_cacheable;
    Backend *saved_replying = c->replying;
    c->reply_cacheable = failure == BACKEND_OK && !r->asked && l != NULL && l->caching;
    c->replying = l != NULL ? l->data : NULL;
    r->fn(r->arg, reply, failure);
    c->reply_cacheable = saved_cacheable;
    c->replying = saved_replying;
    if (r->retry_timer != NULL)
        event_free(r->retry_timer);
    request_free(c, r);
}

static void on_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    ClusterRequest *r = (ClusterRequest *)arg;
    Cluster *c = r->c;
    if (failure != BACKEND_OK) {
        if (failure == BACKEND_UNAVAILABLE)
            map_want_refresh_now(c);  // the node may have failed over
        else if (failure == BACKEND_TIMEOUT)
            map_want_refresh(c);  // slow, or failing: looked at, backing off while nothing changes
        // Its connection was closed under it because the map moved the slot away (a node whose
        // last slot left is closed with its reads in flight), or was cut and is coming back at
        // once (backend_reconnecting_at_once): asked again of the slot's owner now, within the
        // command's time, once for a cut. A read asked twice is harmless; its answer is not
        // cached (a move distrusted the slot; a cut, the node's tracking).
        int owner = c->map.owner[r->slot];
        bool moved = owner >= 0 && owner != r->node;
        bool cut = !moved && !r->resent && owner >= 0 && c->links[owner].data != NULL &&
                   backend_reconnecting_at_once(c->links[owner].data);
        if (failure == BACKEND_UNAVAILABLE && (moved || cut) && monotonic_ms() < r->deadline_ms) {
            r->resent = r->resent || cut;
            r->asked = false;
            r->redirects = 0;
            if (send_to(r, c->map.owner[r->slot], false) || park(r))
                return;
        }
        route_deliver(r, reply, failure);
        return;
    }
    ClusterReplyPlan plan = cluster_plan_reply(reply, r->slot, r->redirects);
    if (plan.refresh)
        map_want_refresh(c);
    switch (plan.action) {
    case CLUSTER_DELIVER:
        route_deliver(r, reply, failure);
        break;
    case CLUSTER_FOLLOW:
        // A node the map has just learnt is still connecting (a command waits for no connect):
        // tried again after a pause, within the command's time.
        if (!follow(r, &plan.to) && !park(r))
            route_deliver(r, NULL, BACKEND_UNAVAILABLE);
        break;
    case CLUSTER_RETRY:
        if (!park(r))
            route_deliver(r, reply, failure);  // out of time: the error itself (503)
        break;
    case CLUSTER_GIVE_UP: {
        // Redirected round in a loop: two nodes that disagree for a moment (a migration's last
        // step told to the slot's old owner before its new one, as redis-cli's reshard may do
        // node by node) settle within milliseconds; asked again of the slot's owner after a pause,
        // while the command's time lasts. A redirect to another slot is no loop: never followed.
        if (plan.to.slot == r->slot && park(r))
            break;
        // Once a second at most: a cluster that loops (or a hostile node) must not flood the log.
        uint64_t now = monotonic_ms();
        log_msg(now - c->gave_up_logged_ms >= 1000 ? LOG_WARN : LOG_DEBUG,
                "worker %d: slot %d: %.*s after %d redirect(s); answering unavailable", c->env->id, r->slot,
                (int)reply->len, reply->str, r->redirects);
        if (now - c->gave_up_logged_ms >= 1000)
            c->gave_up_logged_ms = now;
        route_deliver(r, NULL, BACKEND_UNAVAILABLE);
        break;
    }
    }
}

bool cluster_command(Cluster *c, int slot, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                     void *arg)
{
    int node = c->map.owner[slot];
    if (node < 0 || c->links[node].data == NULL || c->links[node].leaving) {
        map_want_refresh_now(c);  // no map yet, or nobody serves the slot: ask again
        return false;
    }
    size_t bytes = sizeof(ClusterRequest) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < argc; i++)
        bytes += lens[i];
    ClusterRequest *r = request_alloc(c, bytes);
    if (r == NULL)
        return false;
    bool spare = r->spare;
    uint64_t now = monotonic_ms();
    *r = {NULL, NULL, c, fn, arg, slot, node, 0, 0, false, now + (uint64_t)c->env->config->command_timeout_ms,
          NULL, argc, NULL, NULL, false, spare};
    r->argv = (const char **)(r + 1);
    r->lens = (size_t *)(r->argv + argc);
    char *at = (char *)(r->lens + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(at, argv[i], lens[i]);
        r->argv[i] = at;
        r->lens[i] = lens[i];
        at += lens[i];
    }
    if (!send_to(r, node, false)) {
        request_free(c, r);
        map_want_refresh_now(c);  // the owner is not connected: it may have failed over
        return false;
    }
    return true;
}

uint64_t cluster_slot_distrusted_us(const Cluster *c, int slot) { return c->distrusted_us[slot]; }

bool cluster_slot_migrating(const Cluster *c, int slot)
{
    // Said at one refresh, and not said again within two more: the migration has ended.
    uint64_t seen = c->migrating_seen_ms[slot];
    return seen != 0 && monotonic_ms() - seen < 2 * (uint64_t)c->env->config->cluster_refresh_ms + 100;
}

bool cluster_reply_cacheable(const Cluster *c) { return c->reply_cacheable; }

void cluster_distrust_reply(Cluster *c)
{
    if (c->replying != NULL)
        backend_distrust(c->replying);
}
