#include "worker.h"

#include <array>

#include <event2/event.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "cache.h"
#include "cluster.h"
#include "fetch_table.h"
#include "tracking.h"
#include "clock.h"
#include "config.h"
#include "access_log.h"
#include "admin_front.h"
#include "handover.h"
#include "http_front.h"
#include "log.h"
#include "lookup.h"
#include "resp_front.h"
#include "scoreboard.h"
#include "tls.h"

static const uint64_t EXPIRE_INTERVAL_MS = 100;
static const size_t EXPIRE_BATCH = 10000;  // bounds the work of one tick; the rest waits a tick

static void set_fronts_accepting(Worker *w, bool accepting)
{
    if (accepting && w->held)
        return;  // a reload's new worker, before its first try at Redis (on_hold_timer)
    http_front_set_accepting(w->http, accepting);
    if (w->resp != NULL)
        resp_front_set_accepting(w->resp, accepting);
}

static void set_accepting(Worker *w, bool accepting)
{
    if (w->accepting == accepting || w->stopping)
        return;
    w->accepting = accepting;
    set_fronts_accepting(w, accepting);
}

// accept(2) failed for a reason that does not clear by itself (EMFILE, ENFILE): descriptors are a
// process-wide resource, so both fronts stop accepting for a moment, or libevent would retry in a
// busy loop.
static void pause_accepting(void *arg, const char *front, int err)
{
    Worker *w = (Worker *)arg;
    log_warn("worker %d: %s accept failed: %s; pausing new connections for 100ms", w->id, front,
             strerror(err));
    set_fronts_accepting(w, false);
    struct timeval tv = {0, 100 * 1000};
    evtimer_add(w->accept_retry_timer, &tv);
}

// The pause is over. Resume unless the client limit or a stop has disabled accepting meanwhile.
static void on_accept_retry_timer(evutil_socket_t, short, void *arg)
{
    Worker *w = (Worker *)arg;
    if (w->accepting && !w->stopping)
        set_fronts_accepting(w, true);
}

// The whole proxy's numbers, from the scoreboard; this worker's own when it runs without one.
static void totals(void *arg, ScoreboardTotals *t)
{
    const Worker *w = (const Worker *)arg;
    if (w->scoreboard != NULL) {
        scoreboard_totals(w->scoreboard, t);
        return;
    }
    memset(t, 0, sizeof(*t));
    t->stats = *w->stats;
    t->workers = 1;
}

static int64_t clients_open(const Worker *w)
{
    return (int64_t)(w->stats->clients_open[FRONT_HTTP] + w->stats->clients_open[FRONT_RESP]);
}

// The fronts report client connections opening and closing; the worker stops accepting at its
// share of max_clients (new connections then wait in the kernel backlog) and resumes below it.
static void client_opened(void *arg, Front front)
{
    Worker *w = (Worker *)arg;
    w->stats->clients_accepted[front]++;
    w->stats->clients_open[front]++;
    if (clients_open(w) >= w->client_limit && w->accepting) {
        log_debug("worker %d: %lld clients open, the limit: new connections wait in the backlog",
                  w->id, (long long)w->client_limit);
        set_accepting(w, false);
    }
}

static void client_closed(void *arg, Front front)
{
    Worker *w = (Worker *)arg;
    w->stats->clients_open[front]--;
    if (clients_open(w) < w->client_limit)
        set_accepting(w, true);
}

// Drops expired entries from the head of the age list. Lookups never return an expired entry
// anyway; this only returns their memory without waiting for them to be read or evicted.
static void on_expire_timer(evutil_socket_t, short, void *arg)
{
    Worker *w = (Worker *)arg;
    uint64_t now = monotonic_ms();
    cache_expire(w->lookup.cache, now, EXPIRE_BATCH);
    // What INFO reports of the whole proxy, from each worker's record.
    w->stats->ops_per_sec = ops_rate_sample(&w->ops_rate, stats_commands(w->stats), now);
    w->stats->cache_ttl_left_ms = cache_ttl_left_sum_ms(w->lookup.cache, now);
}

