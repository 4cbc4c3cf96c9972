#include "backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "address.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "reply_frame.h"
#include "backend_state.h"
#include "resp_parser.h"

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
    t->port = a.port;
    unsigned char numeric[16];
    if (inet_pton(AF_INET, a.host, numeric) == 1 || inet_pton(AF_INET6, a.host, numeric) == 1) {
        snprintf(t->ip, sizeof(t->ip), "%.63s", a.host);
        return true;
    }
    // A name: looked up by the backend before each connect, never here (a name server that does
    // not answer must not hold the master's start).
    t->by_name = true;
    snprintf(t->host, sizeof(t->host), "%s", a.host);
    return true;
}

bool backend_target_resolve_now(BackendTarget *t, char *err, size_t errlen)
{
    if (!t->by_name)
        return true;
    Address a;
    const char *why;
    if (!address_parse(t->display, false, &a, &why)) {
        snprintf(err, errlen, "redis address '%s': %s", t->display, why);
        return false;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    if (!address_resolve(&a, false, &ss, &len, err, errlen))
        return false;
    const void *ip = ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                             : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(ss.ss_family, ip, t->ip, sizeof(t->ip));
    t->by_name = false;
    return true;
}

static void backend_connect(Backend *b);
void backend_connect_now(Backend *b);

static uint64_t next_random(Backend *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return b->rng;
}

void backend_schedule_reconnect(Backend *b, const char *what, const char *detail)
{
    b->first_attempt = false;
    uint64_t delay = backoff_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, b->failures);
    // Jitter in [delay/2, delay]: workers that lost Redis together do not come back in lockstep.
    delay = delay / 2 + next_random(b) % (delay / 2 + 1);
    b->failures++;
    b->stats->redis_tried = 1;
    // The first failure is news; the repeats while Redis stays down are not. Every worker's
    // connections fail alike: said once per proxy.
    log_msg_once(b->failures == 1 ? LOG_WARN : LOG_DEBUG, "redis %s%s: %s%s%s; retrying in %llums",
            b->target.display, b->hooks.label, what, detail ? ": " : "", detail ? detail : "",
            (unsigned long long)delay);
    b->retry_at_ms = monotonic_ms() + delay;
    struct timeval tv = timeval_of_ms((uint64_t)delay);
    evtimer_add(b->reconnect_timer, &tv);
}

PendingCommand backend_pop_command(Backend *b)
{
    PendingCommand cmd = b->ring[b->ring_head];
    b->ring_head = (b->ring_head + 1) & (b->ring_cap - 1);
    b->ring_len--;
    if (b->abandoned > 0)
        b->abandoned--;
    return cmd;
}

static PendingCommand *ring_at(Backend *b, size_t i) { return &b->ring[(b->ring_head + i) & (b->ring_cap - 1)]; }

// Closes the socket; the state is reset before any callback runs, so a callback that sends a new
// command is refused cleanly (or, on a first attempt already started, queued on it). Returns how
// many commands were outstanding: answer_lost answers them.
static size_t close_connection(Backend *b)
{
    if (b->fd >= 0) {
        event_free(b->read_event);
        event_free(b->write_event);
        b->read_event = b->write_event = NULL;
        close(b->fd);
        b->fd = -1;
    }
    b->connected = b->ready = b->write_pending = b->distrusted = b->push_mode = false;
    b->stats->redis_connected = 0;
    b->handshake_pending = 0;
    evtimer_del(b->connect_timer);
    evbuffer_drain(b->out, evbuffer_get_length(b->out));
    // A fresh parser: whatever half reply the old one held belongs to the old connection.
    if (b->reader != NULL)
        redisReaderFree(b->reader);
    b->reader = redisReaderCreate();
    frame_scanner_init(&b->frame);
    size_t lost = b->ring_len;
    b->abandoned = 0;
    return lost;
}

// Answers the `lost` oldest commands (those of a closed connection) with `failure`. A new
// connection's commands, queued behind them meanwhile, keep their places.
static void answer_lost(Backend *b, size_t lost, BackendFailure failure)
{
    for (size_t i = 0; i < lost && b->ring_len > 0; i++) {
        PendingCommand cmd = backend_pop_command(b);
        if (cmd.fn != NULL)
            cmd.fn(cmd.arg, NULL, failure);
    }
}

