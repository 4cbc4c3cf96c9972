// SIGHUP: the configuration read again and a new generation of workers started beside the old
// one, on the same sockets; the old one retires once the new one serves, or the reload is
// abandoned and the old one put back. See the README, "Reload".
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "address.h"
#include "backend.h"
#include "clock.h"
#include "config.h"
#include "handover.h"
#include "listen_group.h"
#include "log.h"
#include "master_state.h"
#include "tls.h"
#include "scoreboard.h"
#include "service_notify.h"

// Ready: every worker of the current generation is accepting and has made its first attempt to
// reach Redis (whatever its outcome: a proxy in front of a Redis that is down still serves what
// it can, and says so).
bool master_generation_ready(Master *m)
{
    for (int i = 0; i < m->count; i++) {
        WorkerRecord *r = m->slots[i].pid > 0 ? scoreboard_find(m->scoreboard, m->slots[i].pid) : NULL;
        if (r == NULL || !r->stats.accepting || !r->stats.redis_tried)
            return false;
    }
    return true;
}

// The previous generation's workers are told to retire through their channels, with the new
// workers' channels to hand their RESP connections to (handover.h); one without a channel, or
// whose channel fails, gets SIGTERM and closes them as a stop does. Their channels are closed
// here: nothing more is said to them.
void master_retire_previous(Master *m)
{
    const Config *before = m->previous.config, *now = m->config;
    // Who may read changed: [users], protected mode, or, with mutual TLS, which client
    // certificates are taken (its CA file may have changed in place: every reload re-verifies).
    bool client_cas = before != NULL && config_listens_tls(before) &&
                      (before->tls_ca_file[0] != '\0' || strcmp(before->tls_ca_file, now->tls_ca_file) != 0);
    HandoverRetire retire = {before != NULL && (before->protected_mode != now->protected_mode ||
                                                memcmp(&before->users, &now->users, sizeof(now->users)) != 0 ||
                                                client_cas)};
    int targets[CONFIG_MAX_WORKERS], n = 0;
    for (int i = 0; i < m->count; i++)
        if (m->slots[i].pid != 0 && m->slots[i].channel >= 0)
            targets[n++] = m->slots[i].channel;
    for (int i = 0; i < m->previous.count; i++) {
        WorkerSlot *s = &m->previous.slots[i];
        if (s->pid == 0)
            continue;
        bool told = s->channel >= 0 && n > 0;
        for (int at = 0; told && at < n; at += HANDOVER_MAX_FDS)
            told = handover_send(s->channel, HANDOVER_TARGETS, targets + at,
                                 n - at < HANDOVER_MAX_FDS ? n - at : HANDOVER_MAX_FDS, NULL, 0);
        told = told && handover_send(s->channel, HANDOVER_RETIRE, NULL, 0, &retire, sizeof(retire));
        if (!told)
            kill(s->pid, SIGTERM);
    }
    master_close_channels(m->previous.slots, m->previous.count);
}

// Whether `g` is one of groups[0 .. LISTEN_SLOTS-1].
static bool among(ListenGroup *const *groups, const ListenGroup *g)
{
    for (int k = 0; k < LISTEN_SLOTS; k++)
        if (groups[k] == g)
            return true;
    return false;
}

// The listening groups a new configuration needs: kept where the address stays on its front
// (wherever it is in the list; grown when there are more workers: the new sockets get no
// connections before the new generation serves them), opened where it is new. On failure
// nothing has changed and err says why.
static bool prepare_listeners(Master *m, const Config *next, int workers, ListenGroup **out, char *err, size_t errlen)
{
    int had[LISTEN_SLOTS];
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        out[k] = NULL;
        had[k] = m->listening[k] ? m->listening[k]->count : 0;
    }
    bool ok = true;
    for (int k = 0; k < LISTEN_SLOTS && ok; k++) {
        const char *text = listen_address(next, k);
        if (text[0] == '\0')
            continue;
        ListenGroup *cur = NULL;
        int first = listen_front(k) * CONFIG_MAX_LISTEN;
        for (int j = first; j < first + CONFIG_MAX_LISTEN && cur == NULL; j++)
            if (m->listening[j] != NULL && listen_group_same_address(m->listening[j], text) &&
                !among(out, m->listening[j]))
                cur = m->listening[j];
        if (cur != NULL) {
            out[k] = cur;
            ok = listen_group_grow(cur, workers, err, errlen);
        } else {
            out[k] = listen_group_open(listen_name(k), text, workers, err, errlen);
            ok = out[k] != NULL;
        }
    }
    if (ok)
        return true;
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        if (out[k] != NULL && !among(m->listening, out[k]))
            listen_group_close(out[k]);
    }
    for (int k = 0; k < LISTEN_SLOTS; k++)
        if (m->listening[k] != NULL && among(out, m->listening[k]))
            listen_group_shrink(m->listening[k], had[k]);
    return false;
}

