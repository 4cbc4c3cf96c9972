// The RESP front door: Redis clients (redis-cli, redis-benchmark, any client library) read through
// the worker's cache with GET and MGET. Same cache, same backend connection as the HTTP front.
#pragma once

#include <stddef.h>

#include "listener_set.h"
#include "stats.h"

struct FrontEnv;
struct RespFront;
struct HandoverClient;

RespFront *resp_front_create(const FrontEnv *env, const ListenFds *listen_fds);
void resp_front_destroy(RespFront *f);

// The client holding the most memory (client_memory.h) and how much, for the worker's
// max_client_memory; 0 and NULL when none holds any.
size_t resp_front_most_memory(RespFront *f, void **client);
// Closes that client, counting and logging why.
void resp_front_evict(RespFront *f, void *client, EvictReason reason);
// The worker's clients are back under max_client_memory: those held back read again.
void resp_front_resume(RespFront *f);

// Stops or resumes accepting new connections (open ones are unaffected).
void resp_front_set_accepting(RespFront *f, bool accepting);
// Its listeners: the worker adds and drops a dead slot's sockets there (listener_set.h).
ListenerSet *resp_front_listeners(RespFront *front);


// The worker is stopping: idle connections are closed now; the others once the command under
// way is complete and every answer sent.
void resp_front_drain(RespFront *f);

// The worker is retiring (a reload): each connection is handed over to one of the new
// generation's workers (their channels: targets, handover.h) as soon as it owes nothing and
// holds no unread input, now for the idle ones. One that never gets there is closed with the
// worker, at shutdown_timeout.
// `revoked`: the reload changed who may read what ([users], protected_mode): a client that is not
// at a boundary is closed after its answers under way, rather than served on by the old rules.
void resp_front_hand_over(RespFront *f, const int *targets, int n, bool revoked);

// A connection handed over by a retiring worker: served from here on, as it was there.
void resp_front_adopt(RespFront *f, int fd, const HandoverClient *state);