void backend_drop(Backend *b, BackendFailure failure, const char *what, const char *detail)
{
    char saved[256];  // detail may point into the parser, which close_connection frees
    if (detail != NULL) {
        snprintf(saved, sizeof(saved), "%s", detail);
        detail = saved;
    }
    bool was_ready = b->ready;
    bool was_open = b->fd >= 0;
    size_t lost = close_connection(b);
    if (was_ready) {
        // It was up: news again, and tried again at once, before its commands are answered, so
        // that a reader whose fetch was cut can ask again on the new connection (lookup does).
        b->failures = 0;
        log_msg_once(LOG_WARN, "redis %s%s: %s%s%s; reconnecting", b->target.display, b->hooks.label, what,
                     detail ? ": " : "", detail ? detail : "");
        b->first_attempt = true;
        backend_connect(b);
    } else {
        // Logged before the commands waiting on it are answered: the log says why before a client
        // sees the error.
        b->first_attempt = false;
        backend_schedule_reconnect(b, what, detail);
    }
    answer_lost(b, lost, failure);
    if (b->reader == NULL)
        log_error("redis %s%s: out of memory for the reply parser; retrying", b->target.display, b->hooks.label);
    if (was_open && b->hooks.on_lost != NULL)
        b->hooks.on_lost(b->hooks.arg);
}

// The connection is out of step with its commands: replies read through it may have been paired
// with the wrong commands, so the owner forgets what it learnt from them.
void backend_drop_untrusted(Backend *b, const char *what, const char *detail)
{
    b->stats->redis_out_of_step++;
    log_error("redis %s%s: %s%s%s; dropping the connection and what was read through it",
              b->target.display, b->hooks.label, what, detail ? ": " : "", detail ? detail : "");
    backend_drop(b, BACKEND_UNAVAILABLE, what, detail);
    if (b->hooks.on_untrusted != NULL)
        b->hooks.on_untrusted(b->hooks.arg);
}

static void arm_timeout(Backend *b, uint64_t delay_ms)
{
    struct timeval tv = timeval_of_ms((uint64_t)delay_ms);
    evtimer_add(b->timeout_timer, &tv);
    b->timeout_armed = true;
    b->timeout_at_ms = monotonic_ms() + delay_ms;
}

static void want_write(Backend *b)
{
    if (b->connected && !b->write_pending && evbuffer_get_length(b->out) > 0) {
        event_add(b->write_event, NULL);
        b->write_pending = true;
    }
}

// RESP multibulk, the form Redis reads fastest: *argc, then $len and the bytes of each argument.
// The whole size is reserved first, so a command is added whole or not at all (out of memory);
// small commands (every GET) are assembled on the stack and added in one piece.
static bool append_command(evbuffer *out, int argc, const char **argv, const size_t *lens)
{
    size_t total = RESP_HEADER_MAX;
    for (int i = 0; i < argc; i++)
        total += RESP_HEADER_MAX + lens[i] + 2;
    if (evbuffer_expand(out, total) != 0)
        return false;
    char buf[512];
    size_t at = resp_format_header(buf, '*', argc);
    for (int i = 0; i < argc; i++) {
        if (sizeof(buf) - at < RESP_HEADER_MAX + lens[i] + 2) {
            evbuffer_add(out, buf, at);
            at = 0;
        }
        at += resp_format_header(buf + at, '$', (long long)lens[i]);
        if (sizeof(buf) - at < lens[i] + 2) {
            evbuffer_add(out, buf, at);
            evbuffer_add(out, argv[i], lens[i]);
            at = 0;
        } else {
            memcpy(buf + at, argv[i], lens[i]);
            at += lens[i];
        }
        buf[at++] = '\r';
        buf[at++] = '\n';
    }
    evbuffer_add(out, buf, at);
    return true;
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
    if (!append_command(b->out, argc, argv, lens))
        return false;
    uint64_t timeout = (uint64_t)b->config->command_timeout_ms;
    PendingCommand *cmd = ring_at(b, b->ring_len);
    cmd->deadline_ms = monotonic_ms() + timeout;
    cmd->sent_us = monotonic_us();
    cmd->fn = fn;
    cmd->arg = arg;
    b->ring_len++;
    b->stats->redis_commands++;
    // The timer may be set for later (the reset of abandoned commands): this deadline comes first.
    if (!b->timeout_armed || cmd->deadline_ms < b->timeout_at_ms)
        arm_timeout(b, timeout);
    want_write(b);
    return true;
}

