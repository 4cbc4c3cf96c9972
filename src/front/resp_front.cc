#include "resp_front.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "address.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "handover.h"
#include "log.h"
#include "protected_mode.h"
#include "resp_client.h"
#include "scoreboard.h"
#include "transport.h"

// --- connections --------------------------------------------------------------------------

static void client_close(RespClient *c)
{
    client_memory_set(c->front->env->client_memory, &c->memory, 0);
    // Answers still on their way from Redis are dropped when they arrive.
    reply_queue_abandon(&c->replies);
    list_remove(&c->link);
    event_free(c->read_event);
    event_free(c->write_event);
    event_free(c->deadline_event);
    if (c->auth_deadline != NULL)
        event_free(c->auth_deadline);
    if (c->tls != NULL) {
        if (!c->tls->handshaken)
            c->front->env->stats->tls_handshake_failures[FRONT_RESP]++;
        transport_close(c->tls);  // close_notify when handshaken, and the socket
        free(c->tls);
    } else {
        close(c->fd);
    }
    evbuffer_free(c->replies.out);
    resp_parser_free(&c->parser);
    free(c->in);
    free(c->name);
    resp_transaction_free(c->transaction);
    c->front->env->client_closed(c->front->env->arg, FRONT_RESP);
    free(c);
}

// Answers a protocol error after every earlier answer, then closes, as Redis does: the stream
// cannot be trusted past this point.
void resp_answer_protocol_error(RespClient *c, const char *error)
{
    ReplySlot *queued;
    evbuffer *out = reply_queue_immediate(&c->replies, &c->front->slots, &queued);
    if (out != NULL)
        resp_add_error(out, "ERR %s", error);
    if (queued != NULL)
        resp_finish_slot(queued);
    c->front->env->stats->bad_requests[FRONT_RESP]++;
    c->closing = true;
    resp_schedule_write(c);
}

static const int UNAUTHENTICATED_MAX_ARGS = 10;

void resp_update_guard(RespClient *c)
{
    RespFront *f = c->front;
    c->guarded = f->env->access_log != NULL || (f->auth_required && (c->user == NULL || !c->user->allkeys));
    if (c->user != NULL && c->auth_deadline != NULL) {  // logged in: no deadline for it any more
        event_free(c->auth_deadline);
        c->auth_deadline = NULL;
    }
    // Before it logs in, a client's commands are as short as a login needs (HELLO 3 AUTH u p
    // SETNAME n: 7 arguments), as Redis bounds an unauthenticated client's (CVE-2021-32675): it
    // cannot make the worker hold max_request_size for it.
    int most = (int)f->env->config->resp_max_args;
    c->parser.max_args = f->auth_required && c->user == NULL && most > UNAUTHENTICATED_MAX_ARGS
                             ? UNAUTHENTICATED_MAX_ARGS : most;
}

static void client_close(RespClient *c);

// [users]: a connection that does not log in within request_timeout of connecting is closed, so
// that one answered only NOAUTH cannot hold its slot for ever by keeping busy.
static void on_auth_deadline(evutil_socket_t, short, void *arg)
{
    RespClient *c = (RespClient *)arg;
    c->front->env->stats->auth_timeouts++;
    log_debug("worker %d: RESP client %llu did not log in within request_timeout; closing", c->front->env->id,
              (unsigned long long)c->id);
    client_close(c);
}


// --- bounds: what one client may hold (client_memory.h) ----------------------------------

static const char *const evict_reasons[EVICT_REASONS] = {
    "sent a command larger than max_request_size",
    "held answers unread and lookups under way past max_client_output",
    "held the most while the worker's clients passed max_client_memory",
};

// Counted always; logged with the client's address (client_memory_log_quietly).
static void log_eviction(RespClient *c, EvictReason reason)
{
    RespFront *f = c->front;
    f->env->stats->clients_evicted[reason]++;
    bool quiet = client_memory_log_quietly(f->env->client_memory, monotonic_ms());
    char address[128];
    address_of_peer(c->fd, address, sizeof(address));
    log_msg(quiet ? LOG_DEBUG : LOG_WARN, "worker %d: closing RESP client %s (id %llu, holding %zu bytes): it %s",
            f->env->id, address, (unsigned long long)c->id, c->memory, evict_reasons[reason]);
}

