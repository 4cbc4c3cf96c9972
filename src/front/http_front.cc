#include "http_front.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>  // a request's HTTP version, which 2.1 has no getter for
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "access_log.h"
#include "acl.h"
#include "address.h"
#include "backend.h"
#include "clock.h"
#include "cache.h"
#include "config.h"
#include "http_adoption.h"
#include "http_credentials.h"
#include "http_message.h"
#include "key_decode.h"
#include "list.h"
#include "log.h"
#include "lookup.h"
#include "protected_mode.h"
#include "redis_error.h"
#include "front_env.h"

// What the front keeps per connection, beside evhttp's own state: the request deadline.
//
// The deadline for a whole request (request line, headers and body) runs from its first byte,
// not from the last byte seen as client_timeout does: a client trickling a byte a second must
// not hold a connection slot for ever. Between requests, client_timeout alone applies. Kept off
// the hot path: a watch on the connection's input exists only while the connection waits for
// a request's first byte (an evbuffer callback runs on every change evhttp makes to the buffer,
// a dozen per request); it arms the timer and goes. The timer is not touched per request: when
// it fires it looks whether a request was completed since it was armed, and if so either arms
// again (more is under way) or goes back to watching (the connection is idle).
struct HttpClient {
    HttpFront *front;
    evhttp_connection *evcon;
    bufferevent *bev;
    int fd;
    evbuffer_cb_entry *input_watch;  // while waiting for a request's first byte, else NULL
    event *deadline;                 // request_timeout
    uint32_t requests;               // complete requests received on this connection
    bool tls;                        // a TLS address's
    bool awaiting_handshake;         // TLS: the deadline bounds its handshake first
    bool handshake_counted;          // TLS: counted in tls_handshakes
    uint32_t requests_at_arm;
    bool busy;                       // a request of this connection is being answered
    size_t memory;                   // its answer's bytes not yet written, and its TLS state (client_memory.h)
    size_t held;                     // TLS_CONNECTION_BYTES for a TLS connection, else 0
    uint64_t started_us;             // when its request was read: only with an access log
    char peer[80];                   // its address, for the access log: found at its first line
    // The last Authorization header that logged in on this connection, and as whom: a keep-alive
    // client sends the same one with every request, which then costs a comparison, not a hash.
    char *credentials;
    size_t credentials_len;
    const AclUser *user;
    ListLink unflushed;              // in HttpFront.unflushed while its answer waits for the turn's end
    bool flush_pending;
};

struct HttpFront {
    const FrontEnv *env;
    evhttp *http;
    evhttp *https;           // the same for the addresses marked tls; NULL: none
    ListenerSet listeners;
    HttpAdoption adoption;   // each connection, from its accept (http_adoption.h)
    HttpClient **by_fd;      // open connections by socket: a request finds its client in O(1)
    size_t by_fd_cap;
    bool draining;           // the worker is stopping: every answer closes its connection
    bool revoked;            // ... and a reload changed who may read what: nothing more is served
    bool protect;            // protected mode: clients not on loopback are refused
    bool auth_required;      // [users] defined: every request carries a user's credentials
    char *log_key;           // with an access log: a request's key, decoded again for its line
    const AclUser *anonymous;  // the default user when it is on and takes any password: a request
                               // without credentials is its (as RESP needs no AUTH then); else NULL
    const struct timeval *request_timeout;  // a libevent common timeout: O(1) arming
    // Answers made while their request is read (hits, errors) are written together at the end of
    // the loop's turn, as evhttp itself writes (send_reply says why).
    ListLink unflushed;      // HttpClient.unflushed
    event *flush;            // made active, once a turn, by the first answer that waits
    HttpClient *reading;     // whose request on_request is reading: its answer waits for the turn's end
    // The constant parts of a value's answer head (compose_head), made once from the settings.
    char content_type_line[160];   // "OK\r\nContent-Type: <content_type>"
    size_t content_type_line_len;
    char cache_control_lines[300];  // "\r\nCache-Control: <cache_control>\r\nAge: ", or ""
    size_t cache_control_lines_len;
};

static HttpClient *client_of(HttpFront *h, evhttp_connection *evcon)
{
    if (evcon == NULL)
        return NULL;  // the client went away; evhttp detached the request
    bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    int fd = bufferevent_getfd(bev);
    HttpClient *c = fd >= 0 && (size_t)fd < h->by_fd_cap ? h->by_fd[fd] : NULL;
    return c != NULL && c->evcon == evcon ? c : NULL;
}

static void arm_deadline(HttpClient *c)
{
    c->requests_at_arm = c->requests;
    event_add(c->deadline, c->front->request_timeout);
}

static void on_input(evbuffer *input, const evbuffer_cb_info *info, void *arg);

static void watch_input(HttpClient *c)
{
    if (c->input_watch == NULL)
        c->input_watch = evbuffer_add_cb(bufferevent_get_input(c->bev), on_input, c);
}

