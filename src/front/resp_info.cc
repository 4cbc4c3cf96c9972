// INFO and DBSIZE: what the proxy reports of itself, in Redis's format and with Redis's field
// names where the meaning carries over (what redis-cli --stat and monitoring agents read), so
// that they show the proxy's numbers. Every number is the whole proxy's (the scoreboard's sum
// over its workers), and the keyspace is the proxy's cache, not Redis's.
#include <event2/buffer.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "resp_client.h"
#include "scoreboard.h"
#include "version.h"

enum InfoSection {
    INFO_SERVER = 1,
    INFO_CLIENTS = 2,
    INFO_MEMORY = 4,
    INFO_PERSISTENCE = 8,
    INFO_STATS = 16,
    INFO_REPLICATION = 32,
    INFO_KEYSPACE = 64,
    INFO_ALL = 127,
};

static const struct {
    const char *name;
    unsigned bit;
} info_sections[] = {
    {"server", INFO_SERVER},   {"clients", INFO_CLIENTS},         {"memory", INFO_MEMORY},
    {"persistence", INFO_PERSISTENCE}, {"stats", INFO_STATS}, {"replication", INFO_REPLICATION},
    {"keyspace", INFO_KEYSPACE}, {"default", INFO_ALL}, {"all", INFO_ALL}, {"everything", INFO_ALL},
};

// The sections asked for: every one without arguments; an unknown name adds nothing (as Redis).
static unsigned sections_asked(const char *cmd, const RespArg *args, int argc)
{
    if (argc < 2)
        return INFO_ALL;
    unsigned asked = 0;
    for (int i = 1; i < argc; i++)
        for (const auto &s : info_sections)
            if (args[i].len == strlen(s.name) && strncasecmp(cmd + args[i].offset, s.name, args[i].len) == 0)
                asked |= s.bit;
    return asked;
}

// As Redis writes a byte count for people: 1023B, 1.50K, 2.00M, ...
static void add_human(evbuffer *text, const char *field, uint64_t bytes)
{
    static const char units[] = "KMGTP";
    if (bytes < 1024) {
        evbuffer_add_printf(text, "%s:%lluB\r\n", field, (unsigned long long)bytes);
        return;
    }
    double n = (double)bytes / 1024;
    int unit = 0;
    while (n >= 1024 && unit < 4) {
        n /= 1024;
        unit++;
    }
    evbuffer_add_printf(text, "%s:%.2f%c\r\n", field, n, units[unit]);
}

// Starts a section: a blank line between sections, none before the first.
static void header(evbuffer *text, const char *title)
{
    evbuffer_add_printf(text, "%s# %s\r\n", evbuffer_get_length(text) > 0 ? "\r\n" : "", title);
}

