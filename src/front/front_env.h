// What a front gets from its worker at creation, so that it never calls into the worker: the
// loop, config and numbers, where GET and MGET are answered, what its clients may hold, and the
// worker's hooks for its client budget (max_clients), its accept pause and the proxy's numbers.
#pragma once

#include <stdint.h>

#include "client_memory.h"
#include "lookup.h"
#include "stats.h"

struct event_base;
struct AccessLog;
struct Config;
struct Scoreboard;
struct ScoreboardTotals;

struct FrontEnv {
    event_base *base;
    const Config *config;
    WorkerStats *stats;
    int id;                        // the worker's, for logs and INFO
    int worker_count;
    uint64_t started_ms;           // when the worker started (INFO's uptime)
    const Scoreboard *scoreboard;  // every worker's numbers (the admin endpoint); may be NULL
    uint64_t *client_ids;          // the last CLIENT ID given, shared by every worker (atomic)
    Lookup *lookup;
    ClientMemory *client_memory;
    char *key_buf;                 // scratch for one decoded key, max_key_size bytes
    AccessLog *access_log;         // [log] access; NULL when off
    struct ssl_ctx_st *tls;        // [tls]: for listeners marked tls (made by the master); NULL: none
    // A client connection opened or closed: the worker stops accepting at its share of
    // max_clients (new connections then wait in the kernel backlog) and resumes below it.
    void (*client_opened)(void *arg, Front front);
    void (*client_closed)(void *arg, Front front);
    // accept(2) failed for a reason that does not clear by itself (EMFILE, ENFILE): every front
    // stops accepting for a moment. `front` names the one that hit it, for the log.
    void (*pause_accepting)(void *arg, const char *front, int err);
    // The whole proxy's numbers (the scoreboard's), or this worker's own without one.
    void (*totals)(void *arg, ScoreboardTotals *t);
    void *arg;
};
