#include "cluster.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster_state.h"
#include "config.h"
#include "log.h"

// The slot map and the connections to the nodes it names: read with CLUSTER SLOTS (and CLUSTER
// NODES for the slots being migrated), reread when a redirect or a failure says it changed.

static void start_refresh(Cluster *c);

static void distrust_slot(Cluster *c, int slot, uint64_t now_us) { c->distrusted_us[slot] = now_us; }

// Everything read through the node may be out of date: its slots' entries stop being hits.
static void distrust_node(void *arg)
{
    NodeLink *l = (NodeLink *)arg;
    Cluster *c = l->c;
    uint64_t now = monotonic_us();
    for (int s = 0; s < CLUSTER_SLOTS; s++)
        if (c->map.owner[s] == l->index)
            distrust_slot(c, s, now);
}

// The worker's gauges speak for the whole cluster: connected (tracked) when every primary is.
static void update_gauges(Cluster *c)
{
    bool connected = c->have_map, tracked = c->have_map;
    bool owns[SLOT_MAP_MAX_NODES] = {};
    for (int s = 0; s < CLUSTER_SLOTS; s++)
        if (c->map.owner[s] >= 0)
            owns[c->map.owner[s]] = true;
    for (int n = 0; n < c->map.nodes; n++) {
        if (!owns[n])
            continue;
        const NodeLink *l = &c->links[n];
        connected = connected && l->data != NULL && backend_ready(l->data);
        tracked = tracked && l->tracked;
    }
    c->env->stats->redis_connected = connected;
    c->env->stats->tracking = tracked && c->env->config->invalidation == INVALIDATION_TRACKING;
}

static void invalidate_key(void *arg, const char *key, size_t len)
{
    Cluster *c = ((NodeLink *)arg)->c;
    c->owner.invalidate(c->owner.arg, key, len);
}

static void set_node_caching(void *arg, bool caching, bool tracked)
{
    NodeLink *l = (NodeLink *)arg;
    l->caching = caching;
    l->tracked = tracked;
    update_gauges(l->c);
    if (caching && !tracked)
        l->c->owner.tracking_unsupported(l->c->owner.arg);
}

static void on_node_ready(void *arg)
{
    NodeLink *l = (NodeLink *)arg;
    if (l->tracking != NULL)
        tracking_data_ready(l->tracking);
    update_gauges(l->c);
}

static void on_node_lost(void *arg)
{
    NodeLink *l = (NodeLink *)arg;
    if (l->tracking != NULL)
        tracking_data_lost(l->tracking);
    update_gauges(l->c);
    map_want_refresh(l->c);  // a failover may be under way
}

// Replies read through the node may have gone to the wrong commands: values may sit under the
// wrong keys, in any slot, so the whole cache goes (as with one Redis).
static void on_node_untrusted(void *arg)
{
    NodeLink *l = (NodeLink *)arg;
    l->c->owner.forget_cache(l->c->owner.arg);  // (the backend has logged which node, and why)
}

static void node_target(const ClusterNode *n, BackendTarget *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->ip, sizeof(t->ip), "%s", n->ip);
    t->port = n->port;
    snprintf(t->display, sizeof(t->display), strchr(n->ip, ':') ? "[%s]:%d" : "%s:%d", n->ip, n->port);
}