static void evict(RespClient *c, EvictReason reason)
{
    log_eviction(c, reason);
    client_close(c);
}

// Past a bound while the client is being served (maybe deep inside its own commands): it reads
// nothing more, and is closed from its write event, on the next turn of the loop.
static void evict_later(RespClient *c, EvictReason reason)
{
    if (c->evicting)
        return;
    c->evicting = true;
    c->evict_reason = reason;
    if (c->reading) {
        c->reading = false;
        event_del(c->read_event);
    }
    event_active(c->write_event, EV_WRITE, 1);  // even while processing: on_writable evicts first
}

// Brings the client's share of the worker's client memory up to date: its input buffer, its
// answers not yet written, and what its slots hold (lookups under way, answers waiting for their
// turn). Past max_client_output, the client is closed. `unsent`: the length of replies.out.
static void account_with(RespClient *c, size_t unsent)
{
    const Config *config = c->front->env->config;
    size_t output = unsent + c->replies.held;
    size_t queued = c->transaction != NULL ? resp_transaction_bytes(c->transaction) : 0;
    size_t tls = c->tls != NULL ? TLS_CONNECTION_BYTES : 0;
    client_memory_set(c->front->env->client_memory, &c->memory, c->in_cap + output + queued + tls);
    if (output > (size_t)config->max_client_output)
        evict_later(c, EVICT_OUTPUT);
}

// Out of line: finish_slot, on every answer, stays small enough to be inlined.
__attribute__((noinline)) void resp_account(RespClient *c)
{
    account_with(c, evbuffer_get_length(c->replies.out));
}

size_t resp_front_most_memory(RespFront *f, void **client)
{
    RespClient *most = NULL;
    for (ListLink *l = list_first(&f->clients); l != &f->clients; l = l->next) {
        RespClient *c = resp_client_of(l);
        if (c->memory > 0 && (most == NULL || c->memory > most->memory))
            most = c;
    }
    *client = most;
    return most != NULL ? most->memory : 0;
}

void resp_front_evict(RespFront *f, void *client, EvictReason reason) { evict((RespClient *)client, reason); }


// Past max_client_memory, no client's command runs until the worker has evicted enough
// (resp_front_resume): one turn of the loop cannot take the worker far past its bound.
static bool may_read(const RespClient *c)
{
    return !c->closing && !c->evicting && !c->front->env->client_memory->over && !c->replies.failed &&
           c->replies.pending < MAX_PENDING_REPLIES &&
           evbuffer_get_length(c->replies.out) < MAX_UNSENT_BYTES;
}

static void update_reading(RespClient *c)
{
    bool want = may_read(c);
    if (want == c->reading)
        return;
    c->reading = want;
    if (want)
        event_add(c->read_event, c->front->idle_timeout);
    else
        event_del(c->read_event);
    // Bytes TLS has already decrypted wait in OpenSSL, where no readiness of the socket tells.
    if (want && c->tls != NULL && transport_pending(c->tls))
        event_active(c->read_event, EV_READ, 1);
}
// Activates the write event of each client that was held back: on_writable runs its commands
// (if it has any waiting) and turns reading back on, each in its own callback.
void resp_front_resume(RespFront *f)
{
    for (ListLink *l = list_first(&f->clients); l != &f->clients; l = l->next) {
        RespClient *c = resp_client_of(l);
        if (!c->reading && may_read(c))
            event_active(c->write_event, EV_WRITE, 1);
    }
}


