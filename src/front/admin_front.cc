#include "admin_front.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "acl.h"
#include "address.h"
#include "clock.h"
#include "config.h"
#include "http_adoption.h"
#include "http_credentials.h"
#include "log.h"
#include "metrics.h"
#include "protected_mode.h"
#include "scoreboard.h"
#include "front_env.h"

struct AdminFront {
    const FrontEnv *env;
    evhttp *http;
    evhttp *https;            // the same for the addresses marked tls; NULL: none
    ListenerSet listeners;
    int64_t open;             // connections open, against [admin] max_clients
    bool accepting;
    bool stopped;             // stopping or being freed: the listeners stay as they are
    HttpAdoption adoption;    // each connection, from its accept (http_adoption.h)
};

static void set_accepting(AdminFront *a)
{
    bool want = a->open < a->env->config->admin_max_clients;
    if (a->stopped)
        return;
    if (want != a->accepting)
        listener_set_enable(&a->listeners, want);
    a->accepting = want;
}

// One admin connection: it lasts [admin] timeout at most, idle or not, so that clients sending a
// byte now and then cannot hold the admin slots (evhttp's own timeout sees only silence).
struct AdminConn {
    AdminFront *front;
    evhttp_connection *evcon;  // NULL once closed
    bufferevent *bev;
    bool tls;                  // a TLS address's: counted at its close, handshaken or not
    event *deadline;
    bool expiring;  // closed by its deadline: the deadline's callback frees it
};

static void on_connection_closed(evhttp_connection *, void *arg)
{
    AdminConn *c = (AdminConn *)arg;
    if (c->tls && http_connection_handshaken(c->bev))
        c->front->env->stats->admin_tls_handshakes++;
    else if (c->tls)
        c->front->env->stats->admin_tls_handshake_failures++;
    c->front->open--;
    set_accepting(c->front);
    c->evcon = NULL;
    if (!c->expiring) {
        event_free(c->deadline);
        free(c);
    }
}

static void on_deadline(evutil_socket_t, short, void *arg)
{
    AdminConn *c = (AdminConn *)arg;
    c->expiring = true;
    evhttp_connection_free(c->evcon);  // calls on_connection_closed
    if (c->evcon != NULL) {             // (it did not: count the close here)
        c->front->open--;
        set_accepting(c->front);
    }
    event_free(c->deadline);
    free(c);
}

// Connections are counted from their accept, as the HTTP front's (http_adoption.h).
static void on_accepted(void *arg)
{
    AdminFront *a = (AdminFront *)arg;
    a->open++;
    set_accepting(a);
}

static void adopt(AdminFront *a, bufferevent *bev, evhttp_connection *evcon)
{
    AdminConn *c = (AdminConn *)calloc(1, sizeof(AdminConn));
    if (c != NULL && (c->deadline = evtimer_new(a->env->base, on_deadline, c)) == NULL) {
        free(c);
        c = NULL;
    }
    if (c == NULL) {  // out of memory: the connection goes
        evhttp_connection_free(evcon);
        a->open--;
        set_accepting(a);
        return;
    }
    c->front = a;
    c->evcon = evcon;
    c->bev = bev;
    c->tls = http_connection_is_tls(bev);  // [admin] timeout bounds its handshake too
    if (c->tls) {
        int on = 1;  // TLS records leave as they are made (the HTTP front says why)
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }
    struct timeval lifetime = timeval_of_ms((uint64_t)a->env->config->admin_timeout_ms);
    evtimer_add(c->deadline, &lifetime);
    evhttp_connection_set_closecb(evcon, on_connection_closed, c);
}

// Protected mode (protected_mode.h), for an admin endpoint without a token: /metrics tells no
// key, but is no more open than the fronts.
static bool refused_by_protected_mode(const AdminFront *a, int fd)
{
    if (!protected_mode_active(a->env->config) || a->env->config->admin_token[0] != '\0')
        return false;
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    // (No peer: the client has gone already; its connection ends at its first read, unserved.)
    return getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && !address_is_loopback((struct sockaddr *)&peer);
}

static void on_adopted(void *arg, bufferevent *bev, evhttp_connection *evcon)
{
    AdminFront *a = (AdminFront *)arg;
    if (evcon != NULL && refused_by_protected_mode(a, bufferevent_getfd(bev))) {
        protected_mode_refuse(bufferevent_getfd(bev), http_connection_is_tls(bev) ? REFUSE_SILENTLY : REFUSE_HTTP,
                              &a->env->stats->admin_clients_denied);
        evhttp_connection_free(evcon);
        a->open--;
        set_accepting(a);
        return;
    }
    if (evcon != NULL) {
        adopt(a, bev, evcon);
        return;
    }
    a->open--;  // evhttp already freed it
    set_accepting(a);
}

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

// Whether /metrics may be answered: no [admin] token, or the request's Authorization is
// "Bearer <token>" (compared in constant time; what Prometheus's authorization setting sends).
static bool token_given(const AdminFront *a, evhttp_request *req)
{
    const char *token = a->env->config->admin_token;
    if (token[0] == '\0')
        return true;
    const char *value = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    char decoded[256];
    HttpCredentials credentials;
    if (value == NULL ||
        http_credentials_parse(value, strlen(value), decoded, sizeof(decoded), &credentials) != HTTP_CREDENTIALS_BEARER)
        return false;
    unsigned char given[ACL_DIGEST_SIZE], wanted[ACL_DIGEST_SIZE];
    // Digests of both, so that the comparison takes the same time whatever the lengths.
    return acl_sha256(credentials.password, credentials.password_len, given) &&
           acl_sha256(token, strlen(token), wanted) && CRYPTO_memcmp(given, wanted, sizeof(given)) == 0;
}