static void unwatch_input(HttpClient *c)
{
    if (c->input_watch != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_watch);
    c->input_watch = NULL;
}

static void on_input(evbuffer *, const evbuffer_cb_info *info, void *arg)
{
    HttpClient *c = (HttpClient *)arg;
    if (info->n_added > 0) {  // the first byte of a request
        unwatch_input(c);
        arm_deadline(c);
    }
}

// TLS: what OpenSSL reads from the socket, whole records or not. The first byte of a request
// starts its deadline (on_input); over TLS, that byte is the first of its record, which the input
// sees only once the record is whole: a client sending records a byte at a time would otherwise
// hold the connection for ever.
static long on_tls_bytes(BIO *bio, int oper, const char *, size_t, int, long, int ret, size_t *processed)
{
    HttpClient *c = (HttpClient *)BIO_get_callback_arg(bio);
    if (oper != (BIO_CB_READ | BIO_CB_RETURN) || ret <= 0 || processed == NULL || *processed == 0 || c == NULL)
        return ret;
    if (c->awaiting_handshake && http_connection_handshaken(c->bev)) {
        c->awaiting_handshake = false;  // the first request's bytes: its own window from here
        arm_deadline(c);
    } else if (c->input_watch != NULL) {
        unwatch_input(c);
        arm_deadline(c);
    }
    return ret;
}

static void watch_tls_bytes(HttpClient *c, HttpClient *arg)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    BIO *rbio = ssl != NULL ? SSL_get_rbio(ssl) : NULL;
    if (rbio == NULL)
        return;
    BIO_set_callback_ex(rbio, arg != NULL ? on_tls_bytes : NULL);
    BIO_set_callback_arg(rbio, (char *)arg);
}

