#include "master.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
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
#include "master_state.h"
#include "pid_file.h"
#include "tls.h"
#include "worker.h"

bool master_client_tls(const Config *c, SSL_CTX **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!config_listens_tls(c))
        return true;
    TlsServerFiles files = config_client_tls(c);
    *out = tls_server_context(&files, err, errlen);
    return *out != NULL;
}

WorkerSlot *master_new_slots(int count)
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

void master_close_channels(WorkerSlot *slots, int count)
{
    for (int i = 0; slots != NULL && i < count; i++)
        close_channel(&slots[i]);
}

static bool open_listeners(Master *m)
{
    char err[400];
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        bool tls;
        const char *text = listen_address(m->config, k, &tls);
        if (text[0] == '\0')
            continue;
        m->listening[k] = listen_group_open(listen_name(k), text, m->count, err, sizeof(err));
        if (m->listening[k] == NULL) {
            int why = errno;
            log_error("%s (change %s)", err, LISTEN_SETTINGS[listen_front(k)]);
            errno = why;
            return false;
        }
        char shown[300];
        address_format((struct sockaddr *)&m->listening[k]->bound, shown, sizeof(shown));
        log_info("listening for %s%s on %s (%d socket(s), SO_REUSEPORT)", listen_name(k), tls ? " over TLS" : "",
                 shown, m->count);
    }
    return true;
}

static void close_groups(ListenGroup **groups)
{
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        listen_group_close(groups[k]);
        groups[k] = NULL;
    }
}

// Each client connection is a descriptor in some worker: make room for max_clients of them, and
// for each worker's admin connections.
void master_raise_fd_limit(const Config *c, int workers)
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

