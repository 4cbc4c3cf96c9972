#include "http_adoption.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stdlib.h>

static bool reserve(HttpAdoption *a)
{
    if (a->pending_len < a->pending_cap)
        return true;
    size_t cap = a->pending_cap ? a->pending_cap * 2 : 16;
    PendingConnection *pending = (PendingConnection *)realloc(a->pending, cap * sizeof(*pending));
    if (pending == NULL)
        return false;
    a->pending = pending;
    a->pending_cap = cap;
    return true;
}

static void adopt_pending(evutil_socket_t, short, void *arg)
{
    HttpAdoption *a = (HttpAdoption *)arg;
    for (size_t i = 0; i < a->pending_len; i++) {
        bufferevent *bev = a->pending[i].bev;
        bufferevent_data_cb readcb = NULL;
        void *cbarg = NULL;
        bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
        // evhttp sets the callbacks to NULL when it frees a connection.
        evhttp_connection *evcon = readcb != NULL && cbarg != NULL ? (evhttp_connection *)cbarg : NULL;
        if (evcon != NULL && a->pending[i].refused) {
            evhttp_connection_free(evcon);
            evcon = NULL;
        }
        a->adopted(a->arg, bev, evcon);
        bufferevent_decref(bev);
    }
    a->pending_len = 0;
}

bool http_adoption_init(HttpAdoption *a, event_base *base)
{
    a->pending_event = event_new(base, -1, 0, adopt_pending, a);
    return a->pending_event != NULL && reserve(a);
}

static bufferevent *keep(HttpAdoption *a, bufferevent *bev, bool refused)
{
    bufferevent_incref(bev);
    a->pending[a->pending_len++] = {bev, refused};
    reserve(a);  // room for the next one made now: a TLS connection refused for want of memory needs it
    event_active(a->pending_event, EV_TIMEOUT, 1);
    a->accepted(a->arg);
    return bev;
}

bufferevent *http_adoption_new_connection(event_base *base, void *arg)
{
    HttpAdoption *a = (HttpAdoption *)arg;
    if (!reserve(a))
        return NULL;  // evhttp then makes its own bufferevent, which is just not counted
    bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    return bev != NULL ? keep(a, bev, false) : NULL;
}

bufferevent *http_adoption_new_tls_connection(event_base *base, void *arg)
{
    HttpAdoption *a = (HttpAdoption *)arg;
    bool room = reserve(a);  // (made ahead by the last keep: fails only if that failed too)
    SSL *ssl = SSL_new(a->tls);
    bufferevent *bev = ssl != NULL ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                                     BEV_OPT_CLOSE_ON_FREE)
                                   : NULL;
    if (bev != NULL) {
        // A client that closes without close_notify has ended, as over plain TCP (most do).
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        return room ? keep(a, bev, false) : bev;  // (without room: served, just not counted)
    }
    if (ssl != NULL)
        SSL_free(ssl);
    // evhttp would make a plain bufferevent of its own for a NULL, and serve a plain client on a
    // TLS address: one is made here instead, and closed at its adoption.
    if (room && (bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) != NULL)
        return keep(a, bev, true);
    abort();  // out of memory three times over: the worker cannot refuse the connection safely
}

bool http_connection_is_tls(bufferevent *bev) { return bufferevent_openssl_get_ssl(bev) != NULL; }

bool http_connection_handshaken(bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    return ssl != NULL && SSL_is_init_finished(ssl);
}

void http_adoption_free(HttpAdoption *a)
{
    if (a->pending_event != NULL) {
        adopt_pending(-1, 0, a);
        event_free(a->pending_event);
    }
    free(a->pending);
    a->pending = NULL;
    a->pending_event = NULL;
}