// Each command has its own deadline: one late reply fails only its own command, not the younger
// ones behind it. The timer fires at the oldest live command's deadline (or a little after, if it
// was answered meanwhile: then it re-arms for the next). A command past its deadline is answered
// BACKEND_TIMEOUT and abandoned in place (its reply still comes, in order, and is dropped). Only
// when abandoned commands pile up far past their time is the connection reset.
static void on_timeout_timer(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    b->timeout_armed = false;
    uint64_t now = monotonic_ms(), timeout = (uint64_t)b->config->command_timeout_ms;
    int fd = b->fd;
    if (b->abandoned > 0 && now >= ring_at(b, 0)->deadline_ms + (ABANDONED_RESET_FACTOR - 1) * timeout) {
        char detail[128];
        snprintf(detail, sizeof(detail), "%zu command(s) outstanding, the oldest for over %llums",
                 b->ring_len, (unsigned long long)(ABANDONED_RESET_FACTOR * timeout));
        backend_drop(b, BACKEND_TIMEOUT, "no reply within command_timeout", detail);
        return;
    }
    while (b->abandoned < b->ring_len && ring_at(b, b->abandoned)->deadline_ms <= now) {
        PendingCommand *cmd = ring_at(b, b->abandoned++);
        BackendReplyFn fn = cmd->fn;
        cmd->fn = NULL;  // abandoned before its callback runs: nothing answers it twice
        b->stats->redis_timeouts++;
        if (b->abandoned == 1)
            log_warn("redis %s%s: no reply within command_timeout (%lldms); answering that command as timed out, "
                     "and any later one that is late too", b->target.display, b->hooks.label,
                     (long long)b->config->command_timeout_ms);
        fn(cmd->arg, NULL, BACKEND_TIMEOUT);
        if (b->fd != fd)
            return;  // the callback dropped the connection: everything is answered
    }
    // The next deadline: the oldest live command's, or the reset of the abandoned ones.
    uint64_t next = b->abandoned > 0 ? ring_at(b, 0)->deadline_ms + (ABANDONED_RESET_FACTOR - 1) * timeout : UINT64_MAX;
    if (b->abandoned < b->ring_len && ring_at(b, b->abandoned)->deadline_ms < next)
        next = ring_at(b, b->abandoned)->deadline_ms;
    if (next != UINT64_MAX)
        arm_timeout(b, next > now ? next - now : 0);
}

static void became_ready(Backend *b)
{
    b->ready = true;
    b->first_attempt = false;
    b->stats->redis_connects++;
    b->stats->redis_connected = 1;
    b->stats->redis_tried = 1;
    if (b->failures > 0)
        log_info("redis %s%s: connected after %d failed attempt(s)", b->target.display, b->hooks.label, b->failures);
    else
        log_debug("redis %s%s: connected", b->target.display, b->hooks.label);
    b->failures = 0;
    if (b->hooks.on_ready != NULL)
        b->hooks.on_ready(b->hooks.arg);
}

static void on_handshake_reply(Backend *b, const char *command, redisReply *r, BackendFailure f)
{
    if (f == BACKEND_TIMEOUT || f == BACKEND_TOO_LARGE) {
        char detail[80];
        snprintf(detail, sizeof(detail), "%s %s", command,
                 f == BACKEND_TIMEOUT ? "not answered within command_timeout" : "answered past max_reply_size");
        backend_drop(b, BACKEND_UNAVAILABLE, "handshake failed", detail);
        return;
    }
    if (f != BACKEND_OK)
        return;  // the connection is going away; its drop already scheduled the retry
    if (r->type != REDIS_REPLY_STATUS) {
        char detail[300];
        if (r->type == REDIS_REPLY_ERROR)
            snprintf(detail, sizeof(detail), "%s refused: %.*s", command, (int)r->len, r->str);
        else
            snprintf(detail, sizeof(detail), "%s answered with a reply of the wrong type", command);
        backend_drop(b, BACKEND_UNAVAILABLE, "handshake failed", detail);
        return;
    }
    if (--b->handshake_pending == 0 && b->connected)
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

static void on_writable(evutil_socket_t fd, short, void *arg)
{
    Backend *b = (Backend *)arg;
    b->write_pending = false;
    if (!b->connected) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            backend_drop(b, BACKEND_UNAVAILABLE, "cannot connect", strerror(err));
            return;
        }
        b->connected = true;
        evtimer_del(b->connect_timer);
        event_add(b->read_event, NULL);
        if (b->handshake_pending == 0)
            became_ready(b);
    }
    if (evbuffer_get_length(b->out) > 0 && evbuffer_write(b->out, fd) < 0 && errno != EAGAIN &&
        errno != EINTR) {
        backend_drop(b, BACKEND_UNAVAILABLE, "connection lost", strerror(errno));
        return;
    }
    want_write(b);
}

