// Which node of a Redis Cluster owns each hash slot: read from CLUSTER SLOTS, corrected by MOVED
// redirects. Pure (no I/O): the cluster's routing asks it, tests drive it by hand.
// Nodes are primaries, known by address; a node's index stays valid for the map's life, so that
// per-node state (a connection, its tracking link) can be kept in arrays beside it.
#pragma once

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_slot.h"

static const int SLOT_MAP_MAX_NODES = 256;

// A node is always known by a numeric IP address: the proxy never resolves names on a worker (it
// would block) and never connects to an address it was not given. A node that announces a host
// name (cluster-preferred-endpoint-type hostname) is used by the IP Redis 7 gives beside it in
// CLUSTER SLOTS's metadata; the name is kept too, for the MOVED and ASK redirects that use it.
struct ClusterNode {
    char ip[64];
    int port;  // 0: a free entry (a node forgotten), reused by the next new node
    char name[128];  // the host name it announces ("": it announces its IP)
};

struct SlotMap {
    ClusterNode node[SLOT_MAP_MAX_NODES];
    int nodes;
    int16_t owner[CLUSTER_SLOTS];  // index into node; -1: no owner known (CLUSTERDOWN for it)
    // From the last CLUSTER SLOTS: primaries announced by a name with no IP beside it. Their
    // slots have no owner (answered unavailable), never an address guessed.
    int unaddressable;
    char unaddressable_name[128];  // the first of them, for the log
};

// Whether text is a numeric IPv4 or IPv6 address.
bool slot_map_is_ip(const char *text);

void slot_map_init(SlotMap *m);

// The node at ip:port, added if new (in a free entry if there is one); -1 when the table is full
// or ip is no numeric IP address.
int slot_map_node(SlotMap *m, const char *ip, int port);

// The node a redirect names: by IP (added if new, as slot_map_node) or by the host name a known
// node announces. -1 for a name no known node announces (the map must be read again first).
int slot_map_endpoint(SlotMap *m, const char *endpoint, int port);

// Frees a node's entry for reuse, so that nodes coming and going over a long life (new addresses
// after each failover or rescheduling) never fill the table. Only for a node that owns no slot
// and that nothing refers to any more (its connections closed). False if it owns slots.
bool slot_map_forget(SlotMap *m, int node);

// Fills the owners from a CLUSTER SLOTS reply (primaries only; node indexes of known nodes are
// kept). `asked` stands in for a node whose address Redis left empty (it means the node that
// answered). False, with the map unchanged and a reason in err, if the reply is not one. A
// primary announced by a name without an IP is counted in `unaddressable`, its slots unowned.
bool slot_map_apply_slots(SlotMap *m, const redisReply *reply, const ClusterNode *asked, char *err, size_t errlen);

// What a -MOVED or -ASK error says: the slot and the node to ask instead.
struct ClusterRedirect {
    bool ask;  // ASK: this once, after ASKING; MOVED: from now on
    int slot;
    ClusterNode to;
};

// Marks in `migrating` (CLUSTER_SLOTS flags) the slots a CLUSTER NODES reply says the node that
// answered is migrating away or importing ([slot->-id] or [slot-<-id] on its "myself" line: a
// node reports only its own). CLUSTER SLOTS does not show them. Returns how many it marked.
int cluster_nodes_migrating(const char *text, size_t len, bool *migrating);

// Makes node the slot's owner. Returns whether that changed the owner.
bool slot_map_set_owner(SlotMap *m, int slot, int node);

// Parses "MOVED 3999 127.0.0.1:6381" or "ASK 3999 [::1]:6381" (the error text without its '-').
// False for any other error.
bool cluster_parse_redirect(const char *text, size_t len, ClusterRedirect *out);

// At most this many redirects in a row; past them (a loop: a cluster in flux, or wrong) the
// command is asked again of the slot's owner after a pause, while its time lasts.
static const int CLUSTER_MAX_REDIRECTS = 5;

enum ClusterReplyAction {
    CLUSTER_DELIVER,  // the answer: hand it to whoever asked
    CLUSTER_FOLLOW,   // MOVED or ASK: send the command again where `to` says
    CLUSTER_RETRY,    // CLUSTERDOWN or TRYAGAIN: send it again after a pause, while time lasts
    CLUSTER_GIVE_UP,  // a redirect past CLUSTER_MAX_REDIRECTS (a loop: routing pauses and asks the
                      // slot's owner again while time lasts), or to another slot: unavailable
};

struct ClusterReplyPlan {
    ClusterReplyAction action;
    bool refresh;  // the map is likely out of date: reread it
    ClusterRedirect to;  // for CLUSTER_FOLLOW
};

// What to do with a node's reply to a command for `slot` that has already followed `redirects`.
ClusterReplyPlan cluster_plan_reply(const redisReply *reply, int slot, int redirects);
