// What one worker's clients make it hold, against [proxy] max_client_memory (as Redis's
// maxmemory-clients): each client's input, its answers not yet read, and the lookups it has
// under way. A value that many answers share counts once per answer: that is what the client
// asked to be sent, and a bound on what it could keep alive. Each front keeps its clients'
// shares current; past the bound, the worker closes the clients holding the most.
#pragma once

#include <stddef.h>
#include <stdint.h>

struct ClientMemory {
    size_t used;
    size_t limit;              // 0: no bound
    uint64_t *gauge;           // where `used` is shown (WorkerStats); may be NULL
    void (*over)(void *arg);   // `used` passed `limit`: must only schedule the eviction, since
    void *arg;                 // it is called from inside a front's work on a client
};

// The client whose share was *share now holds `now` bytes.
inline void client_memory_set(ClientMemory *m, size_t *share, size_t now)
{
    m->used = m->used - *share + now;
    *share = now;
    if (m->gauge != NULL)
        *m->gauge = m->used;
    if (m->limit != 0 && m->used > m->limit && m->over != NULL)
        m->over(m->arg);
}