// After SIGTERM: no new connections, idle ones closed, the others closed after their answers;
// exit once no client and no fetch is left, or at shutdown_timeout (the master kills a worker
// that is still there a little later).
static void on_stop_timer(evutil_socket_t, short, void *arg)
{
    Worker *w = (Worker *)arg;
    if ((w->stats->fetches_waiting == 0 && clients_open(w) == 0) || monotonic_ms() >= w->stop_deadline_ms) {
        // One more short turn of the loop lets the last replies reach their sockets.
        struct timeval tv = {0, 50 * 1000};
        event_base_loopexit(w->base, &tv);
        return;
    }
    struct timeval tv = {0, 10 * 1000};
    evtimer_add(w->stop_timer, &tv);
}

// A graceful stop (SIGTERM), or a reload's retirement (RETIRE on the channel): no new
// connections, and each open one ends as its front decides, within shutdown_timeout. A stop
// closes them; a retirement hands RESP connections over to the new generation (handover.h) and
// closes an idle HTTP one only with an answer, or at the deadline.
static void begin_stop(Worker *w, bool retiring, bool revoked)
{
    set_accepting(w, false);
    if (w->admin != NULL)
        admin_front_stop_accepting(w->admin);
    w->stopping = true;
    w->stats->accepting = 0;
    w->stop_deadline_ms = monotonic_ms() + (uint64_t)w->config->shutdown_timeout_ms;
    http_front_drain(w->http, !retiring, revoked);
    if (w->resp != NULL && retiring && w->handover_target_count > 0)
        resp_front_hand_over(w->resp, w->handover_targets, w->handover_target_count, revoked);
    else if (w->resp != NULL)
        resp_front_drain(w->resp);
    on_stop_timer(-1, 0, w);
}

static void on_stop_signal(evutil_socket_t sig, short, void *arg)
{
    Worker *w = (Worker *)arg;
    if (w->stopping)
        return;
    log_debug("worker %d: %s, finishing %llu fetch(es) in flight", w->id,
              sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)w->stats->fetches_waiting);
    begin_stop(w, false, false);
}

// What the master (TARGETS, RETIRE) or a retiring worker (CLIENT) sends on the channel.
// Each front's listeners (NULL for a front that is off), by HandoverFront.
static std::array<ListenerSet *, 3> front_listeners(Worker *w)
{
    return {http_front_listeners(w->http), w->resp != NULL ? resp_front_listeners(w->resp) : NULL,
            w->admin != NULL ? admin_front_listeners(w->admin) : NULL};
}

// A dead worker's sockets (the master's HANDOVER_ADOPT): served here until its successor serves,
// so that the connections queued on them do not wait out its respawn delay.
static void adopt_listeners(Worker *w, const HandoverListeners *what, const int *fds, int nfds)
{
    std::array<ListenerSet *, 3> sets = front_listeners(w);
    int adopted = 0;
    for (int i = 0; i < nfds; i++) {
        unsigned front = what->front[i] & ~(unsigned)HANDOVER_TLS;
        bool tls = (what->front[i] & HANDOVER_TLS) != 0;
        if (front < sets.size() && sets[front] != NULL && listener_set_adopt(sets[front], fds[i], tls, (int)what->slot))
            adopted++;
        else if (front >= sets.size() || sets[front] == NULL)
            close(fds[i]);
    }
    log_debug("worker %d: serving %d socket(s) of worker %u until it is back", w->id, adopted, what->slot);
}

