#include "tracking.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "clock.h"
#include "command_owner.h"
#include "config.h"
#include "log.h"
#include "redis_error.h"

static const char INVALIDATE_CHANNEL[] = "__redis__:invalidate";
static const uint64_t RETRY_MIN_MS = 100;  // after a refusal for now (-BUSY, -LOADING, ...)
static const uint64_t RETRY_MAX_MS = 5000;

struct Tracking {
    const WorkerEnv *env;
    TrackingOwner owner;
    Backend *link;           // the invalidation connection; NULL once Redis refused tracking
    WorkerStats link_stats;  // the link's own numbers: not counted as the worker's Redis traffic
    long long link_id;       // its CLIENT ID; 0 until known
    int confirmations;       // SUBSCRIBE confirmations so far (two channels)
    bool link_ready;         // subscribed to both channels
    bool enabling;           // CLIENT TRACKING sent on the data connection, not yet answered
    bool established;        // ... and confirmed: invalidations flow, the worker caches
    bool ever_established;
    bool heartbeat_refused;  // PUBLISH refused (an ACL): only a dropped connection is noticed,
                             // until tracking is established again (the ACL may have changed)
    bool unsupported;        // Redis refused tracking for good: TTL only, the link is (being) freed
    bool retry_pending;      // refused for now: nothing is tried before retry_timer fires
    int refusals;            // consecutive refusals for now: the back-off grows with them
    event *retry_timer;
    // Bumped whenever the link or the data connection is lost: an answer to a command sent on
    // the data connection before then (a CLIENT TRACKING's OK, a heartbeat's count) no longer
    // says anything.
    uint64_t epoch;
    // Bumped when the link alone is lost: a reply on the link (CLIENT ID) is the link's own, and
    // stands when only the data connection was lost meanwhile. (Judged by `epoch`, a data
    // connection cut during the link's handshake threw its CLIENT ID away, and the link, connected
    // and never subscribed, stayed so for good.)
    uint64_t link_epoch;
    char channel[160];  // the private heartbeat channel
    event *heartbeat_timer;
    uint64_t beats_sent, beats_back;
    char target_ip[64];  // the node, in the heartbeat channel's name
    int target_port;
    // The commands it sent and whose replies are still to come, on the link or on the data
    // connection, which its owner may free before or after it: cancelled when it dies.
    CommandOwner commands;
};

struct TrackingCommand {  // a reply's context: who sent it, and the epoch it was sent in
    OwnedCommand base;
    uint64_t epoch;
    bool on_link;  // sent on the link: link_epoch, else epoch
};

// Sends a command whose reply comes back to fn with its context. False if it could not be sent.
static bool send_command(Tracking *t, Backend *to, int argc, const char **argv, const size_t *lens,
                         BackendReplyFn fn)
{
    TrackingCommand *c = (TrackingCommand *)malloc(sizeof(TrackingCommand));
    if (c == NULL)
        return false;
    c->on_link = to == t->link;
    c->epoch = c->on_link ? t->link_epoch : t->epoch;
    command_owner_add(&t->commands, &c->base);
    if (backend_command(to, argc, argv, lens, fn, c))
        return true;
    owned_command_take(&c->base);
    free(c);
    return false;
}

// A reply's tracking (frees the context), or NULL when its tracking is gone or it was sent
// before the last loss (lose_tracking() has run since, and the next ready connection tries again): then
// the reply says nothing.
static Tracking *tracking_of_reply(void *arg)
{
    TrackingCommand *c = (TrackingCommand *)arg;
    Tracking *t = (Tracking *)owned_command_take(&c->base);
    bool current = t != NULL && c->epoch == (c->on_link ? t->link_epoch : t->epoch);
    free(c);
    return current ? t : NULL;
}

static void set_caching(Tracking *t, bool on)
{
    t->owner.set_caching(t->owner.arg, on, on);
}

// Whatever tells the worker of changes in Redis is gone: nothing it holds can be trusted (a
// new generation: no more hits on it), and nothing fetched before counts.
static void lose_tracking(Tracking *t, const char *why)
{
    if (t->unsupported)
        return;  // TTL only: nothing was trusted on Redis's word
    t->epoch++;
    t->enabling = false;
    if (t->established) {
        t->owner.distrust(t->owner.arg);
        t->env->stats->tracking_losses++;
        log_warn("worker %d: invalidation tracking%s lost (%s); not caching%s until it is back", t->env->id,
                 t->owner.label, why, t->owner.label[0] ? " its slots" : "");
    }
    t->established = false;
    set_caching(t, false);
}

