#include "metrics.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "scoreboard.h"
#include "version.h"

static const char *const front_names[FRONT_COUNT] = {"http", "resp"};
static const char *const result_names[RESULT_COUNT] = {"hit", "miss", "not_found", "error", "unavailable", "timeout"};

static void header(evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void single(evbuffer *out, const char *name, const char *type, const char *help, unsigned long long v)
{
    header(out, name, type, help);
    evbuffer_add_printf(out, "%s %llu\n", name, v);
}

// One value per front: name{front="http"} and name{front="resp"}.
static void per_front(evbuffer *out, const char *name, const char *type, const char *help,
                      const uint64_t values[FRONT_COUNT])
{
    header(out, name, type, help);
    for (int f = 0; f < FRONT_COUNT; f++)
        evbuffer_add_printf(out, "%s{front=\"%s\"} %llu\n", name, front_names[f], (unsigned long long)values[f]);
}

// A counter of the two fronts' and the admin endpoint's (front="admin").
static void per_front_and_admin(evbuffer *out, const char *name, const char *help, const uint64_t values[FRONT_COUNT],
                                uint64_t admin)
{
    per_front(out, name, "counter", help, values);
    evbuffer_add_printf(out, "%s{front=\"admin\"} %llu\n", name, (unsigned long long)admin);
}

// `labels` is empty or "name=\"value\"," (with the trailing comma, to go before le).
static void histogram(evbuffer *out, const char *name, const char *labels, const Histogram *h)
{
    uint64_t cumulative = 0;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        cumulative += h->bucket[i];
        if (i < HISTOGRAM_BUCKETS - 1)
            evbuffer_add_printf(out, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels,
                                (double)histogram_bounds_us[i] / 1e6, (unsigned long long)cumulative);
        else
            evbuffer_add_printf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cumulative);
    }
    char plain[64] = "";
    if (labels[0] != '\0')  // the same labels without the trailing comma, in braces
        snprintf(plain, sizeof(plain), "{%.*s}", (int)(strlen(labels) - 1), labels);
    evbuffer_add_printf(out, "%s_sum%s %.6f\n%s_count%s %llu\n", name, plain, (double)h->sum_us / 1e6, name, plain,
                        (unsigned long long)h->count);
}

