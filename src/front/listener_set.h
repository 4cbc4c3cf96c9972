// The listening sockets one front of a worker accepts on: its own, and after a reload that
// reduced the workers, surplus ones it shares in (see listen_group.h). The sockets are the
// master's; a set only makes and frees the libevent listeners on them.
//
// For a while it may also serve another slot's socket, adopted: while that slot's worker is dead
// and waits for its respawn, the connections queued on its socket are accepted here instead of
// waiting for the successor (the master sends the socket, and takes it back once the slot
// serves again).
#pragma once

#include <event2/listener.h>

struct evhttp;
struct evhttp_bound_socket;

struct ListenFds {
    const int *fd;
    int count;  // 0: the front is off
};

struct ListenerSet {
    evconnlistener **item;
    evhttp_bound_socket **bound;  // with an evhttp: each listener's binding (an adopted one is undone)
    int *adopted_for;             // -1: the set's own; else the slot whose socket it serves for now
    int count, cap;
    bool enabled;                 // as last set: a listener adopted later follows it
    // How each listener is made, for those adopted later.
    event_base *base;
    evconnlistener_cb on_accept;
    void *arg;
    evconnlistener_errorcb on_error;
    evhttp *http;
};

// Makes a listener on each socket, calling on_accept(arg) for each connection, or, with `http`,
// bound to that evhttp instead (on_accept is then NULL). False if any failed (free the set).
bool listener_set_open(ListenerSet *set, event_base *base, const ListenFds *fds, evconnlistener_cb on_accept,
                       void *arg, evconnlistener_errorcb on_error, evhttp *http);
void listener_set_enable(ListenerSet *set, bool enabled);
// Serves `fd`, a socket of the dead worker of `slot` (the set's copy: closed when released).
// False (fd closed) if out of memory.
bool listener_set_adopt(ListenerSet *set, int fd, int slot);
// Stops serving the sockets adopted for `slot` (its worker serves them again).
void listener_set_release(ListenerSet *set, int slot);
// Frees the listeners unless their evhttp does (then call it before evhttp_free).
void listener_set_free(ListenerSet *set);