// SIGHUP: read the configuration again (file and -o overrides). Invalid: say why, keep serving
// on the old one. Valid: start a new generation of workers on it; the old generation is told to
// stop once the new one serves (report_to_service_manager). Every setting may change: an
// address that stays keeps its sockets (and the connections queued on them), a new one is bound
// before the new generation starts, a dropped one is closed once the old generation has gone.
// A reload starts with empty caches.
void master_reload(Master *m)
{
    if (m->previous.starting || m->retiring_count > 0) {
        // The last SIGHUP wins: the file is read as it is then, once this one has ended.
        log_info("reload: one is still under way; the file will be read again once it has ended");
        m->reload_pending = true;
        return;
    }
    m->scoreboard->reloads++;
    notify_reloading();
    Config *next = (Config *)malloc(sizeof(Config));
    char err[1024];
    const char *refused = NULL;
    WorkerSetup targets;
    pid_t *retiring;
    WorkerSlot *slots = NULL;
    ListenGroup *groups[LISTEN_SLOTS];
    SSL_CTX *tls_server = NULL;  // read again: a renewed certificate is served from this reload on
    int workers = 0;
    if (next == NULL) {
        refused = "out of memory";
    } else if (!config_load(next, m->source, err, sizeof(err))) {
        refused = err;
    } else if (!master_resolve_redis(next, &targets, err, sizeof(err))) {
        refused = err;
    } else if (!master_client_tls(next, &tls_server, err, sizeof(err))) {
        refused = err;  // (config_load has loaded it once already: a file changed since)
    }
    if (refused == NULL) {
        workers = config_worker_count(next);
        slots = master_new_slots(workers);
        if ((retiring = (pid_t *)realloc(m->retiring, (size_t)m->count * sizeof(pid_t))) != NULL)
            m->retiring = retiring;
        if (slots == NULL || retiring == NULL)
            refused = "out of memory";
        else if (!prepare_listeners(m, next, workers, groups, err, sizeof(err)))
            refused = err;
    }
    if (refused != NULL) {
        m->scoreboard->last_reload_ok = 0;
        m->scoreboard->reload_failures++;
        log_error("reload refused: %s; keeping the running configuration", refused);
        free(next);
        free(slots);
        tls_context_free(tls_server);
        notify_ready(m->status);  // ends the reload, as systemd expects
        return;
    }
    for (int i = 0; i < m->count; i++)
        if (m->slots[i].pid != 0)
            m->retiring[m->retiring_count++] = m->slots[i].pid;
    m->retire_signalled = false;
    m->previous.starting = true;
    m->previous.deadline_ms = monotonic_ms() + (uint64_t)next->shutdown_timeout_ms;
    m->previous.slots = m->slots;
    m->previous.count = m->count;
    m->previous.config = m->config;
    m->previous.reloaded = m->reloaded;
    m->previous.setup = m->setup;
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        m->previous.listening[k] = m->listening[k];
        m->previous.sockets[k] = m->listening[k] ? m->listening[k]->count : 0;
    }
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        if (m->listening[k] != NULL && !among(groups, m->listening[k])) {
            log_info("reload: %s stops listening on %s once the previous workers have gone", listen_name(k),
                     m->listening[k]->text);
            m->closing[k] = m->listening[k];
        }
        bool tls = false;
        listen_address(next, k, &tls);
        if (groups[k] != NULL && !among(m->listening, groups[k]))
            log_info("reload: listening for %s%s on %s", listen_name(k), tls ? " over TLS" : "", groups[k]->text);
    }
    memcpy(m->listening, groups, sizeof(groups));
    m->slots = slots;
    m->count = workers;
    m->setup.worker_count = workers;
    m->reloaded = next;
    m->config = next;
    m->setup.redis = targets.redis;
    memcpy(m->setup.seeds, targets.seeds, sizeof(targets.seeds));
    m->setup.seed_count = targets.seed_count;
    m->setup.tls_server = tls_server;
    log_set_level((int)next->log_level);
    master_raise_fd_limit(next, workers);
    log_info("reload: configuration generation %u read from %s; starting %d new worker(s)",
             m->scoreboard->generation + 1, m->source->path, m->count);
    for (int i = 0; i < m->count; i++)
        master_spawn_worker(m, i);
    m->ready = false;
}

