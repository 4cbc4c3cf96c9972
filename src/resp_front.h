// The RESP front door: Redis clients (redis-cli, redis-benchmark, any client library) read through
// the worker's cache with GET and MGET. Same cache, same backend connection as the HTTP front.
#pragma once

#include "listener_set.h"

struct Worker;
struct RespFront;
struct HandoverClient;

RespFront *resp_front_create(Worker *w, const ListenFds *listen_fds);
void resp_front_destroy(RespFront *f);

// Stops or resumes accepting new connections (open ones are unaffected).
void resp_front_set_accepting(RespFront *f, bool accepting);

// The worker is stopping: idle connections are closed now; the others once the command under
// way is complete and every answer sent.
void resp_front_drain(RespFront *f);

// The worker is retiring (a reload): each connection is handed over to one of the new
// generation's workers (their channels: targets, handover.h) as soon as it owes nothing and
// holds no unread input, now for the idle ones. One that never gets there is closed with the
// worker, at shutdown_timeout.
void resp_front_hand_over(RespFront *f, const int *targets, int n);

// A connection handed over by a retiring worker: served from here on, as it was there.
void resp_front_adopt(RespFront *f, int fd, const HandoverClient *state);