static void on_deadline(evutil_socket_t, short, void *arg)
{
    HttpClient *c = (HttpClient *)arg;
    if (c->awaiting_handshake) {
        if (!http_connection_handshaken(c->bev)) {
            log_debug("worker %d: HTTPS client did not finish its TLS handshake within request_timeout; closing",
                      c->front->env->id);
            evhttp_connection_free(c->evcon);  // on_connection_closed counts the failure and frees c
            return;
        }
        // Handshaken in time: from here on as any connection (a request begun gets its own window).
        c->awaiting_handshake = false;
        if (c->busy || c->requests != c->requests_at_arm || evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            arm_deadline(c);
        else
            watch_input(c);
        return;
    }
    if (c->busy || c->requests != c->requests_at_arm) {  // progress since it was armed
        if (c->busy || evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            arm_deadline(c);  // more is under way: a fresh window for it
        else
            watch_input(c);   // idle: the next request's first byte arms it
        return;
    }
    log_debug("worker %d: HTTP client sent no complete request within request_timeout; closing",
              c->front->env->id);
    evhttp_connection_free(c->evcon);  // no request of ours is on it; on_connection_closed frees c
}

// Called by evhttp once a reply is written in full.
static void on_reply_written(evhttp_request *, void *arg)
{
    HttpClient *c = (HttpClient *)arg;
    c->busy = false;
    client_memory_set(c->front->env->client_memory, &c->memory, c->held);
}

static void on_connection_closed(evhttp_connection *, void *arg)
{
    HttpClient *c = (HttpClient *)arg;
    HttpFront *h = c->front;
    if (c->tls)
        watch_tls_bytes(c, NULL);  // (the connection's SSL may outlive c a moment)
    if (c->tls && !http_connection_handshaken(c->bev))
        h->env->stats->tls_handshake_failures[FRONT_HTTP]++;
    else if (c->tls && !c->handshake_counted)
        h->env->stats->tls_handshakes[FRONT_HTTP]++;
    client_memory_set(h->env->client_memory, &c->memory, 0);
    unwatch_input(c);
    if (c->flush_pending)
        list_remove(&c->unflushed);  // its answer went with the connection
    event_free(c->deadline);
    if (c->credentials != NULL) {
        explicit_bzero(c->credentials, c->credentials_len);
        free(c->credentials);
    }
    if ((size_t)c->fd < h->by_fd_cap && h->by_fd[c->fd] == c)
        h->by_fd[c->fd] = NULL;
    free(c);
    h->env->client_closed(h->env->arg, FRONT_HTTP);
}

static bool track_client(HttpFront *h, bufferevent *bev, evhttp_connection *evcon)
{
    int fd = bufferevent_getfd(bev);
    if (fd < 0)
        return false;
    if ((size_t)fd >= h->by_fd_cap) {
        size_t cap = h->by_fd_cap ? h->by_fd_cap : 1024;
        while (cap <= (size_t)fd)
            cap *= 2;
        HttpClient **by_fd = (HttpClient **)realloc(h->by_fd, cap * sizeof(*by_fd));
        if (by_fd == NULL)
            return false;
        memset(by_fd + h->by_fd_cap, 0, (cap - h->by_fd_cap) * sizeof(*by_fd));
        h->by_fd = by_fd;
        h->by_fd_cap = cap;
    }
    HttpClient *c = (HttpClient *)calloc(1, sizeof(HttpClient));
    if (c == NULL)
        return false;
    c->front = h;
    c->evcon = evcon;
    c->bev = bev;
    c->fd = fd;
    c->deadline = evtimer_new(h->env->base, on_deadline, c);
    if (c->deadline == NULL) {
        free(c);
        return false;
    }
    c->tls = c->awaiting_handshake = http_connection_is_tls(bev);
    if (c->tls) {
        // A TLS answer may leave as several records (headers, body), each its own write: without
        // this, Nagle holds the second until the client's delayed ACK (40 ms a request).
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        c->held = TLS_CONNECTION_BYTES;
    }
    // A TLS client's handshake must end within request_timeout (its bytes are not the input's).
    if (c->tls || evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        arm_deadline(c);
    else
        watch_input(c);
    if (c->input_watch == NULL && !event_pending(c->deadline, EV_TIMEOUT, NULL)) {
        event_free(c->deadline);
        free(c);
        return false;
    }
    h->by_fd[fd] = c;
    if (c->tls)
        watch_tls_bytes(c, c);
    client_memory_set(h->env->client_memory, &c->memory, c->held);  // (the close callback gives it back)
    evhttp_connection_set_closecb(evcon, on_connection_closed, c);
    return true;
}

static void on_accepted(void *arg)
{
    HttpFront *h = (HttpFront *)arg;
    h->env->client_opened(h->env->arg, FRONT_HTTP);
}

// Whether protected mode refuses the client on this socket (protected_mode.h).
static bool refused_by_protected_mode(HttpFront *h, int fd)
{
    if (!h->protect)
        return false;
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    // (No peer: the client has gone already; its connection ends at its first read, unserved.)
    return getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && !address_is_loopback((struct sockaddr *)&peer);
}

static void on_adopted(void *arg, bufferevent *bev, evhttp_connection *evcon)
{
    HttpFront *h = (HttpFront *)arg;
    if (evcon == NULL) {
        h->env->client_closed(h->env->arg, FRONT_HTTP);  // evhttp already freed it
    } else if (refused_by_protected_mode(h, bufferevent_getfd(bev))) {
        protected_mode_refuse(bufferevent_getfd(bev), http_connection_is_tls(bev) ? REFUSE_SILENTLY : REFUSE_HTTP,
                              &h->env->stats->clients_denied[FRONT_HTTP]);
        evhttp_connection_free(evcon);
        h->env->client_closed(h->env->arg, FRONT_HTTP);
    } else if (!track_client(h, bev, evcon))
        evhttp_connection_free(evcon);  // out of memory: the close counts it
}

// A worker process has exactly one HTTP front, found here by the two callbacks that libevent
// gives no room for it: the listener's error callback gets the listener's user data, which
// evhttp_bind_listener has made its own evhttp; and an answer finishing after a Redis round
// trip has only its request to go by.
static HttpFront *process_front;

static void on_accept_error(evconnlistener *, void *)
{
    process_front->env->pause_accepting(process_front->env->arg, "HTTP", EVUTIL_SOCKET_ERROR());
}

static const char *method_name(evhttp_cmd_type method)
{
    switch (method) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "?";
}

// "address:port", or "[v6 address]:port", of an evhttp connection's peer ("" when unknown).
static void format_peer(evhttp_connection *evcon, char *out, size_t len)
{
    char *address = NULL;
    ev_uint16_t port = 0;
    out[0] = '\0';
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &address, &port);
    if (address != NULL)
        snprintf(out, len, strchr(address, ':') ? "[%s]:%u" : "%s:%u", address, (unsigned)port);
}

// The request's line in the access log, just before its answer is sent.
// `cache`: HIT, MISS or STALE when the answer's head says it (compose_head), else NULL (the
// X-Cache header says it, if any).
static void log_access(evhttp_request *req, evhttp_connection *evcon, int code, const char *cache)
{
    const FrontEnv *env = process_front->env;
    HttpClient *c = client_of(process_front, evcon);
    char own[80];
    const char *client = own;
    if (c != NULL) {
        if (c->peer[0] == '\0')  // once per connection
            format_peer(evcon, c->peer, sizeof(c->peer));
        client = c->peer;
    } else {
        format_peer(evcon, own, sizeof(own));
    }
    const char *method = method_name(evhttp_request_get_command(req));
    size_t key_len = 0;
    const char *uri = evhttp_request_get_uri(req);
    // (into a buffer of its own: lookup may still hold key_buf, answering a hit from inside it)
    HttpFront *h = process_front;
    bool has_key = uri != NULL && key_from_request_target(uri, h->log_key, (size_t)env->config->max_key_size,
                                                          &key_len) == KEY_OK;
    char status[4] = {(char)('0' + code / 100 % 10), (char)('0' + code / 10 % 10), (char)('0' + code % 10), '\0'};
    AccessEntry entry = {client, "http", method, strlen(method), has_key ? h->log_key : NULL, key_len, status,
                         evbuffer_get_length(evhttp_request_get_output_buffer(req)),
                         cache != NULL ? cache : evhttp_find_header(evhttp_request_get_output_headers(req), "X-Cache"),
                         c != NULL && c->started_us != 0 ? monotonic_us() - c->started_us : 0};
    access_log_write(env->access_log, &entry);
}

// What is left once an answer is in the connection's output: writing it, and keeping reading off
// while it is not all written. evhttp 2.1 turns reading back on while it writes a reply, to notice
// a client that goes away; but a client that only half-closed (sent its last requests, then FIN)
// is then failed on that EOF, and whatever is not yet written is lost: the rest of the reply, and
// pipelined requests still waiting in the input. So once the reply is in the kernel, a FIN costs
// nothing; only when part of it is still ours, or requests wait behind it, does reading stay off
// until evhttp turns it on for the next request (which then finds the rest of the input, and the
// EOF only after that). Writing before the next wait also saves the answer a turn of the loop.
static void write_answer(HttpClient *c, bufferevent *bev)
{
    evbuffer *out = bufferevent_get_output(bev);
    if (c != NULL && c->tls) {
        // TLS: written by its bufferevent, which encrypts it, one record and one write per piece
        // of the buffer: made one piece, the answer is one of each. It is never all written here,
        // so reading stays off until evhttp turns it on for the next request, as below (past the
        // handshake, TLS needs no read to write).
        if (evbuffer_get_length(out) <= 16384)
            evbuffer_pullup(out, -1);
    } else if (evbuffer_write(out, bufferevent_getfd(bev)) < 0 && errno != EAGAIN && errno != EINTR) {
        return;  // the write callback meets the same error and closes the connection
    }
    if (evbuffer_get_length(out) > 0 || evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        bufferevent_disable(bev, EV_READ);
    // What the client has yet to read counts against the worker's client memory until it has.
    if (c != NULL && evbuffer_get_length(out) > 0)
        client_memory_set(process_front->env->client_memory, &c->memory, c->held + evbuffer_get_length(out));
}

// The end of the loop's turn (the flush event runs after every event that was ready with it):
// the answers made during the turn's reads leave now, one write each, back to back. Written as
// each was made, every write would wake the client's side for one answer while the next request
// is still being read (on a VM, a cross-CPU wakeup each: a tenth of a hit's time, measured); as
// evhttp writes, a burst of answers finds the client awake.
static void on_flush(evutil_socket_t, short, void *arg)
{
    HttpFront *h = (HttpFront *)arg;
    while (!list_empty(&h->unflushed)) {
        HttpClient *c = LIST_ELEMENT(list_first(&h->unflushed), HttpClient, unflushed);
        list_remove(&c->unflushed);
        c->flush_pending = false;
        // (Not busy: evhttp wrote it already, as it may when it writes a 100 Continue in the same
        // turn, and is reading the next request: reading must stay on.)
        if (c->busy)
            write_answer(c, c->bev);
    }
}

// Every answer leaves through here. One made while its request is read is written at the end of
// the turn (on_flush) when other events are ready in it (alone, it has nothing to wait for). No
// EOF of the client's can come before it: evhttp stops reading a connection once a request is
// complete (which also takes its read event out of this turn's ready ones) and starts again in
// evhttp_send_reply, so the next read is in the next turn, after the flush. This holds for a
// pipelined request parsed from bytes read before as well (a test sends them with a FIN under
// load). One made later (a miss, when Redis answers) is written at once: the answers a Redis
// reply brings are made back to back, with no client's read in between. (evhttp answers one
// request of a connection at a time: one answer at most waits per connection.)
static void send_reply(evhttp_request *req, int code, const char *reason, const char *cache = NULL)
{
    evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (process_front->draining)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (req->major == 1 && req->minor == 0)
        http_add_http10_framing(req, code != 304);
    if (process_front->env->access_log != NULL)
        log_access(req, evcon, code, cache);
    evhttp_send_reply(req, code, reason, NULL);
    if (evcon == NULL)
        return;  // the client went away: evhttp dropped the answer
    HttpFront *h = process_front;
    HttpClient *c = client_of(h, evcon);
    if (c != NULL && c == h->reading && !c->tls && !c->flush_pending &&
        event_base_get_num_events(h->env->base, EVENT_BASE_COUNT_ACTIVE) > 0) {
        if (list_empty(&h->unflushed))
            event_active(h->flush, EV_TIMEOUT, 0);
        list_push_back(&h->unflushed, &c->unflushed);
        c->flush_pending = true;
        // Counted against the worker's client memory while it waits, as once written in part.
        size_t waiting = evbuffer_get_length(bufferevent_get_output(c->bev));
        client_memory_set(h->env->client_memory, &c->memory, c->held + waiting);
        return;
    }
    write_answer(c, evhttp_connection_get_bufferevent(evcon));
}

static void reply_text(evhttp_request *req, int code, const char *reason, const char *text, size_t len)
{
    evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
    // Said here for every method: evhttp leaves it out for some (a CONNECT), and a HEAD has none
    // of the body to count.
    char length[24];
    snprintf(length, sizeof(length), "%zu", len);
    evhttp_add_header(headers, "Content-Length", length);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(evhttp_request_get_output_buffer(req), text, len);
    send_reply(req, code, reason);
}

static void reply_error(evhttp_request *req, int code, const char *reason, const char *text)
{
    reply_text(req, code, reason, text, strlen(text));
}

// The head of a value's answer, composed in one piece and handed to evhttp as the status line's
// reason phrase, which evhttp 2.1 writes as given ("HTTP/1.1 200 " and it, then its own Date
// and Content-Length lines): "OK", then Content-Type, X-Cache, ETag, Cache-Control and Age, each
// line but the last ended by CRLF. Through evhttp_add_header each header cost three allocations
// and a formatted print at send (an ETag 7% of a hit, Cache-Control with Age 16%); here only Age
// and the ETag's hex are made per answer. Every part is printable by the settings' checks (no
// CR or LF of a client's can get in), and a 304 says only what describes the value it confirms.
static const size_t HEAD_MAX = 640;

static void append(char *head, size_t *at, const char *text, size_t len)
{
    memcpy(head + *at, text, len);
    *at += len;
}

static void compose_head(const HttpFront *h, char *head, const char *not_modified, const char *cache,
                         const char *etag, const LookupResult *r)
{
    size_t at = 0;
    if (not_modified != NULL) {
        append(head, &at, not_modified, strlen(not_modified));
    } else {
        append(head, &at, h->content_type_line, h->content_type_line_len);
        append(head, &at, "\r\nX-Cache: ", 11);
        append(head, &at, cache, strlen(cache));
    }
    if (etag != NULL) {
        append(head, &at, "\r\nETag: ", 8);
        append(head, &at, etag, HTTP_ETAG_LEN);
    }
    if (h->cache_control_lines_len > 0) {
        append(head, &at, h->cache_control_lines, h->cache_control_lines_len);
        // Age's digits by hand: snprintf cost more than the rest of the head together.
        char digits[24];
        size_t n = sizeof(digits);
        uint64_t age = lookup_value_age_s(h->env->lookup, r);
        do {
            digits[--n] = (char)('0' + age % 10);
            age /= 10;
        } while (age > 0);
        append(head, &at, digits + n, sizeof(digits) - n);
    }
    head[at] = '\0';
}

static void on_lookup_done(void *arg, const LookupResult *r)
{
    evhttp_request *req = (evhttp_request *)arg;
    switch (r->status) {
    case LOOKUP_FOUND:
        break;
    case LOOKUP_NOT_FOUND:
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Cache",
                          r->hit ? "HIT" : r->stale ? "STALE" : "MISS");
        reply_error(req, 404, "Not Found", "key not found\n");
        return;
    case LOOKUP_UNAVAILABLE:
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        reply_error(req, 503, "Service Unavailable", "redis unavailable\n");
        return;
    case LOOKUP_TIMEOUT:
        reply_error(req, 504, "Gateway Timeout", "redis did not answer in time\n");
        return;
    case LOOKUP_BAD_REPLY:
        reply_error(req, 502, "Bad Gateway", "redis sent a reply of the wrong type\n");
        return;
    case LOOKUP_TOO_LARGE:
        reply_error(req, 502, "Bad Gateway", "value too large: redis's reply is larger than max_reply_size\n");
        return;
    case LOOKUP_REDIS_ERROR: {
        // Redis cannot serve for now (loading, busy, failing over): unavailable, as with no
        // connection, and the client may retry. Any other error is Redis's answer to the key.
        bool transient = redis_error_class(r->value, r->value_len) == REDIS_ERROR_TRANSIENT;
        char text[600];
        int n = snprintf(text, sizeof(text), "%s: %.*s\n", transient ? "redis unavailable" : "redis error",
                         (int)(r->value_len > 512 ? 512 : r->value_len), r->value);
        if (transient) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
            reply_text(req, 503, "Service Unavailable", text, (size_t)n);
        } else {
            reply_text(req, 409, "Conflict", text, (size_t)n);
        }
        return;
    }
    }
    // A value's answer: its header lines composed in one piece (compose_head).
    const Config *config = process_front->env->config;
    HttpFront *h = process_front;
    const char *cache = r->hit ? "HIT" : r->stale ? "STALE" : "MISS";
    char head[HEAD_MAX];
    char etag[HTTP_ETAG_LEN + 1];
    if (config->http_etag) {
        http_format_etag(etag, lookup_value_digest(h->env->lookup, r));
        if (http_request_names_etag(req, etag)) {
            // The client's copy is this one: no body, nor what describes one (RFC 9110 15.4.5).
            compose_head(h, head, "Not Modified", NULL, etag, r);
            send_reply(req, 304, head, cache);
            return;
        }
    }
    compose_head(h, head, NULL, cache, config->http_etag ? etag : NULL, r);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        // evhttp adds no Content-Length to a HEAD reply; say what a GET would carry.
        char length[24];
        snprintf(length, sizeof(length), "%zu", r->value_len);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", length);
    } else if (!lookup_add_value(evhttp_request_get_output_buffer(req), r, "", 0)) {
        // Never a 200 with part of a value: an error, and the connection goes with it.
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_error(req, 500, "Internal Server Error", "out of memory\n");
        return;
    }
    send_reply(req, 200, head, cache);
}