static void on_channel(evutil_socket_t fd, short, void *arg)
{
    Worker *w = (Worker *)arg;
    for (int messages = 0; messages < 64; messages++) {  // a bounded turn: others' events wait
        HandoverKind kind;
        int fds[HANDOVER_MAX_FDS], nfds;
        union {
            HandoverClient client;
            HandoverListeners listeners;
            HandoverRetire retire;
        } data;
        HandoverClient &client = data.client;
        size_t len;
        int got = handover_recv(fd, &kind, fds, HANDOVER_MAX_FDS, &nfds, &data, sizeof(data), &len);
        if (got == 0)
            return;
        if (got == -2) {  // the master said all it had to (or has gone)
            event_del(w->channel_event);
            return;
        }
        if (got < 0)
            continue;
        if (kind == HANDOVER_TARGETS) {
            for (int i = 0; i < nfds; i++) {
                if (w->handover_target_count < CONFIG_MAX_WORKERS)
                    w->handover_targets[w->handover_target_count++] = fds[i];
                else
                    close(fds[i]);
            }
        } else if (kind == HANDOVER_RETIRE && !w->stopping) {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            bool revoked = len == sizeof(data.retire) && data.retire.revoked != 0;
            log_debug("worker %d: retiring; handing %s connections over to %d new worker(s)%s", w->id,
                      w->resp != NULL ? "its RESP" : "no", w->handover_target_count,
                      revoked ? "; credentials changed: none served on by the old rules" : "");
            begin_stop(w, true, revoked);
        } else if (kind == HANDOVER_CLIENT && nfds == 1 && len == sizeof(client) && w->resp != NULL) {
            resp_front_adopt(w->resp, fds[0], &client);
        } else if (kind == HANDOVER_ADOPT && len == sizeof(data.listeners) && !w->stopping) {
            adopt_listeners(w, &data.listeners, fds, nfds);
        } else if (kind == HANDOVER_RELEASE && len == sizeof(data.listeners)) {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            for (ListenerSet *set : front_listeners(w))
                if (set != NULL)
                    listener_set_release(set, (int)data.listeners.slot);
            log_debug("worker %d: worker %u serves again: its sockets are its own", w->id, data.listeners.slot);
        } else {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
        }
    }
    event_active(w->channel_event, EV_READ, 1);  // more may wait: next turn
}

// SIGQUIT (Ctrl-\ in a terminal reaches every worker too): stop at once, without the core dump
// that is its default. What is in flight is answered unavailable as the worker is freed.
static void on_quit_signal(evutil_socket_t, short, void *arg)
{
    Worker *w = (Worker *)arg;
    log_debug("worker %d: SIGQUIT, exiting at once", w->id);
    w->stopping = true;
    event_base_loopbreak(w->base);
}

// A reload's new worker shares its sockets with the worker it replaces, which serves on: it takes
// no connection before its first attempt to reach Redis has ended, so that a new generation whose
// Redis cannot be reached (a connect that hangs) answers nobody 503 while the old one could serve.
static void on_hold_timer(evutil_socket_t, short, void *arg)
{
    Worker *w = (Worker *)arg;
    if (!w->stats->redis_tried) {
        struct timeval tv = {0, 10 * 1000};
        evtimer_add(w->hold_timer, &tv);
        return;
    }
    w->held = false;
    w->stats->accepting = !w->stopping;
    if (w->accepting && !w->stopping)
        set_fronts_accepting(w, true);
}

// The Redis connection proved out of step: values read through it may sit under the wrong keys.
static void forget_cache(void *arg)
{
    Worker *w = (Worker *)arg;
    size_t n = cache_count(w->lookup.cache);
    cache_clear(w->lookup.cache);
    w->lookup.distrusted_us = monotonic_us();  // and no fetch sent before is joined or cached
    log_warn("worker %d: dropped all %zu cached entries: a connection to Redis was out of step", w->id, n);
}

// Tracking's word on the one Redis: nothing cached or fetched before now is trusted (coherence.h).
static void distrust_cache(void *arg)
{
    Worker *w = (Worker *)arg;
    w->lookup.distrusted_us = monotonic_us();
}

static void set_caching(void *arg, bool caching, bool tracked)
{
    Worker *w = (Worker *)arg;
    w->lookup.caching = caching;
    w->stats->tracking = tracked;
    if (caching && !tracked)  // refused for good: no word of a key's creation will come
        w->lookup.cache_not_found = w->config->cache_not_found == SWITCH_ON;
}

static void tracking_unsupported(void *arg)
{
    Worker *w = (Worker *)arg;
    w->lookup.cache_not_found = w->config->cache_not_found == SWITCH_ON;
}