static void on_connect_timer(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    if (b->fd >= 0 && !b->connected)
        backend_drop(b, BACKEND_UNAVAILABLE, "cannot connect", "connect_timeout reached");
}

static void on_reconnect_timer(evutil_socket_t, short, void *arg) { backend_connect((Backend *)arg); }

// 0 when the target's address is not a numeric IP: never connect to an address not given.
static socklen_t target_sockaddr(const BackendTarget *t, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (t->is_unix) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, t->path, strlen(t->path));
        return (socklen_t)sizeof(*sun);
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, t->ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)t->port);
        return (socklen_t)sizeof(*sin);
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, t->ip, &sin6->sin6_addr) != 1)
        return 0;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)t->port);
    return (socklen_t)sizeof(*sin6);
}

// A target given by name is resolved first (backend_resolve.cc), then connected to.
static void backend_connect(Backend *b)
{
    if (b->target.by_name)
        backend_resolve(b);
    else
        backend_connect_now(b);
}

void backend_connect_now(Backend *b)
{
    if (b->fd >= 0)
        return;  // already connecting (a lookup that ended after a reconnect had been scheduled)
    evtimer_del(b->reconnect_timer);
    b->attempt_ms = monotonic_ms();
    if (b->reader == NULL && (b->reader = redisReaderCreate()) == NULL) {
        backend_schedule_reconnect(b, "cannot connect", "out of memory");
        return;
    }
    struct sockaddr_storage ss;
    socklen_t len = target_sockaddr(&b->target, &ss);
    if (len == 0) {
        backend_schedule_reconnect(b, "cannot connect", "not an IP address");
        return;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        backend_schedule_reconnect(b, "cannot connect", strerror(errno));
        return;
    }
    if (!b->target.is_unix) {
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));  // commands are small: send now
    }
    // A unix socket connects at once or fails (EAGAIN: its backlog is full); TCP says EINPROGRESS.
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        backend_schedule_reconnect(b, "cannot connect", strerror(err));
        return;
    }
    b->read_event = event_new(b->base, fd, EV_READ | EV_PERSIST, backend_on_readable, b);
    b->write_event = event_new(b->base, fd, EV_WRITE, on_writable, b);
    if (b->read_event == NULL || b->write_event == NULL) {
        if (b->read_event)
            event_free(b->read_event);
        if (b->write_event)
            event_free(b->write_event);
        b->read_event = b->write_event = NULL;
        close(fd);
        backend_schedule_reconnect(b, "cannot connect", "out of memory");
        return;
    }
    b->fd = fd;
    // Writability says the connect finished, either way (on_writable reads SO_ERROR).
    event_add(b->write_event, NULL);
    b->write_pending = true;
    struct timeval tv = timeval_of_ms((uint64_t)b->config->connect_timeout_ms);
    evtimer_add(b->connect_timer, &tv);
    // Queued now, sent as soon as the socket connects, answered before any GET queued after them.
    const Config *c = b->config;
    if (c->redis_password[0] != '\0') {
        const char *argv[3] = {"AUTH", c->redis_username, c->redis_password};
        size_t lens[3] = {4, strlen(c->redis_username), strlen(c->redis_password)};
        bool with_user = c->redis_username[0] != '\0';
        if (!with_user) {
            argv[1] = c->redis_password;
            lens[1] = lens[2];
        }
        if (send_command(b, on_auth_reply, b, with_user ? 3 : 2, argv, lens))
            b->handshake_pending++;
    }
    if (c->redis_database != 0) {
        char db[24];
        int n = snprintf(db, sizeof(db), "%lld", (long long)c->redis_database);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        if (send_command(b, on_select_reply, b, 2, argv, lens))
            b->handshake_pending++;
    }
}