// An older Redis, or one that forbids the commands: TTL only, as with invalidation = off. The
// link goes, but not from here: the caller may be one of the link's own reply callbacks, and a
// backend must not be freed under its own feet. The heartbeat timer frees it, out of any callback.
static void run_without_tracking(Tracking *t, const char *command, const redisReply *reply)
{
    log_warn("worker %d: Redis%s refuses %s (%.*s); running without invalidation: entries live until their TTL",
             t->env->id, t->owner.label, command, reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 12,
             reply->type == REDIS_REPLY_ERROR ? reply->str : "an odd reply");
    t->unsupported = true;
    t->link_ready = false;
    t->retry_pending = false;
    evtimer_del(t->retry_timer);  // a retry of an earlier refusal for now: the link it would reset goes
    t->owner.set_caching(t->owner.arg, true, false);
    event_active(t->heartbeat_timer, EV_TIMEOUT, 1);  // frees the link, out of any callback
}

static void enable(Tracking *t);

// Refused for now: whatever was under way is lost, and the whole handshake is tried again after
// a back-off (100ms doubling to 5s; back to the shortest once tracking is established).
static void retry_later(Tracking *t, const char *command, const redisReply *reply)
{
    const char *why = reply == NULL ? "no reply within command_timeout" : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                                                        : "an odd reply";
    int len = reply != NULL && reply->type == REDIS_REPLY_ERROR ? (int)reply->len : (int)strlen(why);
    uint64_t delay = backoff_ms(RETRY_MIN_MS, RETRY_MAX_MS, t->refusals);
    t->refusals++;
    t->env->stats->tracking_refusals++;
    log_msg(t->refusals == 1 ? LOG_WARN : LOG_DEBUG, "worker %d: Redis%s refuses %s for now (%.*s); not caching%s, retrying in %llums",
            t->env->id, t->owner.label, command, len, why, t->owner.label[0] ? " its slots" : "", (unsigned long long)delay);
    lose_tracking(t, "refused");
    t->retry_pending = true;
    struct timeval tv = timeval_of_ms((uint64_t)delay);
    evtimer_add(t->retry_timer, &tv);
}

static void refused(Tracking *t, const char *command, const redisReply *reply)
{
    // For good: an older Redis, or an ACL that denies the command or the channels.
    if (redis_error_class(reply->str, reply->len) == REDIS_ERROR_REFUSED)
        run_without_tracking(t, command, reply);
    else
        retry_later(t, command, reply);
}

// The back-off after a refusal is over: the link starts again from CLIENT ID (a reset), or, if it
// is subscribed, CLIENT TRACKING is asked again.
static void on_retry_timer(evutil_socket_t, short, void *arg)
{
    Tracking *t = (Tracking *)arg;
    t->retry_pending = false;
    if (t->unsupported || t->link == NULL)
        return;
    if (t->link_ready)
        enable(t);
    else
        backend_reset(t->link, "retrying tracking after a refusal");
}

static void on_tracking_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    Tracking *t = tracking_of_reply(arg);
    if (t == NULL)
        return;
    t->enabling = false;
    if (failure == BACKEND_TIMEOUT || failure == BACKEND_TOO_LARGE) {  // (no connection was lost)
        retry_later(t, "CLIENT TRACKING", NULL);  // its late reply, if any, is dropped
        return;
    }
    if (failure != BACKEND_OK)
        return;  // the data connection is lost: lose_tracking() has run, and its return tries again
    if (reply->type == REDIS_REPLY_STATUS) {
        t->established = true;
        t->beats_back = t->beats_sent;  // a beat lost with an earlier connection is no news
        t->heartbeat_refused = false;
        set_caching(t, true);
        log_msg(t->ever_established ? LOG_INFO : LOG_DEBUG, "worker %d: invalidation tracking%s %s (link id %lld)",
                t->env->id, t->owner.label, t->ever_established ? "back" : "on", t->link_id);
        t->ever_established = true;
        t->refusals = 0;
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "redirect") != NULL) {
        backend_reset(t->link, "Redis no longer knows it");  // the link died meanwhile
        return;
    }
    refused(t, "CLIENT TRACKING", reply);
}