static void on_request(evhttp_request *req, void *arg)
{
    AdminFront *a = (AdminFront *)arg;
    const FrontEnv *env = a->env;
    evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "only GET and HEAD are supported\n");
        return;
    }
    const char *uri = evhttp_request_get_uri(req);
    size_t path_len = strcspn(uri, "?#");
    ScoreboardTotals t;
    env->totals(env->arg, &t);
    int want = env->worker_count;
    char text[256];
    if (path_len == 8 && memcmp(uri, "/metrics", 8) == 0 && !token_given(a, req)) {
        env->stats->admin_auth_failures++;
        char address[128] = "?";
        evhttp_connection *evcon = evhttp_request_get_connection(req);
        if (evcon != NULL)
            address_of_peer(bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)), address, sizeof(address));
        log_msg_once_per_kind(LOG_WARN, "authentication failure",
                              "authentication failed for admin client %s: /metrics without its [admin] token (at "
                              "most one such line a second)", address);
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"redis-proxy\"");
        reply_text(req, 401, "Unauthorized", "/metrics needs Authorization: Bearer <[admin] token>\n");
    } else if (path_len == 8 && memcmp(uri, "/metrics", 8) == 0) {
        evbuffer *body = evbuffer_new();
        if (body == NULL) {
            reply_text(req, 503, "Service Unavailable", "out of memory\n");
            return;
        }
        MetricsSettings settings = {want, env->config->capacity, env->config->max_memory};
        if (env->scoreboard != NULL)
            metrics_render(body, env->scoreboard, &t, &settings);
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
        if (a->env->config->invalidation == INVALIDATION_TRACKING)
            snprintf(text + n, sizeof(text) - (size_t)n, "; invalidation tracking established in %d of %d%s\n",
                     (int)t.stats.tracking, t.workers,
                     (int)t.stats.tracking < t.workers ? " (the others cache nothing until it is)" : "");
        else
            snprintf(text + n, sizeof(text) - (size_t)n, "\n");
        if (ok || env->scoreboard == NULL) {
            reply_text(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", text);
            return;
        }
        // Not ready: why, as each worker last saw it (the same reason once).
        evbuffer *body = evbuffer_new();
        if (body == NULL) {
            reply_text(req, 503, "Service Unavailable", text);
            return;
        }
        evbuffer_add(body, text, strlen(text));
        const Scoreboard *sb = env->scoreboard;
        for (int i = 0; i < sb->used; i++) {
            const WorkerRecord *r = &sb->record[i];
            char why[sizeof(r->redis_failure)];
            memcpy(why, r->redis_failure, sizeof(why));
            why[sizeof(why) - 1] = '\0';
            bool said = why[0] == '\0' || r->pid == 0;
            for (int j = 0; j < i && !said; j++)
                said = sb->record[j].pid != 0 && strncmp(sb->record[j].redis_failure, why, sizeof(why)) == 0;
            if (!said)
                evbuffer_add_printf(body, "worker %d: %s\n", r->slot, why);
        }
        reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8", body);
        evbuffer_free(body);
    } else {
        reply_text(req, 404, "Not Found", "try /metrics, /healthz or /readyz\n");
    }
}

// An evhttp as the endpoint serves with: plain, or (new_connection making TLS bufferevents) HTTPS.
static evhttp *new_evhttp(AdminFront *a, bufferevent *(*new_connection)(event_base *, void *))
{
    evhttp *http = evhttp_new(a->env->base);
    if (http == NULL)
        return NULL;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    struct timeval idle = timeval_of_ms((uint64_t)a->env->config->admin_timeout_ms);
    evhttp_set_timeout_tv(http, &idle);
    evhttp_set_bevcb(http, new_connection, &a->adoption);
    evhttp_set_max_headers_size(http, 16 * 1024);
    evhttp_set_max_body_size(http, 0);
    evhttp_set_gencb(http, on_request, a);
    return http;
}

AdminFront *admin_front_create(const FrontEnv *env, const ListenFds *listen_fds)
{
    AdminFront *a = (AdminFront *)calloc(1, sizeof(AdminFront));
    if (a == NULL)
        return NULL;
    a->env = env;
    a->accepting = true;
    a->adoption = {on_accepted, on_adopted, a, env->tls, NULL, NULL, 0, 0};
    bool wants_tls = listen_fds_any_tls(listen_fds);
    if (!http_adoption_init(&a->adoption, env->base) || (a->http = new_evhttp(a, http_adoption_new_connection)) == NULL ||
        (wants_tls && (env->tls == NULL || (a->https = new_evhttp(a, http_adoption_new_tls_connection)) == NULL))) {
        admin_front_destroy(a);
        return NULL;
    }
    ListenHandlers how = {NULL, NULL, a, NULL, a->http, a->https};
    if (!listener_set_open(&a->listeners, env->base, listen_fds, &how)) {
        admin_front_destroy(a);
        return NULL;
    }
    return a;
}

void admin_front_destroy(AdminFront *a)
{
    if (a == NULL)
        return;
    a->stopped = true;  // evhttp_free closes the connections: their close callbacks run
    listener_set_free(&a->listeners);
    if (a->http)
        evhttp_free(a->http);  // frees the bound listeners too; the sockets are the master's
    if (a->https)
        evhttp_free(a->https);
    http_adoption_free(&a->adoption);
    free(a);
}

void admin_front_stop_accepting(AdminFront *a)
{
    listener_set_enable(&a->listeners, false);
    a->accepting = false;
    a->stopped = true;
}

ListenerSet *admin_front_listeners(AdminFront *a) { return &a->listeners; }
