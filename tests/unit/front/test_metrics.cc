#include <CppUTest/TestHarness.h>

#include <event2/buffer.h>

#include <string>

#include "metrics.h"
#include "scoreboard.h"

TEST_GROUP(Metrics)
{
    Scoreboard *sb;
    evbuffer *out;
    void setup() override
    {
        sb = scoreboard_create(1);
        out = evbuffer_new();
    }
    void teardown() override
    {
        evbuffer_free(out);
        scoreboard_destroy(sb);
    }
    std::string render(const ScoreboardTotals &t)
    {
        MetricsSettings settings = {1, 100, 0};
        metrics_render(out, sb, &t, &settings);
        size_t n = evbuffer_get_length(out);
        return std::string((const char *)evbuffer_pullup(out, (ev_ssize_t)n), n);
    }
};

TEST(Metrics, test_histogram_is_cumulative_with_sum_and_count)
{
    ScoreboardTotals t = {};
    histogram_observe(&t.stats.redis_seconds, 50);
    histogram_observe(&t.stats.redis_seconds, 300);
    histogram_observe(&t.stats.redis_seconds, 2000000);
    std::string text = render(t);
    STRCMP_CONTAINS("redis_proxy_redis_round_trip_seconds_bucket{le=\"0.0001\"} 1\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_redis_round_trip_seconds_bucket{le=\"0.00025\"} 1\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_redis_round_trip_seconds_bucket{le=\"0.0005\"} 2\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_redis_round_trip_seconds_bucket{le=\"1\"} 2\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_redis_round_trip_seconds_bucket{le=\"+Inf\"} 3\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_redis_round_trip_seconds_sum 2.000350\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_redis_round_trip_seconds_count 3\n", text.c_str());
}

TEST(Metrics, test_labelled_series_and_types)
{
    ScoreboardTotals t = {};
    t.workers = 1;
    t.stats.requests[FRONT_RESP][RESULT_TIMEOUT] = 4;
    histogram_observe(&t.stats.request_seconds[FRONT_HTTP], 0);
    std::string text = render(t);
    STRCMP_CONTAINS("# TYPE redis_proxy_requests_total counter\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_requests_total{front=\"resp\",result=\"timeout\"} 4\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_request_duration_seconds_bucket{front=\"http\",le=\"0.0001\"} 1\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_request_duration_seconds_count{front=\"http\"} 1\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_cache_capacity_entries 100\n", text.c_str());
    STRCMP_CONTAINS("redis_proxy_config_generation 1\n", text.c_str());
}