// Opens the node's connections if they are not open (or keeps them if they were leaving).
bool map_link_open(Cluster *c, int node)
{
    NodeLink *l = &c->links[node];
    l->leaving = false;
    if (l->data != NULL)
        return true;
    if (c->destroying)
        return false;
    const WorkerEnv *w = c->env;
    BackendTarget target;
    node_target(&c->map.node[node], &target);
    l->c = c;
    l->index = node;
    l->caching = w->config->invalidation != INVALIDATION_TRACKING;
    l->tracked = false;
    BackendHooks hooks = {};
    hooks.on_ready = on_node_ready;
    hooks.on_lost = on_node_lost;
    hooks.on_untrusted = on_node_untrusted;
    hooks.arg = l;
    hooks.tls = w->redis_tls;
    hooks.tls_failures = &w->stats->redis_tls_failures;
    hooks.failure = w->redis_failure;
    hooks.failure_len = w->redis_failure_len;
    l->data = backend_create(w->base, w->config, &target, w->stats, c->seed * 41 + (uint64_t)node, &hooks);
    if (l->data == NULL)
        return false;
    if (w->config->invalidation == INVALIDATION_TRACKING) {
        snprintf(l->label, sizeof(l->label), " of %s", target.display);
        TrackingOwner owner = {l->data, distrust_node, set_node_caching, invalidate_key, l, l->label};
        l->tracking = tracking_create(w, &target, &owner, c->seed * 43 + (uint64_t)node);
        if (l->tracking == NULL) {
            backend_destroy(l->data);
            l->data = NULL;
            return false;
        }
    }
    log_debug("worker %d: connecting to cluster node %s", w->id, target.display);
    return true;
}

static void link_close(NodeLink *l)
{
    tracking_destroy(l->tracking);
    l->tracking = NULL;
    Backend *data = l->data;
    l->data = NULL;  // before its waiting commands are answered: nothing new is sent on it
    l->caching = l->tracked = l->leaving = false;
    backend_destroy(data);
}

// Frees, out of any callback, what a callback could not: the probe once it answered, and the
// connections of nodes that left the map.
static void on_sweep(evutil_socket_t, short, void *arg)
{
    Cluster *c = (Cluster *)arg;
    if (c->probe != NULL && c->probe_done) {
        Backend *probe = c->probe;
        c->probe = NULL;
        backend_destroy(probe);
    }
    for (int n = 0; n < c->map.nodes; n++)
        if (c->links[n].leaving && c->links[n].data != NULL) {
            log_info("worker %d: closing the connections to %s:%d, which owns no slot any more", c->env->id,
                     c->map.node[n].ip, c->map.node[n].port);
            link_close(&c->links[n]);
            slot_map_forget(&c->map, n);  // its index may serve a node that joins later
        }
    update_gauges(c);
    if (c->probe_again) {
        c->probe_again = false;
        start_refresh(c);
    }
}

static void sweep_later(Cluster *c) { event_active(c->sweep_event, EV_TIMEOUT, 1); }

// Makes `node` the slot's owner; a new owner never saw our reads of the slot, and the old one
// will not tell us of changes to it any more.
void map_set_owner(Cluster *c, int slot, int node)
{
    if (slot_map_set_owner(&c->map, slot, node))
        distrust_slot(c, slot, monotonic_us());
}

static void schedule_refresh(Cluster *c, uint64_t delay_ms)
{
    struct timeval tv = timeval_of_ms((uint64_t)delay_ms);
    evtimer_add(c->refresh_timer, &tv);
}

// A slot's owner cannot be reached, and its keys are answered stale or unavailable meanwhile: the
// map is read again at the shortest gap, however long it had backed off, so that a failover's new
// primary serves within about that gap of being promoted.
void map_want_refresh_now(Cluster *c)
{
    if (c->refresh_soon && c->refresh_gap_ms > REFRESH_GAP_MIN_MS)
        c->refresh_soon = false;  // due after the longer gap: scheduled again, sooner, below
    c->refresh_gap_ms = REFRESH_GAP_MIN_MS;
    map_want_refresh(c);
}

// Something says the map may be out of date: reread it, but at most once per refresh gap.
void map_want_refresh(Cluster *c)
{
    if (c->refreshing || c->refresh_soon || *c->env->stopping)
        return;
    c->refresh_soon = true;
    uint64_t now = monotonic_ms(), at = c->last_refresh_ms + c->refresh_gap_ms;
    schedule_refresh(c, at > now ? at - now : 0);
}

