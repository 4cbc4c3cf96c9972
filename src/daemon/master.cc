#include "master.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "backend.h"
#include "clock.h"
#include "config.h"
#include "handover.h"
#include "listen_group.h"
#include "log.h"
#include "scoreboard.h"
#include "service_notify.h"
#include "worker.h"

static const uint64_t FAST_DEATH_MS = 1000;       // a worker that dies sooner counts as crashing
static const uint64_t RESPAWN_MAX_DELAY_MS = 10000;
static const uint64_t READY_POLL_MS = 10;      // how often the master looks whether it is ready
static const uint64_t STATUS_EVERY_MS = 5000;  // how often it refreshes systemd's STATUS line
static const uint64_t STOP_KILL_GRACE_MS = 500;  // past shutdown_timeout: the workers' own bound first

struct WorkerSlot {
    pid_t pid;  // 0 when not running
    int channel;  // the master's end of the worker's channel (handover.h); -1 when not running
    WorkerRecord *record;  // its numbers in the scoreboard (reused by another worker once it died)
    uint64_t started_ms;
    int fast_deaths;  // consecutive deaths within FAST_DEATH_MS of starting
    uint64_t respawn_at_ms;
};

// The three addresses every worker listens on.
enum ListenKind { LISTEN_HTTP, LISTEN_RESP, LISTEN_ADMIN, LISTEN_KINDS };
static const char *const LISTEN_NAMES[LISTEN_KINDS] = {"HTTP", "RESP", "admin"};

static const char *listen_address(const Config *c, int kind)
{
    return kind == LISTEN_HTTP ? c->listen : kind == LISTEN_RESP ? c->resp_listen : c->admin_listen;
}

struct Master {
    const Config *config;
    const ConfigSource *source;  // where a reload reads the configuration again
    Config *reloaded;            // the configuration of the last reload (owned), or NULL
    WorkerSetup setup;  // shared part; id and fd filled per worker
    WorkerSlot *slots;
    int count;
    ListenGroup *listening[LISTEN_KINDS];  // NULL when that front is off
    // Addresses a reload dropped: the previous generation still serves them; closed once it has
    // gone (reset connections queued there after that are the price of removing an address).
    ListenGroup *closing[LISTEN_KINDS];
    Scoreboard *scoreboard;
    bool ready;  // READY=1 sent for the current generation
    // A reload's previous generation: told to stop once the new one serves, killed at the deadline
    // (also the new generation of a reload that was abandoned).
    pid_t *retiring;
    int retiring_count;
    bool retire_signalled;
    uint64_t retire_deadline_ms;
    // A reload whose new generation does not serve yet: what it replaced, put back if it never
    // does within the new shutdown_timeout (the reload is then abandoned).
    struct {
        bool starting;
        uint64_t deadline_ms;
        WorkerSlot *slots;
        int count;
        const Config *config;
        Config *reloaded;
        WorkerSetup setup;
        ListenGroup *listening[LISTEN_KINDS];
        int sockets[LISTEN_KINDS];  // each group's socket count before (a grown one shrinks back)
    } previous;
    bool reload_pending;  // a SIGHUP came while a reload was under way: the file is read again after it
    // Which slots new connections are steered to: those whose worker serves (steer_to_serving).
    bool steered_serving[CONFIG_MAX_WORKERS];
    bool steering_known;  // steered_serving is what the groups were last steered to
    uint64_t status_at_ms;
    char status[160];  // the STATUS line last sent
    sigset_t handled;  // signals the master waits for with sigtimedwait
};

static WorkerSlot *new_slots(int count)
{
    WorkerSlot *slots = (WorkerSlot *)calloc((size_t)count, sizeof(WorkerSlot));
    for (int i = 0; slots != NULL && i < count; i++)
        slots[i].channel = -1;
    return slots;
}

static void close_channel(WorkerSlot *s)
{
    if (s->channel >= 0)
        close(s->channel);
    s->channel = -1;
}

static void close_channels(WorkerSlot *slots, int count)
{
    for (int i = 0; slots != NULL && i < count; i++)
        close_channel(&slots[i]);
}

