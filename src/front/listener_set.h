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
    const bool *tls;  // per socket: its clients speak TLS (its address is marked tls)
    int count;  // 0: the front is off
};

// Whether any of the sockets is a TLS address's.
bool listen_fds_any_tls(const ListenFds *fds);

// What a front does with its connections: accept them itself (on_accept, on_accept_tls for the
// TLS sockets), or have an evhttp take them (http; https for the TLS sockets, whose bufferevent
// callback makes TLS bufferevents).
struct ListenHandlers {
    evconnlistener_cb on_accept, on_accept_tls;
    void *arg;
    evconnlistener_errorcb on_error;
    evhttp *http, *https;
};

struct ListenerSet {
    evconnlistener **item;
    evhttp_bound_socket **bound;  // with an evhttp: each listener's binding (an adopted one is undone)
    int *adopted_for;             // -1: the set's own; else the slot whose socket it serves for now
    bool *tls;                    // its socket is a TLS address's
    int count, cap;
    bool enabled;                 // as last set: a listener adopted later follows it
    event_base *base;
    ListenHandlers how;           // how each listener is made, for those adopted later too
};

// Makes a listener on each socket, as `how` says. False if any failed (free the set), or if a
// socket is TLS and `how` has nothing for TLS.
bool listener_set_open(ListenerSet *set, event_base *base, const ListenFds *fds, const ListenHandlers *how);
void listener_set_enable(ListenerSet *set, bool enabled);
// Serves `fd`, a socket of the dead worker of `slot` (the set's copy: closed when released).
// False (fd closed) if out of memory, or TLS without a way to serve it.
bool listener_set_adopt(ListenerSet *set, int fd, bool tls, int slot);
// Stops serving the sockets adopted for `slot` (its worker serves them again).
void listener_set_release(ListenerSet *set, int slot);
// Whether `conn`, a connected socket, was accepted on an address this set serves as TLS (its
// local address is a TLS listener's, or in the range of one on a wildcard address).
bool listener_set_address_is_tls(const ListenerSet *set, int conn);
// Frees the listeners unless their evhttp does (then call it before evhttp_free).
void listener_set_free(ListenerSet *set);
