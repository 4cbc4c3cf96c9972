// Knowing each evhttp connection from its accept to its close, with libevent 2.1, for the HTTP
// front and the admin endpoint alike. 2.1 has no evhttp_set_max_connections (2.2) and no hook on
// a new evhttp_connection. What it has: evhttp_set_bevcb, called at each accept to create the
// connection's bufferevent, right before evhttp wraps it in an evhttp_connection whose pointer it
// passes as the bufferevent's callback argument (http.c, evhttp_connection_base_bufferevent_new).
// So: count the client there, hold a reference on the bufferevent, and once the accept callback
// has returned (an event made active) fetch the connection from it and hand it to the owner, who
// hangs its close callback on it. The reference guarantees the bufferevent is still there to look
// at even if evhttp gave up on it meanwhile.
#pragma once

#include <stddef.h>

struct bufferevent;
struct event;
struct event_base;
struct evhttp_connection;
typedef struct ssl_ctx_st SSL_CTX;

struct PendingConnection {
    bufferevent *bev;
    bool refused;  // a TLS one that could not be set up (out of memory): closed once adopted
};

struct HttpAdoption {
    // A connection was accepted (count it).
    void (*accepted)(void *arg);
    // Right after: its evhttp connection, or NULL when evhttp has already freed it (uncount it).
    void (*adopted)(void *arg, bufferevent *bev, evhttp_connection *evcon);
    void *arg;
    SSL_CTX *tls;           // for http_adoption_new_tls_connection's connections
    event *pending_event;  // runs right after the accept
    PendingConnection *pending;  // accepted, not yet adopted
    size_t pending_len, pending_cap;
};

// False when out of memory.
bool http_adoption_init(HttpAdoption *a, event_base *base);
// The callback for evhttp_set_bevcb, with the HttpAdoption as its argument.
bufferevent *http_adoption_new_connection(event_base *base, void *adoption);
// The same for an evhttp whose listeners are TLS: the connection is a TLS bufferevent
// (bufferevent_openssl) that accepts a handshake with the adoption's context. One that cannot
// be made (out of memory) is given to evhttp as a plain bufferevent and closed at its adoption,
// before a byte of it is read: a TLS address never serves a plain client.
bufferevent *http_adoption_new_tls_connection(event_base *base, void *adoption);
// Whether the connection is TLS, and its handshake has finished.
bool http_connection_is_tls(bufferevent *bev);
bool http_connection_handshaken(bufferevent *bev);
// Adopts what is pending, then frees what it holds.
void http_adoption_free(HttpAdoption *a);