static bool open_listeners(Master *m)
{
    char err[400];
    for (int k = 0; k < LISTEN_KINDS; k++) {
        const char *text = listen_address(m->config, k);
        if (text[0] == '\0')
            continue;
        m->listening[k] = listen_group_open(LISTEN_NAMES[k], text, m->count, err, sizeof(err));
        if (m->listening[k] == NULL) {
            log_error("%s", err);
            return false;
        }
        char shown[300];
        address_format((struct sockaddr *)&m->listening[k]->bound, shown, sizeof(shown));
        log_info("listening for %s on %s (%d socket(s), SO_REUSEPORT)", LISTEN_NAMES[k], shown, m->count);
    }
    return true;
}

static void close_groups(ListenGroup **groups)
{
    for (int k = 0; k < LISTEN_KINDS; k++) {
        listen_group_close(groups[k]);
        groups[k] = NULL;
    }
}

// Each client connection is a descriptor in some worker: make room for max_clients of them, and
// for each worker's admin connections.
static void raise_fd_limit(const Config *c, int workers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t per_worker = (rlim_t)((c->max_clients + workers - 1) / workers);
    if (c->admin_listen[0] != '\0')
        per_worker += (rlim_t)c->admin_max_clients;
    rlim_t want = per_worker + 64 + (rlim_t)workers;  // listeners, Redis, logs, slack
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want <= rl.rlim_max ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        log_warn("open files limit is %llu but max_clients needs about %llu per worker: raise "
                 "LimitNOFILE (ulimit -n), or connections past it will wait",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

static void spawn_worker(Master *m, int i)
{
    WorkerSlot *s = &m->slots[i];
    WorkerRecord *record = scoreboard_claim(m->scoreboard, i);
    if (record == NULL)
        log_error("worker %d: no free scoreboard record; its numbers will be missing", i);
    int channel[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, channel) != 0)
        log_warn("worker %d: no channel (%s); a reload will close its RESP connections", i, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot fork worker %d: %s; retrying in 1s", i, strerror(errno));
        s->respawn_at_ms = monotonic_ms() + 1000;
        if (record != NULL)
            scoreboard_retire(m->scoreboard, record);
        if (channel[0] >= 0) {
            close(channel[0]);
            close(channel[1]);
        }
        return;
    }
    if (pid == 0) {
        // Only its own end of its own channel: the master's ends are the master's.
        close_channels(m->slots, m->count);
        if (m->previous.starting)
            close_channels(m->previous.slots, m->previous.count);
        if (channel[0] >= 0)
            close(channel[0]);
        // The child keeps only the sockets it serves: a socket another process still holds
        // would outlive the master's close (a dropped address, a dead sibling's slot).
        static int mine[LISTEN_KINDS][CONFIG_MAX_WORKERS];
        ListenFds fds[LISTEN_KINDS];
        for (int k = 0; k < LISTEN_KINDS; k++) {
            ListenGroup *g = m->listening[k];
            fds[k].fd = mine[k];
            fds[k].count = g ? listen_group_sockets_of(g, i, m->count, mine[k]) : 0;
            for (int j = 0; g != NULL && j < g->count; j++)
                if (j % m->count != i)
                    close(g->fds[j]);
            if (m->closing[k] != NULL)
                for (int j = 0; j < m->closing[k]->count; j++)
                    close(m->closing[k]->fds[j]);
        }
        WorkerSetup setup = m->setup;
        setup.id = i;
        setup.http = fds[LISTEN_HTTP];
        setup.resp = fds[LISTEN_RESP];
        setup.admin = fds[LISTEN_ADMIN];
        setup.stats = record ? &record->stats : NULL;
        setup.scoreboard = m->scoreboard;
        setup.channel = channel[1];
        setup.hold_until_redis_tried = m->previous.starting;
        _exit(worker_run(m->config, &setup));
    }
    if (channel[1] >= 0)
        close(channel[1]);
    close_channel(s);
    s->channel = channel[0];
    if (record != NULL)
        record->pid = pid;
    s->pid = pid;
    s->record = record;
    s->started_ms = monotonic_ms();
    s->respawn_at_ms = 0;
}

// The previous generation has gone: nobody serves the addresses the reload dropped any more.
static void close_dropped_addresses(Master *m)
{
    for (int k = 0; k < LISTEN_KINDS; k++)
        if (m->closing[k] != NULL)
            log_info("stopped listening for %s on %s", LISTEN_NAMES[k], m->closing[k]->text);
    close_groups(m->closing);
}

static void describe_exit(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(out, len, "stopped with status %d", status);
}

// Collects exited workers; when not stopping, schedules their replacement (at once after a long
// life, with growing delays when a worker keeps dying right after start).
static int reap_workers(Master *m, bool stopping)
{
    int status, reaped = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        WorkerRecord *record = scoreboard_find(m->scoreboard, pid);
        if (record != NULL)
            scoreboard_retire(m->scoreboard, record);
        bool was_retiring = false;
        for (int i = 0; i < m->retiring_count; i++)
            if (m->retiring[i] == pid) {
                m->retiring[i] = m->retiring[--m->retiring_count];
                was_retiring = true;
                reaped++;
                log_debug("previous-generation worker (pid %d) has exited", (int)pid);
                // (While a reload is still starting, its dropped addresses may come back.)
                if (m->retiring_count == 0 && !m->previous.starting)
                    close_dropped_addresses(m);
                break;
            }
        if (was_retiring)
            continue;
        for (int i = 0; i < m->count; i++) {
            WorkerSlot *s = &m->slots[i];
            if (s->pid != pid)
                continue;
            reaped++;
            s->pid = 0;
            close_channel(s);
            char how[128];
            describe_exit(status, how, sizeof(how));
            if (stopping) {
                log_debug("worker %d (pid %d) %s", i, (int)pid, how);
                break;
            }
            m->scoreboard->worker_restarts++;
            uint64_t now = monotonic_ms();
            s->fast_deaths = now - s->started_ms < FAST_DEATH_MS ? s->fast_deaths + 1 : 0;
            uint64_t delay = s->fast_deaths > 0 ? backoff_ms(100, RESPAWN_MAX_DELAY_MS, s->fast_deaths - 1) : 0;
            s->respawn_at_ms = now + delay;
            log_error("worker %d (pid %d) %s; respawning%s%llu ms", i, (int)pid, how,
                      delay ? " in " : " now, after ", (unsigned long long)delay);
            break;
        }
    }
    return reaped;
}