Backend *backend_create(event_base *base, const Config *config, const BackendTarget *target,
                        WorkerStats *stats, uint64_t seed, const BackendHooks *hooks)
{
    Backend *b = (Backend *)calloc(1, sizeof(Backend));
    if (b == NULL)
        return NULL;
    b->base = base;
    b->config = config;
    b->target = *target;
    b->stats = stats;
    if (hooks != NULL)
        b->hooks = *hooks;
    if (b->hooks.label == NULL)
        b->hooks.label = "";
    b->fd = -1;
    b->rng = seed | 1;
    b->ring_cap = 64;
    b->ring = (PendingCommand *)malloc(b->ring_cap * sizeof(PendingCommand));
    b->out = evbuffer_new();
    b->reader = redisReaderCreate();
    b->connect_timer = evtimer_new(base, on_connect_timer, b);
    b->timeout_timer = evtimer_new(base, on_timeout_timer, b);
    b->reconnect_timer = evtimer_new(base, on_reconnect_timer, b);
    if (b->ring == NULL || !b->out || !b->reader || !b->connect_timer || !b->timeout_timer ||
        !b->reconnect_timer) {
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
    if (b->out != NULL)
        answer_lost(b, close_connection(b), BACKEND_UNAVAILABLE);
    backend_resolver_free(b);
    if (b->connect_timer)
        event_free(b->connect_timer);
    if (b->timeout_timer)
        event_free(b->timeout_timer);
    if (b->reconnect_timer)
        event_free(b->reconnect_timer);
    if (b->reader)
        redisReaderFree(b->reader);
    if (b->out)
        evbuffer_free(b->out);
    free(b->batch);
    free(b->ring);
    free(b);
}

// A command came while Redis cannot be reached: the next attempt comes RECONNECT_WANTED_MS after
// the last one at the latest. From the timer, never from here: this runs inside callbacks.
static void want_connection(Backend *b)
{
    if (b->fd >= 0 || b->resolving != NULL || !evtimer_pending(b->reconnect_timer, NULL))
        return;
    uint64_t now = monotonic_ms(), wanted = b->attempt_ms + RECONNECT_WANTED_MS;
    if (b->retry_at_ms <= wanted)
        return;
    b->retry_at_ms = wanted > now ? wanted : now;
    struct timeval tv = timeval_of_ms(b->retry_at_ms - now);
    evtimer_add(b->reconnect_timer, &tv);
}

bool backend_command(Backend *b, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                     void *arg)
{
    // Until the connection is ready, a command could wait on a connect that never finishes (a
    // host that drops SYNs): refused, so the caller answers at once. Except on the first
    // attempt after a ready connection dropped (within connect_timeout), or for a probe.
    if (!b->ready && !((b->hooks.queue_while_connecting || b->first_attempt) && b->fd >= 0)) {
        want_connection(b);
        return false;
    }
    return send_command(b, fn, arg, argc, argv, lens);
}

bool backend_reconnecting_at_once(const Backend *b) { return b->first_attempt && b->fd >= 0 && !b->ready; }

bool backend_get(Backend *b, const char *key, size_t len, BackendReplyFn fn, void *arg)
{
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, len};
    return backend_command(b, 2, argv, lens, fn, arg);
}

bool backend_subscribe(Backend *b, int argc, const char **argv, const size_t *lens)
{
    if (b->fd < 0 || !append_command(b->out, argc, argv, lens))
        return false;
    b->push_mode = true;
    b->stats->redis_commands++;
    want_write(b);
    return true;
}

void backend_reset(Backend *b, const char *why)
{
    if (b->fd >= 0)
        backend_drop(b, BACKEND_UNAVAILABLE, "connection reset", why);
}

void backend_distrust(Backend *b) { b->distrusted = true; }

bool backend_ready(const Backend *b) { return b->ready; }

size_t backend_outstanding(const Backend *b) { return b->ring_len; }
