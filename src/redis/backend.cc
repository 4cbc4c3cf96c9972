// The connection to one Redis: commands queued and written, their deadlines, and a connection
// dropped and its commands answered. Connecting is backend_connect.cc; reading replies,
// backend_read.cc; names and targets, backend_resolve.cc.
#include "backend.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "reply_frame.h"
#include "backend_state.h"
#include "resp_parser.h"

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
    b->serial++;
    b->sent = b->answered = 0;
    if (b->fd >= 0) {
        event_free(b->read_event);
        event_free(b->write_event);
        b->read_event = b->write_event = NULL;
        transport_close(&b->tr);  // (TLS: close_notify first)
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
    char saved[600];  // detail may point into the parser, which close_connection frees
    if (detail != NULL) {
        snprintf(saved, sizeof(saved), "%s", detail);
        detail = saved;
    }
    // A connection that served (it answered a command, or was up for a while) is news again, and
    // tried again at once, before its commands are answered, so that a reader whose fetch was cut
    // can ask again on the new one (lookup does). One dropped right after it was made, having
    // answered nothing (a server at maxclients, in protected mode, a balancer with no backend:
    // each accepts, then closes) is a failed attempt: backed off, or the proxy would reconnect in
    // a loop as fast as the server accepts.
    bool was_ready = b->ready && (b->answered > 0 || monotonic_ms() - b->ready_ms >= RECONNECT_MIN_MS);
    bool was_open = b->fd >= 0;
    size_t lost = close_connection(b);
    if (was_ready) {
        b->failures = 0;
        b->connected_said = false;
        log_msg_once(LOG_WARN, "redis %s%s: %s%s%s; reconnecting", b->target.display, b->hooks.label, what,
                     detail ? ": " : "", detail ? detail : "");
        b->first_attempt = true;
        backend_connect_again(b);
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

void backend_drop_attempt(Backend *b, const char *why)
{
    const char *detail;
    if (!backend_next_address(b, why, &detail)) {
        backend_drop(b, BACKEND_UNAVAILABLE, "cannot connect", detail);
        return;
    }
    // The same attempt, at the name's next address. The commands queued on this one were never
    // sent: answered (a cut read is asked again on the next, lookup_ask_again).
    size_t lost = close_connection(b);
    backend_connect_now(b);
    answer_lost(b, lost, BACKEND_UNAVAILABLE);
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

// Commands queued in this turn of the loop go out in one write at its end: the socket is almost
// always writable, and waiting for epoll to say so cost every batch a turn of the loop and two
// epoll_ctl. Only what the socket does not take waits for writability (wait_writable).
static void want_write(Backend *b)
{
    if (b->connected && !b->write_pending && evbuffer_get_length(b->out) > 0) {
        event_active(b->write_event, EV_WRITE, 1);
        b->write_pending = true;
    }
}

static void wait_writable(Backend *b)
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

bool backend_send_command(Backend *b, BackendReplyFn fn, void *arg, int argc, const char **argv,
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
    b->sent++;
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
    uint64_t serial = b->serial;
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
        if (b->serial != serial)
            return;  // the callback dropped the connection: everything is answered
    }
    // The next deadline: the oldest live command's, or the reset of the abandoned ones.
    uint64_t next = b->abandoned > 0 ? ring_at(b, 0)->deadline_ms + (ABANDONED_RESET_FACTOR - 1) * timeout : UINT64_MAX;
    if (b->abandoned < b->ring_len && ring_at(b, b->abandoned)->deadline_ms < next)
        next = ring_at(b, b->abandoned)->deadline_ms;
    if (next != UINT64_MAX)
        arm_timeout(b, next > now ? next - now : 0);
}

void backend_continue_connect(Backend *b)
{
    uint64_t serial = b->serial;
    if (!b->tr.handshaken && b->tr.ssl == NULL) {  // the TCP (or unix) connect, then TLS
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            backend_drop_attempt(b, strerror(err));
            return;
        }
        if (b->hooks.tls != NULL) {
            // The name checked: the one configured, else the host the target was given by (a seed
            // given by name keeps it after it was resolved), else its IP address.
            const Config *c = b->config;
            const char *name = c->redis_tls_server_name[0] != '\0' ? c->redis_tls_server_name
                               : b->target.host[0] != '\0'          ? b->target.host
                                                                    : b->target.ip;
            if (!transport_start_tls(&b->tr, b->hooks.tls, name)) {
                backend_drop_attempt(b, "TLS: out of memory");
                return;
            }
        }
    }
    char why[300];
    switch (transport_handshake(&b->tr, why, sizeof(why))) {
    case TRANSPORT_WANT_READ:
        event_add(b->read_event, NULL);  // (on_readable comes back here while not connected)
        return;
    case TRANSPORT_WANT_WRITE:
        event_add(b->write_event, NULL);
        b->write_pending = true;
        return;
    case TRANSPORT_FAILED:
        if (b->tr.tls_refused)  // (not a reset or an end: those are the connection's)
            backend_count_tls_failure(b);
        backend_drop_attempt(b, why);
        return;
    case TRANSPORT_DONE:
        break;
    }
    b->connected = true;
    evtimer_del(b->connect_timer);
    event_add(b->read_event, NULL);
    if (b->handshake_pending == 0)
        backend_became_ready(b);
    if (b->serial == serial)
        backend_write_queued(b);
}

void backend_count_tls_failure(Backend *b)
{
    (*(b->hooks.tls_failures != NULL ? b->hooks.tls_failures : &b->stats->redis_tls_failures))++;
}

void backend_write_queued(Backend *b)
{
    if (evbuffer_get_length(b->out) > 0 && transport_send(&b->tr, b->out) < 0 && errno != EAGAIN &&
        errno != EINTR) {
        if (errno == EPROTO && b->tr.tls_refused)
            backend_count_tls_failure(b);
        backend_drop(b, BACKEND_UNAVAILABLE, "connection lost", errno == EPROTO ? b->tr.error : strerror(errno));
        return;
    }
    if (b->tr.write_wants_read)
        return;  // TLS: the read event (always on) brings it back
    wait_writable(b);  // what the socket did not take
}

void backend_on_writable(evutil_socket_t fd, short, void *arg)
{
    Backend *b = (Backend *)arg;
    b->write_pending = false;
    if (!b->connected) {
        backend_continue_connect(b);
        return;
    }
    if (b->tr.read_wants_write) {  // TLS: a read waited for this
        uint64_t serial = b->serial;
        backend_on_readable(fd, EV_READ, b);
        if (b->serial != serial)
            return;
    }
    backend_write_queued(b);
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
    b->connect_timer = evtimer_new(base, backend_on_connect_timer, b);
    b->timeout_timer = evtimer_new(base, on_timeout_timer, b);
    b->reconnect_timer = evtimer_new(base, backend_on_reconnect_timer, b);
    b->patience_timer = evtimer_new(base, backend_on_patience_timer, b);
    if (b->ring == NULL || !b->out || !b->reader || !b->connect_timer || !b->timeout_timer ||
        !b->reconnect_timer || !b->patience_timer) {
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
    if (b->patience_timer)
        event_free(b->patience_timer);
    if (b->reader)
        redisReaderFree(b->reader);
    if (b->out)
        evbuffer_free(b->out);
    free(b->batch);
    free(b->ring);
    free(b);
}

bool backend_command(Backend *b, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                     void *arg)
{
    // Until the connection is ready, a command could wait on a connect that never finishes (a
    // host that drops SYNs): refused, so the caller answers at once. Except on the first
    // attempt after a ready connection dropped (within connect_timeout), or for a probe.
    if (!b->ready && !((b->hooks.queue_while_connecting || b->first_attempt) && b->fd >= 0)) {
        backend_want_connection(b);
        return false;
    }
    return backend_send_command(b, fn, arg, argc, argv, lens);
}

bool backend_reconnecting_at_once(const Backend *b) { return b->first_attempt && b->fd >= 0 && !b->ready; }

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
