// The RESP front's own parts, shared by its connection code (resp_front.cc) and its commands
// (resp_commands.cc): a connection, the front, and the few calls between the two.
#pragma once

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "front_env.h"
#include "list.h"
#include "listener_set.h"
#include "lookup.h"
#include "reply_queue.h"
#include "resp_parser.h"

struct AclUser;
struct Transport;

struct RespFront;
struct Transaction;  // resp_transaction.cc

// Backpressure: stop reading a client's commands while this many of its answers are unsent,
// and resume when it has read them.
inline constexpr size_t MAX_PENDING_REPLIES = 1024;
inline constexpr size_t MAX_UNSENT_BYTES = 1024 * 1024;
inline constexpr size_t INPUT_START = 4096;
// What a lookup under way holds, for the client's memory bound: a GET's flight and waiter, and
// per key of an MGET its result, its waiter and its share of a flight (beside the key bytes).
inline constexpr size_t LOOKUP_STATE_BYTES = 256;
inline constexpr size_t KEY_STATE_BYTES = 192;

struct RespClient {
    RespFront *front;
    ListLink link;  // in the front's list of open clients
    int fd;
    uint64_t id;
    Transport *tls;  // a TLS address's client: its bytes go through it (transport.h); NULL: plain
    event *read_event, *write_event;
    event *deadline_event;  // request_timeout: a command begun must be complete by then
    bool deadline_armed;
    char *in;  // unparsed input; the parser works on it in place
    size_t in_len, in_cap;
    RespParser parser;
    ReplyQueue replies;  // replies.out: answers in order, ready to send
    bool reading;
    bool processing;  // in process_input: answers are written when it ends, not scheduled
    bool closing;  // after QUIT or a protocol error: close once everything is sent
    bool used;     // has sent a command
    bool guarded;  // its commands take the watched path: access log, authentication, key patterns
    const AclUser *user;  // the user it authenticated as ([users]); NULL: none yet
    event *auth_deadline;  // [users]: closes it if it has not logged in within request_timeout
    bool evicting;  // past a bound (client_memory.h): closed on the next turn of the loop
    EvictReason evict_reason;
    size_t memory;  // its share of the worker's client memory
    char *name;    // CLIENT SETNAME
    Transaction *transaction;  // after MULTI, until EXEC or DISCARD: the commands queued
    char peer[80];  // its address, for the access log: found at its first line
};

struct RespFront {
    const FrontEnv *env;
    ListenerSet listeners;
    bool protect;  // protected mode: clients not on loopback are refused (protected_mode.h)
    bool auth_required;  // [users] defined: a client authenticates before anything else
    const struct timeval *idle_timeout;  // a libevent common timeout: O(1) re-arming per read
    const struct timeval *request_timeout;  // likewise
    ListLink clients;  // the open ones (RespClient.link)
    ReplySlotPool slots;
    LookupKey *keys;  // scratch for MGET
    size_t keys_cap;
    bool draining;    // the worker is stopping: close each client once it has no command under way
    // ... or retiring (a reload): hand each client over instead, once it owes nothing.
    const int *handover_targets;  // the new generation's channels; NULL unless retiring
    int handover_count, handover_next;
    event *handover_retry;  // every target refused (full or gone): try again shortly
};

// Answers made while reading are written when the read handler ends; answers that arrive later
// (from Redis) are written once per turn of the loop, however many arrived in it.
inline void resp_schedule_write(RespClient *c)
{
    if (!c->processing)
        event_active(c->write_event, EV_WRITE, 1);
}

// Whether the client's commands take the watched path (RespClient.guarded), from what it is now.
void resp_update_guard(RespClient *c);

// Brings the client's share of the worker's client memory up to date (resp_front.cc).
void resp_account(RespClient *c);

// The slot's answer is complete: accounted, and written when its turn comes.
inline void resp_finish_slot(ReplySlot *slot)
{
    void *owner_of_slot;
    RespClient *c = (RespClient *)reply_slot_finish(slot, &owner_of_slot);
    RespClient *owner = (RespClient *)owner_of_slot;
    // An answer from Redis now waits to be written, or for its turn. (One made while its client's
    // input is processed, a hit, is accounted once for the whole batch when that ends.)
    if (owner != NULL && !owner->processing)
        resp_account(owner);
    if (c != NULL)
        resp_schedule_write(c);
}

inline RespClient *resp_client_of(ListLink *link) { return LIST_ELEMENT(link, RespClient, link); }

// Runs one complete command (resp_commands.cc): its answer, now or once Redis has answered, takes
// its place in the client's reply queue.
void resp_dispatch(RespClient *c, const char *cmd, const RespArg *args, int argc);