// Runs every complete command in the input (all of them in one go: their answers leave in one
// write), unless backpressure says to wait.
static void process_input(RespClient *c)
{
    c->processing = true;
    // One clock read before the batch and one after it: the hits answered in it are observed
    // with that time (lookup_observe_hits), not a clock read each.
    uint64_t started_us = monotonic_us();
    size_t at = 0;
    bool partial = false;  // the input ends inside a command
    while (may_read(c) && at < c->in_len) {
        RespParseStatus status = resp_parse(&c->parser, c->in + at, c->in_len - at);
        if (status == RESP_INCOMPLETE) {
            partial = true;
            break;
        }
        if (status == RESP_ERROR) {
            resp_answer_protocol_error(c, c->parser.error);
            at = c->in_len;
            break;
        }
        if (status == RESP_COMMAND) {
            c->used = true;
            resp_dispatch(c, resp_arg_base(&c->parser, c->in + at), c->parser.args, c->parser.argc);
        }
        at += c->parser.consumed;
    }
    if (c->front->env->lookup->hits_unobserved > 0)
        lookup_observe_hits(c->front->env->lookup, FRONT_RESP, monotonic_us() - started_us);
    if (at > 0) {
        memmove(c->in, c->in + at, c->in_len - at);
        c->in_len -= at;
    }
    // The deadline runs from a command's first byte to its last (client_timeout only sees
    // silence, and a client trickling a byte a second is never silent). Restarted when a command
    // completes and the next one has begun; off while no command is under way, or while the
    // proxy itself holds the input back (backpressure: not the client's doing).
    if (!partial) {
        if (c->deadline_armed)  // (event_del costs more than this test, on every read)
            event_del(c->deadline_event);
        c->deadline_armed = false;
        if (c->front->draining && c->front->handover_targets == NULL)
            c->closing = true;  // no command under way: close once every answer is sent
    } else if (at > 0 || !c->deadline_armed) {
        event_add(c->deadline_event, c->front->request_timeout);
        c->deadline_armed = true;
    }
    if (c->in_len == 0 && c->in_cap > 64 * 1024) {  // let a one-off huge command's memory go
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    c->processing = false;
    resp_account(c);
    update_reading(c);
}

static void on_writable(evutil_socket_t fd, short, void *arg);
static bool owes_nothing(const RespClient *c);
static bool hand_over(RespClient *c);

static void on_deadline(evutil_socket_t, short, void *arg)
{
    RespClient *c = (RespClient *)arg;
    if (c->tls != NULL && !c->tls->handshaken) {
        log_debug("worker %d: RESP client %llu did not finish its TLS handshake within request_timeout, closing",
                  c->front->env->id, (unsigned long long)c->id);
        client_close(c);
        return;
    }
    log_debug("worker %d: RESP client %llu sent no complete command within request_timeout, closing",
              c->front->env->id, (unsigned long long)c->id);
    client_close(c);
}

// Done with the client: it gets the answers already made or under way, then it is closed.
static void close_after_answers(RespClient *c)
{
    c->closing = true;
    if (c->replies.head == NULL && evbuffer_get_length(c->replies.out) == 0)
        client_close(c);
    else
        resp_schedule_write(c);
}

// One step of a TLS client's handshake, on either readiness. False when it is not done (it
// waits, or failed and c was closed).
static bool tls_handshake_step(RespClient *c)
{
    char why[200];
    switch (transport_handshake(c->tls, why, sizeof(why))) {
    case TRANSPORT_DONE:
        c->front->env->stats->tls_handshakes[FRONT_RESP]++;
        if (c->deadline_armed)
            event_del(c->deadline_event);  // the handshake's bound; a command's comes with its bytes
        c->deadline_armed = false;
        c->reading = !may_read(c);  // (the handshake read whatever the bounds said: now they decide)
        update_reading(c);
        return true;
    case TRANSPORT_WANT_READ:
        // The handshake reads even while the worker holds its clients' commands back (past
        // max_client_memory): it holds no command, and would otherwise wait out request_timeout.
        if (!c->reading) {
            c->reading = true;
            event_add(c->read_event, c->front->idle_timeout);
        }
        return false;
    case TRANSPORT_WANT_WRITE:
        event_add(c->write_event, NULL);  // request_timeout bounds the whole handshake
        return false;
    case TRANSPORT_FAILED:
        break;
    }
    log_debug("worker %d: RESP client %llu: %s", c->front->env->id, (unsigned long long)c->id, why);
    client_close(c);
    return false;
}

// TLS's own work around a client's reads and writes, kept off the plain path (one test of c->tls
// there): the handshake's steps, and a read or a write that waits for the other readiness.

// Before a read. False when none is to happen now (c may have been closed).
static __attribute__((noinline)) bool tls_before_read(RespClient *c, int fd)
{
    if (!c->tls->handshaken && (!tls_handshake_step(c) || !c->reading))
        return false;
    if (c->tls->write_wants_read) {
        // The read event was on for a write that waits for the socket to be readable.
        c->tls->write_wants_read = false;
        if (!may_read(c)) {
            c->reading = true;  // (so that update_reading turns the event off again)
            update_reading(c);
        }
        on_writable(fd, EV_WRITE, c);  // may close c
        return false;
    }
    return true;
}

// A read into the client's input: as recv's.
static __attribute__((noinline)) ssize_t tls_read(RespClient *c)
{
    uint64_t raw_before = c->tls->raw_read;
    ssize_t n = transport_recv(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && errno == EAGAIN) {
        if (c->tls->read_wants_write)
            event_add(c->write_event, c->front->idle_timeout);  // on_writable reads again
        if (c->tls->raw_read != raw_before && !c->deadline_armed) {
            // Part of a record: a command has begun, though none of its bytes can be read yet.
            // Its deadline starts now, as a plain command's does at its first byte (a client
            // sending a record a byte at a time must not hold the connection for ever).
            event_add(c->deadline_event, c->front->request_timeout);
            c->deadline_armed = true;
        }
        errno = EAGAIN;
    }
    return n;
}

// Before a write. False when none is to happen now (c may have been closed).
static __attribute__((noinline)) bool tls_before_write(RespClient *c, short what)
{
    if (!c->tls->handshaken) {
        if (!(what & EV_TIMEOUT) && tls_handshake_step(c) && c->reading)
            event_active(c->read_event, EV_READ, 1);  // what came with the handshake's last flight
        return false;
    }
    if (c->tls->read_wants_write) {
        c->tls->read_wants_write = false;
        if (c->reading)
            event_active(c->read_event, EV_READ, 1);  // the read that waited for this
    }
    return true;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    RespClient *c = (RespClient *)arg;
    if (what & EV_TIMEOUT) {
        log_debug("worker %d: RESP client %llu idle for client_timeout, closing", c->front->env->id,
                  (unsigned long long)c->id);
        client_close(c);
        return;
    }
    if (__builtin_expect(c->tls != NULL, 0) && !tls_before_read(c, fd))
        return;
    if (c->in_cap - c->in_len < 1024) {
        // What is left in the input is one command not yet complete (complete ones have run, or
        // wait with reading off). The buffer never grows past max_request_size: full, that
        // command cannot be complete within the bound.
        size_t limit = (size_t)c->front->env->config->max_request_size;
        if (c->in_len >= limit) {
            log_eviction(c, EVICT_REQUEST);
            resp_answer_protocol_error(c, "Protocol error: request larger than max_request_size");
            update_reading(c);
            return;
        }
        size_t cap = c->in_cap ? c->in_cap * 2 : INPUT_START;
        if (cap > limit)
            cap = limit;
        char *in = (char *)realloc(c->in, cap);
        if (in == NULL) {
            client_close(c);
            return;
        }
        c->in = in;
        c->in_cap = cap;
    }
    ssize_t n = __builtin_expect(c->tls != NULL, 0) ? tls_read(c)
                                                    : recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            client_close(c);
        return;
    }
    if (n == 0) {
        // The client has finished sending (it may have only shut down its writing half, as
        // `printf 'GET k\r\n' | nc` does): answer what it asked, then close.
        c->closing = true;
        update_reading(c);
        close_after_answers(c);
        return;
    }
    c->in_len += (size_t)n;
    process_input(c);
    if (__builtin_expect(c->tls != NULL, 0) && c->reading && transport_pending(c->tls))
        event_active(c->read_event, EV_READ, 1);  // another record is decrypted already
    // The answers made now, in one write: when other events are ready in this turn of the loop,
    // at its end, after they have run (as answers from Redis are: resp_schedule_write). Written
    // at once, each answer would wake its client's side while the next client's commands are
    // still being read (a cross-CPU wakeup each on a VM).
    if (event_base_get_num_events(c->front->env->base, EVENT_BASE_COUNT_ACTIVE) > 0)
        event_active(c->write_event, EV_WRITE, 1);
    else
        on_writable(fd, EV_WRITE, c);  // alone in its turn: nothing to wait for; may close c
}