// A 400 that also closes the connection: what follows this request on it cannot be trusted.
static void refuse(const FrontEnv *env, evhttp_request *req, int code, const char *reason, const char *text)
{
    env->stats->bad_requests[FRONT_HTTP]++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    reply_error(req, code, reason, text);
}


static const size_t MAX_CREDENTIALS = 1024;  // an Authorization header's bytes, at most

// The user a request's Authorization header logs in as ([users]), or NULL: none given, malformed,
// or refused. The last one that logged in on the connection is remembered with its user.
static const AclUser *request_user(HttpFront *h, HttpClient *c, evhttp_request *req)
{
    // Authorization may be given once (RFC 9110 11.6.2): two are refused, not one of them taken.
    const char *value = NULL;
    int given = 0;
    for (evkeyval *header = evhttp_request_get_input_headers(req)->tqh_first; header != NULL;
         header = header->next.tqe_next)
        if (strcasecmp(header->key, "Authorization") == 0 && given++ == 0)
            value = header->value;
    if (given == 0)
        return h->anonymous;
    if (given > 1)
        value = "";  // malformed: refused below
    size_t len = strlen(value);
    if (c != NULL && c->user != NULL && len == c->credentials_len && memcmp(value, c->credentials, len) == 0)
        return c->user;
    char decoded[MAX_CREDENTIALS];
    HttpCredentials credentials;
    const AclUsers *users = &h->env->config->users;
    const AclUser *user = NULL;
    switch (http_credentials_parse(value, len, decoded, sizeof(decoded), &credentials)) {
    case HTTP_CREDENTIALS_BASIC:
        user = acl_authenticate(users, credentials.user, credentials.user_len, credentials.password,
                                credentials.password_len);
        break;
    case HTTP_CREDENTIALS_BEARER:
        user = acl_authenticate_token(users, credentials.password, credentials.password_len);
        break;
    default:
        break;
    }
    explicit_bzero(decoded, sizeof(decoded));
    if (c != NULL && c->credentials != NULL) {  // forget what logged in before: it is not this
        explicit_bzero(c->credentials, c->credentials_len);
        free(c->credentials);
        c->credentials = NULL;
        c->user = NULL;
    }
    if (user == NULL) {
        h->env->stats->auth_failures[FRONT_HTTP]++;
        char address[128] = "?";
        if (c != NULL)
            address_of_peer(c->fd, address, sizeof(address));
        log_msg_once_per_kind(LOG_WARN, "authentication failure",
                              "authentication failed for HTTP client %s (at most one such line a second)", address);
        return NULL;
    }
    if (c != NULL && len <= MAX_CREDENTIALS && (c->credentials = (char *)malloc(len)) != NULL) {
        memcpy(c->credentials, value, len);
        c->credentials_len = len;
        c->user = user;
    }
    return user;
}

