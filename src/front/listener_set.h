// The listening sockets one front of a worker accepts on: its own, and after a reload that
// reduced the workers, surplus ones it shares in (see listen_group.h). The sockets are the
// master's; a set only makes and frees the libevent listeners on them.
#pragma once

#include <event2/listener.h>

struct evhttp;

struct ListenFds {
    const int *fd;
    int count;  // 0: the front is off
};

struct ListenerSet {
    evconnlistener **item;
    int count;
    bool owned_by_http;  // bound to an evhttp, which frees them
};

// Makes a listener on each socket, calling on_accept(arg) for each connection, or, with `http`,
// bound to that evhttp instead (on_accept is then NULL). False if any failed (free the set).
bool listener_set_open(ListenerSet *set, event_base *base, const ListenFds *fds, evconnlistener_cb on_accept,
                       void *arg, evconnlistener_errorcb on_error, evhttp *http);
void listener_set_enable(ListenerSet *set, bool enabled);
// Frees the listeners unless their evhttp does (then call it before evhttp_free).
void listener_set_free(ListenerSet *set);