static void invalidate_key(void *arg, const char *key, size_t len)
{
    lookup_invalidate(&((Worker *)arg)->lookup, key, len);
}

static void on_redis_ready(void *arg)
{
    Worker *w = (Worker *)arg;
    if (w->tracking != NULL)
        tracking_data_ready(w->tracking);
}

static void on_redis_lost(void *arg)
{
    Worker *w = (Worker *)arg;
    if (w->tracking != NULL)
        tracking_data_lost(w->tracking);
}

// The clients together hold more than max_client_memory: close the one holding the most until
// they fit (Redis's maxmemory-clients). Back under it, the RESP clients held back go on. From its
// own event, never from inside a front's work.
static void on_evict_event(evutil_socket_t, short, void *arg)
{
    Worker *w = (Worker *)arg;
    bool evicted = false;
    while (w->client_memory.over) {
        void *resp_client = NULL, *http_client = NULL;
        size_t resp_most = w->resp != NULL ? resp_front_most_memory(w->resp, &resp_client) : 0;
        size_t http_most = http_front_most_memory(w->http, &http_client);
        if (resp_client == NULL && http_client == NULL)
            break;
        if (resp_client != NULL && resp_most >= http_most)
            resp_front_evict(w->resp, resp_client, EVICT_MEMORY);
        else
            http_front_evict(w->http, http_client);
        evicted = true;
    }
    if (evicted)
        malloc_trim(0);  // what the evicted held goes back to the system, not only to malloc
    if (!w->client_memory.over && w->resp != NULL)
        resp_front_resume(w->resp);
}

static void schedule_eviction(void *arg)
{
    Worker *w = (Worker *)arg;
    if (w->evict_event != NULL)
        event_active(w->evict_event, EV_TIMEOUT, 1);
}

static void worker_free(Worker *w)
{
    w->stopping = true;
    // The backend first: it answers every fetch still in flight while their HTTP requests are
    // alive. evhttp_free would free those requests under our feet.
    backend_destroy(w->lookup.backend);
    tracking_destroy(w->tracking);
    cluster_destroy(w->lookup.cluster);
    http_front_destroy(w->http);
    resp_front_destroy(w->resp);
    admin_front_destroy(w->admin);
    access_log_close(w->access_log);  // after the fronts: their last answers are logged
    cache_destroy(w->lookup.cache);
    fetch_table_destroy(w->lookup.flights);
    tls_context_free(w->env.redis_tls);  // after every connection that used it
    event *events[] = {w->expire_timer, w->stop_timer, w->sigterm_event, w->sigint_event, w->sigquit_event,
                       w->sigusr1_event, w->accept_retry_timer, w->channel_event, w->hold_timer, w->evict_event};
    for (event *e : events)
        if (e != NULL)
            event_free(e);
    free(w->key_buf);
    for (int i = 0; i < w->handover_target_count; i++)
        close(w->handover_targets[i]);
    if (w->channel >= 0)
        close(w->channel);
    if (w->base)
        event_base_free(w->base);
}

// The cache, the fetch table and what the configuration says of them.
static bool init_cache(Worker *w, const WorkerSetup *setup, uint64_t seed)
{
    const Config *config = w->config;
    w->lookup.config = config;
    w->lookup.stats = w->stats;
    w->lookup.id = w->id;
    w->key_buf = (char *)malloc((size_t)config->max_key_size);
    w->lookup.cache = cache_create((size_t)config->capacity, (uint64_t)config->ttl_ms, seed, w->stats);
    w->lookup.flights = fetch_table_create();
    w->evict_event = event_new(w->base, -1, 0, on_evict_event, w);
    if (w->evict_event == NULL || w->key_buf == NULL || w->lookup.cache == NULL || w->lookup.flights == NULL)
        return false;
    cache_set_grace(w->lookup.cache, (uint64_t)config->stale_if_error_ms);
    cache_keep_digests(w->lookup.cache, config->http_etag != 0, setup->digest_key);  // each value's ETag, made once
    cache_set_max_bytes(w->lookup.cache, (size_t)config->max_memory);
    w->lookup.caching = true;  // with tracking: only once it is established
    w->lookup.cache_not_found = config_caches_not_found(config);
    return true;
}