// A request evhttp accepted but that must not be served (http_message.h): refused, and closed.
static bool refuse_malformed(const FrontEnv *env, evhttp_request *req)
{
    HttpFlaw flaw;
    if (!http_request_flaw(req, &flaw))
        return false;
    refuse(env, req, flaw.code, flaw.reason, flaw.text);
    return true;
}

// Every request gets exactly one evhttp_send_reply, possibly from a later Redis reply. If the
// client disconnected meanwhile, evhttp 2.1 has detached the request from its connection and
// frees it inside that evhttp_send_reply: no dangling pointer either way.
static void serve_request(HttpFront *h, HttpClient *c, evhttp_request *req)
{
    const FrontEnv *env = h->env;
    if (c != NULL) {
        if (c->tls && !c->handshake_counted) {
            env->stats->tls_handshakes[FRONT_HTTP]++;
            c->handshake_counted = true;
        }
        c->requests++;  // the deadline sees it when it fires
        c->busy = true;
        if (env->access_log != NULL)
            c->started_us = monotonic_us();
        evhttp_request_set_on_complete_cb(req, on_reply_written, c);
    }
    // An absolute-form target (GET http://host/key), as clients configured for a proxy send: its
    // path is the key (key_from_request_target), as RFC 9112 3.2.2 has servers accept. evhttp
    // flags such a request as meant for a forward proxy, and then closes the connection after
    // the answer unless the client sent Proxy-Connection: keep-alive, without saying so, so a
    // request pipelined behind it would be dropped unanswered. It is served as any other.
    req->flags &= ~EVHTTP_PROXY_REQUEST;
    if (h->revoked) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "0");
        reply_error(req, 503, "Service Unavailable", "the configuration changed: retry on a new connection\n");
        return;
    }
    if (refuse_malformed(env, req))
        return;
    // [users]: who asks, before anything else is looked at (a forbidden key's answer must be the
    // same whether it is cached or not).
    const AclUser *user = NULL;
    if (h->auth_required && (user = request_user(h, c, req)) == NULL) {
        env->stats->forbidden_requests[FRONT_HTTP]++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Basic realm=\"redis-proxy\", charset=\"UTF-8\"");
        reply_error(req, 401, "Unauthorized",
                    "authentication required: Authorization: Basic (a user and its password) or Bearer (a password)\n");
        return;
    }
    evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        env->stats->refused_requests[FRONT_HTTP]++;  // well-formed: a method a cache does not do
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_error(req, 405, "Method Not Allowed", "only GET and HEAD are supported\n");
        return;
    }
    size_t key_len = 0;
    switch (key_from_request_target(evhttp_request_get_uri(req), env->key_buf,
                                    (size_t)env->config->max_key_size, &key_len)) {
    case KEY_OK: {
        if (user != NULL && !acl_key_allowed(user, env->key_buf, key_len)) {
            env->stats->forbidden_requests[FRONT_HTTP]++;
            reply_error(req, 403, "Forbidden", "this user has no permission to read this key\n");
            return;
        }
        uint64_t started_us = monotonic_us();
        lookup_get(env->lookup, FRONT_HTTP, env->key_buf, key_len, on_lookup_done, req);
        // A hit was answered in that call: its duration is the request's time here.
        if (env->lookup->hits_unobserved > 0)
            lookup_observe_hits(env->lookup, FRONT_HTTP, monotonic_us() - started_us);
        return;
    }
    case KEY_EMPTY:
        env->stats->bad_requests[FRONT_HTTP]++;
        reply_error(req, 400, "Bad Request", "empty key: use GET /<key>\n");
        return;
    case KEY_BAD_ENCODING:
        env->stats->bad_requests[FRONT_HTTP]++;
        reply_error(req, 400, "Bad Request", "bad percent-encoding in key\n");
        return;
    case KEY_BAD_TARGET:
        env->stats->bad_requests[FRONT_HTTP]++;
        reply_error(req, 400, "Bad Request", "expected GET /<key>\n");
        return;
    case KEY_TOO_LONG: {
        env->stats->bad_requests[FRONT_HTTP]++;
        char text[96];
        snprintf(text, sizeof(text), "key longer than max_key_size (%lld bytes)\n",
                 (long long)env->config->max_key_size);
        reply_error(req, 414, "URI Too Long", text);
        return;
    }
    }
}