// Both connections ready: ask Redis to track what the data connection reads, for the link.
static void enable(Tracking *t)
{
    if (t->unsupported || t->retry_pending || !t->link_ready || t->enabling || t->established ||
        !backend_ready(t->owner.data))
        return;
    // What was fetched before this command was read untracked: its replies must not be cached.
    t->owner.distrust(t->owner.arg);
    char id[24];
    int n = snprintf(id, sizeof(id), "%lld", t->link_id);
    const char *argv[] = {"CLIENT", "TRACKING", "on", "REDIRECT", id};
    size_t lens[] = {6, 8, 2, 8, (size_t)n};
    if (send_command(t, t->owner.data, 5, argv, lens, on_tracking_reply))
        t->enabling = true;
}

static void on_heartbeat_reply(void *arg, redisReply *reply, BackendFailure failure)
{
    Tracking *t = tracking_of_reply(arg);
    if (t == NULL || failure != BACKEND_OK)
        return;  // a beat that is not back in time is caught by the timer
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0 && t->established) {
        // Nobody subscribed to the channel: the link is not what Redis redirects to any more.
        backend_reset(t->link, "no longer subscribed");
    } else if (reply->type == REDIS_REPLY_ERROR && redis_error_class(reply->str, reply->len) != REDIS_ERROR_REFUSED) {
        // Not published (-BUSY, -LOADING): that beat will not come back, which says nothing of
        // the link. The next one is sent as usual; it is the one that checks the link.
        t->beats_back = t->beats_sent;
    } else if (reply->type == REDIS_REPLY_ERROR && !t->heartbeat_refused) {
        t->heartbeat_refused = true;
        log_warn("worker %d: Redis refuses the heartbeat's PUBLISH (%.*s): a silent loss of the "
                 "invalidation link goes unnoticed until its connection drops",
                 t->env->id, (int)reply->len, reply->str);
    }
}

// Every heartbeat/2: the previous beat must be back by now, else the link is silently gone.
// A silent loss is thus noticed within one heartbeat.
static void on_heartbeat_timer(evutil_socket_t, short, void *arg)
{
    Tracking *t = (Tracking *)arg;
    if (t->unsupported) {
        if (t->link != NULL) {
            backend_destroy(t->link);
            t->link = NULL;
            event_del(t->heartbeat_timer);
        }
        return;
    }
    if (!t->established || t->heartbeat_refused)
        return;
    if (t->beats_back < t->beats_sent) {
        char why[96];
        snprintf(why, sizeof(why), "heartbeat not back within %lldms", (long long)t->env->config->heartbeat_ms / 2);
        backend_reset(t->link, why);
        return;
    }
    char seq[24];
    int n = snprintf(seq, sizeof(seq), "%llu", (unsigned long long)++t->beats_sent);
    const char *argv[] = {"PUBLISH", t->channel, seq};
    size_t lens[] = {7, strlen(t->channel), (size_t)n};
    send_command(t, t->owner.data, 3, argv, lens, on_heartbeat_reply);
}

static bool is_text(const redisReply *r, const char *text)
{
    size_t n = strlen(text);
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == n &&
           memcmp(r->str, text, n) == 0;
}

static void on_invalidation(Tracking *t, const redisReply *keys)
{
    if (keys->type == REDIS_REPLY_NIL) {  // FLUSHALL or FLUSHDB: everything changed
        t->owner.distrust(t->owner.arg);
        t->env->stats->invalidation_flushes++;
        return;
    }
    if (keys->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->type == REDIS_REPLY_STRING)
            t->owner.invalidate(t->owner.arg, keys->element[i]->str, keys->element[i]->len);
}

