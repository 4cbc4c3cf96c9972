// Which worker gets a new connection while one of them is dead. With SO_REUSEPORT the kernel
// hashes each new connection to one slot's socket, also while that slot's worker is dead and
// waits out its respawn delay (up to 10 s for one that keeps dying). Two things keep such a
// connection from waiting for the successor:
//   - new connections are steered to the slots whose worker serves (listen_group_steer_to);
//   - the ones that reached the dead slot's sockets before that (queued in their accept queues)
//     are accepted by a serving worker, which the master lends those sockets to (HANDOVER_ADOPT)
//     until the slot serves again (HANDOVER_RELEASE).
#include <errno.h>
#include <string.h>

#include "handover.h"
#include "listen_group.h"
#include "log.h"
#include "master_state.h"

// Whether the slot's worker serves its sockets now: running, and past its start.
static bool slot_serving(const WorkerSlot *s)
{
    return s->pid != 0 && s->record != NULL && s->record->pid == s->pid && s->record->stats.accepting;
}

// Whether the slot's sockets are lent to a worker that still runs (serving or not).
static bool lent(const Master *m, const WorkerSlot *s)
{
    return s->borrower_pid != 0 && m->slots[s->borrower].pid == s->borrower_pid;
}

static bool send_release(Master *m, int slot)
{
    HandoverListeners what = {};
    what.slot = (uint32_t)slot;
    return handover_send(m->slots[m->slots[slot].borrower].channel, HANDOVER_RELEASE, NULL, 0, &what, sizeof(what));
}

// Lends the sockets of `slot` (its own and its surplus ones, for every front) to the worker of
// `to`. False if the message could not be sent now.
static bool send_adopt(Master *m, int slot, int to)
{
    static const HandoverFront fronts[LISTEN_FRONTS] = {HANDOVER_HTTP, HANDOVER_RESP, HANDOVER_ADMIN};
    HandoverListeners what = {};
    what.slot = (uint32_t)slot;
    int fds[HANDOVER_MAX_FDS], n = 0;
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        ListenGroup *g = m->listening[k];
        if (g == NULL)
            continue;
        bool tls = false;
        listen_address(m->config, k, &tls);
        int mine[CONFIG_MAX_WORKERS];
        int count = listen_group_sockets_of(g, slot, m->count, mine);
        for (int i = 0; i < count && n < HANDOVER_MAX_FDS; i++) {
            what.front[n] = (uint8_t)(fronts[listen_front(k)] | (tls ? HANDOVER_TLS : 0));
            fds[n++] = mine[i];
        }
    }
    return n > 0 && handover_send(m->slots[to].channel, HANDOVER_ADOPT, fds, n, &what, sizeof(what));
}

// While a slot's worker does not serve, one serving worker accepts on its sockets; once it
// serves again, they are its own again. Returns false if a message could not be sent now (the
// caller looks again soon).
static bool lend_sockets(Master *m, const bool *serving)
{
    bool done = true;
    for (int i = 0; i < m->count; i++) {
        WorkerSlot *s = &m->slots[i];
        bool borrowed = lent(m, s);
        if (borrowed && (serving[i] || !serving[s->borrower])) {
            // Back to its worker, or away from one that stopped serving (a new borrower next turn).
            if (!send_release(m, i)) {
                done = false;
                continue;
            }
            s->borrower_pid = 0;
            borrowed = false;
        }
        if (!borrowed)
            s->borrower_pid = 0;
        if (serving[i] || borrowed)
            continue;
        int to = -1;
        for (int step = 1; step < m->count && to < 0; step++)
            if (serving[(i + step) % m->count])
                to = (i + step) % m->count;
        if (to < 0)
            continue;  // nobody serves: nobody to lend to (done when one does)
        if (!send_adopt(m, i, to)) {
            done = false;
            continue;
        }
        s->borrower = to;
        s->borrower_pid = m->slots[to].pid;
        log_debug("worker %d does not serve: worker %d accepts on its sockets meanwhile", i, to);
    }
    return done;
}

// Steers new connections to the slots whose worker serves, and lends the sockets of the others.
// Returns whether to look again soon: a slot is still starting, or a message waits to be sent.
bool master_steer_to_serving(Master *m)
{
    if (m->previous.starting)
        return false;  // the reload's new generation is steered to once it serves
    bool serving[CONFIG_MAX_WORKERS], starting = false, changed = !m->steering_known;
    for (int i = 0; i < m->count; i++) {
        serving[i] = slot_serving(&m->slots[i]);
        starting = starting || (m->slots[i].pid != 0 && !serving[i]);
        changed = changed || serving[i] != m->steered_serving[i];
    }
    bool pending = !lend_sockets(m, serving);
    if (!changed)
        return starting || pending;
    for (int k = 0; k < LISTEN_SLOTS; k++)
        if (m->listening[k] != NULL && !listen_group_steer_to(m->listening[k], serving))
            log_warn("%s: cannot steer new connections away from a dead worker's socket (%s)", listen_name(k),
                     strerror(errno));
    memcpy(m->steered_serving, serving, sizeof(serving));
    m->steering_known = true;
    return starting || pending;
}