// Asked for soon and nothing changed: the next soon one waits longer.
static void back_off_refresh(Cluster *c)
{
    c->refresh_gap_ms = c->refresh_gap_ms * 2 > REFRESH_GAP_MAX_MS ? REFRESH_GAP_MAX_MS : c->refresh_gap_ms * 2;
}

static void refresh_ended(Cluster *c, bool changed)
{
    c->refreshing = false;
    c->refresh_soon = false;
    // Asked for soon and nothing changed: the next soon one waits longer (a failover takes a
    // moment to show in the map; no need to ask a hundred times meanwhile).
    if (changed)
        c->refresh_gap_ms = REFRESH_GAP_MIN_MS;
    else
        back_off_refresh(c);
    schedule_refresh(c, (uint64_t)c->env->config->cluster_refresh_ms);
}

static void apply_map(Cluster *c, const redisReply *reply, const ClusterNode *asked)
{
    int16_t *before = (int16_t *)malloc(sizeof(c->map.owner));
    if (before == NULL) {
        refresh_ended(c, false);
        return;
    }
    memcpy(before, c->map.owner, sizeof(c->map.owner));
    char err[160];
    if (!slot_map_apply_slots(&c->map, reply, asked, err, sizeof(err))) {
        log_warn("worker %d: cluster map from %s:%d unusable (%s); keeping the one we have", c->env->id, asked->ip,
                 asked->port, err);
        free(before);
        refresh_ended(c, false);
        return;
    }
    uint64_t now = monotonic_us();
    int moved = 0, uncovered = 0;
    bool owns[SLOT_MAP_MAX_NODES] = {};
    for (int s = 0; s < CLUSTER_SLOTS; s++) {
        if (c->map.owner[s] != before[s]) {
            distrust_slot(c, s, now);
            moved++;
        }
        if (c->map.owner[s] >= 0)
            owns[c->map.owner[s]] = true;
        else
            uncovered++;
    }
    free(before);
    int primaries = 0;
    for (int n = 0; n < c->map.nodes; n++) {
        if (owns[n]) {
            primaries++;
            if (!map_link_open(c, n))
                log_error("worker %d: out of memory connecting to %s:%d", c->env->id, c->map.node[n].ip,
                          c->map.node[n].port);
        } else if (c->links[n].data != NULL && !c->links[n].leaving) {
            c->links[n].leaving = true;
            sweep_later(c);
        }
    }
    if (c->map.unaddressable > 0) {
        if (c->map.unaddressable > c->unaddressable_before)  // counted when they appear, not per refresh
            c->env->stats->cluster_unaddressable_nodes += (uint64_t)(c->map.unaddressable - c->unaddressable_before);
        log_msg(c->map.unaddressable != c->unaddressable_before ? LOG_WARN : LOG_DEBUG,"worker %d: cluster map from %s:%d: %d primar%s announced by name only (%s), with no IP beside it; "
                 "%s slots are answered unavailable (use cluster-preferred-endpoint-type ip, or Redis 7's metadata)",
                 c->env->id, asked->ip, asked->port, c->map.unaddressable, c->map.unaddressable == 1 ? "y" : "ies",
                 c->map.unaddressable_name, c->map.unaddressable == 1 ? "its" : "their");
    }
    c->unaddressable_before = c->map.unaddressable;
    if (!c->have_map || moved > 0)
        log_msg(c->have_map ? LOG_INFO : LOG_DEBUG, "worker %d: cluster map from %s:%d: %d primaries, %d slot(s) %s%s",
                c->env->id, asked->ip, asked->port, primaries, c->have_map ? moved : CLUSTER_SLOTS - uncovered,
                c->have_map ? "changed owner" : "served", uncovered > 0 ? ", some slots served by nobody" : "");
    c->have_map = true;
    c->env->stats->redis_tried = 1;
    update_gauges(c);
    refresh_ended(c, moved > 0);
}

