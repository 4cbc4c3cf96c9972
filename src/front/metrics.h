// The whole proxy's numbers in the Prometheus text format (version 0.0.4), from the scoreboard.
// No I/O: it writes into an evbuffer, for the admin endpoint and for tests.
#pragma once

#include <stdint.h>

struct evbuffer;
struct Scoreboard;
struct ScoreboardTotals;

struct MetricsSettings {
    int workers;             // configured worker processes
    int64_t cache_capacity;  // keys per worker
    int64_t cache_max_bytes; // max_memory per worker; 0: no bound
};

void metrics_render(evbuffer *out, const Scoreboard *sb, const ScoreboardTotals *t, const MetricsSettings *s);