// One Redis (a connection, and its tracking) or a cluster (connections per primary, each with
// its own tracking: cluster.h).
static bool init_redis(Worker *w, const WorkerSetup *setup, uint64_t seed)
{
    if (setup->seed_count > 0) {
        ClusterOwner owner = {forget_cache, invalidate_key, tracking_unsupported, w};
        w->lookup.cluster = cluster_create(&w->env, &owner, setup->seeds, setup->seed_count, seed * 31 + (uint64_t)w->id);
        return w->lookup.cluster != NULL;
    }
    BackendHooks hooks = {};
    hooks.on_untrusted = forget_cache;
    hooks.on_ready = on_redis_ready;
    hooks.on_lost = on_redis_lost;
    hooks.arg = w;
    hooks.tls = w->env.redis_tls;
    hooks.failure = w->env.redis_failure;
    hooks.failure_len = w->env.redis_failure_len;
    w->lookup.backend = backend_create(w->base, w->config, &setup->redis, w->stats, seed * 31 + (uint64_t)w->id, &hooks);
    if (w->lookup.backend == NULL)
        return false;
    if (w->config->invalidation != INVALIDATION_TRACKING)
        return true;
    TrackingOwner owner = {w->lookup.backend, distrust_cache, set_caching, invalidate_key, w, NULL};
    w->tracking = tracking_create(&w->env, &setup->redis, &owner, seed * 37 + (uint64_t)w->id);
    return w->tracking != NULL;
}

// SIGUSR1, forwarded by the master (`redis-proxy -s reopen`, logrotate): the access log's file
// is opened again by its path, so that a rotated file is let go.
static void on_reopen_signal(evutil_socket_t, short, void *arg)
{
    Worker *w = (Worker *)arg;
    if (w->access_log != NULL)
        access_log_reopen(w->access_log);
}

// The timers and signals of the loop, added.
static bool init_events(Worker *w)
{
    w->expire_timer = event_new(w->base, -1, EV_PERSIST, on_expire_timer, w);
    w->stop_timer = evtimer_new(w->base, on_stop_timer, w);
    w->accept_retry_timer = evtimer_new(w->base, on_accept_retry_timer, w);
    w->hold_timer = evtimer_new(w->base, on_hold_timer, w);
    w->sigterm_event = evsignal_new(w->base, SIGTERM, on_stop_signal, w);
    w->sigint_event = evsignal_new(w->base, SIGINT, on_stop_signal, w);
    w->sigquit_event = evsignal_new(w->base, SIGQUIT, on_quit_signal, w);
    w->sigusr1_event = evsignal_new(w->base, SIGUSR1, on_reopen_signal, w);
    if (w->channel >= 0 && (w->channel_event = event_new(w->base, w->channel, EV_READ | EV_PERSIST, on_channel, w)) == NULL)
        return false;
    if (!w->expire_timer || !w->stop_timer || !w->accept_retry_timer || !w->hold_timer || !w->sigterm_event ||
        !w->sigint_event || !w->sigquit_event || !w->sigusr1_event)
        return false;
    struct timeval tick = timeval_of_ms(EXPIRE_INTERVAL_MS);
    event_add(w->expire_timer, &tick);
    event_add(w->sigterm_event, NULL);
    event_add(w->sigint_event, NULL);
    event_add(w->sigquit_event, NULL);
    event_add(w->sigusr1_event, NULL);
    if (w->channel_event != NULL)
        event_add(w->channel_event, NULL);
    return true;
}

