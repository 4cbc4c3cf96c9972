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
    uint64_t started_ms;
    int fast_deaths;  // consecutive deaths within FAST_DEATH_MS of starting
    uint64_t respawn_at_ms;
    int http_fd;
    int resp_fd;  // -1 when resp_listen is off
    int admin_fd;  // -1 when [admin] listen is off
};

struct Master {
    const Config *config;
    const ConfigSource *source;  // where a reload reads the configuration again
    Config *reloaded;            // the configuration of the last reload (owned), or NULL
    WorkerSetup setup;  // shared part; id and fd filled per worker
    WorkerSlot *slots;
    int count;
    Scoreboard *scoreboard;
    bool ready;  // READY=1 sent for the current generation
    // A reload's previous generation: told to stop once the new one serves, killed at the deadline.
    pid_t *retiring;
    int retiring_count;
    bool retire_signalled;
    uint64_t retire_deadline_ms;
    uint64_t status_at_ms;
    char status[160];  // the STATUS line last sent
    sigset_t handled;  // signals the master waits for with sigtimedwait
};

// One SO_REUSEPORT socket per worker slot, made before any fork and kept open by the master for
// its whole life: the kernel spreads new connections over them, and connections queued on a
// dead worker's socket wait there for its replacement instead of being refused.
// fd_of(slot) says where each slot keeps this group's socket.
static bool bind_group(Master *m, const char *what, const char *listen_text, int *(*fd_of)(WorkerSlot *))
{
    Address a;
    const char *why;
    char err[300];
    if (!address_parse(listen_text, false, &a, &why)) {
        log_error("%s listen '%s': %s", what, listen_text, why);
        return false;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    if (!address_resolve(&a, true, &ss, &len, err, sizeof(err))) {
        log_error("%s listen: %s", what, err);
        return false;
    }
    int on = 1;
    if (a.port != 0) {
        // SO_REUSEPORT would let us join a group that another process (say, a second
        // redis-proxy) already listens on, silently splitting its traffic. A plain bind first
        // turns that into the usual "Address already in use".
        int probe = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool free_port = probe >= 0 && setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0 &&
                         bind(probe, (struct sockaddr *)&ss, len) == 0;
        int probe_errno = errno;
        if (probe >= 0)
            close(probe);
        if (!free_port) {
            log_error("cannot listen on %s: %s", listen_text, strerror(probe_errno));
            return false;
        }
    }
    for (int i = 0; i < m->count; i++) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
            bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
            log_error("cannot listen on %s: %s", listen_text, strerror(errno));
            if (fd >= 0)
                close(fd);
            return false;
        }
        // With port 0 the kernel picked a port for the first socket: the others must share it.
        socklen_t got_len = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &got_len);
        *fd_of(&m->slots[i]) = fd;
    }
    char shown[300];
    address_format((struct sockaddr *)&ss, shown, sizeof(shown));
    log_info("listening for %s on %s (%d socket(s), SO_REUSEPORT)", what, shown, m->count);
    return true;
}

static int *http_fd_of(WorkerSlot *s) { return &s->http_fd; }
static int *resp_fd_of(WorkerSlot *s) { return &s->resp_fd; }
static int *admin_fd_of(WorkerSlot *s) { return &s->admin_fd; }

static void close_listeners(Master *m)
{
    for (int i = 0; i < m->count; i++) {
        if (m->slots[i].http_fd >= 0)
            close(m->slots[i].http_fd);
        if (m->slots[i].resp_fd >= 0)
            close(m->slots[i].resp_fd);
        if (m->slots[i].admin_fd >= 0)
            close(m->slots[i].admin_fd);
        m->slots[i].http_fd = m->slots[i].resp_fd = m->slots[i].admin_fd = -1;
    }
}