static void start_refresh(Cluster *c);

static void on_slots_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    SlotsQuery *q = (SlotsQuery *)arg;
    Cluster *c = (Cluster *)owned_command_take(&q->base);
    ClusterNode asked = q->asked;
    bool probe = q->probe;
    free(q);
    if (c == NULL)
        return;  // the cluster is being destroyed
    if (probe) {
        c->env->stats->redis_tried = 1;  // the first attempt has ended, either way (readiness)
        c->probe_done = true;
        sweep_later(c);
    }
    if (failure != BACKEND_OK || reply->type == REDIS_REPLY_ERROR) {
        if (failure == BACKEND_TOO_LARGE)
            log_warn("worker %d: %s:%d answers CLUSTER SLOTS with more than max_reply_size: raise it", c->env->id,
                     asked.ip, asked.port);
        if (failure == BACKEND_OK)
            log_warn("worker %d: %s:%d refuses CLUSTER SLOTS (%.*s)%s", c->env->id, asked.ip, asked.port,
                     (int)reply->len, reply->str,
                     strstr(reply->str, "disabled") ? ": it is no cluster node, use [redis] address" : "");
        c->refreshing = false;
        c->refresh_soon = false;
        if (probe && c->probe_next % (c->seed_count + c->map.nodes) != 0) {
            c->probe_again = true;  // the next candidate as soon as the sweep has freed this probe
            return;
        }
        // A whole round of candidates failed, or a connected node refused: wait longer each time.
        back_off_refresh(c);
        map_want_refresh(c);
        return;
    }
    apply_map(c, reply, &asked);
}

static bool ask_slots(Cluster *c, Backend *to, const ClusterNode *asked, bool probe)
{
    SlotsQuery *q = (SlotsQuery *)malloc(sizeof(SlotsQuery));
    if (q == NULL)
        return false;
    q->asked = *asked;
    q->probe = probe;
    command_owner_add(&c->queries, &q->base);
    const char *argv[] = {"CLUSTER", "SLOTS"};
    size_t lens[] = {7, 5};
    if (backend_command(to, 2, argv, lens, on_slots_reply, q))
        return true;
    owned_command_take(&q->base);
    free(q);
    return false;
}

static void on_nodes_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    OwnedCommand *q = (OwnedCommand *)arg;
    Cluster *c = (Cluster *)owned_command_take(q);
    free(q);
    if (c == NULL || failure != BACKEND_OK || reply->type != REDIS_REPLY_STRING)
        return;
    memset(c->migrating_now, 0, sizeof(c->migrating_now));
    if (cluster_nodes_migrating(reply->str, reply->len, c->migrating_now) == 0)
        return;
    uint64_t now = monotonic_ms();
    for (int s = 0; s < CLUSTER_SLOTS; s++)
        if (c->migrating_now[s])
            c->migrating_seen_ms[s] = now;
}

// Which slots are being migrated: each primary reports only its own (CLUSTER NODES), so every
// connected one is asked, with each refresh.
static void ask_migrations(Cluster *c)
{
    static const char *argv[] = {"CLUSTER", "NODES"};
    static const size_t lens[] = {7, 5};
    for (int n = 0; n < c->map.nodes; n++) {
        NodeLink *l = &c->links[n];
        if (l->data == NULL || l->leaving || !backend_ready(l->data))
            continue;
        OwnedCommand *q = (OwnedCommand *)malloc(sizeof(OwnedCommand));
        if (q == NULL)
            return;
        command_owner_add(&c->queries, q);
        if (!backend_command(l->data, 2, argv, lens, on_nodes_reply, q)) {
            owned_command_take(q);
            free(q);
        }
    }
}