static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    RespClient *c = (RespClient *)arg;
    evbuffer *out = c->replies.out;
    if (c->evicting) {
        evict(c, c->evict_reason);
        return;
    }
    if (__builtin_expect(c->tls != NULL, 0) && !tls_before_write(c, what))
        return;
    if (what & EV_TIMEOUT) {
        // Its answers have waited client_timeout for room in the socket: a client that does not
        // read holds its slot and its output like one that does not send (nginx's send_timeout).
        log_debug("worker %d: RESP client %llu read none of its answers within client_timeout, closing",
                  c->front->env->id, (unsigned long long)c->id);
        c->front->env->stats->clients_timed_out[FRONT_RESP]++;
        client_close(c);
        return;
    }
    if (c->replies.failed) {
        // An answer could not be stored: every later one would pair with the wrong command.
        log_warn("worker %d: out of memory for an answer to RESP client %llu; closing it",
                 c->front->env->id, (unsigned long long)c->id);
        client_close(c);
        return;
    }
    if (evbuffer_get_length(out) > 0) {
        int n = __builtin_expect(c->tls != NULL, 0) ? transport_send(c->tls, out) : evbuffer_write(out, fd);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            client_close(c);
            return;
        }
        if (n < 0 && c->tls != NULL && c->tls->write_wants_read) {
            // TLS must read before it can write on: on_readable writes again when it can.
            account_with(c, evbuffer_get_length(out));
            event_add(c->read_event, c->front->idle_timeout);
            return;
        }
    }
    size_t unsent = evbuffer_get_length(out);
    account_with(c, unsent);
    if (unsent > 0) {
        // The socket is full: wait until it drains, client_timeout at most between two writes.
        event_add(c->write_event, c->front->idle_timeout);
        return;
    }
    if (c->closing && c->replies.head == NULL) {
        client_close(c);
        return;
    }
    // Answers went out: commands held back by backpressure may run now; theirs go out next turn.
    if (c->in_len > 0 && may_read(c) && !c->reading) {
        process_input(c);
        if (evbuffer_get_length(out) > 0 || c->replies.failed)
            event_active(c->write_event, EV_WRITE, 1);
        return;
    }
    if (c->front->handover_targets != NULL && owes_nothing(c) && hand_over(c))
        return;  // a retiring worker's client, at a boundary: served by a new worker from here
    update_reading(c);
}

