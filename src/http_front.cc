#include "http_front.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "config.h"
#include "key_decode.h"
#include "log.h"
#include "lookup.h"
#include "worker.h"

struct HttpFront {
    Worker *worker;
    evhttp *http;
    evconnlistener *listener;
    event *adopt_event;      // runs right after accept, see on_new_connection
    bufferevent **fresh;     // accepted connections not yet adopted
    size_t fresh_len, fresh_cap;
};

static void on_connection_closed(evhttp_connection *, void *arg)
{
    worker_client_closed(((HttpFront *)arg)->worker);
}

// libevent 2.1 has no evhttp_set_max_connections (2.2) and no hook on a new evhttp_connection.
// What it has: evhttp_set_bevcb, called at each accept to create the connection's bufferevent,
// right before evhttp wraps it in an evhttp_connection whose pointer it passes as the
// bufferevent's callback argument (http.c, evhttp_connection_base_bufferevent_new). So: count
// the client here, hold a reference on the bufferevent, and once the accept callback has
// returned (adopt_event) fetch the connection from it and hang our close callback on it. The
// reference guarantees the bufferevent is still there to look at even if evhttp gave up on it.
static bufferevent *on_new_connection(event_base *base, void *arg)
{
    HttpFront *h = (HttpFront *)arg;
    if (h->fresh_len == h->fresh_cap) {
        size_t cap = h->fresh_cap ? h->fresh_cap * 2 : 16;
        bufferevent **fresh = (bufferevent **)realloc(h->fresh, cap * sizeof(*fresh));
        if (fresh == NULL)
            return NULL;  // evhttp then makes its own bufferevent, which we just do not count
        h->fresh = fresh;
        h->fresh_cap = cap;
    }
    bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    bufferevent_incref(bev);
    h->fresh[h->fresh_len++] = bev;
    event_active(h->adopt_event, EV_TIMEOUT, 1);
    worker_client_opened(h->worker);
    return bev;
}

static void adopt_fresh_connections(evutil_socket_t, short, void *arg)
{
    HttpFront *h = (HttpFront *)arg;
    for (size_t i = 0; i < h->fresh_len; i++) {
        bufferevent *bev = h->fresh[i];
        bufferevent_data_cb readcb = NULL;
        void *cbarg = NULL;
        bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
        if (readcb != NULL && cbarg != NULL)
            evhttp_connection_set_closecb((evhttp_connection *)cbarg, on_connection_closed, h);
        else
            worker_client_closed(h->worker);  // evhttp already freed it (setcb NULL on free)
        bufferevent_decref(bev);
    }
    h->fresh_len = 0;
}

// libevent calls a listener's error callback with the listener's user data, which
// evhttp_bind_listener has made its own evhttp; it cannot carry ours. A worker process has exactly
// one HTTP front, so the callback finds it here.
static HttpFront *accept_error_front;

static void on_accept_error(evconnlistener *, void *)
{
    worker_pause_accepting(accept_error_front->worker, "HTTP", EVUTIL_SOCKET_ERROR());
}

static void reply_text(evhttp_request *req, int code, const char *reason, const char *text, size_t len)
{
    evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        char length[24];
        snprintf(length, sizeof(length), "%zu", len);
        evhttp_add_header(headers, "Content-Length", length);
    } else {
        evbuffer_add(evhttp_request_get_output_buffer(req), text, len);
    }
    evhttp_send_reply(req, code, reason, NULL);
}

static void reply_error(evhttp_request *req, int code, const char *reason, const char *text)
{
    reply_text(req, code, reason, text, strlen(text));
}

// Errors Redis gives while it cannot serve for now: the client may retry, as with a 503.
static bool redis_error_is_transient(const char *text, size_t len)
{
    static const char *const prefixes[] = {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"};
    for (const char *p : prefixes) {
        size_t n = strlen(p);
        if (len >= n && memcmp(text, p, n) == 0)
            return true;
    }
    return false;
}

static void on_lookup_done(void *arg, const LookupResult *r)
{
    evhttp_request *req = (evhttp_request *)arg;
    switch (r->status) {
    case LOOKUP_FOUND:
        break;
    case LOOKUP_NOT_FOUND:
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
    case LOOKUP_REDIS_ERROR: {
        char text[600];
        int n = snprintf(text, sizeof(text), "redis error: %.*s\n", (int)(r->value_len > 512 ? 512 : r->value_len), r->value);
        if (redis_error_is_transient(r->value, r->value_len))
            reply_text(req, 503, "Service Unavailable", text, (size_t)n);
        else
            reply_text(req, 409, "Conflict", text, (size_t)n);
        return;
    }
    }
    evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "application/octet-stream");
    evhttp_add_header(headers, "X-Cache", r->hit ? "HIT" : "MISS");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        // evhttp adds no Content-Length to a HEAD reply; say what a GET would carry.
        char length[24];
        snprintf(length, sizeof(length), "%zu", r->value_len);
        evhttp_add_header(headers, "Content-Length", length);
    } else {
        lookup_add_value(evhttp_request_get_output_buffer(req), r);
    }
    evhttp_send_reply(req, 200, "OK", NULL);
}

