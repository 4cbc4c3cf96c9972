#include "scoreboard.h"

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

// WorkerStats is all 64-bit words: counters first, gauges from clients_open on. Summing is then
// one loop over words, and a new field needs no code here.
static_assert(sizeof(WorkerStats) % sizeof(uint64_t) == 0, "WorkerStats must be 64-bit words");
static const size_t STATS_WORDS = sizeof(WorkerStats) / sizeof(uint64_t);
static const size_t COUNTER_WORDS = offsetof(WorkerStats, clients_open) / sizeof(uint64_t);

static size_t segment_size(int records) { return sizeof(Scoreboard) + (size_t)records * sizeof(WorkerRecord); }

Scoreboard *scoreboard_create(int slots)
{
    int records = 2 * slots;  // a reload runs the old and the new generation side by side
    void *p = mmap(NULL, segment_size(records), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    Scoreboard *sb = (Scoreboard *)p;  // zeroed by mmap
    sb->records = records;
    sb->generation = 1;
    sb->last_reload_ok = 1;
    sb->started_unix = (uint64_t)time(NULL);
    return sb;
}

void scoreboard_destroy(Scoreboard *sb)
{
    if (sb != NULL)
        munmap(sb, segment_size(sb->records));
}

WorkerRecord *scoreboard_claim(Scoreboard *sb, int slot)
{
    for (int i = 0; i < sb->records; i++) {
        WorkerRecord *r = &sb->record[i];
        if (r->pid == 0) {
            memset(r, 0, sizeof(*r));
            r->slot = slot;
            r->pid = -1;  // taken; the master sets the pid once forked
            if (i >= sb->used)
                sb->used = i + 1;
            return r;
        }
    }
    return NULL;
}

void scoreboard_retire(Scoreboard *sb, WorkerRecord *r)
{
    stats_add(&sb->retired, &r->stats, false);
    memset(r, 0, sizeof(*r));
}

WorkerRecord *scoreboard_find(Scoreboard *sb, pid_t pid)
{
    for (int i = 0; i < sb->used; i++)
        if (sb->record[i].pid == pid)
            return &sb->record[i];
    return NULL;
}

void stats_add(WorkerStats *to, const WorkerStats *from, bool with_gauges)
{
    uint64_t *t = (uint64_t *)to;
    const uint64_t *f = (const uint64_t *)from;
    size_t n = with_gauges ? STATS_WORDS : COUNTER_WORDS;
    for (size_t i = 0; i < n; i++)
        t[i] += f[i];
}

void scoreboard_totals(const Scoreboard *sb, ScoreboardTotals *out)
{
    memset(out, 0, sizeof(*out));
    out->stats = sb->retired;
    for (int i = 0; i < sb->used; i++) {
        const WorkerRecord *r = &sb->record[i];
        if (r->pid <= 0)
            continue;
        // A copy first: the worker keeps writing while this reads.
        WorkerStats s;
        memcpy(&s, (const void *)&r->stats, sizeof(s));
        stats_add(&out->stats, &s, true);
        out->workers++;
    }
}
