// Redis-driven invalidation ([cache] invalidation = tracking): Redis's server-assisted client-side
// caching, in its RESP2 form. Per worker:
//   - a second connection to Redis, the link: CLIENT ID, then SUBSCRIBE __redis__:invalidate and
//     a private heartbeat channel, both confirmed before anything relies on them (Redis drops
//     invalidations aimed at a connection that is not subscribed yet);
//   - then CLIENT TRACKING on REDIRECT <link id> on the worker's data connection: Redis remembers
//     every key this worker reads (nil answers included) and tells the link when one changes,
//     expires or is evicted, or that everything went (FLUSHALL/FLUSHDB);
//   - each invalidation goes to the owner (invalidate); a flush makes it distrust everything;
//   - a heartbeat: PUBLISH on the data connection to the private channel, which must come back
//     through the link within heartbeat/2. In RESP2 nothing tells the data connection that its
//     redirect target died, so this is what bounds staleness after a silent link loss.
// The owner caches only while tracking is established (set_caching). Losing either connection,
// or a heartbeat, makes the owner distrust what was read through the data connection: nothing
// cached before is a hit any more, and nothing fetched before is cached (for one Redis, a new
// cache generation; for a cluster node, its slots). Both reconnect with backoff; caching resumes once SUBSCRIBE
// and CLIENT TRACKING are both confirmed again. A Redis that refuses tracking for good (older than
// 6.0: unknown command; an ACL that denies it: NOPERM) gets one warning, and the worker runs
// TTL-only. Any other refusal (-BUSY, -LOADING, too many clients) is a loss like the others:
// nothing cached is trusted, and the handshake is retried with a growing back-off.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "worker_env.h"

struct Tracking;
struct Backend;
struct BackendTarget;

// Whoever reads through the tracked data connection: one Redis (the worker), or one cluster node.
struct TrackingOwner {
    Backend *data;  // the data connection whose reads Redis tracks
    // Everything read through it so far may be out of date (a link lost, a flush in Redis).
    void (*distrust)(void *arg);
    // Whether replies read through it may be cached from now on, and whether Redis tracks them
    // (caching without tracking: Redis refused it, entries live until their TTL).
    // (caching without tracking, for good: then a nil reply may not be cached, unless
    // cache_not_found = on, since no invalidation will tell of the key's creation.)
    void (*set_caching)(void *arg, bool caching, bool tracked);
    // Redis says the key changed (or expired, or was evicted).
    void (*invalidate)(void *arg, const char *key, size_t len);
    void *arg;
    const char *label;  // for logs, e.g. " of 10.0.0.1:7000" (NULL: one Redis, none)
};

// target is where `data` connects: the link goes to the same node.
Tracking *tracking_create(const WorkerEnv *env, const BackendTarget *target, const TrackingOwner *owner, uint64_t seed);
void tracking_destroy(Tracking *t);

// The worker's data connection is ready (past its handshake), or was lost.
void tracking_data_ready(Tracking *t);
void tracking_data_lost(Tracking *t);
