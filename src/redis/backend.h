// A worker's connection to the backing Redis, on the worker's event loop. hiredis gives the
// RESP reply parser (its redisReader); the socket, the command queue and every timer are ours,
// because hiredis 0.14.1's async layer cannot be made safe against a faulty server: it asserts
// (killing the worker) on a reply nobody asked for, pairs replies with the wrong commands when
// one is extra, and buffers a reply of any size. Here:
//   - connect with a timer; AUTH and SELECT queued right after connecting, their replies checked;
//   - every read is parsed and its complete replies counted *before* any is delivered: more
//     replies than commands outstanding means the connection is out of step, and it is dropped
//     with nothing from that read delivered;
//   - a reply is bounded by [redis] max_reply_size: a frame scanner (reply_frame.h) runs ahead of
//     the parser, so one larger is skipped as it streams in, none of it kept, and answered
//     BACKEND_TOO_LARGE; the connection stays in step and nothing else is disturbed;
//   - each command has its own deadline (command_timeout): a late one is answered BACKEND_TIMEOUT
//     and abandoned in place (its reply, when it comes, is dropped), so one slow command fails no
//     younger one; the connection is reset only when abandoned commands pile up, the oldest
//     waiting 3 x command_timeout;
//   - a connection that had lasted (RECONNECT_MIN_MS) and drops is tried again at once, and for
//     that one attempt, FIRST_ATTEMPT_PATIENCE_MS at most, commands wait for it; after any other
//     failure, reconnect from a timer with jittered exponential backoff, brought forward while
//     commands keep coming (backend_want_connection).
// Otherwise, until the connection is ready (connected, past AUTH/SELECT), backend_command refuses
// at once, so callers never wait on a dead Redis or on a connect that may never finish. Nothing
// here knows about the cache: when a connection turns out to be out of step, the owner's
// on_untrusted hook is told, since whatever was read through it may have been mis-paired.
#pragma once

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct event_base;
struct Config;

enum BackendFailure {
    BACKEND_OK = 0,
    BACKEND_UNAVAILABLE,  // connection failed or was lost before the reply came
    BACKEND_TIMEOUT,      // no reply within command_timeout
    BACKEND_TOO_LARGE,    // the reply was larger than max_reply_size: skipped, the connection fine
};

// reply is non-NULL exactly when failure == BACKEND_OK, and valid only during the call.
typedef void (*BackendReplyFn)(void *arg, redisReply *reply, BackendFailure failure);

// What the owner hears of the connection. Any hook may be NULL.
struct BackendHooks {
    // Connected and past AUTH/SELECT: commands sent from here are answered.
    void (*on_ready)(void *arg);
    // An open connection was dropped, for any reason (its outstanding commands have been
    // answered with a failure). Whatever state Redis kept for it is gone.
    void (*on_lost)(void *arg);
    // The connection proved out of step (extra replies, unparseable bytes, or a reply a caller
    // found nonsensical): replies delivered through it before may have gone to the wrong commands.
    void (*on_untrusted)(void *arg);
    // After backend_subscribe: each reply that answers no command (a pub/sub message or
    // confirmation), valid only during the call.
    void (*on_push)(void *arg, redisReply *reply);
    void *arg;
    const char *label;  // for logs: "redis ADDRESS LABEL: ..." (NULL: none)
    // Commands sent while connecting wait for the connection instead of being refused (a probe
    // that asks one question as soon as it connects).
    bool queue_while_connecting;
    // [redis] tls: the worker's TLS context (tls.h), shared by its connections; NULL: plain.
    struct ssl_ctx_st *tls;
    // Where TLS's own failures are counted (the worker's redis_tls_failures, whatever stats the
    // connection keeps otherwise); NULL: its stats'.
    uint64_t *tls_failures;
    // Where the worker shows why its last attempt failed (the scoreboard's, for /readyz), cleared
    // once ready; NULL: nowhere. Every connection of a worker writes the same one.
    char *failure;
    size_t failure_len;
};

// Where Redis is, resolved once by the master so that no worker ever blocks on DNS.
struct BackendTarget {
    bool is_unix;
    char ip[64];    // where to connect; empty for a name that has not resolved yet
    int port;
    char path[108];
    char display[300];  // as configured, for logs
    // Given by name (a host name, not an IP): resolved again, without blocking, before each
    // connect, so that a Redis that moves (a container recreated with a new address) is followed.
    bool by_name;
    char host[256];
};

// Parses an address. An IP or a unix path is final; a name is kept as a name, which the backend
// looks up (without blocking) before each connect: one that does not resolve is a failed attempt,
// retried, not an error here. False, with the reason, for a malformed address.
bool backend_target_resolve(const char *address, BackendTarget *target, char *err, size_t errlen);
// Resolves a target given by name now, blocking (the master, at start), into one target per
// address (up to max, in the resolver's order), kept for good: a cluster's seeds, whose nodes are
// then learned from the cluster itself, each address tried in turn. A target by IP is itself.
// Returns how many, or -1 with the reason if it does not resolve.
int backend_target_resolve_now(const BackendTarget *target, BackendTarget *out, int max, char *err, size_t errlen);

struct Backend;

// Starts connecting at once. hooks may be NULL.
Backend *backend_create(event_base *base, const Config *config, const BackendTarget *target,
                        WorkerStats *stats, uint64_t seed, const BackendHooks *hooks);
// Answers every outstanding command with BACKEND_UNAVAILABLE, then frees everything.
void backend_destroy(Backend *b);

// Sends one command. Returns false at once when the connection is not ready, except during the
// first attempt after a cut, when it waits for it (fn is not called);
// otherwise fn is called exactly once, later, from the event loop: with the reply, or with a
// failure (BACKEND_TIMEOUT at the command's own deadline).
bool backend_command(Backend *b, int argc, const char **argv, const size_t *lens, BackendReplyFn fn,
                     void *arg);

// Sends a SUBSCRIBE-like command whose replies answer no command: from here on, replies beyond
// the commands outstanding go to on_push instead of counting as out of step (RESP2 pub/sub).
// Only (P)SUBSCRIBE may follow on such a connection. False when there is no connection.
bool backend_subscribe(Backend *b, int argc, const char **argv, const size_t *lens);

// Drops the connection (answering what waits on it) and reconnects with backoff, logging why.
void backend_reset(Backend *b, const char *why);

// Called from inside a reply callback: the reply made no sense for its command (a wrong type),
// so the connection is out of step. It is dropped once the callback returns.
void backend_distrust(Backend *b);

// Connected and past AUTH/SELECT.
bool backend_ready(const Backend *b);

// The connection is wanted now (a command came while Redis cannot be reached, or its partner
// connection is back): the next attempt comes at most RECONNECT_WANTED_MS after the last one,
// whatever the back-off had grown to.
void backend_want_connection(Backend *b);

// A connection that was ready dropped, and its first attempt to come back is under way:
// commands sent now wait for it (a read that failed with the drop may be asked again).
bool backend_reconnecting_at_once(const Backend *b);

// Commands sent and not yet answered. For tests.
size_t backend_outstanding(const Backend *b);