// The new generation did not serve within its shutdown_timeout (its workers keep dying, or never
// reach Redis): it is stopped as a previous generation is, and the one before keeps serving, on
// the configuration, sockets and steering it had. The next SIGHUP is taken as usual.
void master_abandon_reload(Master *m)
{
    m->scoreboard->reload_failures++;
    m->scoreboard->last_reload_ok = 0;
    int starting = 0;
    for (int i = 0; i < m->count; i++)
        starting += m->slots[i].pid != 0;
    log_error("reload abandoned: configuration generation %u did not serve within shutdown_timeout (%lldms); "
              "stopping its %d worker(s), the previous configuration keeps serving",
              m->scoreboard->generation + 1, (long long)m->config->shutdown_timeout_ms, starting);
    // The previous generation is the current one again: off the retiring list, back in its slots
    // (a slot whose worker died meanwhile is respawned at once).
    WorkerSlot *slots = m->previous.slots;
    for (int i = 0; i < m->previous.count; i++) {
        bool running = false;
        for (int j = 0; j < m->retiring_count && !running; j++)
            if (m->retiring[j] == slots[i].pid) {
                m->retiring[j] = m->retiring[--m->retiring_count];
                running = true;
            }
        if (!running) {
            slots[i].pid = 0;
            slots[i].respawn_at_ms = 0;
        }
    }
    pid_t *retiring = (pid_t *)realloc(m->retiring, (size_t)(m->retiring_count + m->count) * sizeof(pid_t));
    if (retiring != NULL)
        m->retiring = retiring;
    for (int i = 0; i < m->count; i++) {
        if (m->slots[i].pid == 0)
            continue;
        kill(m->slots[i].pid, SIGTERM);
        if (retiring != NULL)
            m->retiring[m->retiring_count++] = m->slots[i].pid;
    }
    m->retire_signalled = true;
    m->retire_deadline_ms = monotonic_ms() + (uint64_t)m->config->shutdown_timeout_ms + STOP_KILL_GRACE_MS;
    for (int k = 0; k < LISTEN_SLOTS; k++)
        if (m->listening[k] != NULL && !among(m->previous.listening, m->listening[k]))
            listen_group_close(m->listening[k]);  // opened for this reload
    for (int k = 0; k < LISTEN_SLOTS; k++) {
        ListenGroup *before = m->previous.listening[k];
        if (before != NULL && among(m->listening, before))
            listen_group_shrink(before, m->previous.sockets[k]);  // grown for it: nothing steered there yet
        if (m->closing[k] == before)
            m->closing[k] = NULL;
    }
    memcpy(m->listening, m->previous.listening, sizeof(m->listening));
    master_close_channels(m->slots, m->count);
    free(m->slots);
    m->slots = slots;
    m->count = m->previous.count;
    free(m->reloaded);
    m->reloaded = m->previous.reloaded;
    if (m->setup.tls_server != m->previous.setup.tls_server)
        tls_context_free(m->setup.tls_server);
    m->config = m->previous.config;
    m->setup = m->previous.setup;
    log_set_level((int)m->config->log_level);
    m->previous.starting = false;
    m->steering_known = false;
    m->ready = true;
    notify_ready(m->status);  // ends the reload, as systemd expects
}
