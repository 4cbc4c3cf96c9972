#include "backend.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "clock.h"
#include "config.h"
#include "log.h"

static const uint64_t RECONNECT_MIN_MS = 100;
static const uint64_t RECONNECT_MAX_MS = 2000;

// One command sent to Redis and not yet answered. Redis answers in order, so these form a FIFO:
// the head is both the next reply's owner and the oldest deadline.
struct PendingCommand {
    uint64_t deadline_ms;
    BackendReplyFn fn;
    void *arg;
};

struct Backend {
    event_base *base;
    const Config *config;
    BackendTarget target;
    WorkerStats *stats;
    redisAsyncContext *ac;  // NULL while disconnected
    bool ready;
    int handshake_pending;  // AUTH/SELECT replies still awaited
    BackendFailure drop_failure;  // what outstanding commands are told when the connection drops
    PendingCommand *ring;
    size_t ring_cap, ring_head, ring_len;
    event *connect_timer, *timeout_timer, *reconnect_timer;
    bool timeout_armed;
    int failures;  // consecutive failed attempts: drives the backoff and quiets repeated logs
    uint64_t rng;
};

bool backend_target_resolve(const char *address, BackendTarget *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->display, sizeof(t->display), "%s", address);
    Address a;
    const char *why;
    if (!address_parse(address, true, &a, &why)) {
        snprintf(err, errlen, "redis address '%s': %s", address, why);
        return false;
    }
    if (a.is_unix) {
        t->is_unix = true;
        strcpy(t->path, a.path);
        return true;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    if (!address_resolve(&a, false, &ss, &len, err, errlen))
        return false;
    const void *ip = ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                             : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(ss.ss_family, ip, t->ip, sizeof(t->ip));
    t->port = a.port;
    return true;
}

static void backend_connect(Backend *b);

static uint64_t next_random(Backend *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return b->rng;
}

static void schedule_reconnect(Backend *b, const char *what, const char *detail)
{
    uint64_t delay = RECONNECT_MIN_MS << (b->failures < 5 ? b->failures : 5);
    if (delay > RECONNECT_MAX_MS)
        delay = RECONNECT_MAX_MS;
    // Jitter in [delay/2, delay]: workers that lost Redis together do not come back in lockstep.
    delay = delay / 2 + next_random(b) % (delay / 2 + 1);
    b->failures++;
    // The first failure is news; the repeats while Redis stays down are not.
    log_msg(b->failures == 1 ? LOG_WARN : LOG_DEBUG, "redis %s: %s%s%s; retrying in %llums",
            b->target.display, what, detail ? ": " : "", detail ? detail : "",
            (unsigned long long)delay);
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000};
    evtimer_add(b->reconnect_timer, &tv);
}

// Closes the connection. hiredis answers every outstanding command with a NULL reply, which
// on_reply turns into `failure` for its owner. Inside a hiredis callback the free is deferred
// by hiredis until the callback returns.
static void backend_drop(Backend *b, BackendFailure failure, const char *what, const char *detail)
{
    redisAsyncContext *ac = b->ac;
    b->ac = NULL;  // from here on on_connect/on_disconnect for ac are stale, and gets are refused
    b->ready = false;
    evtimer_del(b->connect_timer);
    b->drop_failure = failure;
    redisAsyncFree(ac);
    b->drop_failure = BACKEND_UNAVAILABLE;
    schedule_reconnect(b, what, detail);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    Backend *b = (Backend *)privdata;
    PendingCommand cmd = b->ring[b->ring_head];
    b->ring_head = (b->ring_head + 1) & (b->ring_cap - 1);
    b->ring_len--;
    cmd.fn(cmd.arg, (redisReply *)reply, reply != NULL ? BACKEND_OK : b->drop_failure);
}

static void arm_timeout(Backend *b, uint64_t delay_ms)
{
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000};
    evtimer_add(b->timeout_timer, &tv);
    b->timeout_armed = true;
}

