// One worker process: an event loop that owns a cache, a backend connection and the fronts.
// All of a worker's state lives in this struct, passed to whoever needs it.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "client_memory.h"
#include "front_env.h"
#include "worker_env.h"
#include "config.h"
#include "lookup.h"
#include "listener_set.h"
#include "stats.h"

struct event_base;
struct event;
struct Config;
struct Cache;
struct HttpFront;
struct RespFront;
struct AdminFront;
struct ScoreboardTotals;

struct Worker {
    int id;  // slot number, 0..workers-1
    int worker_count;
    const Config *config;
    event_base *base;
    Lookup lookup;  // the cache, the fetches, the Redis connection or cluster (lookup.h)
    struct Tracking *tracking;   // NULL with invalidation = off
    HttpFront *http;
    RespFront *resp;  // NULL when resp_listen is off
    AdminFront *admin;  // NULL when [admin] listen is off
    WorkerStats *stats;
    const struct Scoreboard *scoreboard;  // may be NULL
    uint64_t own_client_ids;  // CLIENT IDs, without a scoreboard
    WorkerEnv env;         // what the parts below read of it: loop, config, numbers, id, stopping
    FrontEnv front_env;    // what the fronts get of it (front_env.h)
    int64_t client_limit;  // this worker's share of max_clients
    ClientMemory client_memory;  // what the clients hold, against max_client_memory
    event *evict_event;          // closes the clients holding the most, once past it
    bool accepting;        // listeners enabled
    bool stopping;
    char *key_buf;         // scratch for one decoded key, max_key_size bytes
    event *expire_timer, *stop_timer, *sigterm_event, *sigint_event, *sigquit_event;
    event *sigusr1_event;    // reopens the access log
    struct AccessLog *access_log;  // [log] access; NULL when off
    event *accept_retry_timer;  // ends a pause in accepting (FrontEnv.pause_accepting)
    bool held;               // a reload's new worker, not accepting before its first try at Redis
    event *hold_timer;
    int channel;             // to the master (handover.h); -1: none
    event *channel_event;
    int handover_targets[CONFIG_MAX_WORKERS];  // the new generation's channels, once retiring
    int handover_target_count;
    uint64_t started_ms;
    uint64_t stop_deadline_ms;
    OpsRate ops_rate;        // INFO's instantaneous_ops_per_sec, sampled with the expiry tick
    WorkerStats own_stats;
};

struct WorkerSetup {
    int id;
    int worker_count;
    ListenFds http;  // listening sockets, owned by the master
    ListenFds resp;  // none when resp_listen is off
    ListenFds admin;  // none when [admin] listen is off
    BackendTarget redis;  // with a cluster: its first seed
    BackendTarget seeds[CONFIG_MAX_SEEDS];  // a Redis Cluster's seed nodes; none for one Redis
    int seed_count;
    WorkerStats *stats;  // this worker's record in the scoreboard; NULL: keep them to itself
    char *redis_failure;  // its record's: why the last attempt to reach Redis failed; may be NULL
    size_t redis_failure_len;
    const struct Scoreboard *scoreboard;  // the whole proxy's numbers, for INFO; may be NULL
    struct LogShared *log_shared;  // in the scoreboard: lines every worker would log alike; may be NULL
    uint64_t *client_ids;  // in the scoreboard: the last RESP CLIENT ID given; NULL: counted alone
    int channel;  // its end of the channel with the master (handover.h); -1: none
    // A reload's new worker: it accepts no connection before its first attempt to reach Redis has
    // ended (the previous worker on the same sockets serves meanwhile).
    bool hold_until_redis_tried;
    // The key of the values' digests (HTTP ETags): random, made by the master at start and the
    // same in every worker and generation, so that a value has one ETag whichever worker answers
    // and nobody who only sees ETags can make two values share one.
    uint64_t digest_key;
    // [tls]'s server context for the listeners marked tls, made by the master at start and at
    // each reload (certificates read again), inherited at fork; NULL when none is marked.
    struct ssl_ctx_st *tls_server;
};

// Runs the worker's loop until SIGTERM/SIGINT; returns the process exit code.
int worker_run(const Config *config, const WorkerSetup *setup);