// --- the command table's entries (resp_commands.cc), and what transactions need of them ----

typedef void (*CommandFn)(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);

// What a command is, as Redis's command table says it (its flags).
enum CommandFlags {
    CMD_LOOKUP = 1,    // answered through lookup: from the cache, or fetched from Redis (GET, MGET)
    CMD_READONLY = 2,  // reads nothing that a write could change here, or reads through lookup
    CMD_WRITE = 4,     // changes data: refused with -READONLY, whatever its arguments
    CMD_MANY_KEYS = 8,       // with CMD_LOOKUP: every argument is a key (MGET); else one key (GET)
    CMD_TRANSACTION = 16,    // runs at once inside a transaction, never queued (MULTI, EXEC, ...)
    CMD_NO_TRANSACTION = 32, // refused inside a transaction (HELLO: it changes how EXEC answers)
    CMD_EXEC = 64,           // EXEC: answers through lookup, as GET and MGET do
    CMD_NO_AUTH = 128,       // runs before the client has authenticated (AUTH, HELLO, QUIT)
};

struct Command {
    const char *name;
    size_t name_len;
    int arity;  // exact argument count including the name, or -N for at least N
    CommandFn run;  // NULL for GET, MGET and EXEC, which answer through lookup
    unsigned flags;
};

// An answer made now: written into the returned buffer, then resp_answer_end. NULL when out of
// memory (the queue has failed, and the client is closed; still call resp_answer_end).
evbuffer *resp_answer_begin(RespClient *c, ReplySlot **queued);
void resp_answer_end(RespClient *c, ReplySlot *queued);

// Writes the error for a command that cannot run (unknown, a write, wrong arity) and returns
// true; false when it can. Inside a transaction, a refusal aborts it (EXEC answers EXECABORT).
bool resp_refuse(RespClient *c, const Command *command, bool arity_ok, const char *cmd, const RespArg *args, int argc,
                 evbuffer *out);

// A GET's answer and an MGET's, in the protocol given. False when out of memory.
bool resp_add_get_answer(evbuffer *out, const LookupResult *r, int protocol);
bool resp_add_mget_answer(evbuffer *out, const LookupResult *results, size_t n, int protocol);

// What a lookup of these keys holds while under way, for the client's memory bound.
inline size_t resp_lookup_cost(size_t keys, size_t key_bytes)
{
    return LOOKUP_STATE_BYTES + keys * KEY_STATE_BYTES + key_bytes;
}

// --- what the proxy reports of itself (resp_info.cc) ---------------------------------------

void resp_cmd_info(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);
void resp_cmd_dbsize(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);

// --- the access log's lines (resp_access.cc), only with [log] access --------------------------

struct AccessNote;  // what a command answered later needs for its line

// A command answered at once, into `out` from `before` on, read at `started_us`. Its first
// argument is shown only when it is a key (`has_key`): never an AUTH's password.
void resp_access_immediate(RespClient *c, const char *cmd, const RespArg *args, int argc, bool has_key,
                           evbuffer *out, size_t before, uint64_t started_us);
// A command about to be answered through lookup; `arg` is what its callback would have had.
// NULL when out of memory (then it is answered unlogged).
AccessNote *resp_access_note(RespClient *c, const char *cmd, const RespArg *args, int argc, void *arg);
void *resp_access_note_arg(const AccessNote *n);
// HIT, STALE or MISS for these results; NULL when the answer is an error.
const char *resp_access_cache(const LookupResult *results, size_t count);
// Its answer was written into `out` from `before` on (out NULL: its client has gone): the line
// is logged, and the note freed.
void resp_access_done(AccessNote *n, evbuffer *out, size_t before, const char *cache);

// --- transactions (resp_transaction.cc) ---------------------------------------------------------

// Inside MULTI: queues the command (+QUEUED), or refuses it and aborts the transaction.
void resp_transaction_queue(RespClient *c, const Command *command, bool arity_ok, const char *cmd,
                            const RespArg *args, int argc, evbuffer *out);
// EXEC: answers every queued command, in order. `note`: its access log line's, or NULL.
void resp_transaction_exec(RespClient *c, AccessNote *note);
void resp_cmd_multi(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);
void resp_cmd_discard(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);
void resp_cmd_watch(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);
void resp_cmd_unwatch(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);
void resp_transaction_abort(Transaction *t);  // EXEC will answer EXECABORT
void resp_transaction_free(Transaction *t);
size_t resp_transaction_bytes(const Transaction *t);  // what it holds, for the memory bound

// Answers a protocol error after every earlier answer, then closes (resp_front.cc).
void resp_answer_protocol_error(RespClient *c, const char *error);