// A client on a connected socket: accepted here, or handed over by a retiring worker. NULL (the
// socket closed) when out of memory.
static RespClient *client_open(RespFront *f, int fd, bool tls)
{
    RespClient *c = (RespClient *)calloc(1, sizeof(RespClient));
    if (c != NULL && tls) {
        c->tls = (Transport *)malloc(sizeof(Transport));
        if (c->tls != NULL)
            transport_init(c->tls, fd);
        if (c->tls == NULL || !transport_start_tls_server(c->tls, f->env->tls)) {
            free(c->tls);
            free(c);
            c = NULL;
        }
    }
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->front = f;
    c->fd = fd;
    c->id = __atomic_add_fetch(f->env->client_ids, 1, __ATOMIC_RELAXED);
    c->replies.out = evbuffer_new();
    c->replies.owner = c;
    c->replies.protocol = 2;
    c->read_event = event_new(f->env->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->write_event = event_new(f->env->base, fd, EV_WRITE, on_writable, c);
    c->deadline_event = evtimer_new(f->env->base, on_deadline, c);
    if (c->replies.out == NULL || c->read_event == NULL || c->write_event == NULL || c->deadline_event == NULL) {
        if (c->replies.out)
            evbuffer_free(c->replies.out);
        if (c->read_event)
            event_free(c->read_event);
        if (c->write_event)
            event_free(c->write_event);
        if (c->deadline_event)
            event_free(c->deadline_event);
        if (c->tls != NULL)
            transport_close(c->tls);
        else
            close(fd);
        free(c->tls);
        free(c);
        return NULL;
    }
    const Config *config = f->env->config;
    if (f->auth_required) {
        // As Redis: a default user that is on and takes any password needs no AUTH.
        const AclUser *d = acl_user_find(&config->users, "default", 7);
        if (d != NULL && d->enabled && d->nopass)
            c->user = d;
        else if ((c->auth_deadline = evtimer_new(f->env->base, on_auth_deadline, c)) != NULL)
            event_add(c->auth_deadline, f->request_timeout);
    }
    resp_parser_init(&c->parser, (int)config->resp_max_args, (size_t)config->max_key_size);
    resp_update_guard(c);
    list_push_front(&f->clients, &c->link);
    f->env->client_opened(f->env->arg, FRONT_RESP);
    c->reading = false;
    update_reading(c);
    if (tls) {  // the handshake is bounded as a command is: request_timeout
        event_add(c->deadline_event, f->request_timeout);
        c->deadline_armed = true;
        resp_account(c);  // what OpenSSL holds for it counts from here
    }
    return c;
}

static void accept_client(RespFront *f, int fd, struct sockaddr *peer, bool tls)
{
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));  // answers are small: send now
    if (f->protect && !address_is_loopback(peer)) {
        protected_mode_refuse(fd, tls ? REFUSE_SILENTLY : REFUSE_RESP, &f->env->stats->clients_denied[FRONT_RESP]);
        close(fd);
        return;
    }
    client_open(f, fd, tls);
}

