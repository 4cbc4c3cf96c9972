#include "admin_front.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "metrics.h"
#include "scoreboard.h"
#include "worker.h"

struct AdminFront {
    Worker *worker;
    evhttp *http;
    ListenerSet listeners;
};

static void reply(evhttp_request *req, int code, const char *reason, const char *content_type, evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void reply_text(evhttp_request *req, int code, const char *reason, const char *text)
{
    evbuffer *body = evbuffer_new();
    if (body != NULL)
        evbuffer_add(body, text, strlen(text));
    reply(req, code, reason, "text/plain; charset=utf-8", body);
    if (body != NULL)
        evbuffer_free(body);
}

static void on_request(evhttp_request *req, void *arg)
{
    AdminFront *a = (AdminFront *)arg;
    Worker *w = a->worker;
    evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "only GET and HEAD are supported\n");
        return;
    }
    const char *uri = evhttp_request_get_uri(req);
    size_t path_len = strcspn(uri, "?#");
    ScoreboardTotals t;
    worker_totals(w, &t);
    int want = w->worker_count;
    char text[256];
    if (path_len == 8 && memcmp(uri, "/metrics", 8) == 0) {
        evbuffer *body = evbuffer_new();
        if (body == NULL) {
            reply_text(req, 503, "Service Unavailable", "out of memory\n");
            return;
        }
        MetricsSettings settings = {want, w->config->capacity};
        if (w->scoreboard != NULL)
            metrics_render(body, w->scoreboard, &t, &settings);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
        evbuffer_free(body);
    } else if (path_len == 8 && memcmp(uri, "/healthz", 8) == 0) {
        // Alive: the master (whose death takes the workers with it) and every worker slot.
        bool ok = t.workers >= want;
        snprintf(text, sizeof(text), "%s: %d of %d workers running\n", ok ? "ok" : "unhealthy", t.workers, want);
        reply_text(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", text);
    } else if (path_len == 7 && memcmp(uri, "/readyz", 7) == 0) {
        // Ready: every worker can answer a miss, i.e. is connected to Redis. With tracking, a
        // worker whose tracking is not established serves too, from Redis without caching:
        // said in the body, not in the status.
        int connected = (int)t.stats.redis_connected;
        bool ok = t.workers >= want && connected >= t.workers;
        int n = snprintf(text, sizeof(text), "%s: %d of %d workers connected to Redis", ok ? "ready" : "not ready",
                         connected, t.workers);
        if (a->worker->config->invalidation == INVALIDATION_TRACKING)
            snprintf(text + n, sizeof(text) - (size_t)n, "; invalidation tracking established in %d of %d%s\n",
                     (int)t.stats.tracking, t.workers,
                     (int)t.stats.tracking < t.workers ? " (the others cache nothing until it is)" : "");
        else
            snprintf(text + n, sizeof(text) - (size_t)n, "\n");
        reply_text(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", text);
    } else {
        reply_text(req, 404, "Not Found", "try /metrics, /healthz or /readyz\n");
    }
}

AdminFront *admin_front_create(Worker *w, const ListenFds *listen_fds)
{
    AdminFront *a = (AdminFront *)calloc(1, sizeof(AdminFront));
    if (a == NULL)
        return NULL;
    a->worker = w;
    a->http = evhttp_new(w->base);
    if (a->http == NULL || !listener_set_open(&a->listeners, w->base, listen_fds, NULL, NULL, NULL, a->http)) {
        admin_front_destroy(a);
        return NULL;
    }
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_max_headers_size(a->http, 16 * 1024);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_gencb(a->http, on_request, a);
    return a;
}

void admin_front_destroy(AdminFront *a)
{
    if (a == NULL)
        return;
    listener_set_free(&a->listeners);
    if (a->http)
        evhttp_free(a->http);  // frees the bound listeners too; the sockets are the master's
    free(a);
}

void admin_front_stop_accepting(AdminFront *a)
{
    listener_set_enable(&a->listeners, false);
}
