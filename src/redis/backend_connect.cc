// Connecting to Redis: an attempt (a socket, the connect, AUTH and SELECT queued behind it), the
// connection becoming ready, and the back-off between failed attempts, brought forward while
// commands wait for a Redis that cannot be reached. Internal to the backend (backend_state.h).
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "backend_state.h"
#include "clock.h"
#include "config.h"
#include "log.h"

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
    // The first failure is news, and so is a new reason (a refusal after a lost connection), at
    // most every 10 s (two reasons in turn are one story); the repeats while Redis stays down are
    // not. Every worker's connections fail alike: said once per proxy.
    char reason[sizeof(b->last_failure)];
    snprintf(reason, sizeof(reason), "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    uint64_t now = monotonic_ms();
    bool news = b->failures == 1 || (strcmp(reason, b->last_failure) != 0 && now - b->news_ms >= 10000);
    if (news)
        b->news_ms = now;
    memcpy(b->last_failure, reason, sizeof(reason));
    if (b->hooks.failure != NULL)
        snprintf(b->hooks.failure, b->hooks.failure_len, "redis %s%s: %s", b->target.display, b->hooks.label, reason);
    log_msg_once(news ? LOG_WARN : LOG_DEBUG, "redis %s%s: %s; retrying in %llums", b->target.display, b->hooks.label,
                 reason, (unsigned long long)delay);
    b->retry_at_ms = monotonic_ms() + delay;
    struct timeval tv = timeval_of_ms((uint64_t)delay);
    evtimer_add(b->reconnect_timer, &tv);
}

void backend_became_ready(Backend *b)
{
    b->ready = true;
    b->ready_ms = monotonic_ms();
    b->first_attempt = false;
    evtimer_del(b->patience_timer);
    b->stats->redis_connects++;
    b->stats->redis_connected = 1;
    b->stats->redis_tried = 1;
    if (b->hooks.failure != NULL)
        b->hooks.failure[0] = '\0';
    if (b->failures > 0)  // once per outage: a server that accepts then refuses would say it at each attempt
        log_msg(b->connected_said ? LOG_DEBUG : LOG_INFO, "redis %s%s: connected after %d failed attempt(s)",
                b->target.display, b->hooks.label, b->failures);
    else
        log_debug("redis %s%s: connected", b->target.display, b->hooks.label);
    b->connected_said = b->failures > 0;
    // (failures is reset once the connection has lasted: backend_drop)
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
        backend_became_ready(b);
}

static void on_auth_reply(void *arg, redisReply *r, BackendFailure f)
{
    on_handshake_reply((Backend *)arg, "AUTH", r, f);
}

static void on_select_reply(void *arg, redisReply *r, BackendFailure f)
{
    on_handshake_reply((Backend *)arg, "SELECT", r, f);
}

void backend_on_connect_timer(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    if (b->fd >= 0 && !b->connected)
        backend_drop_attempt(b, b->tr.ssl != NULL ? "TLS handshake not finished within connect_timeout (is it a TLS port?)"
                                                  : "connect_timeout reached");
}

void backend_on_reconnect_timer(evutil_socket_t, short, void *arg) { backend_connect((Backend *)arg); }

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

void backend_connect_again(Backend *b)
{
    struct timeval patience = timeval_of_ms(FIRST_ATTEMPT_PATIENCE_MS);
    evtimer_add(b->patience_timer, &patience);
    if (!b->target.by_name || b->address_count == 0) {
        backend_connect(b);
        return;
    }
    snprintf(b->target.ip, sizeof(b->target.ip), "%s", b->addresses[0]);
    b->address_next = 1;
    b->attempt_failures[0] = '\0';
    backend_connect_now(b);
}

// The first attempt after a cut takes long: its commands are answered, the attempt goes on.
void backend_on_patience_timer(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    if (!b->first_attempt || b->ready || b->fd < 0)
        return;
    b->first_attempt = false;  // commands from now on are refused until it is ready
    char why[80];
    snprintf(why, sizeof(why), "not connected within %llums of the cut", (unsigned long long)FIRST_ATTEMPT_PATIENCE_MS);
    backend_drop_attempt(b, why);
}

// A target given by name is resolved first (backend_resolve.cc), then connected to.
void backend_connect(Backend *b)
{
    if (b->target.by_name)
        backend_resolve(b);
    else
        backend_connect_now(b);
}

// An attempt failed before its socket was open: the name's next address at once, if it has one.
static void attempt_failed(Backend *b, const char *why)
{
    const char *detail;
    if (backend_next_address(b, why, &detail))
        backend_connect_now(b);
    else
        backend_schedule_reconnect(b, "cannot connect", detail);
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
        attempt_failed(b, strerror(errno));
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
        attempt_failed(b, strerror(err));
        return;
    }
    b->read_event = event_new(b->base, fd, EV_READ | EV_PERSIST, backend_on_readable, b);
    b->write_event = event_new(b->base, fd, EV_WRITE, backend_on_writable, b);
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
    transport_init(&b->tr, fd);
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
        if (backend_send_command(b, on_auth_reply, b, with_user ? 3 : 2, argv, lens))
            b->handshake_pending++;
    }
    if (c->redis_database != 0) {
        char db[24];
        int n = snprintf(db, sizeof(db), "%lld", (long long)c->redis_database);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        if (backend_send_command(b, on_select_reply, b, 2, argv, lens))
            b->handshake_pending++;
    }
}

// A command came while Redis cannot be reached: the next attempt comes RECONNECT_WANTED_MS after
// the last one at the latest. From the timer, never from here: this runs inside callbacks.
void backend_want_connection(Backend *b)
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