static void on_request(evhttp_request *req, void *arg)
{
    HttpFront *h = (HttpFront *)arg;
    HttpClient *c = client_of(h, evhttp_request_get_connection(req));
    h->reading = c;
    serve_request(h, c, req);
    h->reading = NULL;
}

// An evhttp as the front serves with: plain, or (new_connection making TLS bufferevents) HTTPS.
static evhttp *new_evhttp(HttpFront *h, bufferevent *(*new_connection)(event_base *, void *))
{
    const Config *c = h->env->config;
    evhttp *http = evhttp_new(h->env->base);
    if (http == NULL)
        return NULL;
    // Everything reaches on_request, which answers 405 itself (with an Allow header).
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                         EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    struct timeval idle = timeval_of_ms((uint64_t)c->client_timeout_ms);
    evhttp_set_timeout_tv(http, &idle);
    // Room for a fully percent-encoded key of max_key_size plus ordinary headers; evhttp answers
    // 400 past this (413 past the body's bound). GETs carry no body.
    evhttp_set_max_headers_size(http, (ev_ssize_t)(3 * c->max_key_size + 16 * 1024));
    evhttp_set_max_body_size(http, 64 * 1024);
    evhttp_set_gencb(http, on_request, h);
    evhttp_set_bevcb(http, new_connection, &h->adoption);
    // Not evhttp's default: a value's answer says its Content-Type in its head (compose_head),
    // which evhttp does not see; every other answer sets its own.
    evhttp_set_default_content_type(http, NULL);
    return http;
}

