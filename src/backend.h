// A worker's connection to the backing Redis, on the worker's event loop (hiredis async API with
// its libevent adapter). hiredis 0.14.1 has no connect timeout, command timeout or reconnect;
// this file adds all three:
//   - a connect timer; AUTH and SELECT queued right after connecting, their replies checked;
//   - commands time out: a timer watches the oldest outstanding command; when it is late the
//     connection is dropped, which answers every outstanding command with BACKEND_TIMEOUT;
//   - after any failure, reconnect from a timer with jittered exponential backoff.
// While there is no connection, backend_get refuses at once so callers never wait on a dead Redis.
#pragma once

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct event_base;
struct Config;

enum BackendFailure {
    BACKEND_OK = 0,
    BACKEND_UNAVAILABLE,  // connection failed or was lost before the reply came
    BACKEND_TIMEOUT,      // no reply within command_timeout
};

// reply is non-NULL exactly when failure == BACKEND_OK, and valid only during the call.
typedef void (*BackendReplyFn)(void *arg, redisReply *reply, BackendFailure failure);

// Where Redis is, resolved once by the master so that no worker ever blocks on DNS.
struct BackendTarget {
    bool is_unix;
    char ip[64];
    int port;
    char path[108];
    char display[300];  // as configured, for logs
};

bool backend_target_resolve(const char *address, BackendTarget *target, char *err, size_t errlen);

struct Backend;

// Starts connecting at once.
Backend *backend_create(event_base *base, const Config *config, const BackendTarget *target,
                        WorkerStats *stats, uint64_t seed);
// Answers every outstanding command with BACKEND_UNAVAILABLE, then frees everything.
void backend_destroy(Backend *b);

// Sends one command. Returns false at once when there is no connection to Redis (fn is not
// called); otherwise fn is called exactly once, later, from the event loop.
bool backend_command(Backend *b, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                     void *arg);

// GET key, as backend_command.
bool backend_get(Backend *b, const char *key, size_t len, BackendReplyFn fn, void *arg);

// Connected and past AUTH/SELECT.
bool backend_ready(const Backend *b);

// Commands sent and not yet answered.
size_t backend_outstanding(const Backend *b);
