// Handing a reload's RESP connections over, so that no client sees the reload. Each worker has
// a channel to the master (a SOCK_SEQPACKET socketpair made at fork). When a reload's new
// generation serves, the master sends each retiring worker, on its channel, the new workers'
// channel ends (TARGETS, as SCM_RIGHTS) and then RETIRE. The retiring worker passes each RESP
// connection, once it owes nothing and holds no unread input, straight to one of them (CLIENT:
// the socket and the little state the front keeps); bytes the client sends meanwhile wait in the
// kernel and are read by the new worker. No I/O beyond one sendmsg/recvmsg per message, never
// blocking.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum HandoverKind {
    HANDOVER_TARGETS = 1,  // fds: channels of the new generation's workers
    HANDOVER_RETIRE = 2,   // stop accepting, hand every RESP connection over, exit; data: HandoverRetire
    HANDOVER_CLIENT = 3,   // fd: a RESP client connection; data: HandoverClient
    // Not a reload's: while a slot's worker is dead and waits for its respawn, a serving worker
    // accepts the connections queued on that slot's sockets (listener_set.h).
    HANDOVER_ADOPT = 4,    // fds: a dead slot's listening sockets; data: HandoverListeners
    HANDOVER_RELEASE = 5,  // the slot serves again: drop its sockets; data: HandoverListeners (slot)
};

static const int HANDOVER_MAX_FDS = 64;  // per message (the kernel takes up to 253)

// How a reload retires a worker.
struct HandoverRetire {
    // The new generation reads with other credentials ([users] or protected_mode changed): no
    // connection is served on by the old rules (HTTP idle ones closed, RESP ones not at a
    // boundary closed after their answers).
    uint32_t revoked;
};

// What a RESP connection carries to its new worker.
struct HandoverClient {
    uint64_t id;        // its CLIENT ID, which it keeps
    uint32_t used;      // it has sent a command
    uint32_t protocol;  // HELLO's: 2 or 3
    uint32_t name_len;  // CLIENT SETNAME's name (0: none)
    char name[256];
    uint32_t user_len;  // the user it authenticated as (0: none): the new worker looks it up by name
    char user[72];
};

// Which front each adopted socket is for, in the order of the fds; HANDOVER_TLS added when the
// address is marked tls.
enum HandoverFront { HANDOVER_HTTP, HANDOVER_RESP, HANDOVER_ADMIN, HANDOVER_TLS = 0x80 };

struct HandoverListeners {
    uint32_t slot;
    uint8_t front[HANDOVER_MAX_FDS];  // HandoverFront of each fd
};

// Sends one message without blocking. False (errno set: EAGAIN when the peer's queue is full,
// EPIPE or ECONNREFUSED when it has gone) if it was not sent.
bool handover_send(int channel, HandoverKind kind, const int *fds, int nfds, const void *data, size_t len);

// Receives one message without blocking: its kind, up to max_fds descriptors (the caller owns
// them), and up to cap bytes of data (*len). Returns 1 for a message, 0 when none is waiting, -1
// for a malformed one (its descriptors are closed), -2 when every sender has closed its end.
int handover_recv(int channel, HandoverKind *kind, int *fds, int max_fds, int *nfds, void *data, size_t cap,
                  size_t *len);