static int running_workers(const Master *m)
{
    int n = m->retiring_count;
    for (int i = 0; i < m->count; i++)
        n += m->slots[i].pid != 0;
    return n;
}

static void signal_retiring(Master *m, int sig)
{
    for (int i = 0; i < m->retiring_count; i++)
        kill(m->retiring[i], sig);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGHUP: return "SIGHUP";
    default: return "signal";
    }
}

// Graceful (SIGTERM to each worker: stop accepting, answer what is in flight, exit, all within
// shutdown_timeout, after which they are killed) or immediate (SIGKILL at once).
static void stop_workers(Master *m, bool graceful)
{
    for (int i = 0; i < m->count; i++)
        if (m->slots[i].pid != 0)
            kill(m->slots[i].pid, graceful ? SIGTERM : SIGKILL);
    signal_retiring(m, graceful ? SIGTERM : SIGKILL);
    uint64_t deadline = monotonic_ms() + (graceful ? (uint64_t)m->config->shutdown_timeout_ms + STOP_KILL_GRACE_MS : 0);
    while (running_workers(m) > 0) {
        uint64_t now = monotonic_ms();
        if (now >= deadline) {
            for (int i = 0; i < m->count; i++)
                if (m->slots[i].pid != 0) {
                    if (graceful)
                        log_warn("worker %d (pid %d) did not stop within shutdown_timeout; killing it", i,
                                 (int)m->slots[i].pid);
                    kill(m->slots[i].pid, SIGKILL);
                }
            signal_retiring(m, SIGKILL);
            deadline = now + 1000;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        siginfo_t info;
        int sig = sigtimedwait(&m->handled, &info, &ts);  // wakes on SIGCHLD
        if (graceful && (sig == SIGINT || sig == SIGQUIT)) {
            // Asked again while stopping gracefully (Ctrl-C twice, or SIGQUIT after SIGTERM):
            // whoever asks will not wait out shutdown_timeout, so stop at once, as nginx does. A
            // repeated SIGTERM changes nothing (a service manager escalates with SIGKILL itself).
            log_info("%s received while stopping gracefully: stopping %d worker(s) at once", signal_name(sig),
                     running_workers(m));
            graceful = false;
            deadline = 0;
        }
        reap_workers(m, true);
    }
}

// Ready: every worker of the current generation is accepting and has made its first attempt to
// reach Redis (whatever its outcome: a proxy in front of a Redis that is down still serves what
// it can, and says so).
static bool generation_ready(Master *m)
{
    for (int i = 0; i < m->count; i++) {
        WorkerRecord *r = m->slots[i].pid > 0 ? scoreboard_find(m->scoreboard, m->slots[i].pid) : NULL;
        if (r == NULL || !r->stats.accepting || !r->stats.redis_tried)
            return false;
    }
    return true;
}

static void describe_status(const ScoreboardTotals *t, char *out, size_t len)
{
    uint64_t requests = 0;
    for (int f = 0; f < FRONT_COUNT; f++)
        for (int r = 0; r < RESULT_COUNT; r++)
            requests += t->stats.requests[f][r];
    snprintf(out, len, "%d worker(s), %llu connected to Redis, %llu requests served", t->workers,
             (unsigned long long)t->stats.redis_connected, (unsigned long long)requests);
}

// The previous generation's workers are told to retire through their channels, with the new
// workers' channels to hand their RESP connections to (handover.h); one without a channel, or
// whose channel fails, gets SIGTERM and closes them as a stop does. Their channels are closed
// here: nothing more is said to them.
static void retire_previous(Master *m)
{
    int targets[CONFIG_MAX_WORKERS], n = 0;
    for (int i = 0; i < m->count; i++)
        if (m->slots[i].pid != 0 && m->slots[i].channel >= 0)
            targets[n++] = m->slots[i].channel;
    for (int i = 0; i < m->previous.count; i++) {
        WorkerSlot *s = &m->previous.slots[i];
        if (s->pid == 0)
            continue;
        bool told = s->channel >= 0 && n > 0;
        for (int at = 0; told && at < n; at += HANDOVER_MAX_FDS)
            told = handover_send(s->channel, HANDOVER_TARGETS, targets + at,
                                 n - at < HANDOVER_MAX_FDS ? n - at : HANDOVER_MAX_FDS, NULL, 0);
        told = told && handover_send(s->channel, HANDOVER_RETIRE, NULL, 0, NULL, 0);
        if (!told)
            kill(s->pid, SIGTERM);
    }
    close_channels(m->previous.slots, m->previous.count);
}

// Sends READY=1 once the workers are ready, then keeps the STATUS line current. Returns how long
// the master may sleep before it should look again.
static uint64_t report_to_service_manager(Master *m, uint64_t now)
{
    if (m->ready && now < m->status_at_ms + STATUS_EVERY_MS)
        return m->status_at_ms + STATUS_EVERY_MS - now;
    if (!m->ready && !generation_ready(m))
        return READY_POLL_MS;
    ScoreboardTotals t;
    scoreboard_totals(m->scoreboard, &t);
    char status[sizeof(m->status)];
    describe_status(&t, status, sizeof(status));
    if (!m->ready) {
        m->ready = true;
        if (m->previous.starting) {
            // The new generation serves: the old one stops accepting, answers what it has in
            // flight and exits, on the same sockets, so no connection waits on a dead worker.
            m->previous.starting = false;
            retire_previous(m);
            free(m->previous.slots);
            if (m->previous.reloaded != m->reloaded)
                free(m->previous.reloaded);
            m->scoreboard->generation++;
            m->scoreboard->last_reload_ok = 1;
            log_info("reload: configuration generation %u serving; stopping %d previous worker(s)",
                     m->scoreboard->generation, m->retiring_count);
            // New connections now go to one socket per new worker; with fewer workers than
            // before, the surplus sockets get none and their queues are emptied by the workers
            // that share them in.
            m->steering_known = false;  // steer_to_serving applies who serves of the new ones next
            for (int k = 0; k < LISTEN_KINDS; k++)
                if (m->listening[k] != NULL && !listen_group_steer(m->listening[k], m->count))
                    log_warn("%s: cannot steer new connections (%s); %d socket(s) shared by %d worker(s) "
                             "may load them unevenly", LISTEN_NAMES[k], strerror(errno), m->listening[k]->count,
                             m->count);
            m->retire_signalled = true;
            if (m->retiring_count == 0)  // every previous worker died while this one started
                close_dropped_addresses(m);
            m->retire_deadline_ms = now + (uint64_t)m->config->shutdown_timeout_ms + STOP_KILL_GRACE_MS;
        } else {
            log_info("ready: %s", status);
        }
        notify_ready(status);
    } else if (strcmp(status, m->status) != 0) {
        notify_status(status);
    }
    strcpy(m->status, status);
    m->status_at_ms = now;
    return STATUS_EVERY_MS;
}

// Where the workers find Redis: its address, or a cluster's seed nodes. Host names are resolved
// here, once, so that no worker ever blocks on DNS.
static bool resolve_redis(const Config *c, WorkerSetup *out, char *err, size_t errlen)
{
    out->seed_count = 0;
    if (c->redis_cluster[0] == '\0')
        return backend_target_resolve(c->redis_address, &out->redis, err, errlen);
    char seeds[CONFIG_MAX_SEEDS][CONFIG_SEED_SIZE];
    int n = config_split_seeds(c->redis_cluster, seeds, err, errlen);
    for (int i = 0; i < n; i++)
        if (!backend_target_resolve(seeds[i], &out->seeds[i], err, errlen))
            return false;
    out->seed_count = n;
    // The first seed stands for the cluster in what names one Redis (logs, the admin endpoint).
    out->redis = out->seeds[0];
    return n > 0;
}

// The listening groups a new configuration needs: kept where the address stays (grown when
// there are more workers: the new sockets get no connections before the new generation serves
// them), opened where it is new. On failure nothing has changed and err says why.
static bool prepare_listeners(Master *m, const Config *next, int workers, ListenGroup **out, char *err, size_t errlen)
{
    int had[LISTEN_KINDS];
    for (int k = 0; k < LISTEN_KINDS; k++) {
        out[k] = NULL;
        had[k] = m->listening[k] ? m->listening[k]->count : 0;
    }
    bool ok = true;
    for (int k = 0; k < LISTEN_KINDS && ok; k++) {
        const char *text = listen_address(next, k);
        ListenGroup *cur = m->listening[k];
        if (text[0] == '\0')
            continue;
        if (cur != NULL && listen_group_same_address(cur, text)) {
            out[k] = cur;
            ok = listen_group_grow(cur, workers, err, errlen);
        } else {
            out[k] = listen_group_open(LISTEN_NAMES[k], text, workers, err, errlen);
            ok = out[k] != NULL;
        }
    }
    if (ok)
        return true;
    for (int k = 0; k < LISTEN_KINDS; k++) {
        if (out[k] != NULL && out[k] != m->listening[k])
            listen_group_close(out[k]);
        else if (out[k] != NULL)
            listen_group_shrink(out[k], had[k]);
    }
    return false;
}

// SIGHUP: read the configuration again (file and -o overrides). Invalid: say why, keep serving
// on the old one. Valid: start a new generation of workers on it; the old generation is told to
// stop once the new one serves (report_to_service_manager). Every setting may change: an
// address that stays keeps its sockets (and the connections queued on them), a new one is bound
// before the new generation starts, a dropped one is closed once the old generation has gone.
// A reload starts with empty caches.
static void reload(Master *m)
{
    if (m->previous.starting || m->retiring_count > 0) {
        // The last SIGHUP wins: the file is read as it is then, once this one has ended.
        log_info("reload: one is still under way; the file will be read again once it has ended");
        m->reload_pending = true;
        return;
    }
    m->scoreboard->reloads++;
    notify_reloading();
    Config *next = (Config *)malloc(sizeof(Config));
    char err[1024];
    const char *refused = NULL;
    WorkerSetup targets;
    pid_t *retiring;
    WorkerSlot *slots = NULL;
    ListenGroup *groups[LISTEN_KINDS];
    int workers = 0;
    if (next == NULL) {
        refused = "out of memory";
    } else if (!config_load(next, m->source, err, sizeof(err))) {
        refused = err;
    } else if (!resolve_redis(next, &targets, err, sizeof(err))) {
        refused = err;
    }
    if (refused == NULL) {
        workers = config_worker_count(next);
        slots = new_slots(workers);
        if ((retiring = (pid_t *)realloc(m->retiring, (size_t)m->count * sizeof(pid_t))) != NULL)
            m->retiring = retiring;
        if (slots == NULL || retiring == NULL)
            refused = "out of memory";
        else if (!prepare_listeners(m, next, workers, groups, err, sizeof(err)))
            refused = err;
    }
    if (refused != NULL) {
        m->scoreboard->last_reload_ok = 0;
        m->scoreboard->reload_failures++;
        log_error("reload refused: %s; keeping the running configuration", refused);
        free(next);
        free(slots);
        notify_ready(m->status);  // ends the reload, as systemd expects
        return;
    }
    for (int i = 0; i < m->count; i++)
        if (m->slots[i].pid != 0)
            m->retiring[m->retiring_count++] = m->slots[i].pid;
    m->retire_signalled = false;
    m->previous.starting = true;
    m->previous.deadline_ms = monotonic_ms() + (uint64_t)next->shutdown_timeout_ms;
    m->previous.slots = m->slots;
    m->previous.count = m->count;
    m->previous.config = m->config;
    m->previous.reloaded = m->reloaded;
    m->previous.setup = m->setup;
    for (int k = 0; k < LISTEN_KINDS; k++) {
        m->previous.listening[k] = m->listening[k];
        m->previous.sockets[k] = m->listening[k] ? m->listening[k]->count : 0;
    }
    for (int k = 0; k < LISTEN_KINDS; k++) {
        if (m->listening[k] != NULL && m->listening[k] != groups[k]) {
            log_info("reload: %s stops listening on %s once the previous workers have gone", LISTEN_NAMES[k],
                     m->listening[k]->text);
            m->closing[k] = m->listening[k];
        }
        if (groups[k] != NULL && groups[k] != m->listening[k])
            log_info("reload: listening for %s on %s", LISTEN_NAMES[k], groups[k]->text);
        m->listening[k] = groups[k];
    }
    m->slots = slots;
    m->count = workers;
    m->setup.worker_count = workers;
    m->reloaded = next;
    m->config = next;
    m->setup.redis = targets.redis;
    memcpy(m->setup.seeds, targets.seeds, sizeof(targets.seeds));
    m->setup.seed_count = targets.seed_count;
    log_set_level((int)next->log_level);
    raise_fd_limit(next, workers);
    log_info("reload: configuration generation %u read from %s; starting %d new worker(s)",
             m->scoreboard->generation + 1, m->source->path, m->count);
    for (int i = 0; i < m->count; i++)
        spawn_worker(m, i);
    m->ready = false;
}

// The new generation did not serve within its shutdown_timeout (its workers keep dying, or never
// reach Redis): it is stopped as a previous generation is, and the one before keeps serving, on
// the configuration, sockets and steering it had. The next SIGHUP is taken as usual.
static void abandon_reload(Master *m)
{
    m->scoreboard->reload_failures++;
    m->scoreboard->last_reload_ok = 0;
    int starting = 0;
    for (int i = 0; i < m->count; i++)
        starting += m->slots[i].pid != 0;
    log_error("reload abandoned: configuration generation %u did not serve within shutdown_timeout (%lldms); "
              "stopping its %d worker(s), the previous configuration keeps serving",
              m->scoreboard->generation + 1, (long long)m->config->shutdown_timeout_ms, starting);
    // The previous generation is the current one again: off the retiring list, back in its slots
    // (a slot whose worker died meanwhile is respawned at once).
    WorkerSlot *slots = m->previous.slots;
    for (int i = 0; i < m->previous.count; i++) {
        bool running = false;
        for (int j = 0; j < m->retiring_count && !running; j++)
            if (m->retiring[j] == slots[i].pid) {
                m->retiring[j] = m->retiring[--m->retiring_count];
                running = true;
            }
        if (!running) {
            slots[i].pid = 0;
            slots[i].respawn_at_ms = 0;
        }
    }
    pid_t *retiring = (pid_t *)realloc(m->retiring, (size_t)(m->retiring_count + m->count) * sizeof(pid_t));
    if (retiring != NULL)
        m->retiring = retiring;
    for (int i = 0; i < m->count; i++) {
        if (m->slots[i].pid == 0)
            continue;
        kill(m->slots[i].pid, SIGTERM);
        if (retiring != NULL)
            m->retiring[m->retiring_count++] = m->slots[i].pid;
    }
    m->retire_signalled = true;
    m->retire_deadline_ms = monotonic_ms() + (uint64_t)m->config->shutdown_timeout_ms + STOP_KILL_GRACE_MS;
    for (int k = 0; k < LISTEN_KINDS; k++) {
        ListenGroup *before = m->previous.listening[k];
        if (m->listening[k] != before)
            listen_group_close(m->listening[k]);  // opened for this reload
        else if (before != NULL)
            listen_group_shrink(before, m->previous.sockets[k]);  // grown for it: nothing steered there yet
        if (m->closing[k] == before)
            m->closing[k] = NULL;
        m->listening[k] = before;
    }
    close_channels(m->slots, m->count);
    free(m->slots);
    m->slots = slots;
    m->count = m->previous.count;
    free(m->reloaded);
    m->reloaded = m->previous.reloaded;
    m->config = m->previous.config;
    m->setup = m->previous.setup;
    log_set_level((int)m->config->log_level);
    m->previous.starting = false;
    m->steering_known = false;
    m->ready = true;
    notify_ready(m->status);  // ends the reload, as systemd expects
}

// Whether the slot's worker serves its sockets now: running, and past its start.
static bool slot_serving(const WorkerSlot *s)
{
    return s->pid != 0 && s->record != NULL && s->record->pid == s->pid && s->record->stats.accepting;
}

// With SO_REUSEPORT the kernel hashes each new connection to one slot's socket, also while that
// slot's worker is dead and waits out its respawn delay (up to 10s for one that keeps dying): new
// connections are steered to the slots whose worker serves. (The ones already queued on a dead
// worker's socket wait for its successor.) Returns whether a slot is still starting, for the
// caller to look again soon.
static bool steer_to_serving(Master *m)
{
    if (m->previous.starting)
        return false;  // the reload's new generation is steered to once it serves
    bool serving[CONFIG_MAX_WORKERS], starting = false, changed = !m->steering_known;
    for (int i = 0; i < m->count; i++) {
        serving[i] = slot_serving(&m->slots[i]);
        starting = starting || (m->slots[i].pid != 0 && !serving[i]);
        changed = changed || serving[i] != m->steered_serving[i];
    }
    if (!changed)
        return starting;
    for (int k = 0; k < LISTEN_KINDS; k++)
        if (m->listening[k] != NULL && !listen_group_steer_to(m->listening[k], serving))
            log_warn("%s: cannot steer new connections away from a dead worker's socket (%s)", LISTEN_NAMES[k],
                     strerror(errno));
    memcpy(m->steered_serving, serving, sizeof(serving));
    m->steering_known = true;
    return starting;
}

static void on_sigchld(int) {}  // never runs (blocked), but SIGCHLD must not be ignored

int master_run(const Config *config, const ConfigSource *source)
{
    Master m;
    memset(&m, 0, sizeof(m));
    m.config = config;
    m.source = source;
    m.count = config_worker_count(config);
    m.slots = new_slots(m.count);
    m.setup.worker_count = m.count;
    m.scoreboard = scoreboard_create(CONFIG_MAX_WORKERS);  // whatever a reload makes of workers
    if (m.slots == NULL || m.scoreboard == NULL) {
        log_error("cannot set up the scoreboard: %s", strerror(errno));
        return 1;
    }
    char err[400];
    if (!resolve_redis(config, &m.setup, err, sizeof(err))) {
        log_error("%s", err);
        return 1;
    }
    raise_fd_limit(config, m.count);
    if (!open_listeners(&m)) {
        close_groups(m.listening);
        free(m.slots);
        scoreboard_destroy(m.scoreboard);
        return 1;
    }

    // Signals are handled synchronously: blocked here, taken with sigtimedwait in the loop below.
    // Nothing runs in a signal handler.
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, on_sigchld);
    sigemptyset(&m.handled);
    int handled[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP};
    for (int sig : handled)
        sigaddset(&m.handled, sig);
    sigprocmask(SIG_BLOCK, &m.handled, NULL);

    log_info("redis-proxy starting %d worker(s); %s at %s", m.count,
             config->redis_cluster[0] ? "redis cluster" : "redis",
             config->redis_cluster[0] ? config->redis_cluster : config->redis_address);
    for (int i = 0; i < m.count; i++)
        spawn_worker(&m, i);

    for (;;) {
        uint64_t now = monotonic_ms(), next = now + report_to_service_manager(&m, now);
        for (int i = 0; i < m.count; i++) {
            WorkerSlot *s = &m.slots[i];
            if (s->pid == 0 && s->respawn_at_ms <= now)
                spawn_worker(&m, i);
            if (s->pid == 0 && s->respawn_at_ms < next)
                next = s->respawn_at_ms;
        }
        if (m.previous.starting) {
            if (now >= m.previous.deadline_ms)
                abandon_reload(&m);
            else if (m.previous.deadline_ms < next)
                next = m.previous.deadline_ms;
        }
        if (steer_to_serving(&m) && now + READY_POLL_MS < next)
            next = now + READY_POLL_MS;
        if (m.reload_pending && !m.previous.starting && m.retiring_count == 0) {
            m.reload_pending = false;
            log_info("reload: reading the file again for the SIGHUP that came during the last one");
            reload(&m);
            next = now + READY_POLL_MS;  // its new generation is looked at as one started by SIGHUP is
        }
        if (m.retiring_count > 0 && m.retire_signalled) {
            if (now >= m.retire_deadline_ms) {
                log_warn("%d previous-generation worker(s) did not stop within shutdown_timeout; killing them",
                         m.retiring_count);
                signal_retiring(&m, SIGKILL);
                m.retire_deadline_ms = now + 1000;
            }
            if (m.retire_deadline_ms < next)
                next = m.retire_deadline_ms;
        }
        uint64_t wait_ms = next > now ? next - now : 0;
        struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000};
        siginfo_t info;
        int sig = sigtimedwait(&m.handled, &info, &ts);
        if (sig == SIGCHLD) {
            reap_workers(&m, false);
        } else if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
            bool graceful = sig != SIGQUIT;
            notify_stopping();
            log_info("%s received: stopping %d worker(s) %s", signal_name(sig), running_workers(&m),
                     graceful ? "gracefully" : "at once");
            stop_workers(&m, graceful);
            close_groups(m.listening);
            close_groups(m.closing);
            close_channels(m.slots, m.count);
            free(m.slots);
            scoreboard_destroy(m.scoreboard);
            free(m.retiring);
            free(m.reloaded);
            if (m.previous.starting) {
                free(m.previous.slots);
                if (m.previous.reloaded != m.reloaded)
                    free(m.previous.reloaded);
            }
            log_info("stopped");
            return 0;
        } else if (sig == SIGHUP) {
            log_info("SIGHUP received: reloading the configuration");
            reload(&m);
        }
    }
}
