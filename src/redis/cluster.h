// A Redis Cluster behind the proxy ([redis] cluster). Per worker:
//   - the slot map (slot_map.h), read with CLUSTER SLOTS from the first seed that answers, then
//     from any connected primary: every cluster_refresh, and sooner (at most once per 100ms,
//     backing off to 1s while nothing changes) after a MOVED, a CLUSTERDOWN or a lost node;
//   - one data connection per primary that owns slots, opened as the map names it and closed
//     when the node leaves the map, and with invalidation = tracking one tracking link per
//     primary (tracking.h): a node only reports keys read through its own connections;
//   - each command goes to its slot's owner. MOVED: the slot's owner changes from now on and
//     the command is resent there; ASK: ASKING and the command go to the target, once, the map
//     unchanged. At most MAX_REDIRECTS in a row: past them (two nodes sending it to each other
//     mid-migration) it is asked again of the slot's owner after a short pause, as CLUSTERDOWN
//     and TRYAGAIN are, until command_timeout has passed since the command was first sent; then
//     a loop fails as unavailable (503), and CLUSTERDOWN or TRYAGAIN are passed on;
//   - coherence: a time per slot when what was cached for it stopped being trusted, set when the
//     slot changes owner and, for every slot of a node, when that node's tracking is lost or
//     (re)started. An entry is a hit only if it was stored after its slot's time, and a reply is
//     cached only if its command was sent after it: O(1) per lookup, no scan of the cache.
// Hits never come here: lookup checks the slot's time only when the cache has the key.
#pragma once

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "worker_env.h"

struct Cluster;

// What the cluster tells whoever caches what is read through it (the worker).
struct ClusterOwner {
    // A node's connection proved out of step: values may sit under the wrong keys, in any slot.
    void (*forget_cache)(void *arg);
    // Redis says the key changed (tracking.h).
    void (*invalidate)(void *arg, const char *key, size_t len);
    // A node refuses tracking for good: its slots are cached TTL-only, without Redis's word.
    void (*tracking_unsupported)(void *arg);
    void *arg;
};

Cluster *cluster_create(const WorkerEnv *env, const ClusterOwner *owner, const BackendTarget *seeds, int seed_count,
                        uint64_t seed);
// Answers every command still waiting with BACKEND_UNAVAILABLE, then frees everything.
void cluster_destroy(Cluster *c);

// Sends a command whose keys all hash to `slot` to the slot's owner, following redirects. As
// backend_command: false at once when it cannot be sent (no map yet, the owner not connected),
// else fn is called exactly once, later.
bool cluster_command(Cluster *c, int slot, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                     void *arg);

// Since when reads of the slot are not trusted (monotonic_us; 0: never), for the coherence rules
// (coherence.h): an entry stored, or a fetch sent, at or before it says nothing of Redis now.
uint64_t cluster_slot_distrusted_us(const Cluster *c, int slot);

// Whether a node reported the slot migrating or importing at a recent map refresh (CLUSTER NODES,
// asked of every primary with each refresh): a cached "not found" there may exist on the
// importing node already, so it is no hit.
bool cluster_slot_migrating(const Cluster *c, int slot);

// Inside a reply callback of cluster_command: whether its source may be cached from (it came
// from the slot's owner, not through ASK, and the owner's reads are tracked or tracking is off).
// Whether the slot was distrusted since the command was sent is the coherence rules' to say.
bool cluster_reply_cacheable(const Cluster *c);

// Inside a reply callback: the reply made no sense for its command; the connection it came on
// is out of step and is dropped once the callback returns (backend_distrust).
void cluster_distrust_reply(Cluster *c);
