// The cluster's state, shared by its map (cluster.cc: the slot map, its refresh, the node
// connections) and its routing (cluster_routing.cc: commands to slot owners, redirects, retries).
// Internal to the redis layer.
#pragma once

#include <event2/event.h>
#include <stdint.h>

#include "cluster.h"
#include "command_owner.h"
#include "slot_map.h"
#include "tracking.h"

inline constexpr uint64_t REFRESH_GAP_MIN_MS = 100;   // between two rereads of the map, at least
inline constexpr uint64_t REFRESH_GAP_MAX_MS = 1000;  // ... backing off to this while nothing changes
inline constexpr uint64_t CLUSTER_RETRY_MIN_MS = 10;          // CLUSTERDOWN, TRYAGAIN: first pause
inline constexpr uint64_t CLUSTER_RETRY_MAX_MS = 200;

struct Cluster;

// One primary: its data connection and, with tracking, its invalidation link.
struct NodeLink {
    Cluster *c;
    int index;         // in the slot map's node table
    Backend *data;     // NULL: not connected (not in the map)
    Tracking *tracking;
    bool caching;      // replies from it may be cached
    bool tracked;      // Redis tracks what is read through it
    bool leaving;      // no longer owns slots: freed by the sweep, out of any callback
    char label[312];   // " of ip:port", for tracking's logs
};

// A command on its way, with copies of its arguments for resending after a redirect.
struct ClusterRequest {
    ClusterRequest *prev, *next;  // in c->parked while it waits to be retried
    Cluster *c;
    BackendReplyFn fn;
    void *arg;
    int slot, node;
    int redirects, retries;
    bool asked;            // answered by an ASK target: not the slot's owner, never cached
    uint64_t deadline_ms;  // CLUSTERDOWN and TRYAGAIN are retried until then
    event *retry_timer;
    int argc;
    const char **argv;
    size_t *lens;
    bool resent;  // asked again once after its connection was cut (and came back at once)
    bool spare;   // its block is CLUSTER_REQUEST_BLOCK bytes: kept for the next request when done
};

// A miss sends two commands (PTTL and GET): their requests' blocks are kept for reuse, up to
// CLUSTER_REQUEST_SPARES of them, rather than malloc'd and freed each time. A request larger
// than a block (a long key, an MGET of many) is malloc's.
inline constexpr size_t CLUSTER_REQUEST_BLOCK = 256;
inline constexpr int CLUSTER_REQUEST_SPARES = 64;

// A CLUSTER SLOTS on its way: whom it asked (an empty address in the answer means that node).
struct SlotsQuery {
    OwnedCommand base;  // owned by the cluster: cancelled when it goes
    ClusterNode asked;
    bool probe;
};

struct Cluster {
    const WorkerEnv *env;
    ClusterOwner owner;
    const BackendTarget *seeds;
    int seed_count;
    uint64_t seed;
    SlotMap map;
    bool have_map;
    int unaddressable_before;  // in the map before: the warning is logged when it changes
    uint64_t gave_up_logged_ms;  // the last "after N redirects" warning
    NodeLink links[SLOT_MAP_MAX_NODES];
    uint64_t distrusted_us[CLUSTER_SLOTS];  // since when each slot's reads are not trusted (coherence.h)
    uint64_t migrating_seen_ms[CLUSTER_SLOTS];  // when a node last said it migrates or imports the slot
    bool migrating_now[CLUSTER_SLOTS];          // scratch for one CLUSTER NODES reply
    // Refreshing the map.
    bool refreshing;        // a CLUSTER SLOTS is on its way
    bool refresh_soon;      // the timer is set for a refresh something asked for
    bool refresh_changed;   // the last refresh changed the map
    uint64_t last_refresh_ms;
    uint64_t refresh_gap_ms;
    event *refresh_timer;
    // While no primary is connected, the map is asked of a seed (or a known node) on a
    // connection of its own, one candidate after the other.
    Backend *probe;
    bool probe_done;        // its answer came: the sweep frees it
    bool probe_again;       // ... and then tries the next candidate
    int probe_next;
    WorkerStats probe_stats;  // not the worker's: a seed is no primary it reads from
    event *sweep_event;
    ClusterRequest *parked;
    ClusterRequest *spares;  // blocks kept for reuse, linked by `next`
    int spare_count;
    CommandOwner queries;  // the CLUSTER SLOTS on their way
    bool destroying;
    // Set while a reply is delivered to its caller.
    bool reply_cacheable;
    Backend *replying;
};

// cluster.cc
void map_want_refresh(Cluster *c);                // the map may be out of date: reread it soon
void map_want_refresh_now(Cluster *c);            // a slot's owner cannot be reached: at the shortest gap
bool map_link_open(Cluster *c, int node);          // connects to the node if not yet
void map_set_owner(Cluster *c, int slot, int node);  // a MOVED: the slot's owner from now on

// cluster_routing.cc
void route_deliver(ClusterRequest *r, redisReply *reply, BackendFailure failure);  // answers, frees r
void route_unpark(ClusterRequest *r);  // a request waiting for a retry goes now (or fails)
void route_free_spares(Cluster *c);    // at its end, once no request can be delivered any more