static void on_accept(evconnlistener *, evutil_socket_t fd, struct sockaddr *peer, int, void *arg)
{
    accept_client((RespFront *)arg, fd, peer, false);
}

static void on_accept_tls(evconnlistener *, evutil_socket_t fd, struct sockaddr *peer, int, void *arg)
{
    accept_client((RespFront *)arg, fd, peer, true);
}

void resp_front_adopt(RespFront *f, int fd, const HandoverClient *state)
{
    // A handed-over connection meets this generation's rules as a new one would: protected mode
    // for its address, and its user as this [users] has it. One whose user is gone or turned off
    // is closed, as Redis closes a deleted user's clients: neither unrestricted (no [users] now)
    // nor another user's.
    if (f->protect) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || !address_is_loopback((struct sockaddr *)&peer)) {
            protected_mode_refuse(fd, REFUSE_RESP, &f->env->stats->clients_denied[FRONT_RESP]);
            close(fd);
            return;
        }
    }
    if (listener_set_address_is_tls(&f->listeners, fd)) {
        // Its address is marked tls from this reload on: a plain client is not served there.
        log_info("worker %d: RESP client %llu closed at the reload: its address is TLS now", f->env->id,
                 (unsigned long long)state->id);
        close(fd);
        return;
    }
    const AclUser *user = NULL;
    if (state->user_len > 0) {
        user = state->user_len <= sizeof(state->user)
                   ? acl_user_find(&f->env->config->users, state->user, state->user_len) : NULL;
        if (user == NULL || !user->enabled) {
            log_info("worker %d: RESP client %llu closed at the reload: its user is no longer in [users], or is off",
                     f->env->id, (unsigned long long)state->id);
            close(fd);
            return;
        }
    }
    RespClient *c = client_open(f, fd, false);  // admitted by the worker it comes from (never TLS)
    if (c == NULL)
        return;
    if (user != NULL)
        c->user = user;
    c->used = state->used != 0;
    if (state->id != 0)
        c->id = state->id;  // its id for life, as Redis's
    c->replies.protocol = state->protocol == 3 ? 3 : 2;
    if (state->name_len > 0 && state->name_len <= sizeof(state->name))
        c->name = strndup(state->name, state->name_len);
    resp_update_guard(c);
    f->env->stats->connections_handed_over++;
    log_debug("worker %d: RESP client %llu handed over from the previous generation", f->env->id,
              (unsigned long long)c->id);
}

// A retiring worker's client that owes nothing (no command under way, no answer unsent, no unread
// input of ours) goes to the next new worker; its socket, closed here, lives on there. Whatever
// the client sends meanwhile waits in the kernel for the new worker. False if no target took it.
static bool hand_over(RespClient *c)
{
    RespFront *f = c->front;
    HandoverClient state;
    memset(&state, 0, sizeof(state));
    state.used = c->used;
    state.id = c->id;
    state.protocol = (uint32_t)c->replies.protocol;
    if (c->user != NULL) {
        state.user_len = (uint32_t)strlen(c->user->name);
        memcpy(state.user, c->user->name, state.user_len);
    }
    if (c->name != NULL) {
        state.name_len = (uint32_t)strlen(c->name);
        memcpy(state.name, c->name, state.name_len);
    }
    for (int tries = 0; tries < f->handover_count; tries++) {
        int target = f->handover_targets[f->handover_next++ % f->handover_count];
        if (handover_send(target, HANDOVER_CLIENT, &c->fd, 1, &state, sizeof(state))) {
            client_close(c);
            return true;
        }
    }
    // Every new worker's queue full, or gone: shortly again (the deadline bounds the tries).
    if (!evtimer_pending(f->handover_retry, NULL)) {
        struct timeval tv = {0, 20 * 1000};
        evtimer_add(f->handover_retry, &tv);
    }
    return false;
}

