// The RESP front door: Redis clients (redis-cli, redis-benchmark, any client library) read through
// the worker's cache with GET and MGET. Same cache, same backend connection as the HTTP front.
#pragma once

#include "listener_set.h"

struct Worker;
struct RespFront;

RespFront *resp_front_create(Worker *w, const ListenFds *listen_fds);
void resp_front_destroy(RespFront *f);

// Stops or resumes accepting new connections (open ones are unaffected).
void resp_front_set_accepting(RespFront *f, bool accepting);

// The worker is stopping: idle connections are closed now; the others once the command under
// way is complete and every answer sent.
void resp_front_drain(RespFront *f);