HttpFront *http_front_create(const FrontEnv *env, const ListenFds *listen_fds)
{
    HttpFront *h = (HttpFront *)calloc(1, sizeof(HttpFront));
    if (h == NULL)
        return NULL;
    h->env = env;
    h->protect = protected_mode_active(env->config);
    h->auth_required = env->config->users.count > 0;
    if (env->access_log != NULL && (h->log_key = (char *)malloc((size_t)env->config->max_key_size)) == NULL) {
        http_front_destroy(h);
        return NULL;
    }
    const AclUser *d = acl_user_find(&env->config->users, "default", 7);
    h->anonymous = d != NULL && d->enabled && d->nopass ? d : NULL;
    const Config *config = env->config;
    h->content_type_line_len = (size_t)snprintf(h->content_type_line, sizeof(h->content_type_line),
                                                "OK\r\nContent-Type: %s", config->http_content_type);
    if (config->http_cache_control[0] != '\0')
        h->cache_control_lines_len = (size_t)snprintf(h->cache_control_lines, sizeof(h->cache_control_lines),
                                                      "\r\nCache-Control: %s\r\nAge: ", config->http_cache_control);
    static_assert(sizeof(h->content_type_line) + 11 + 5 + 8 + HTTP_ETAG_LEN + sizeof(h->cache_control_lines) + 24 <=
                      HEAD_MAX, "HEAD_MAX holds every part");
    h->adoption = {on_accepted, on_adopted, h, env->tls, NULL, NULL, 0, 0};
    struct timeval deadline = timeval_of_ms((uint64_t)env->config->request_timeout_ms);
    h->request_timeout = event_base_init_common_timeout(env->base, &deadline);
    list_init(&h->unflushed);
    h->flush = event_new(env->base, -1, 0, on_flush, h);
    bool wants_tls = listen_fds_any_tls(listen_fds);
    if (h->request_timeout == NULL || h->flush == NULL || !http_adoption_init(&h->adoption, env->base) ||
        (h->http = new_evhttp(h, http_adoption_new_connection)) == NULL ||
        (wants_tls && (env->tls == NULL || (h->https = new_evhttp(h, http_adoption_new_tls_connection)) == NULL))) {
        http_front_destroy(h);
        return NULL;
    }
    process_front = h;
    ListenHandlers how = {NULL, NULL, h, on_accept_error, h->http, h->https};
    if (!listener_set_open(&h->listeners, env->base, listen_fds, &how)) {
        http_front_destroy(h);
        return NULL;
    }
    return h;
}