// (A TLS client is never handed over: its session lives in this process. It stays, and is served
// here until it closes, or until shutdown_timeout ends this worker.)
static bool owes_nothing(const RespClient *c)
{
    return c->tls == NULL && !c->closing && !c->replies.failed && c->in_len == 0 && c->replies.head == NULL && c->transaction == NULL &&
           evbuffer_get_length(c->replies.out) == 0;
}

static void hand_over_idle(RespFront *f)
{
    for (ListLink *l = list_first(&f->clients), *next; l != &f->clients; l = next) {
        next = l->next;  // (a client handed over leaves the list)
        RespClient *c = resp_client_of(l);
        if (owes_nothing(c) && !hand_over(c))
            return;  // every target refused: the retry timer goes on from here
    }
}

static void on_handover_retry(evutil_socket_t, short, void *arg) { hand_over_idle((RespFront *)arg); }

void resp_front_hand_over(RespFront *f, const int *targets, int n, bool revoked)
{
    f->draining = true;
    f->handover_targets = targets;
    f->handover_count = n;
    hand_over_idle(f);
    if (!revoked)
        return;
    // Who may read what has changed: a client in the middle of something (a transaction, a
    // pipeline) is not served on here by the old rules until it reaches a boundary; it gets the
    // answers already under way, then is closed, and reconnects to the new generation.
    for (ListLink *l = list_first(&f->clients), *next; l != &f->clients; l = next) {
        next = l->next;  // (a client closed here leaves the list)
        RespClient *c = resp_client_of(l);
        if (owes_nothing(c))
            continue;  // handed over (now, or when a target has room)
        c->closing = true;  // (a TLS one too: it stays here, served by the old rules otherwise)
        update_reading(c);
        close_after_answers(c);
    }
}

static void on_accept_error(evconnlistener *, void *arg)
{
    ((RespFront *)arg)->env->pause_accepting(((RespFront *)arg)->env->arg, "RESP", EVUTIL_SOCKET_ERROR());
}

RespFront *resp_front_create(const FrontEnv *env, const ListenFds *listen_fds)
{
    RespFront *f = (RespFront *)calloc(1, sizeof(RespFront));
    if (f == NULL)
        return NULL;
    f->env = env;
    f->protect = protected_mode_active(env->config);
    f->auth_required = env->config->users.count > 0;
    list_init(&f->clients);
    struct timeval idle = timeval_of_ms((uint64_t)env->config->client_timeout_ms);
    f->idle_timeout = event_base_init_common_timeout(env->base, &idle);
    struct timeval deadline = timeval_of_ms((uint64_t)env->config->request_timeout_ms);
    f->request_timeout = event_base_init_common_timeout(env->base, &deadline);
    f->handover_retry = evtimer_new(env->base, on_handover_retry, f);
    ListenHandlers how = {on_accept, on_accept_tls, f, on_accept_error, NULL, NULL};
    if (f->idle_timeout == NULL || f->request_timeout == NULL || f->handover_retry == NULL ||
        (listen_fds_any_tls(listen_fds) && env->tls == NULL) || !listener_set_open(&f->listeners, env->base, listen_fds, &how)) {
        resp_front_destroy(f);
        return NULL;
    }
    return f;
}

void resp_front_destroy(RespFront *f)
{
    if (f == NULL)
        return;
    while (!list_empty(&f->clients))
        client_close(resp_client_of(list_first(&f->clients)));
    listener_set_free(&f->listeners);
    if (f->handover_retry != NULL)
        event_free(f->handover_retry);
    reply_pool_free(&f->slots);
    free(f->keys);
    free(f);
}

void resp_front_drain(RespFront *f)
{
    f->draining = true;
    for (ListLink *l = list_first(&f->clients), *next; l != &f->clients; l = next) {
        next = l->next;  // (a client closed here leaves the list)
        RespClient *c = resp_client_of(l);
        // A command under way, or a client that has not sent its first one yet (it connected
        // for it): process_input closes it once that is complete.
        if (c->in_len > 0 || !c->used)
            continue;
        close_after_answers(c);
    }
}

void resp_front_set_accepting(RespFront *f, bool accepting)
{
    listener_set_enable(&f->listeners, accepting);
}

ListenerSet *resp_front_listeners(RespFront *f) { return &f->listeners; }
