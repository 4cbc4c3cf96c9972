// A listening address served by every worker: a group of SO_REUSEPORT sockets on one address,
// one per worker slot, made by the master and kept open for its whole life, so that connections
// queued on a dead worker's socket wait there for its replacement instead of being refused.
//
// A reload may change the number of workers. Growing adds sockets to the group. Shrinking
// cannot close any: closing a SO_REUSEPORT socket resets the connections still waiting in its
// accept queue. So the surplus sockets stay open, each served by one of the remaining workers,
// and a steering program (classic BPF, SO_ATTACH_REUSEPORT_CBPF) sends new connections to the
// first `active` sockets only, one per worker, which keeps the load even.
#pragma once

#include <stddef.h>
#include <sys/socket.h>

struct ListenGroup {
    const char *what;             // "HTTP", "RESP" or "admin", for logs
    char text[256];               // the address as configured
    struct sockaddr_storage requested;  // as resolved from `text` (port 0: the kernel picks)
    socklen_t requested_len;
    struct sockaddr_storage bound;      // where the sockets are bound
    socklen_t bound_len;
    int *fds;    // in the order they joined the kernel's group, which the steering indexes
    int count;
    int active;  // new connections go to fds[0 .. active-1]
    bool steered;  // a steering program is attached
};

// Binds `sockets` sockets on `text`. An address someone else already listens on is refused
// (SO_REUSEPORT alone would silently share it). NULL with a reason in err on failure.
ListenGroup *listen_group_open(const char *what, const char *text, int sockets, char *err, size_t errlen);

// Whether `text` names the address this group listens on.
bool listen_group_same_address(const ListenGroup *g, const char *text);

// Adds sockets up to `sockets` in all; new ones get no connections until listen_group_steer
// makes them active. False with a reason on failure (the group is then as before).
bool listen_group_grow(ListenGroup *g, int sockets, char *err, size_t errlen);

// Undoes a grow: closes the sockets past `sockets`. Only for sockets no connection was steered
// to yet: closing resets the ones queued on it.
void listen_group_shrink(ListenGroup *g, int sockets);

static const int LISTEN_GROUP_MAX_SOCKETS = 1024;

// Sends new connections to the first `active` sockets only (all of them: the kernel's own
// spreading). False if the kernel refused the program; every socket is then still served.
bool listen_group_steer(ListenGroup *g, int active);

// Sends new connections only to those of the first `active` sockets whose worker serves now
// (serving[i]; a worker that died and waits for its respawn does not), until called again. With
// none serving it changes nothing. False if the kernel refused the program.
bool listen_group_steer_to(ListenGroup *g, const bool *serving);

// The sockets the worker in `slot` (of `workers`) serves: its own, fds[slot], and the surplus
// ones slot + workers, slot + 2 * workers, ... Returns how many it wrote to out (room: count).
int listen_group_sockets_of(const ListenGroup *g, int slot, int workers, int *out);

void listen_group_close(ListenGroup *g);