// Every request gets exactly one evhttp_send_reply, possibly from a later Redis reply. If the
// client disconnected meanwhile, evhttp 2.1 has detached the request from its connection and
// frees it inside that evhttp_send_reply: no dangling pointer either way.
static void on_request(evhttp_request *req, void *arg)
{
    HttpFront *h = (HttpFront *)arg;
    Worker *w = h->worker;
    w->stats->requests++;
    evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        w->stats->bad_requests++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_error(req, 405, "Method Not Allowed", "only GET and HEAD are supported\n");
        return;
    }
    size_t key_len = 0;
    switch (key_from_request_target(evhttp_request_get_uri(req), w->key_buf,
                                    (size_t)w->config->max_key_size, &key_len)) {
    case KEY_OK:
        lookup_get(w, w->key_buf, key_len, on_lookup_done, req);
        return;
    case KEY_EMPTY:
        w->stats->bad_requests++;
        reply_error(req, 400, "Bad Request", "empty key: use GET /<key>\n");
        return;
    case KEY_BAD_ENCODING:
        w->stats->bad_requests++;
        reply_error(req, 400, "Bad Request", "bad percent-encoding in key\n");
        return;
    case KEY_BAD_TARGET:
        w->stats->bad_requests++;
        reply_error(req, 400, "Bad Request", "expected GET /<key>\n");
        return;
    case KEY_TOO_LONG: {
        w->stats->bad_requests++;
        char text[96];
        snprintf(text, sizeof(text), "key longer than max_key_size (%lld bytes)\n",
                 (long long)w->config->max_key_size);
        reply_error(req, 414, "URI Too Long", text);
        return;
    }
    }
}

HttpFront *http_front_create(Worker *w, int listen_fd)
{
    HttpFront *h = (HttpFront *)calloc(1, sizeof(HttpFront));
    if (h == NULL)
        return NULL;
    h->worker = w;
    h->http = evhttp_new(w->base);
    h->adopt_event = event_new(w->base, -1, 0, adopt_fresh_connections, h);
    // backlog 0: the master has already called listen(2) on this socket.
    h->listener = evconnlistener_new(w->base, NULL, NULL, LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
    if (h->http == NULL || h->adopt_event == NULL || h->listener == NULL) {
        http_front_destroy(h);
        return NULL;
    }
    const Config *c = w->config;
    // Everything reaches on_request, which answers 405 itself (with an Allow header).
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                            EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    struct timeval idle = {(time_t)(c->client_timeout_ms / 1000), (suseconds_t)(c->client_timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(h->http, &idle);
    // Room for a fully percent-encoded key of max_key_size plus ordinary headers; evhttp answers
    // 413 past this. GETs carry no body.
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)(3 * c->max_key_size + 16 * 1024));
    evhttp_set_max_body_size(h->http, 64 * 1024);
    evhttp_set_gencb(h->http, on_request, h);
    evhttp_set_bevcb(h->http, on_new_connection, h);
    if (evhttp_bind_listener(h->http, h->listener) == NULL) {
        http_front_destroy(h);
        return NULL;
    }
    accept_error_front = h;
    evconnlistener_set_error_cb(h->listener, on_accept_error);
    return h;
}

void http_front_destroy(HttpFront *h)
{
    if (h == NULL)
        return;
    if (accept_error_front == h)
        accept_error_front = NULL;
    if (h->http)
        evhttp_free(h->http);  // frees the bound listener too; the socket itself is the master's
    else if (h->listener)
        evconnlistener_free(h->listener);
    if (h->adopt_event) {
        adopt_fresh_connections(-1, 0, h);
        event_free(h->adopt_event);
    }
    free(h->fresh);
    free(h);
}

void http_front_set_accepting(HttpFront *h, bool accepting)
{
    if (accepting)
        evconnlistener_enable(h->listener);
    else
        evconnlistener_disable(h->listener);
}