static bool send_command(Backend *b, BackendReplyFn fn, void *arg, int argc, const char **argv,
                         const size_t *lens)
{
    if (b->ring_len == b->ring_cap) {
        size_t cap = b->ring_cap * 2;
        PendingCommand *ring = (PendingCommand *)malloc(cap * sizeof(PendingCommand));
        if (ring == NULL)
            return false;
        for (size_t i = 0; i < b->ring_len; i++)
            ring[i] = b->ring[(b->ring_head + i) & (b->ring_cap - 1)];
        free(b->ring);
        b->ring = ring;
        b->ring_cap = cap;
        b->ring_head = 0;
    }
    if (redisAsyncCommandArgv(b->ac, on_reply, b, argc, argv, lens) != REDIS_OK)
        return false;
    uint64_t timeout = (uint64_t)b->config->command_timeout_ms;
    PendingCommand *cmd = &b->ring[(b->ring_head + b->ring_len) & (b->ring_cap - 1)];
    cmd->deadline_ms = monotonic_ms() + timeout;
    cmd->fn = fn;
    cmd->arg = arg;
    b->ring_len++;
    if (!b->timeout_armed)
        arm_timeout(b, timeout);
    return true;
}

// Fires at the oldest outstanding command's deadline (or a little after, if it was answered and
// a younger one is now the oldest: then it re-arms for that one).
static void on_timeout_timer(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    b->timeout_armed = false;
    if (b->ring_len == 0)
        return;
    uint64_t now = monotonic_ms(), deadline = b->ring[b->ring_head].deadline_ms;
    if (now < deadline) {
        arm_timeout(b, deadline - now);
        return;
    }
    if (b->ac == NULL)
        return;  // being dropped already; the commands are answered by the drop
    char detail[96];
    snprintf(detail, sizeof(detail), "%zu command(s) outstanding, answered as timed out", b->ring_len);
    backend_drop(b, BACKEND_TIMEOUT, "no reply within command_timeout", detail);
}

static void became_ready(Backend *b)
{
    b->ready = true;
    b->stats->redis_connects++;
    if (b->failures > 0)
        log_info("redis %s: connected after %d failed attempt(s)", b->target.display, b->failures);
    else
        log_debug("redis %s: connected", b->target.display);
    b->failures = 0;
}

static void on_handshake_reply(Backend *b, const char *command, redisReply *r, BackendFailure f)
{
    if (f != BACKEND_OK)
        return;  // the connection is going away; its drop already scheduled the retry
    if (r->type == REDIS_REPLY_ERROR) {
        char detail[300];
        snprintf(detail, sizeof(detail), "%s refused: %.*s", command, (int)r->len, r->str);
        backend_drop(b, BACKEND_UNAVAILABLE, "handshake failed", detail);
        return;
    }
    if (--b->handshake_pending == 0 && b->ac != NULL && (b->ac->c.flags & REDIS_CONNECTED))
        became_ready(b);
}

static void on_auth_reply(void *arg, redisReply *r, BackendFailure f)
{
    on_handshake_reply((Backend *)arg, "AUTH", r, f);
}

static void on_select_reply(void *arg, redisReply *r, BackendFailure f)
{
    on_handshake_reply((Backend *)arg, "SELECT", r, f);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    Backend *b = (Backend *)ac->data;
    if (ac != b->ac)
        return;
    evtimer_del(b->connect_timer);
    if (status != REDIS_OK) {
        // hiredis frees the context when this returns, answering outstanding commands with NULL.
        b->ac = NULL;
        schedule_reconnect(b, "cannot connect", ac->errstr);
        return;
    }
    if (b->handshake_pending == 0)
        became_ready(b);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    Backend *b = (Backend *)ac->data;
    if (ac != b->ac)
        return;  // a connection we dropped ourselves
    b->ac = NULL;
    b->ready = false;
    b->failures = 0;  // it was up: news again, and retry fast
    schedule_reconnect(b, "connection lost", ac->err ? ac->errstr : "closed by server");
}