// Asks a connected primary for the map; with none, a seed or a known node, on a probe connection.
static void start_refresh(Cluster *c)
{
    if (c->refreshing || *c->env->stopping)
        return;
    c->refreshing = true;
    c->last_refresh_ms = monotonic_ms();
    c->env->stats->cluster_map_refreshes++;
    for (int n = 0; n < c->map.nodes; n++) {
        NodeLink *l = &c->links[n];
        if (l->data != NULL && !l->leaving && backend_ready(l->data) && ask_slots(c, l->data, &c->map.node[n], false)) {
            ask_migrations(c);
            return;
        }
    }
    if (c->probe != NULL) {  // the last probe is not freed yet: try again once it is
        c->refreshing = false;
        map_want_refresh(c);
        return;
    }
    int candidates = c->seed_count + c->map.nodes, i;
    do  // (a seed always qualifies; a known node unless its entry was freed)
        i = c->probe_next++ % candidates;
    while (i >= c->seed_count && c->map.node[i - c->seed_count].port == 0);
    BackendTarget target;
    ClusterNode asked;
    if (i < c->seed_count) {
        target = c->seeds[i];
        snprintf(asked.ip, sizeof(asked.ip), "%s", target.ip);
        asked.port = target.port;
    } else {
        asked = c->map.node[i - c->seed_count];
        node_target(&asked, &target);
    }
    BackendHooks hooks = {};
    hooks.label = " (cluster seed)";
    hooks.queue_while_connecting = true;  // CLUSTER SLOTS, asked as soon as it connects
    hooks.tls = c->env->redis_tls;
    hooks.tls_failures = &c->env->stats->redis_tls_failures;  // (the probe keeps stats of its own)
    hooks.failure = c->env->redis_failure;
    hooks.failure_len = c->env->redis_failure_len;
    c->probe_done = false;
    c->probe = backend_create(c->env->base, c->env->config, &target, &c->probe_stats, c->seed * 47 + (uint64_t)i, &hooks);
    if (c->probe == NULL || !ask_slots(c, c->probe, &asked, true)) {
        c->env->stats->redis_tried = 1;
        c->probe_done = true;  // could not even start: freed by the sweep, the next tried later
        sweep_later(c);
        c->refreshing = false;
        map_want_refresh(c);
    }
}

static void on_refresh_timer(evutil_socket_t, short, void *arg)
{
    Cluster *c = (Cluster *)arg;
    c->refresh_soon = false;
    start_refresh(c);
}

Cluster *cluster_create(const WorkerEnv *env, const ClusterOwner *owner, const BackendTarget *seeds, int seed_count,
                        uint64_t seed)
{
    Cluster *c = (Cluster *)calloc(1, sizeof(Cluster));
    if (c == NULL)
        return NULL;
    c->env = env;
    c->owner = *owner;
    c->queries.self = c;
    c->seeds = seeds;
    c->seed_count = seed_count;
    c->seed = seed;
    c->refresh_gap_ms = REFRESH_GAP_MIN_MS;
    slot_map_init(&c->map);
    c->refresh_timer = evtimer_new(env->base, on_refresh_timer, c);
    c->sweep_event = event_new(env->base, -1, 0, on_sweep, c);
    if (c->refresh_timer == NULL || c->sweep_event == NULL || seed_count < 1) {
        cluster_destroy(c);
        return NULL;
    }
    start_refresh(c);
    return c;
}

void cluster_destroy(Cluster *c)
{
    if (c == NULL)
        return;
    c->destroying = true;
    command_owner_cancel_all(&c->queries);
    while (c->parked != NULL) {
        ClusterRequest *r = c->parked;
        route_unpark(r);
        route_deliver(r, NULL, BACKEND_UNAVAILABLE);
    }
    for (int n = 0; n < c->map.nodes; n++)
        if (c->links[n].data != NULL)
            link_close(&c->links[n]);
    backend_destroy(c->probe);
    if (c->refresh_timer != NULL)
        event_free(c->refresh_timer);
    if (c->sweep_event != NULL)
        event_free(c->sweep_event);
    route_free_spares(c);
    free(c);
}
