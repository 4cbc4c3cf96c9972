// What one worker's clients make it hold, against [proxy] max_client_memory (as Redis's
// maxmemory-clients): each client's input, its answers not yet read, and the lookups it has
// under way. A value that many answers share counts once per answer: that is what the client
// asked to be sent, and a bound on what it could keep alive. Each front keeps its clients'
// shares current; past the bound, no RESP client's command is run (so that one turn of the loop
// cannot take the worker far past it) and the worker closes the clients holding the most; back
// under it, the fronts go on.
#pragma once

#include <stddef.h>
#include <stdint.h>

// What OpenSSL holds for one TLS client connection while it lives: its read and write record
// buffers (kept, not released between records: releasing them cost TLS RESP a fifth of its
// rate) and the session's state. About 26 KiB measured with 1,000 idle connections (bench); a
// record of 16 KiB each way makes it more. Counted in the client's share from its accept.
inline constexpr size_t TLS_CONNECTION_BYTES = 36 * 1024;

struct ClientMemory {
    size_t used;
    size_t limit;              // 0: no bound
    uint64_t *gauge;           // where `used` is shown (WorkerStats); may be NULL
    // `used` passed `limit`, or went back under it: must only schedule the work (evicting, or
    // resuming the clients held back), since it is called from inside a front's work on a client.
    void (*crossed)(void *arg);
    void *arg;
    bool over;                 // used > limit (limit set)
    uint64_t logged_ms;        // when an eviction was last logged: once a second at most
};

// The client whose share was *share now holds `now` bytes.
inline void client_memory_set(ClientMemory *m, size_t *share, size_t now)
{
    if (now == *share)
        return;
    m->used = m->used - *share + now;
    *share = now;
    if (m->gauge != NULL)
        *m->gauge = m->used;
    bool over = m->limit != 0 && m->used > m->limit;
    if (over != m->over) {
        m->over = over;
        if (m->crossed != NULL)
            m->crossed(m->arg);
    }
}

// Whether an eviction at now_ms is to be logged quietly (debug): evictions are all counted, but
// logged at warning level once a second at most, so that a flood of them cannot flood the log.
inline bool client_memory_log_quietly(ClientMemory *m, uint64_t now_ms)
{
    if (m->logged_ms != 0 && now_ms - m->logged_ms < 1000)
        return true;
    m->logged_ms = now_ms;
    return false;
}
