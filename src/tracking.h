// Redis-driven invalidation ([cache] invalidation = tracking): Redis's server-assisted client-side
// caching, in its RESP2 form. Per worker:
//   - a second connection to Redis, the link: CLIENT ID, then SUBSCRIBE __redis__:invalidate and
//     a private heartbeat channel, both confirmed before anything relies on them (Redis drops
//     invalidations aimed at a connection that is not subscribed yet);
//   - then CLIENT TRACKING on REDIRECT <link id> on the worker's data connection: Redis remembers
//     every key this worker reads (nil answers included) and tells the link when one changes,
//     expires or is evicted, or that everything went (FLUSHALL/FLUSHDB);
//   - each invalidation drops its keys (lookup_invalidate); a flush starts a new cache generation;
//   - a heartbeat: PUBLISH on the data connection to the private channel, which must come back
//     through the link within heartbeat/2. In RESP2 nothing tells the data connection that its
//     redirect target died, so this is what bounds staleness after a silent link loss.
// The worker caches only while tracking is established (w->caching). Losing either connection,
// or a heartbeat, starts a new cache generation: nothing cached before is a hit any more, and
// nothing fetched before is cached. Both reconnect with backoff; caching resumes once SUBSCRIBE
// and CLIENT TRACKING are both confirmed again. A Redis that refuses CLIENT TRACKING (older than
// 6.0) gets one warning, and the worker runs TTL-only.
#pragma once

#include <stdint.h>

struct Worker;
struct Tracking;
struct BackendTarget;

Tracking *tracking_create(Worker *w, const BackendTarget *target, uint64_t seed);
void tracking_destroy(Tracking *t);

// The worker's data connection is ready (past its handshake), or was lost.
void tracking_data_ready(Tracking *t);
void tracking_data_lost(Tracking *t);
