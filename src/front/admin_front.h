// The admin endpoint ([admin] listen): /metrics, /healthz, /readyz. Every worker serves it on
// its own SO_REUSEPORT socket, as it serves HTTP, and whichever answers reads the whole proxy's
// numbers from the scoreboard: the master never serves anything, so it never blocks on a
// client. Admin connections do not count against max_clients: they have a small limit of their
// own per worker ([admin] max_clients; past it new ones wait in the kernel backlog, holding no
// descriptor) and an idle timeout ([admin] timeout), so that no number of them can take the
// descriptors the clients need.
#pragma once

#include "listener_set.h"

struct FrontEnv;
struct AdminFront;

AdminFront *admin_front_create(const FrontEnv *env, const ListenFds *listen_fds);
void admin_front_destroy(AdminFront *a);

// Stops accepting (a stopping worker leaves the endpoint to the others).
void admin_front_stop_accepting(AdminFront *a);

// Its listeners: the worker adds and drops a dead slot's sockets there (listener_set.h).
ListenerSet *admin_front_listeners(AdminFront *front);