// Each client connection is a descriptor in some worker: make room for max_clients of them.
static void raise_fd_limit(const Config *c, int workers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t per_worker = (rlim_t)((c->max_clients + workers - 1) / workers);
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
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot fork worker %d: %s; retrying in 1s", i, strerror(errno));
        s->respawn_at_ms = monotonic_ms() + 1000;
        if (record != NULL)
            scoreboard_retire(m->scoreboard, record);
        return;
    }
    if (pid == 0) {
        for (int j = 0; j < m->count; j++)
            if (j != i) {
                close(m->slots[j].http_fd);
                if (m->slots[j].resp_fd >= 0)
                    close(m->slots[j].resp_fd);
                if (m->slots[j].admin_fd >= 0)
                    close(m->slots[j].admin_fd);
            }
        WorkerSetup setup = m->setup;
        setup.id = i;
        setup.http_fd = s->http_fd;
        setup.resp_fd = s->resp_fd;
        setup.admin_fd = s->admin_fd;
        setup.stats = record ? &record->stats : NULL;
        setup.scoreboard = m->scoreboard;
        _exit(worker_run(m->config, &setup));
    }
    if (record != NULL)
        record->pid = pid;
    s->pid = pid;
    s->started_ms = monotonic_ms();
    s->respawn_at_ms = 0;
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
            char how[128];
            describe_exit(status, how, sizeof(how));
            if (stopping) {
                log_debug("worker %d (pid %d) %s", i, (int)pid, how);
                break;
            }
            m->scoreboard->worker_restarts++;
            uint64_t now = monotonic_ms();
            s->fast_deaths = now - s->started_ms < FAST_DEATH_MS ? s->fast_deaths + 1 : 0;
            uint64_t delay = 0;
            if (s->fast_deaths > 0) {
                delay = 100ULL << (s->fast_deaths < 8 ? s->fast_deaths - 1 : 7);
                if (delay > RESPAWN_MAX_DELAY_MS)
                    delay = RESPAWN_MAX_DELAY_MS;
            }
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
        sigtimedwait(&m->handled, &info, &ts);  // wakes on SIGCHLD
        reap_workers(m, true);
    }
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
        if (m->retiring_count > 0) {
            // The new generation serves: the old one stops accepting, answers what it has in
            // flight and exits, on the same sockets, so no connection waits on a dead worker.
            log_info("reload: configuration generation %u serving; stopping %d previous worker(s)",
                     m->scoreboard->generation, m->retiring_count);
            signal_retiring(m, SIGTERM);
            m->retire_signalled = true;
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

// SIGHUP: read the configuration again (file and -o overrides). Invalid: say why, keep serving
// on the old one. Valid: start a new generation of workers on it, on the same sockets; the old
// generation is told to stop once the new one serves (report_to_service_manager). A reload
// starts with empty caches. Not yet: changing the listen addresses or the number of workers
// (that needs a restart for now).
static void reload(Master *m)
{
    m->scoreboard->reloads++;
    notify_reloading();
    Config *next = (Config *)malloc(sizeof(Config));
    char err[1024];
    const char *refused = NULL;
    BackendTarget target;
    pid_t *retiring = NULL;
    if (next == NULL) {
        refused = "out of memory";
    } else if (!config_load(next, m->source, err, sizeof(err))) {
        refused = err;
    } else if (strcmp(next->listen, m->config->listen) != 0 ||
               strcmp(next->resp_listen, m->config->resp_listen) != 0 ||
               strcmp(next->admin_listen, m->config->admin_listen) != 0 ||
               config_worker_count(next) != m->count) {
        refused = "changing listen, resp_listen, [admin] listen or workers needs a restart for now";
    } else if (m->retiring_count > 0) {
        refused = "the previous reload is still under way";
    } else if (!backend_target_resolve(next->redis_address, &target, err, sizeof(err))) {
        refused = err;
    } else if ((retiring = (pid_t *)realloc(m->retiring, (size_t)m->count * sizeof(pid_t))) == NULL) {
        refused = "out of memory";
    } else {
        m->retiring = retiring;
    }
    m->scoreboard->last_reload_ok = refused == NULL;
    if (refused != NULL) {
        m->scoreboard->reload_failures++;
        log_error("reload refused: %s; keeping the running configuration", refused);
        free(next);
        notify_ready(m->status);  // ends the reload, as systemd expects
        return;
    }
    for (int i = 0; i < m->count; i++)
        if (m->slots[i].pid != 0)
            m->retiring[m->retiring_count++] = m->slots[i].pid;
    m->retire_signalled = false;
    free(m->reloaded);
    m->reloaded = next;
    m->config = next;
    m->setup.redis = target;
    log_set_level((int)next->log_level);
    m->scoreboard->generation++;
    log_info("reload: configuration generation %u read from %s; starting %d new worker(s)",
             m->scoreboard->generation, m->source->path, m->count);
    for (int i = 0; i < m->count; i++) {
        m->slots[i].pid = 0;
        m->slots[i].fast_deaths = 0;
        spawn_worker(m, i);
    }
    m->ready = false;
}

static void on_sigchld(int) {}  // never runs (blocked), but SIGCHLD must not be ignored

int master_run(const Config *config, const ConfigSource *source)
{
    Master m;
    memset(&m, 0, sizeof(m));
    m.config = config;
    m.source = source;
    m.count = config_worker_count(config);
    m.slots = (WorkerSlot *)calloc((size_t)m.count, sizeof(WorkerSlot));
    m.setup.worker_count = m.count;
    m.scoreboard = scoreboard_create(m.count);
    if (m.slots == NULL || m.scoreboard == NULL) {
        log_error("cannot set up the scoreboard: %s", strerror(errno));
        return 1;
    }
    char err[400];
    if (!backend_target_resolve(config->redis_address, &m.setup.redis, err, sizeof(err))) {
        log_error("%s", err);
        return 1;
    }
    for (int i = 0; i < m.count; i++)
        m.slots[i].http_fd = m.slots[i].resp_fd = m.slots[i].admin_fd = -1;
    raise_fd_limit(config, m.count);
    if (!bind_group(&m, "HTTP", config->listen, http_fd_of) ||
        (config->resp_listen[0] != '\0' && !bind_group(&m, "RESP", config->resp_listen, resp_fd_of)) ||
        (config->admin_listen[0] != '\0' && !bind_group(&m, "admin", config->admin_listen, admin_fd_of))) {
        close_listeners(&m);
        free(m.slots);
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

    log_info("redis-proxy starting %d worker(s); redis at %s", m.count, config->redis_address);
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
            close_listeners(&m);
            free(m.slots);
            scoreboard_destroy(m.scoreboard);
            free(m.retiring);
            free(m.reloaded);
            log_info("stopped");
            return 0;
        } else if (sig == SIGHUP) {
            log_info("SIGHUP received: reloading the configuration");
            reload(&m);
        }
    }
}