static void on_connect_timer(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    if (b->ac != NULL && !(b->ac->c.flags & REDIS_CONNECTED))
        backend_drop(b, BACKEND_UNAVAILABLE, "cannot connect", "connect_timeout reached");
}

static void on_reconnect_timer(evutil_socket_t, short, void *arg) { backend_connect((Backend *)arg); }

static void backend_connect(Backend *b)
{
    redisAsyncContext *ac = b->target.is_unix ? redisAsyncConnectUnix(b->target.path)
                                              : redisAsyncConnect(b->target.ip, b->target.port);
    if (ac == NULL || ac->err) {
        char detail[128];
        snprintf(detail, sizeof(detail), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(b, "cannot connect", detail);
        return;
    }
    ac->data = b;  // the disconnect callback has no privdata of its own
    redisLibeventAttach(ac, b->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    b->ac = ac;
    b->ready = false;
    b->handshake_pending = 0;
    struct timeval tv = {(time_t)(b->config->connect_timeout_ms / 1000),
                         (suseconds_t)(b->config->connect_timeout_ms % 1000) * 1000};
    evtimer_add(b->connect_timer, &tv);
    // Queued now, sent as soon as the socket connects, answered before any GET queued after them.
    const Config *c = b->config;
    if (c->redis_password[0] != '\0') {
        const char *argv[3] = {"AUTH", c->redis_username, c->redis_password};
        size_t lens[3] = {4, strlen(c->redis_username), strlen(c->redis_password)};
        bool with_user = c->redis_username[0] != '\0';
        if (with_user) {
            send_command(b, on_auth_reply, b, 3, argv, lens);
        } else {
            argv[1] = c->redis_password;
            lens[1] = lens[2];
            send_command(b, on_auth_reply, b, 2, argv, lens);
        }
        b->handshake_pending++;
    }
    if (c->redis_database != 0) {
        char db[24];
        int n = snprintf(db, sizeof(db), "%lld", (long long)c->redis_database);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        send_command(b, on_select_reply, b, 2, argv, lens);
        b->handshake_pending++;
    }
}

Backend *backend_create(event_base *base, const Config *config, const BackendTarget *target,
                        WorkerStats *stats, uint64_t seed)
{
    Backend *b = (Backend *)calloc(1, sizeof(Backend));
    if (b == NULL)
        return NULL;
    b->base = base;
    b->config = config;
    b->target = *target;
    b->stats = stats;
    b->drop_failure = BACKEND_UNAVAILABLE;
    b->rng = seed | 1;
    b->ring_cap = 64;
    b->ring = (PendingCommand *)malloc(b->ring_cap * sizeof(PendingCommand));
    b->connect_timer = evtimer_new(base, on_connect_timer, b);
    b->timeout_timer = evtimer_new(base, on_timeout_timer, b);
    b->reconnect_timer = evtimer_new(base, on_reconnect_timer, b);
    if (b->ring == NULL || !b->connect_timer || !b->timeout_timer || !b->reconnect_timer) {
        backend_destroy(b);
        return NULL;
    }
    backend_connect(b);
    return b;
}

void backend_destroy(Backend *b)
{
    if (b == NULL)
        return;
    if (b->ac != NULL) {
        redisAsyncContext *ac = b->ac;
        b->ac = NULL;
        redisAsyncFree(ac);
    }
    if (b->connect_timer)
        event_free(b->connect_timer);
    if (b->timeout_timer)
        event_free(b->timeout_timer);
    if (b->reconnect_timer)
        event_free(b->reconnect_timer);
    free(b->ring);
    free(b);
}

bool backend_command(Backend *b, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                     void *arg)
{
    if (b->ac == NULL)
        return false;
    return send_command(b, fn, arg, argc, argv, lens);
}

bool backend_get(Backend *b, const char *key, size_t len, BackendReplyFn fn, void *arg)
{
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, len};
    return backend_command(b, 2, argv, lens, fn, arg);
}

bool backend_ready(const Backend *b) { return b->ready; }

size_t backend_outstanding(const Backend *b) { return b->ring_len; }
