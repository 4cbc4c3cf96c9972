// The one clock the workers use: monotonic milliseconds, cheap (vDSO, coarse tick is plenty for
// TTLs and timeouts) and immune to wall-clock jumps.
#pragma once

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

inline uint64_t monotonic_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

// Microseconds on the precise monotonic clock: for latencies, and for the coherence rules, where
// monotonic_ms's coarse tick would make a store and the distrust before it look simultaneous.
inline uint64_t monotonic_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

// A duration in milliseconds as the struct timeval libevent's timers take.
inline struct timeval timeval_of_ms(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

// An exponential back-off: `first` doubled once per earlier attempt, never past `cap`.
inline uint64_t backoff_ms(uint64_t first, uint64_t cap, int attempts)
{
    uint64_t delay = first;
    for (int i = 0; i < attempts && delay < cap; i++)
        delay *= 2;
    return delay < cap ? delay : cap;
}
