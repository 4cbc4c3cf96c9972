// The Redis connection's state, shared by its connection management (backend.cc) and its reading
// of replies (backend_read.cc). Internal to the redis layer.
#pragma once

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "reply_frame.h"
#include "transport.h"

struct evbuffer;

inline constexpr uint64_t RECONNECT_MIN_MS = 100;
inline constexpr uint64_t RECONNECT_MAX_MS = 2000;
// While commands keep coming for a Redis that cannot be reached (and entries are answered stale
// meanwhile), the next attempt is brought forward to at most this long after the last one: stale
// answers end within about this of Redis's return, however long the back-off had grown.
inline constexpr uint64_t RECONNECT_WANTED_MS = 50;
// How long commands wait for the first attempt after a cut (backend_drop): past it they are
// answered as Redis being unreachable (a stale entry answers), the connect going on meanwhile. A
// host that drops SYNs must not hold reads for connect_timeout.
inline constexpr uint64_t FIRST_ATTEMPT_PATIENCE_MS = 200;
inline constexpr size_t READ_CHUNK = 64 * 1024;
// A name's addresses an attempt tries, in the resolver's order (backend_resolve.cc).
inline constexpr int BACKEND_MAX_ADDRESSES = 8;

// Past its deadline, a command has been answered BACKEND_TIMEOUT but keeps its place, its reply
// read and dropped when it comes. Only when the oldest such command has waited this many times
// command_timeout is the connection itself given up on and reset.
inline constexpr uint64_t ABANDONED_RESET_FACTOR = 3;

// One command sent to Redis and not yet answered. Redis answers in order, so these form a FIFO:
// the head is the next reply's owner; deadlines are in the same order, since every command gets
// the same command_timeout.
struct PendingCommand {
    uint64_t deadline_ms;
    uint64_t sent_us;  // for the round-trip histogram
    BackendReplyFn fn;  // NULL once abandoned: answered as timed out, its reply dropped
    void *arg;
};

struct Backend {
    event_base *base;
    const Config *config;
    BackendTarget target;
    WorkerStats *stats;
    BackendHooks hooks;
    int fd;                  // -1 while disconnected
    Transport tr;            // its bytes' way across fd: plain, or TLS (hooks.tls)
    // Counts connections closed: a callback that may have dropped the connection is found out by
    // it, not by the fd, whose number a connection made at once in its place takes again.
    uint64_t serial;
    uint64_t ready_ms;       // when it last became ready
    uint64_t sent;           // commands sent on this connection
    uint64_t answered;       // and replies read for them, errors not counted
    bool connected;          // connect(2) has completed
    bool ready;              // and AUTH/SELECT have been answered OK
    bool write_pending;      // write_event is added, or active (want_write)
    bool distrusted;         // a callback said the reply it got made no sense
    bool push_mode;          // subscribed: replies past the outstanding commands are pushes
    bool too_large_logged;   // a reply past max_reply_size was logged: the rest are only counted
    int handshake_pending;   // AUTH/SELECT replies still awaited
    event *read_event, *write_event;  // on fd; NULL while disconnected
    evbuffer *out;           // commands not yet written
    redisReader *reader;     // hiredis's RESP parser, fed by on_readable
    FrameScanner frame;      // runs ahead of the parser: where replies end, which are too large
    redisReply **batch;      // the complete replies of one read, counted before delivery
    size_t batch_cap;
    PendingCommand *ring;
    size_t ring_cap, ring_head, ring_len;
    size_t abandoned;  // the first `abandoned` commands of the ring are past their deadline
    event *connect_timer, *timeout_timer, *reconnect_timer, *patience_timer;
    bool timeout_armed;
    uint64_t timeout_at_ms;  // when timeout_timer fires, if armed
    int failures;  // consecutive failed attempts: drives the backoff and quiets repeated logs
    // A connection that was ready and dropped is tried again at once, and commands wait for that
    // one attempt (a cut under a Redis that is up costs a round trip, not stale answers).
    bool first_attempt;
    uint64_t attempt_ms;     // when the last attempt started
    uint64_t retry_at_ms;    // when the next one is due, while reconnect_timer is pending
    char last_failure[160];  // the reason of the last failed attempt (a new one is news)
    uint64_t news_ms;        // when a failure was last logged as news
    bool connected_said;     // "connected after N failed attempts" said in this outage
    uint64_t rng;
    struct Resolution *resolving;  // a lookup of a target given by name, under way
    // What the name resolved to: an attempt connects to each in turn until one answers.
    char addresses[BACKEND_MAX_ADDRESSES][64];
    int address_count, address_next;
    char attempt_failures[512];    // "ADDRESS (why), ..." of this attempt's addresses so far
    event *resolve_timer;          // looks whether it is done (backend_resolve.cc)
};

// backend_connect.cc
// An attempt: a target given by name is resolved first (backend_resolve.cc), then connected to.
void backend_connect(Backend *b);
// The attempt after a ready connection dropped: at once, to the address it had (a name is not
// looked up again first: the address just worked), with commands waiting for it a moment.
void backend_connect_again(Backend *b);
// Connects to target.ip now, with AUTH and SELECT queued to go first.
void backend_connect_now(Backend *b);
// An attempt failed: logged (the first of a run), and the next one scheduled with back-off.
void backend_schedule_reconnect(Backend *b, const char *what, const char *detail);
// Connected and past AUTH/SELECT.
void backend_became_ready(Backend *b);
void backend_on_connect_timer(evutil_socket_t, short, void *arg);    // connect_timeout
void backend_on_reconnect_timer(evutil_socket_t, short, void *arg);  // the back-off is over
void backend_on_patience_timer(evutil_socket_t, short, void *arg);   // FIRST_ATTEMPT_PATIENCE_MS

// backend.cc
// Queues a command on the connection (even one not ready); false when out of memory.
bool backend_send_command(Backend *b, BackendReplyFn fn, void *arg, int argc, const char **argv,
                          const size_t *lens);
// The write event's callback: the connect's completion, then the commands queued.
void backend_on_writable(evutil_socket_t fd, short what, void *arg);
// The connect's completion: SO_ERROR, then TLS's handshake step by step (each readiness the
// handshake waits for comes back here), then the connection is established. From either event.
void backend_continue_connect(Backend *b);
// Writes what is queued, as much as the socket takes (both events call it: TLS may need either).
void backend_write_queued(Backend *b);
// A TLS failure of TLS's own (a certificate, an alert): counted where the worker counts them.
void backend_count_tls_failure(Backend *b);
// The connection goes, and its commands are answered `failure`; a reconnect is scheduled.
void backend_drop(Backend *b, BackendFailure failure, const char *what, const char *detail);
// An attempt whose connect failed (refused, timed out): the name's next address is tried at
// once, else as backend_drop, its reason naming every address tried.
void backend_drop_attempt(Backend *b, const char *why);
// The same, for a connection out of step: the owner forgets what was read through it.
void backend_drop_untrusted(Backend *b, const char *what, const char *detail);
// The oldest command sent: the next reply is its.
PendingCommand backend_pop_command(Backend *b);

// backend_resolve.cc: a target given by name, resolved without blocking before each connect.
void backend_resolve(Backend *b);        // then backend_connect_now, or a reconnect scheduled
void backend_resolver_free(Backend *b);  // cancels a lookup under way
// The attempt at target.ip failed with `why`: true when the name has another address to try
// (now in target.ip), else false, and *detail says why each address failed.
bool backend_next_address(Backend *b, const char *why, const char **detail);

// backend_read.cc: the read event's callback.
void backend_on_readable(evutil_socket_t fd, short what, void *arg);