// What the link receives: subscription confirmations, invalidations, heartbeats.
static void on_push(void *arg, redisReply *r)
{
    Tracking *t = (Tracking *)arg;
    if (r->type == REDIS_REPLY_ERROR && !t->link_ready) {
        refused(t, "SUBSCRIBE", r);  // for good: an ACL without these channels (NOPERM)
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return;
    const redisReply *kind = r->element[0], *channel = r->element[1], *payload = r->element[2];
    if (is_text(kind, "subscribe")) {
        if (++t->confirmations == 2) {
            t->link_ready = true;
            enable(t);
        }
    } else if (is_text(kind, "message") && is_text(channel, INVALIDATE_CHANNEL)) {
        on_invalidation(t, payload);
    } else if (is_text(kind, "message") && is_text(channel, t->channel) && payload->type == REDIS_REPLY_STRING) {
        unsigned long long seq = strtoull(payload->str, NULL, 10);
        if (seq > t->beats_back && seq <= t->beats_sent)
            t->beats_back = seq;
    }
}

static void on_client_id(void *arg, redisReply *reply, BackendFailure failure)
{
    Tracking *t = tracking_of_reply(arg);
    if (t == NULL)
        return;
    if (failure == BACKEND_TIMEOUT || failure == BACKEND_TOO_LARGE) {
        backend_reset(t->link, "CLIENT ID not answered within command_timeout, or past max_reply_size");
        return;
    }
    if (failure != BACKEND_OK)
        return;
    if (reply->type != REDIS_REPLY_INTEGER) {
        refused(t, "CLIENT ID", reply);
        return;
    }
    t->link_id = reply->integer;
    // A cluster broadcasts PUBLISH to every node, and CLIENT IDs are per node: the node's port
    // keeps one worker's links on two nodes apart.
    snprintf(t->channel, sizeof(t->channel), "__redis-proxy__:heartbeat:%d:%s:%d:%lld", (int)getpid(),
             t->target_ip, t->target_port, t->link_id);
    const char *argv[] = {"SUBSCRIBE", INVALIDATE_CHANNEL, t->channel};
    size_t lens[] = {9, sizeof(INVALIDATE_CHANNEL) - 1, strlen(t->channel)};
    t->confirmations = 0;
    t->beats_sent = t->beats_back = 0;
    backend_subscribe(t->link, 3, argv, lens);
}

static void on_link_ready(void *arg)
{
    Tracking *t = (Tracking *)arg;
    const char *argv[] = {"CLIENT", "ID"};
    size_t lens[] = {6, 2};
    send_command(t, t->link, 2, argv, lens, on_client_id);
}

static void on_link_lost(void *arg)
{
    Tracking *t = (Tracking *)arg;
    t->link_epoch++;
    t->link_ready = false;
    t->link_id = 0;
    t->confirmations = 0;
    lose_tracking(t, "invalidation connection lost");
}

Tracking *tracking_create(const WorkerEnv *env, const BackendTarget *target, const TrackingOwner *owner, uint64_t seed)
{
    Tracking *t = (Tracking *)calloc(1, sizeof(Tracking));
    if (t == NULL)
        return NULL;
    t->env = env;
    t->commands.self = t;
    t->owner = *owner;
    if (t->owner.label == NULL)
        t->owner.label = "";
    snprintf(t->target_ip, sizeof(t->target_ip), "%s", target->is_unix ? "unix" : target->ip);
    t->target_port = target->port;
    BackendHooks hooks = {};
    hooks.on_ready = on_link_ready;
    hooks.on_lost = on_link_lost;
    hooks.on_push = on_push;
    hooks.arg = t;
    hooks.tls = env->redis_tls;
    hooks.tls_failures = &env->stats->redis_tls_failures;  // (the link keeps stats of its own)
    hooks.failure = env->redis_failure;
    hooks.failure_len = env->redis_failure_len;
    hooks.label = " (invalidation link)";
    t->link = backend_create(env->base, env->config, target, &t->link_stats, seed, &hooks);
    t->heartbeat_timer = event_new(env->base, -1, EV_PERSIST, on_heartbeat_timer, t);
    t->retry_timer = evtimer_new(env->base, on_retry_timer, t);
    if (t->link == NULL || t->heartbeat_timer == NULL || t->retry_timer == NULL) {
        tracking_destroy(t);
        return NULL;
    }
    int64_t half = env->config->heartbeat_ms / 2;
    struct timeval tv = timeval_of_ms((uint64_t)half);
    event_add(t->heartbeat_timer, &tv);
    set_caching(t, false);
    return t;
}

void tracking_destroy(Tracking *t)
{
    if (t == NULL)
        return;
    // Its commands on the owner's data connection may be answered after this, in any order.
    command_owner_cancel_all(&t->commands);
    backend_destroy(t->link);
    if (t->heartbeat_timer != NULL)
        event_free(t->heartbeat_timer);
    if (t->retry_timer != NULL)
        event_free(t->retry_timer);
    free(t);
}

void tracking_data_ready(Tracking *t)
{
    // Redis is back for the data connection: the link, maybe deep in its own back-off, is too.
    if (t->link != NULL)
        backend_want_connection(t->link);
    enable(t);
}

void tracking_data_lost(Tracking *t) { lose_tracking(t, "data connection lost"); }