void metrics_render(evbuffer *out, const Scoreboard *sb, const ScoreboardTotals *t, const MetricsSettings *settings)
{
    const WorkerStats *s = &t->stats;
    header(out, "redis_proxy_build_info", "gauge", "Always 1; the version of redis-proxy in its label.");
    evbuffer_add_printf(out, "redis_proxy_build_info{version=\"%s\"} 1\n", REDIS_PROXY_VERSION);
    single(out, "redis_proxy_start_time_seconds", "gauge", "When the master process started, in seconds since the epoch.",
           (unsigned long long)sb->started_unix);
    single(out, "redis_proxy_workers", "gauge", "Worker processes running.", (unsigned long long)t->workers);
    single(out, "redis_proxy_workers_configured", "gauge", "Worker processes the configuration asks for.",
           (unsigned long long)settings->workers);
    single(out, "redis_proxy_worker_restarts_total", "counter", "Workers that died and were started again.",
           (unsigned long long)sb->worker_restarts);
    single(out, "redis_proxy_reloads_total", "counter", "Configuration reloads tried (SIGHUP).",
           (unsigned long long)sb->reloads);
    single(out, "redis_proxy_reload_failures_total", "counter", "Configuration reloads that failed: the file was refused, or its workers never served (abandoned).",
           (unsigned long long)sb->reload_failures);
    single(out, "redis_proxy_last_reload_success", "gauge", "1 unless the last reload was refused (1 before any).",
           (unsigned long long)sb->last_reload_ok);
    single(out, "redis_proxy_config_generation", "gauge", "Configuration generation in force: 1 at start, one more per reload once its workers serve.",
           (unsigned long long)sb->generation);

    header(out, "redis_proxy_requests_total", "counter",
           "Keys asked for, by front and by how they were answered (an MGET counts each key).");
    for (int f = 0; f < FRONT_COUNT; f++)
        for (int r = 0; r < RESULT_COUNT; r++)
            evbuffer_add_printf(out, "redis_proxy_requests_total{front=\"%s\",result=\"%s\"} %llu\n", front_names[f],
                                result_names[r], (unsigned long long)s->requests[f][r]);
    per_front(out, "redis_proxy_bad_requests_total", "counter", "Malformed requests answered with an error, by front.",
              s->bad_requests);
    per_front(out, "redis_proxy_refused_requests_total", "counter",
              "Well-formed requests for what a read-only cache does not do (a write, another HTTP method, an unknown "
              "command), refused, by front.",
              s->refused_requests);
    per_front_and_admin(out, "redis_proxy_clients_denied_total",
                        "Connections from a non-loopback address refused by protected mode (protected_mode = on, and "
                        "nobody has to log in), by front.",
                        s->clients_denied, s->admin_clients_denied);
    per_front_and_admin(out, "redis_proxy_auth_failures_total",
                        "Credentials refused ([users]; [admin] token): a wrong password, an unknown or disabled user, "
                        "by front.",
                        s->auth_failures, s->admin_auth_failures);
    per_front(out, "redis_proxy_forbidden_requests_total", "counter",
              "Requests refused for who asked ([users]): without a login (HTTP 401, NOAUTH), or for a key outside "
              "the user's patterns (HTTP 403, NOPERM), by front.",
              s->forbidden_requests);
    per_front_and_admin(out, "redis_proxy_tls_handshakes_total",
                        "TLS clients whose handshake finished (listeners marked tls), by front.", s->tls_handshakes,
                        s->admin_tls_handshakes);
    per_front_and_admin(out, "redis_proxy_tls_handshake_failures_total",
                        "TLS clients closed before their handshake finished: refused (no common protocol, no or a "
                        "wrong client certificate), cut off, or not done within request_timeout, by front.",
                        s->tls_handshake_failures, s->admin_tls_handshake_failures);
    single(out, "redis_proxy_auth_timeouts_total", "counter",
           "RESP clients closed for not logging in within request_timeout of connecting ([users]).",
           (unsigned long long)s->auth_timeouts);
    header(out, "redis_proxy_request_duration_seconds", "histogram",
           "Time from a key's lookup to its answer being ready: a round trip to Redis for a miss, 0 for a hit.");
    for (int f = 0; f < FRONT_COUNT; f++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "front=\"%s\",", front_names[f]);
        histogram(out, "redis_proxy_request_duration_seconds", labels, &s->request_seconds[f]);
    }
    per_front(out, "redis_proxy_client_connections", "gauge", "Client connections open, by front.", s->clients_open);
    per_front(out, "redis_proxy_client_connections_accepted_total", "counter", "Client connections accepted, by front.",
              s->clients_accepted);
    per_front(out, "redis_proxy_client_send_timeouts_total", "counter",
              "Client connections closed because their answers waited client_timeout for them to read (RESP).",
              s->clients_timed_out);
    header(out, "redis_proxy_clients_evicted_total", "counter",
           "Clients closed for what they held: a command past max_request_size (request), answers unread past "
           "max_client_output (output), the most of all past max_client_memory (memory).");
    static const char *const evict_names[EVICT_REASONS] = {"request", "output", "memory"};
    for (int r = 0; r < EVICT_REASONS; r++)
        evbuffer_add_printf(out, "redis_proxy_clients_evicted_total{reason=\"%s\"} %llu\n", evict_names[r],
                            (unsigned long long)s->clients_evicted[r]);
    single(out, "redis_proxy_client_memory_bytes", "gauge",
           "Bytes the clients of all workers hold: their input, their answers not yet read, their lookups under way.",
           (unsigned long long)s->client_memory);

    single(out, "redis_proxy_fetches_waiting", "gauge", "Fetches (GET, MGET) sent to Redis and not answered yet.",
           (unsigned long long)s->fetches_waiting);
    single(out, "redis_proxy_cache_entries", "gauge", "Entries held by the caches of all workers.",
           (unsigned long long)s->cache_entries);
    single(out, "redis_proxy_cache_capacity_entries", "gauge", "Entries the caches of all running workers can hold.",
           (unsigned long long)(settings->cache_capacity * t->workers));
    single(out, "redis_proxy_cache_bytes", "gauge", "Bytes of the entries held by all caches, as allocated.",
           (unsigned long long)s->cache_bytes);
    single(out, "redis_proxy_cache_max_bytes", "gauge",
           "What max_memory lets the caches of all running workers hold (0: no bound, the capacity only).",
           (unsigned long long)(settings->cache_max_bytes * t->workers));
    single(out, "redis_proxy_cache_inserts_total", "counter", "Values stored in a cache.",
           (unsigned long long)s->cache_inserts);
    header(out, "redis_proxy_cache_evictions_total", "counter",
           "Entries dropped: lru to make room, ttl because their lifetime had passed, page with a slab page "
           "emptied to keep the pages within max_memory.");
    evbuffer_add_printf(out, "redis_proxy_cache_evictions_total{reason=\"lru\"} %llu\n",
                        (unsigned long long)s->cache_evictions);
    evbuffer_add_printf(out, "redis_proxy_cache_evictions_total{reason=\"ttl\"} %llu\n",
                        (unsigned long long)s->cache_expirations);
    evbuffer_add_printf(out, "redis_proxy_cache_evictions_total{reason=\"page\"} %llu\n",
                        (unsigned long long)s->cache_page_evictions);
    single(out, "redis_proxy_coalesced_total", "counter",
           "Misses that joined a fetch of the same key already on its way (single flight).",
           (unsigned long long)s->coalesced);
    single(out, "redis_proxy_tracking_workers", "gauge",
           "Workers whose reads Redis tracks (invalidation = tracking, established): they cache.",
           (unsigned long long)s->tracking);
    single(out, "redis_proxy_invalidations_total", "counter", "Cached keys dropped because Redis said they changed.",
           (unsigned long long)s->invalidations);
    single(out, "redis_proxy_connections_handed_over_total", "counter",
           "RESP connections a reload handed over from a retiring worker to a new one, unseen by their clients.",
           (unsigned long long)s->connections_handed_over);
    single(out, "redis_proxy_invalidated_fetches_total", "counter",
           "Fetches an invalidation of their key overtook: answered to who waited, not cached, not joined.",
           (unsigned long long)s->invalidated_fetches);
    single(out, "redis_proxy_invalidation_flushes_total", "counter",
           "Whole caches made stale because Redis was flushed (FLUSHALL, FLUSHDB).",
           (unsigned long long)s->invalidation_flushes);
    single(out, "redis_proxy_tracking_losses_total", "counter",
           "Whole caches made stale because a worker lost its invalidation link or its Redis connection.",
           (unsigned long long)s->tracking_losses);
    single(out, "redis_proxy_tracking_refusals_total", "counter",
           "Tracking commands Redis refused for now (BUSY, LOADING, too many clients): retried with back-off.",
           (unsigned long long)s->tracking_refusals);
    single(out, "redis_proxy_cluster_moved_total", "counter",
           "MOVED answers followed to another Redis Cluster node (the slot's owner changed).",
           (unsigned long long)s->cluster_moved);
    single(out, "redis_proxy_cluster_asks_total", "counter",
           "ASK answers followed to another Redis Cluster node (the slot is being migrated).",
           (unsigned long long)s->cluster_asks);
    single(out, "redis_proxy_cluster_retries_total", "counter",
           "Commands tried again after a CLUSTERDOWN or TRYAGAIN answer, or a loop of redirects.",
           (unsigned long long)s->cluster_retries);
    single(out, "redis_proxy_cluster_map_refreshes_total", "counter", "Redis Cluster slot maps asked for.",
           (unsigned long long)s->cluster_map_refreshes);
    single(out, "redis_proxy_cluster_unaddressable_nodes_total", "counter",
           "Primaries a cluster map named by host name with no IP beside it (their slots are answered unavailable).",
           (unsigned long long)s->cluster_unaddressable_nodes);
    single(out, "redis_proxy_stale_answers_total", "counter",
           "Keys answered from an entry past its TTL because Redis could not be reached (stale_if_error).",
           (unsigned long long)s->stale_answers);
    single(out, "redis_proxy_access_log_lines_total", "counter", "Lines written to the access log ([log] access).",
           (unsigned long long)s->access_log_lines);
    single(out, "redis_proxy_access_log_dropped_total", "counter",
           "Access log lines dropped because the file could not take them without waiting.",
           (unsigned long long)s->access_log_dropped);

    single(out, "redis_proxy_redis_commands_total", "counter", "Commands sent to Redis.",
           (unsigned long long)s->redis_commands);
    single(out, "redis_proxy_redis_error_replies_total", "counter", "Error replies from Redis.",
           (unsigned long long)s->redis_errors);
    single(out, "redis_proxy_redis_timeouts_total", "counter",
           "Commands answered as timed out: no reply from Redis within command_timeout.",
           (unsigned long long)s->redis_timeouts);
    single(out, "redis_proxy_redis_bad_replies_total", "counter", "Replies from Redis of the wrong type for their command.",
           (unsigned long long)s->redis_bad_replies);
    single(out, "redis_proxy_redis_out_of_step_total", "counter",
           "Connections to Redis dropped because their replies no longer matched their commands.",
           (unsigned long long)s->redis_out_of_step);
    single(out, "redis_proxy_redis_replies_too_large_total", "counter",
           "Replies from Redis larger than max_reply_size: skipped unread, their request answered with an error.",
           (unsigned long long)s->redis_replies_too_large);
    single(out, "redis_proxy_redis_connects_total", "counter", "Successful connections to Redis, first ones included.",
           (unsigned long long)s->redis_connects);
    single(out, "redis_proxy_redis_tls_failures_total", "counter",
           "TLS's own refusals on connections to Redis ([redis] tls): a certificate not trusted, a name that "
           "does not match, no protocol in common, an alert (a client certificate refused); not ends or resets.",
           (unsigned long long)s->redis_tls_failures);
    single(out, "redis_proxy_redis_connected_workers", "gauge", "Workers connected to Redis.",
           (unsigned long long)s->redis_connected);
    header(out, "redis_proxy_redis_round_trip_seconds", "histogram", "Time from sending a command to Redis to its reply.");
    histogram(out, "redis_proxy_redis_round_trip_seconds", "", &s->redis_seconds);
}
