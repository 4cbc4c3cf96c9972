// The whole proxy's numbers, in one shared-memory segment that the master maps before it forks
// (nginx's stub_status way). Each worker writes only its own record, with plain stores on the
// hot path; whoever reports (the admin endpoint, RESP INFO) sums the records. No IPC and no
// locks: aligned 64-bit stores are never torn, and a sum a few increments behind is fine.
//
// A record belongs to one worker process. When it exits, the master adds its counters to
// `retired` and frees the record, so totals never go back when workers are restarted (or, with
// reload, replaced by a new generation, which is why there are twice as many records as slots).
// The master maps room for the most workers a reload may ask for; only the records ever used
// are scanned (and touched: the rest of the mapping stays unbacked).
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "log.h"
#include "stats.h"

struct WorkerRecord {
    // written by the master
    int32_t pid;  // 0 while the record is free
    int32_t slot;
    // written by the worker
    WorkerStats stats;
    // Why its last attempt to reach Redis failed, while it has not reached it since ("redis
    // ADDRESS: cannot connect: TLS handshake: ..."); empty otherwise. For /readyz, which says why
    // a worker is not ready. (A torn read of it, while the worker writes, shows in a probe's text
    // only.)
    char redis_failure[200];
};

struct Scoreboard {
    // written by the master
    uint64_t started_unix;    // seconds since the epoch
    uint64_t worker_restarts; // workers that died and were started again
    uint64_t reloads;         // SIGHUP reloads tried
    uint64_t reload_failures; // of which refused (invalid configuration)
    uint32_t generation;      // configuration generation in force: 1 at start, +1 per reload
    uint32_t last_reload_ok;  // 1 unless the last reload was refused (1 before any reload)
    int32_t records;
    int32_t used;             // records past this one have never been claimed: not scanned
    WorkerStats retired;      // the counters of workers that have exited
    // written by every worker, atomically: the last RESP CLIENT ID handed out. One count for the
    // whole proxy, as Redis's is for the server's life: two clients never share an id.
    uint64_t client_ids;
    LogShared log;            // lines every worker would log alike, said once (log.h)
    WorkerRecord record[];
};

// Maps the segment: records for `slots` worker slots. NULL (and errno) on failure.
Scoreboard *scoreboard_create(int slots);
void scoreboard_destroy(Scoreboard *sb);

// A free record for a worker about to be forked into `slot`, zeroed; NULL if none is free.
WorkerRecord *scoreboard_claim(Scoreboard *sb, int slot);
// The worker of this record has exited: keep its counters, free the record.
void scoreboard_retire(Scoreboard *sb, WorkerRecord *r);
WorkerRecord *scoreboard_find(Scoreboard *sb, pid_t pid);

// Adds `from`'s counters into `to`; gauges too when `with_gauges`.
void stats_add(WorkerStats *to, const WorkerStats *from, bool with_gauges);

// The whole proxy: retired counters plus every live record's counters and gauges.
struct ScoreboardTotals {
    WorkerStats stats;
    int workers;  // running worker processes (stats.accepting, .redis_tried and .redis_connected
                  // then count how many of them are accepting, have tried Redis, are connected)
};
void scoreboard_totals(const Scoreboard *sb, ScoreboardTotals *out);
