#include "slot_map.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void slot_map_init(SlotMap *m)
{
    m->nodes = 0;
    for (int i = 0; i < CLUSTER_SLOTS; i++)
        m->owner[i] = -1;
}

bool slot_map_is_ip(const char *text)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, text, buf) == 1 || inet_pton(AF_INET6, text, buf) == 1;
}

int slot_map_endpoint(SlotMap *m, const char *endpoint, int port)
{
    if (slot_map_is_ip(endpoint))
        return slot_map_node(m, endpoint, port);
    for (int i = 0; i < m->nodes; i++)
        if (m->node[i].port == port && m->node[i].name[0] != '\0' && strcmp(m->node[i].name, endpoint) == 0)
            return i;
    return -1;
}

int slot_map_node(SlotMap *m, const char *ip, int port)
{
    if (!slot_map_is_ip(ip))
        return -1;
    int free_entry = -1;
    for (int i = 0; i < m->nodes; i++) {
        if (m->node[i].port == port && strcmp(m->node[i].ip, ip) == 0)
            return i;
        if (m->node[i].port == 0 && free_entry < 0)
            free_entry = i;
    }
    if (strlen(ip) >= sizeof(m->node[0].ip) || port <= 0 || (free_entry < 0 && m->nodes == SLOT_MAP_MAX_NODES))
        return -1;
    int i = free_entry >= 0 ? free_entry : m->nodes++;
    snprintf(m->node[i].ip, sizeof(m->node[i].ip), "%s", ip);
    m->node[i].port = port;
    m->node[i].name[0] = '\0';
    return i;
}

bool slot_map_forget(SlotMap *m, int node)
{
    for (int s = 0; s < CLUSTER_SLOTS; s++)
        if (m->owner[s] == node)
            return false;
    m->node[node].ip[0] = '\0';
    m->node[node].name[0] = '\0';
    m->node[node].port = 0;
    return true;
}

// The value of `key` in a node's metadata (Redis 7: a flat array of names and values), or NULL.
static const redisReply *metadata(const redisReply *node, const char *key)
{
    if (node->elements < 4 || node->element[3]->type != REDIS_REPLY_ARRAY)
        return NULL;
    const redisReply *m = node->element[3];
    for (size_t i = 0; i + 1 < m->elements; i += 2)
        if (m->element[i]->type == REDIS_REPLY_STRING && m->element[i]->len == strlen(key) &&
            memcmp(m->element[i]->str, key, m->element[i]->len) == 0 && m->element[i + 1]->type == REDIS_REPLY_STRING)
            return m->element[i + 1];
    return NULL;
}

// One node of a CLUSTER SLOTS entry: [endpoint, port, id, metadata...]. An empty endpoint (or
// "?") means the node that answered; a host name is used by the "ip" in its metadata, and with
// none the node has no address (out->ip is left empty). False if it is malformed.
static bool entry_node(const redisReply *r, const ClusterNode *asked, ClusterNode *out)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_INTEGER || r->element[1]->integer <= 0 ||
        r->element[1]->integer > 65535 || r->element[0]->len >= sizeof(out->name))
        return false;
    const redisReply *endpoint = r->element[0];
    out->ip[0] = out->name[0] = '\0';
    out->port = (int)r->element[1]->integer;
    if (endpoint->len == 0 || (endpoint->len == 1 && endpoint->str[0] == '?')) {
        snprintf(out->ip, sizeof(out->ip), "%s", asked->ip);
        return true;
    }
    snprintf(out->name, sizeof(out->name), "%.*s", (int)endpoint->len, endpoint->str);
    if (slot_map_is_ip(out->name)) {
        snprintf(out->ip, sizeof(out->ip), "%.*s", (int)sizeof(out->ip) - 1, out->name);
        out->name[0] = '\0';
        return true;
    }
    const redisReply *ip = metadata(r, "ip");
    if (ip != NULL && ip->len < sizeof(out->ip)) {
        snprintf(out->ip, sizeof(out->ip), "%.*s", (int)ip->len, ip->str);
        if (!slot_map_is_ip(out->ip))
            out->ip[0] = '\0';
    }
    return true;
}

