// What every part of a worker reads from it: its event loop, its configuration, its numbers, its
// id for the logs, and whether it is stopping. Handed down at creation, so that the parts below
// the worker (tracking, the cluster) never reach up into it.
#pragma once

#include "stats.h"

struct event_base;
struct Config;
typedef struct ssl_ctx_st SSL_CTX;

struct WorkerEnv {
    event_base *base;
    const Config *config;
    WorkerStats *stats;
    int id;
    const bool *stopping;
    SSL_CTX *redis_tls;  // [redis] tls: every connection to Redis uses it (tls.h); NULL: plain
    char *redis_failure;  // why the last attempt to reach Redis failed (the scoreboard's); may be NULL
    size_t redis_failure_len;
};
