// The master's state, shared by its process management (master.cc) and its reload
// (master_reload.cc). Internal to the daemon layer.
#pragma once

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "listen_group.h"
#include "scoreboard.h"
#include "worker.h"

inline constexpr uint64_t FAST_DEATH_MS = 1000;       // a worker that dies sooner counts as crashing
inline constexpr uint64_t RESPAWN_MAX_DELAY_MS = 10000;
inline constexpr uint64_t READY_POLL_MS = 10;      // how often the master looks whether it is ready
inline constexpr uint64_t STATUS_EVERY_MS = 5000;  // how often it refreshes systemd's STATUS line
inline constexpr uint64_t STOP_KILL_GRACE_MS = 500;  // past shutdown_timeout: the workers' own bound first

struct WorkerSlot {
    pid_t pid;  // 0 when not running
    int channel;  // the master's end of the worker's channel (handover.h); -1 when not running
    WorkerRecord *record;  // its numbers in the scoreboard (reused by another worker once it died)
    uint64_t started_ms;
    int fast_deaths;  // consecutive deaths within FAST_DEATH_MS of starting
    uint64_t respawn_at_ms;
    // While its worker does not serve: the slot whose worker accepts on its sockets meanwhile,
    // and that worker's pid (0: lent to nobody). See master_steering.cc.
    int borrower;
    pid_t borrower_pid;
};

// The addresses every worker listens on: up to CONFIG_MAX_LISTEN for each of the three fronts,
// one slot each (k), whose front is k / CONFIG_MAX_LISTEN.
enum ListenFront { LISTEN_HTTP, LISTEN_RESP, LISTEN_ADMIN, LISTEN_FRONTS };
inline constexpr int LISTEN_SLOTS = LISTEN_FRONTS * CONFIG_MAX_LISTEN;
inline const char *const LISTEN_FRONT_NAMES[LISTEN_FRONTS] = {"HTTP", "RESP", "admin"};
inline const char *const LISTEN_SETTINGS[LISTEN_FRONTS] = {"listen in [proxy]", "resp_listen in [proxy]",
                                                           "listen in [admin]"};

inline int listen_front(int k) { return k / CONFIG_MAX_LISTEN; }
inline const char *listen_name(int k) { return LISTEN_FRONT_NAMES[listen_front(k)]; }

// The address of slot k in c ("" when its front has fewer), and whether it is marked tls.
inline const char *listen_address(const Config *c, int k, bool *tls = nullptr)
{
    static ListenAddress at[CONFIG_MAX_LISTEN];
    char err[300];
    int n = config_split_listen(config_listen_text(c, listen_front(k)), "", at, err, sizeof(err));
    int i = k % CONFIG_MAX_LISTEN;
    if (tls != nullptr)
        *tls = i < n && at[i].tls;
    return i < n ? at[i].address : "";
}

struct Master {
    const Config *config;
    const ConfigSource *source;  // where a reload reads the configuration again
    Config *reloaded;            // the configuration of the last reload (owned), or NULL
    WorkerSetup setup;  // shared part; id and fd filled per worker
    WorkerSlot *slots;
    int count;
    ListenGroup *listening[LISTEN_SLOTS];  // NULL when that front is off
    // Addresses a reload dropped: the previous generation still serves them; closed once it has
    // gone (reset connections queued there after that are the price of removing an address).
    ListenGroup *closing[LISTEN_SLOTS];
    Scoreboard *scoreboard;
    bool ready;  // READY=1 sent for the current generation
    // A reload's previous generation: told to stop once the new one serves, killed at the deadline
    // (also the new generation of a reload that was abandoned).
    pid_t *retiring;
    int retiring_count;
    bool retire_signalled;
    uint64_t retire_deadline_ms;
    // A reload whose new generation does not serve yet: what it replaced, put back if it never
    // does within the new shutdown_timeout (the reload is then abandoned).
    struct {
        bool starting;
        uint64_t deadline_ms;
        WorkerSlot *slots;
        int count;
        const Config *config;
        Config *reloaded;
        WorkerSetup setup;
        ListenGroup *listening[LISTEN_SLOTS];
        int sockets[LISTEN_SLOTS];  // each group's socket count before (a grown one shrinks back)
    } previous;
    bool reload_pending;  // a SIGHUP came while a reload was under way: the file is read again after it
    // Which slots new connections are steered to: those whose worker serves (steer_to_serving).
    bool steered_serving[CONFIG_MAX_WORKERS];
    bool steering_known;  // steered_serving is what the groups were last steered to
    uint64_t status_at_ms;
    char status[160];  // the STATUS line last sent
    sigset_t handled;  // signals the master waits for with sigtimedwait
};


// master.cc: the process table.
// [tls]'s server context when a listener is marked tls (NULL, and true, when none is); false with
// the reason in err when it cannot be made.
bool master_client_tls(const Config *c, struct ssl_ctx_st **out, char *err, size_t errlen);
WorkerSlot *master_new_slots(int count);
void master_close_channels(WorkerSlot *slots, int count);
void master_raise_fd_limit(const Config *c, int workers);
bool master_resolve_redis(const Config *c, WorkerSetup *out, char *err, size_t errlen);
void master_spawn_worker(Master *m, int i);

// master_reload.cc: SIGHUP, and the generations it makes.
bool master_generation_ready(Master *m);
void master_retire_previous(Master *m);
void master_reload(Master *m);
void master_abandon_reload(Master *m);

// master_steering.cc: new connections while a worker is dead.
bool master_steer_to_serving(Master *m);