void master_spawn_worker(Master *m, int i)
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
        master_close_channels(m->slots, m->count);
        if (m->previous.starting)
            master_close_channels(m->previous.slots, m->previous.count);
        if (channel[0] >= 0)
            close(channel[0]);
        // The child keeps only the sockets it serves: a socket another process still holds
        // would outlive the master's close (a dropped address, a dead sibling's slot).
        // Each front's sockets, its addresses' in turn, with whether each is TLS.
        static int mine[LISTEN_FRONTS][CONFIG_MAX_LISTEN * CONFIG_MAX_WORKERS];
        static bool tls[LISTEN_FRONTS][CONFIG_MAX_LISTEN * CONFIG_MAX_WORKERS];
        ListenFds fds[LISTEN_FRONTS] = {};
        for (int f = 0; f < LISTEN_FRONTS; f++) {
            fds[f].fd = mine[f];
            fds[f].tls = tls[f];
        }
        for (int k = 0; k < LISTEN_SLOTS; k++) {
            ListenGroup *g = m->listening[k];
            ListenFds *front = &fds[listen_front(k)];
            bool over_tls = false;
            listen_address(m->config, k, &over_tls);
            int n = g ? listen_group_sockets_of(g, i, m->count, mine[listen_front(k)] + front->count) : 0;
            for (int j = 0; j < n; j++)
                tls[listen_front(k)][front->count + j] = over_tls;
            front->count += n;
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
        setup.redis_failure = record ? record->redis_failure : NULL;
        setup.redis_failure_len = record ? sizeof(record->redis_failure) : 0;
        setup.scoreboard = m->scoreboard;
        setup.log_shared = &m->scoreboard->log;
        setup.client_ids = &m->scoreboard->client_ids;
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
    for (int k = 0; k < LISTEN_SLOTS; k++)
        if (m->closing[k] != NULL)
            log_info("stopped listening for %s on %s", m->closing[k]->what, m->closing[k]->text);
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

static void describe_status(const ScoreboardTotals *t, char *out, size_t len)
{
    uint64_t requests = 0;
    for (int f = 0; f < FRONT_COUNT; f++)
        for (int r = 0; r < RESULT_COUNT; r++)
            requests += t->stats.requests[f][r];
    snprintf(out, len, "%d worker(s), %llu connected to Redis, %llu requests served", t->workers,
             (unsigned long long)t->stats.redis_connected, (unsigned long long)requests);
}

// Sends READY=1 once the workers are ready, then keeps the STATUS line current. Returns how long
// the master may sleep before it should look again.
static uint64_t report_to_service_manager(Master *m, uint64_t now)
{
    if (m->ready && now < m->status_at_ms + STATUS_EVERY_MS)
        return m->status_at_ms + STATUS_EVERY_MS - now;
    if (!m->ready && !master_generation_ready(m))
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
            master_retire_previous(m);
            free(m->previous.slots);
            if (m->previous.reloaded != m->reloaded)
                free(m->previous.reloaded);
            if (m->previous.setup.tls_server != m->setup.tls_server)
                tls_context_free(m->previous.setup.tls_server);  // the old workers have their own copy
            m->scoreboard->generation++;
            m->scoreboard->last_reload_ok = 1;
            log_info("reload: configuration generation %u serving; stopping %d previous worker(s)",
                     m->scoreboard->generation, m->retiring_count);
            // New connections now go to one socket per new worker; with fewer workers than
            // before, the surplus sockets get none and their queues are emptied by the workers
            // that share them in.
            m->steering_known = false;  // steer_to_serving applies who serves of the new ones next
            for (int k = 0; k < LISTEN_SLOTS; k++)
                if (m->listening[k] != NULL && !listen_group_steer(m->listening[k], m->count))
                    log_warn("%s: cannot steer new connections (%s); %d socket(s) shared by %d worker(s) "
                             "may load them unevenly", listen_name(k), strerror(errno), m->listening[k]->count,
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

// Where the workers find Redis: its address, or a cluster's seed nodes. The address's host name
// is not resolved here: the workers look it up before each connect, without blocking
// (backend_resolve.cc), so that a Redis that moves is followed and a name server that does not
// answer holds nothing up.
bool master_resolve_redis(const Config *c, WorkerSetup *out, char *err, size_t errlen)
{
    out->seed_count = 0;
    if (c->redis_cluster[0] == '\0')
        return backend_target_resolve(c->redis_address, &out->redis, err, errlen);
    char seeds[CONFIG_MAX_SEEDS][CONFIG_SEED_SIZE];
    int n = config_split_seeds(c->redis_cluster, seeds, err, errlen);
    // A cluster's seeds are resolved once, here: its nodes come from its own map, by IP. A seed
    // by name stands for each of its addresses (::1 and 127.0.0.1 for localhost), tried in turn.
    int count = 0;
    for (int i = 0; i < n && count < CONFIG_MAX_SEEDS; i++) {
        BackendTarget given;
        if (!backend_target_resolve(seeds[i], &given, err, errlen))
            return false;
        int added = backend_target_resolve_now(&given, &out->seeds[count], CONFIG_MAX_SEEDS - count, err, errlen);
        if (added < 0)
            return false;
        count += added;
    }
    out->seed_count = count;
    n = count;
    // The first seed stands for the cluster in what names one Redis (logs, the admin endpoint).
    out->redis = out->seeds[0];
    return n > 0;
}

static void on_sigchld(int) {}  // never runs (blocked), but SIGCHLD must not be ignored

// What the master runs with, before any worker: the scoreboard, Redis's address, the listening
// sockets, the signals it takes. 0 when ready, else the exit code.
static int master_init(Master *m, const Config *config, const ConfigSource *source)
{
    m->config = config;
    m->source = source;
    m->count = config_worker_count(config);
    m->slots = master_new_slots(m->count);
    m->setup.worker_count = m->count;
    if (getrandom(&m->setup.digest_key, sizeof(m->setup.digest_key), 0) != sizeof(m->setup.digest_key))
        m->setup.digest_key = monotonic_us() ^ ((uint64_t)getpid() << 40);
    m->scoreboard = scoreboard_create(CONFIG_MAX_WORKERS);  // whatever a reload makes of workers
    if (m->slots == NULL || m->scoreboard == NULL) {
        log_error("cannot set up the scoreboard: %s", strerror(errno));
        return 1;
    }
    char err[400];
    if (!master_resolve_redis(config, &m->setup, err, sizeof(err))) {
        log_error("%s", err);
        return 1;
    }
    if (!master_client_tls(config, &m->setup.tls_server, err, sizeof(err))) {
        log_error("%s", err);
        return EXIT_CONFIG;
    }
    master_raise_fd_limit(config, m->count);
    if (!open_listeners(m)) {
        // In use, or not allowed: the configuration must change (no restart loop). Anything else,
        // such as an address the host does not have yet at boot, may pass: 1, restarted.
        return errno == EADDRINUSE || errno == EACCES ? EXIT_CONFIG : 1;
    }
    // Signals are handled synchronously: blocked here, taken with sigtimedwait in the cycle.
    // Nothing runs in a signal handler.
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, on_sigchld);
    sigemptyset(&m->handled);
    int handled[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1};
    for (int sig : handled)
        sigaddset(&m->handled, sig);
    sigprocmask(SIG_BLOCK, &m->handled, NULL);
    // Once the sockets are ours: a second proxy on the same file fails above, before this.
    if (config->pid_file[0] != '\0' && !pid_file_write(config->pid_file, err, sizeof(err))) {
        log_error("%s", err);
        return EXIT_CONFIG;
    }
    return 0;
}

// Everything the master holds, given back.
static void master_free(Master *m)
{
    close_groups(m->listening);
    close_groups(m->closing);
    master_close_channels(m->slots, m->count);
    free(m->slots);
    scoreboard_destroy(m->scoreboard);
    free(m->retiring);
    free(m->reloaded);
    tls_context_free(m->setup.tls_server);
    if (m->previous.starting) {
        free(m->previous.slots);
        if (m->previous.reloaded != m->reloaded)
            free(m->previous.reloaded);
        if (m->previous.setup.tls_server != m->setup.tls_server)
            tls_context_free(m->previous.setup.tls_server);
    }
}

// One pass of the cycle's timed work: respawns due, a reload's deadline, steering, a pending
// reload, retiring workers past shutdown_timeout. Returns when the next one is due.
static uint64_t master_tick(Master *m, uint64_t now)
{
    uint64_t next = now + report_to_service_manager(m, now);
    for (int i = 0; i < m->count; i++) {
        WorkerSlot *s = &m->slots[i];
        if (s->pid == 0 && s->respawn_at_ms <= now)
            master_spawn_worker(m, i);
        if (s->pid == 0 && s->respawn_at_ms < next)
            next = s->respawn_at_ms;
    }
    if (m->previous.starting) {
        if (now >= m->previous.deadline_ms)
            master_abandon_reload(m);
        else if (m->previous.deadline_ms < next)
            next = m->previous.deadline_ms;
    }
    if (master_steer_to_serving(m) && now + READY_POLL_MS < next)
        next = now + READY_POLL_MS;
    if (m->reload_pending && !m->previous.starting && m->retiring_count == 0) {
        m->reload_pending = false;
        log_info("reload: reading the file again for the SIGHUP that came during the last one");
        master_reload(m);
        next = now + READY_POLL_MS;  // its new generation is looked at as one started by SIGHUP is
    }
    if (m->retiring_count > 0 && m->retire_signalled) {
        if (now >= m->retire_deadline_ms) {
            log_warn("%d previous-generation worker(s) did not stop within shutdown_timeout; killing them",
                     m->retiring_count);
            signal_retiring(m, SIGKILL);
            m->retire_deadline_ms = now + 1000;
        }
        if (m->retire_deadline_ms < next)
            next = m->retire_deadline_ms;
    }
    return next;
}

// The master's cycle (nginx's ngx_master_process_cycle): the timed work, then a wait for a
// signal until it is due again; a stop signal ends it.
static void master_cycle(Master *m)
{
    for (;;) {
        uint64_t now = monotonic_ms(), next = master_tick(m, now);
        uint64_t wait_ms = next > now ? next - now : 0;
        struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000};
        siginfo_t info;
        int sig = sigtimedwait(&m->handled, &info, &ts);
        if (sig == SIGCHLD) {
            reap_workers(m, false);
        } else if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
            bool graceful = sig != SIGQUIT;
            notify_stopping();
            log_info("%s received: stopping %d worker(s) %s", signal_name(sig), running_workers(m),
                     graceful ? "gracefully" : "at once");
            stop_workers(m, graceful);
            return;
        } else if (sig == SIGHUP) {
            log_info("SIGHUP received: reloading the configuration");
            master_reload(m);
        } else if (sig == SIGUSR1) {
            // Each worker writes its own access log, so each opens it again (nginx's -s reopen).
            log_info("SIGUSR1 received: reopening the access log");
            for (int i = 0; i < m->count; i++)
                if (m->slots[i].pid > 0)
                    kill(m->slots[i].pid, SIGUSR1);
            signal_retiring(m, SIGUSR1);
        }
    }
}

int master_run(const Config *config, const ConfigSource *source)
{
    Master m;
    memset(&m, 0, sizeof(m));
    int code = master_init(&m, config, source);
    if (code != 0) {
        master_free(&m);
        return code;
    }
    if (config->redis_tls && !config->redis_tls_verify)
        log_warn("[redis] tls_verify = off: Redis's certificate is not checked, so anyone on the way to it can "
                 "read and change what the proxy caches; for tests only");
    log_info("redis-proxy starting %d worker(s); %s at %s", m.count,
             config->redis_cluster[0] ? "redis cluster" : "redis",
             config->redis_cluster[0] ? config->redis_cluster : config->redis_address);
    for (int i = 0; i < m.count; i++)
        master_spawn_worker(&m, i);
    master_cycle(&m);
    master_free(&m);
    if (config->pid_file[0] != '\0')
        pid_file_remove(config->pid_file);
    log_info("stopped");
    return 0;
}