void http_front_destroy(HttpFront *h)
{
    if (h == NULL)
        return;
    if (process_front == h)
        process_front = NULL;
    listener_set_free(&h->listeners);
    if (h->http)
        evhttp_free(h->http);  // frees the bound listeners too; the sockets are the master's
    if (h->https)
        evhttp_free(h->https);
    http_adoption_free(&h->adoption);
    if (h->flush)
        event_free(h->flush);
    free(h->log_key);
    free(h->by_fd);
    free(h);
}

void http_front_drain(HttpFront *h, bool close_idle, bool revoked)
{
    h->draining = true;
    h->revoked = revoked;
    close_idle = close_idle || revoked;
    for (size_t fd = 0; close_idle && fd < h->by_fd_cap; fd++) {
        HttpClient *c = h->by_fd[fd];
        // Idle: kept alive after a request, with none being answered and none begun (its bytes
        // would be in the input). A connection that has not sent its first request yet is not
        // idle: that request is on its way (its client connected for it), and is answered.
        if (c != NULL && c->requests > 0 && !c->busy && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            evhttp_connection_free(c->evcon);  // on_connection_closed frees c
    }
}

size_t http_front_most_memory(HttpFront *h, void **client)
{
    HttpClient *most = NULL;
    for (size_t fd = 0; fd < h->by_fd_cap; fd++) {
        HttpClient *c = h->by_fd[fd];
        if (c != NULL && c->memory > 0 && (most == NULL || c->memory > most->memory))
            most = c;
    }
    *client = most;
    return most != NULL ? most->memory : 0;
}

void http_front_evict(HttpFront *h, void *client)
{
    HttpClient *c = (HttpClient *)client;
    h->env->stats->clients_evicted[EVICT_MEMORY]++;
    bool quiet = client_memory_log_quietly(h->env->client_memory, monotonic_ms());
    char address[128];
    address_of_peer(c->fd, address, sizeof(address));
    log_msg(quiet ? LOG_DEBUG : LOG_WARN,
            "worker %d: closing HTTP client %s (holding %zu bytes): it held the most while the worker's clients "
            "passed max_client_memory", h->env->id, address, c->memory);
    client_memory_set(h->env->client_memory, &c->memory, 0);  // (the close callback does too)
    evhttp_connection_free(c->evcon);  // its answer was handed to evhttp: nothing of ours points at it
}

void http_front_set_accepting(HttpFront *h, bool accepting)
{
    listener_set_enable(&h->listeners, accepting);
}

ListenerSet *http_front_listeners(HttpFront *h) { return &h->listeners; }