bool slot_map_apply_slots(SlotMap *m, const redisReply *reply, const ClusterNode *asked, char *err, size_t errlen)
{
    if (reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "CLUSTER SLOTS answered with a reply of the wrong type");
        return false;
    }
    // Checked whole before anything changes: a malformed reply leaves the map as it was.
    SlotMap *next = (SlotMap *)malloc(sizeof(SlotMap));
    if (next == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    memcpy(next->node, m->node, sizeof(m->node[0]) * (size_t)m->nodes);
    next->nodes = m->nodes;
    next->unaddressable = 0;
    next->unaddressable_name[0] = '\0';
    for (int i = 0; i < CLUSTER_SLOTS; i++)
        next->owner[i] = -1;
    for (size_t e = 0; e < reply->elements; e++) {
        const redisReply *r = reply->element[e];
        ClusterNode primary;
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER || !entry_node(r->element[2], asked, &primary)) {
            snprintf(err, errlen, "CLUSTER SLOTS entry %zu is malformed", e);
            free(next);
            return false;
        }
        long long first = r->element[0]->integer, last = r->element[1]->integer;
        if (first < 0 || last < first || last >= CLUSTER_SLOTS) {
            snprintf(err, errlen, "CLUSTER SLOTS entry %zu has slots %lld-%lld", e, first, last);
            free(next);
            return false;
        }
        if (primary.ip[0] == '\0') {  // a name and no IP: its slots stay without an owner
            if (next->unaddressable++ == 0)
                snprintf(next->unaddressable_name, sizeof(next->unaddressable_name), "%s", primary.name);
            continue;
        }
        int node = slot_map_node(next, primary.ip, primary.port);
        if (node >= 0 && primary.name[0] != '\0')
            snprintf(next->node[node].name, sizeof(next->node[node].name), "%s", primary.name);
        if (node < 0) {
            snprintf(err, errlen, "more than %d primaries", SLOT_MAP_MAX_NODES);
            free(next);
            return false;
        }
        for (long long s = first; s <= last; s++)
            next->owner[s] = (int16_t)node;
    }
    memcpy(m, next, sizeof(SlotMap));
    free(next);
    return true;
}

bool cluster_parse_redirect(const char *text, size_t len, ClusterRedirect *out)
{
    char buf[160];
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char kind[8], where[128];
    int slot;
    char extra;
    if (sscanf(buf, "%7s %d %127s %c", kind, &slot, where, &extra) != 3 || slot < 0 || slot >= CLUSTER_SLOTS)
        return false;
    if (strcmp(kind, "MOVED") == 0)
        out->ask = false;
    else if (strcmp(kind, "ASK") == 0)
        out->ask = true;
    else
        return false;
    // host:port, the port after the last ':' (an IPv6 address has colons of its own, with or
    // without brackets).
    char *colon = strrchr(where, ':');
    if (colon == NULL || colon == where)
        return false;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        return false;
    *colon = '\0';
    char *host = where;
    size_t host_len = strlen(host);
    if (host[0] == '[' && host_len >= 2 && host[host_len - 1] == ']') {
        host[host_len - 1] = '\0';
        host++;
    }
    size_t host_size = strlen(host) + 1;
    if (host_size == 1 || host_size > sizeof(out->to.ip))
        return false;
    out->slot = slot;
    memcpy(out->to.ip, host, host_size);
    out->to.port = (int)port;
    return true;
}

int cluster_nodes_migrating(const char *text, size_t len, bool *migrating)
{
    const char *end = text + len;
    for (const char *line = text; line < end;) {
        const char *eol = (const char *)memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        // The flags are the third field; "myself" among them marks the answering node's line.
        const char *p = line;
        for (int field = 0; field < 2 && p < eol; field++) {
            p = (const char *)memchr(p, ' ', (size_t)(eol - p));
            p = p == NULL ? eol : p + 1;
        }
        size_t flags_len = (size_t)(eol - p);
        const char *space = (const char *)memchr(p, ' ', flags_len);
        if (space != NULL)
            flags_len = (size_t)(space - p);
        bool myself = false;
        for (const char *f = p; f + 6 <= p + flags_len; f++)
            if (memcmp(f, "myself", 6) == 0)
                myself = true;
        if (!myself) {
            line = eol + 1;
            continue;
        }
        int marked = 0;
        for (const char *b = p; b < eol; b++) {
            if (*b != '[')
                continue;
            char *after;
            long slot = strtol(b + 1, &after, 10);
            if (after > b + 1 && slot >= 0 && slot < CLUSTER_SLOTS && after + 3 <= eol &&
                (memcmp(after, "->-", 3) == 0 || memcmp(after, "-<-", 3) == 0)) {
                migrating[slot] = true;
                marked++;
            }
        }
        return marked;
    }
    return 0;
}

bool slot_map_set_owner(SlotMap *m, int slot, int node)
{
    if (m->owner[slot] == node)
        return false;
    m->owner[slot] = (int16_t)node;
    return true;
}

static bool has_prefix(const redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);
    return r->len >= n && memcmp(r->str, prefix, n) == 0 && (r->len == n || r->str[n] == ' ');
}

ClusterReplyPlan cluster_plan_reply(const redisReply *reply, int slot, int redirects)
{
    ClusterReplyPlan plan = {};
    plan.action = CLUSTER_DELIVER;
    if (reply->type != REDIS_REPLY_ERROR)
        return plan;
    if (cluster_parse_redirect(reply->str, reply->len, &plan.to)) {
        // A MOVED says the map is out of date for one slot at least; an ASK is a migration
        // under way and changes nothing yet.
        plan.refresh = !plan.to.ask;
        plan.action = redirects >= CLUSTER_MAX_REDIRECTS || plan.to.slot != slot ? CLUSTER_GIVE_UP : CLUSTER_FOLLOW;
    } else if (has_prefix(reply, "CLUSTERDOWN")) {
        plan.refresh = true;  // a failover, or slots nobody serves: the map will change
        plan.action = CLUSTER_RETRY;
    } else if (has_prefix(reply, "TRYAGAIN")) {
        plan.action = CLUSTER_RETRY;  // a multi-key command while its slot is half migrated
    }
    return plan;
}