// Everything the worker runs with, as nginx's ngx_worker_process_init: false (logged) if any
// part cannot be had.
static bool worker_init(Worker *w, const Config *config, const WorkerSetup *setup)
{
    w->channel = setup->channel;
    w->id = setup->id;
    w->worker_count = setup->worker_count;
    w->config = config;
    w->stats = setup->stats ? setup->stats : &w->own_stats;
    w->scoreboard = setup->scoreboard;
    w->accepting = true;
    w->started_ms = monotonic_ms();
    w->client_limit = (config->max_clients + setup->worker_count - 1) / setup->worker_count;
    w->client_memory = {0, (size_t)config->max_client_memory, &w->stats->client_memory, schedule_eviction, w, false, 0};
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint64_t)monotonic_ms() ^ ((uint64_t)getpid() << 32);
    if ((w->base = event_base_new()) == NULL || !init_cache(w, setup, seed) || !init_events(w)) {
        log_error("worker %d: out of memory at start", w->id);
        return false;
    }
    if (strcmp(config->log_access, "off") != 0) {
        char err[400];
        w->access_log = access_log_open(w->base, config->log_access, w->stats, err, sizeof(err));
        if (w->access_log == NULL) {
            log_error("worker %d: access log: %s", w->id, err);
            return false;
        }
    }
    w->env = {w->base, config, w->stats, w->id, &w->stopping, NULL, setup->redis_failure,
              setup->redis_failure != NULL ? setup->redis_failure_len : 0};
    if (config->redis_tls) {
        char err[400];
        TlsClientFiles files = config_redis_tls(config);
        if ((w->env.redis_tls = tls_client_context(&files, err, sizeof(err))) == NULL) {
            log_error("worker %d: %s", w->id, err);
            return false;
        }
    }
    if (!init_redis(w, setup, seed)) {
        log_error("worker %d: out of memory at start", w->id);
        return false;
    }
    w->front_env = {w->base, config, w->stats, w->id, w->worker_count, w->started_ms, w->scoreboard,
                    setup->client_ids != NULL ? setup->client_ids : &w->own_client_ids, &w->lookup,
                    &w->client_memory, w->key_buf, w->access_log, setup->tls_server, client_opened, client_closed, pause_accepting, totals, w};
    if ((w->http = http_front_create(&w->front_env, &setup->http)) == NULL) {
        log_error("worker %d: cannot set up the HTTP front", w->id);
        return false;
    }
    if (setup->resp.count > 0 && (w->resp = resp_front_create(&w->front_env, &setup->resp)) == NULL) {
        log_error("worker %d: cannot set up the RESP front", w->id);
        return false;
    }
    if (setup->admin.count > 0 && (w->admin = admin_front_create(&w->front_env, &setup->admin)) == NULL) {
        log_error("worker %d: cannot set up the admin endpoint", w->id);
        return false;
    }
    return true;
}

// The loop, as nginx's ngx_worker_process_cycle: signals unblocked, accepting (or held until the
// first attempt to reach Redis has ended, for a reload's new worker), until a stop ends it.
static void worker_cycle(Worker *w, bool hold_until_redis_tried)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (hold_until_redis_tried) {
        w->held = true;
        http_front_set_accepting(w->http, false);
        if (w->resp != NULL)
            resp_front_set_accepting(w->resp, false);
        on_hold_timer(-1, 0, w);
    } else {
        w->stats->accepting = 1;
    }
    log_info("worker %d ready (pid %d)", w->id, (int)getpid());
    event_base_dispatch(w->base);
    log_debug("worker %d: exiting", w->id);
}

int worker_run(const Config *config, const WorkerSetup *setup)
{
    // Die with the master: a worker never outlives it (e.g. master SIGKILLed).
    pid_t master = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master)
        return 1;
    // The master blocks signals to handle them synchronously; a worker uses libevent's handlers.
    // They stay blocked (inherited from the master) until those handlers exist: a SIGTERM that
    // comes meanwhile waits, and is then a graceful stop rather than the default sudden death.
    signal(SIGHUP, SIG_IGN);  // reload is the master's business
    signal(SIGPIPE, SIG_IGN);
    log_set_level((int)config->log_level);
    if (setup->log_shared != NULL)
        log_share(setup->log_shared);
    Worker w;
    memset(&w, 0, sizeof(w));
    bool ready = worker_init(&w, config, setup);
    if (ready)
        worker_cycle(&w, setup->hold_until_redis_tried);
    worker_free(&w);
    return ready ? 0 : 1;
}