void resp_cmd_info(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    const FrontEnv *env = c->front->env;
    const Config *config = env->config;
    ScoreboardTotals t;
    env->totals(env->arg, &t);
    const WorkerStats *s = &t.stats;
    uint64_t result[RESULT_COUNT] = {0};
    for (int f = 0; f < FRONT_COUNT; f++)
        for (int r = 0; r < RESULT_COUNT; r++)
            result[r] += s->requests[f][r];
    uint64_t lookups = 0;
    for (uint64_t n : result)
        lookups += n;
    typedef unsigned long long ull;
    unsigned asked = sections_asked(cmd, args, argc);
    evbuffer *text = evbuffer_new();
    if (text == NULL) {
        resp_add_error(out, "ERR out of memory");
        return;
    }
    if (asked & INFO_SERVER) {
        uint64_t uptime = (monotonic_ms() - env->started_ms) / 1000;
        header(text, "Server");
        // redis_version: what clients that feature-detect by version should assume of this subset.
        evbuffer_add_printf(text,
                            "redis_version:7.0.0\r\nredis_proxy_version:%s\r\nredis_mode:standalone\r\n"
                            "redis_backend:%s\r\nprocess_id:%d\r\nworker_id:%d\r\nworkers:%d\r\n"
                            "uptime_in_seconds:%llu\r\nuptime_in_days:%llu\r\n",
                            REDIS_PROXY_VERSION, config->redis_cluster[0] ? "cluster" : "standalone",
                            (int)getpid(), env->id, t.workers, (ull)uptime, (ull)(uptime / 86400));
    }
    if (asked & INFO_CLIENTS) {
        header(text, "Clients");
        evbuffer_add_printf(text, "connected_clients:%llu\r\nblocked_clients:0\r\nclient_memory:%llu\r\n",
                            (ull)(s->clients_open[FRONT_HTTP] + s->clients_open[FRONT_RESP]),
                            (ull)s->client_memory);
    }
    if (asked & INFO_MEMORY) {
        // The cache's bytes (entries as the slab allocates them), the bound max_memory sets.
        uint64_t max = config->max_memory > 0 ? (uint64_t)config->max_memory * (uint64_t)t.workers : 0;
        header(text, "Memory");
        evbuffer_add_printf(text, "used_memory:%llu\r\n", (ull)s->cache_bytes);
        add_human(text, "used_memory_human", s->cache_bytes);
        evbuffer_add_printf(text, "maxmemory:%llu\r\n", (ull)max);
        add_human(text, "maxmemory_human", max);
        evbuffer_add_printf(text, "maxmemory_policy:allkeys-lru\r\n");
    }
    if (asked & INFO_PERSISTENCE) {
        header(text, "Persistence");
        evbuffer_add_printf(text, "loading:0\r\nrdb_changes_since_last_save:0\r\naof_enabled:0\r\n");
    }
    if (asked & INFO_STATS) {
        header(text, "Stats");
        evbuffer_add_printf(text,
                            "total_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
                            "instantaneous_ops_per_sec:%llu\r\nkeyspace_hits:%llu\r\nkeyspace_misses:%llu\r\n"
                            "evicted_keys:%llu\r\nexpired_keys:%llu\r\nevicted_clients:%llu\r\n",
                            (ull)(s->clients_accepted[FRONT_HTTP] + s->clients_accepted[FRONT_RESP]),
                            (ull)stats_commands(s), (ull)s->ops_per_sec, (ull)result[RESULT_HIT],
                            (ull)(lookups - result[RESULT_HIT]), (ull)(s->cache_evictions + s->cache_page_evictions),
                            (ull)s->cache_expirations,
                            (ull)(s->clients_evicted[EVICT_REQUEST] + s->clients_evicted[EVICT_OUTPUT] +
                                  s->clients_evicted[EVICT_MEMORY]));
        // The proxy's own, under the names /metrics uses.
        evbuffer_add_printf(text,
                            "cache_hits:%llu\r\ncache_misses:%llu\r\ncache_keys:%llu\r\ncache_bytes:%llu\r\n"
                            "cache_capacity:%lld\r\nredis_unavailable:%llu\r\nredis_timeouts:%llu\r\n"
                            "redis_errors:%llu\r\nredis_connected_workers:%llu\r\ncoalesced:%llu\r\n"
                            "stale_answers:%llu\r\ntracking_workers:%llu\r\ninvalidations:%llu\r\n"
                            "tracking_losses:%llu\r\ncluster_moved:%llu\r\ncluster_asks:%llu\r\n"
                            "cluster_retries:%llu\r\n",
                            (ull)result[RESULT_HIT], (ull)(lookups - result[RESULT_HIT]), (ull)s->cache_entries,
                            (ull)s->cache_bytes, (long long)config->capacity * t.workers,
                            (ull)result[RESULT_UNAVAILABLE], (ull)result[RESULT_TIMEOUT], (ull)result[RESULT_ERROR],
                            (ull)s->redis_connected, (ull)s->coalesced, (ull)s->stale_answers, (ull)s->tracking,
                            (ull)s->invalidations, (ull)s->tracking_losses, (ull)s->cluster_moved,
                            (ull)s->cluster_asks, (ull)s->cluster_retries);
    }
    if (asked & INFO_REPLICATION) {
        header(text, "Replication");
        evbuffer_add_printf(text, "role:master\r\nconnected_slaves:0\r\n");
    }
    if (asked & INFO_KEYSPACE) {
        header(text, "Keyspace");
        // Every cached entry expires (the TTL): expires equals keys. As Redis, no line while empty.
        if (s->cache_entries > 0)
            evbuffer_add_printf(text, "db%lld:keys=%llu,expires=%llu,avg_ttl=%llu\r\n",
                                (long long)config->redis_database, (ull)s->cache_entries, (ull)s->cache_entries,
                                (ull)(s->cache_ttl_left_ms / s->cache_entries));
    }
    if (c->replies.protocol == 3) {
        // RESP3's verbatim string, as Redis answers INFO there: "txt:" and the text.
        char header[RESP_HEADER_MAX];
        size_t n = resp_format_header(header, '=', (long long)evbuffer_get_length(text) + 4);
        evbuffer_add(out, header, n);
        evbuffer_add(out, "txt:", 4);
    } else {
        resp_add_bulk_header(out, evbuffer_get_length(text));
    }
    evbuffer_add_buffer(out, text);
    evbuffer_add(out, "\r\n", 2);
    evbuffer_free(text);
}

// The proxy's cache's keys (every worker's), not Redis's: what a read through the proxy can hit.
void resp_cmd_dbsize(RespClient *c, const char *, const RespArg *, int, evbuffer *out)
{
    const FrontEnv *env = c->front->env;
    ScoreboardTotals t;
    env->totals(env->arg, &t);
    resp_add_integer(out, (long long)t.stats.cache_entries);
}
