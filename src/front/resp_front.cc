#include "resp_front.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "address.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "handover.h"
#include "log.h"
#include "lookup.h"
#include "reply_queue.h"
#include "resp_parser.h"
#include "scoreboard.h"
#include "version.h"
#include "front_env.h"

// Backpressure: stop reading a client's commands while this many of its answers are unsent,
// and resume when it has read them.
static const size_t MAX_PENDING_REPLIES = 1024;
static const size_t MAX_UNSENT_BYTES = 1024 * 1024;
static const size_t INPUT_START = 4096;
// What a lookup under way holds, for the client's memory bound: a GET's flight and waiter, and
// per key of an MGET its result, its waiter and its share of a flight (beside the key bytes).
static const size_t LOOKUP_STATE_BYTES = 256;
static const size_t KEY_STATE_BYTES = 192;

struct RespClient {
    RespFront *front;
    RespClient *prev, *next;  // the front's open clients
    int fd;
    uint64_t id;
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
    bool evicting;  // past a bound (client_memory.h): closed on the next turn of the loop
    EvictReason evict_reason;
    size_t memory;  // its share of the worker's client memory
    char *name;    // CLIENT SETNAME
};

struct RespFront {
    const FrontEnv *env;
    ListenerSet listeners;
    const struct timeval *idle_timeout;  // a libevent common timeout: O(1) re-arming per read
    const struct timeval *request_timeout;  // likewise
    RespClient *clients;
    ReplySlotPool slots;
    LookupKey *keys;  // scratch for MGET
    size_t keys_cap;
    bool draining;    // the worker is stopping: close each client once it has no command under way
    // ... or retiring (a reload): hand each client over instead, once it owes nothing.
    const int *handover_targets;  // the new generation's channels; NULL unless retiring
    int handover_count, handover_next;
    event *handover_retry;  // every target refused (full or gone): try again shortly
    uint64_t next_id;
};

// Answers made while reading are written when the read handler ends; answers that arrive later
// (from Redis) are written once per turn of the loop, however many arrived in it.
static void schedule_write(RespClient *c)
{
    if (!c->processing)
        event_active(c->write_event, EV_WRITE, 1);
}

static void account(RespClient *c);

static void finish_slot(ReplySlot *slot)
{
    void *owner_of_slot;
    RespClient *c = (RespClient *)reply_slot_finish(slot, &owner_of_slot);
    RespClient *owner = (RespClient *)owner_of_slot;
    // An answer from Redis now waits to be written, or for its turn. (One made while its client's
    // input is processed, a hit, is accounted once for the whole batch when that ends.)
    if (owner != NULL && !owner->processing)
        account(owner);
    if (c != NULL)
        schedule_write(c);
}

// --- answering GET and MGET ---------------------------------------------------------------

static void add_failure(evbuffer *out, const LookupResult *r)
{
    switch (r->status) {
    case LOOKUP_UNAVAILABLE:
        resp_add_error(out, "BACKENDDOWN redis unavailable: no connection to the backing Redis");
        break;
    case LOOKUP_TIMEOUT:
        resp_add_error(out, "BACKENDTIMEOUT the backing Redis did not answer within command_timeout");
        break;
    case LOOKUP_BAD_REPLY:
        resp_add_error(out, "BACKENDERROR the backing Redis sent a reply of the wrong type");
        break;
    case LOOKUP_TOO_LARGE:
        resp_add_error(out, "ERR value too large: the backing Redis's reply is larger than max_reply_size");
        break;
    case LOOKUP_REDIS_ERROR:
        resp_add_error(out, "%.*s", (int)(r->value_len > 400 ? 400 : r->value_len), r->value);
        break;
    default:
        break;
    }
}

// A bulk reply. A small value goes out in one evbuffer_add, header and CRLF around it; a large
// cached one is referenced in place (lookup_add_value). False when out of memory.
static bool add_value(evbuffer *out, const LookupResult *r)
{
    char small[RESP_HEADER_MAX + 256 + 2];
    if (r->value_len <= 256) {
        size_t n = resp_format_header(small, '$', (long long)r->value_len);
        memcpy(small + n, r->value, r->value_len);
        memcpy(small + n + r->value_len, "\r\n", 2);
        return evbuffer_add(out, small, n + r->value_len + 2) == 0;
    }
    resp_add_bulk_header(out, r->value_len);
    return lookup_add_value(out, r, "\r\n", 2);
}

static void on_get_done(void *arg, const LookupResult *r)
{
    ReplySlot *slot = (ReplySlot *)arg;
    evbuffer *out = reply_slot_output(slot);
    if (out != NULL && r->status == LOOKUP_FOUND) {
        if (!add_value(out, r))
            reply_slot_fail(slot);
    } else if (out != NULL && r->status == LOOKUP_NOT_FOUND) {
        resp_add_null(out);
    } else if (out != NULL) {
        add_failure(out, r);
    }
    finish_slot(slot);
}

static void on_mget_done(void *arg, const LookupResult *results, size_t n)
{
    ReplySlot *slot = (ReplySlot *)arg;
    evbuffer *out = reply_slot_output(slot);
    if (out != NULL) {
        const LookupResult *failed = NULL;
        for (size_t i = 0; i < n && failed == NULL; i++)
            if (results[i].status != LOOKUP_FOUND && results[i].status != LOOKUP_NOT_FOUND)
                failed = &results[i];
        if (results == NULL) {
            resp_add_error(out, "ERR out of memory");
        } else if (failed != NULL) {
            add_failure(out, failed);  // one key could not be read: the whole MGET fails
        } else {
            resp_add_array_header(out, n);
            for (size_t i = 0; i < n; i++) {
                if (results[i].status != LOOKUP_FOUND)
                    resp_add_null(out);
                else if (!add_value(out, &results[i]))
                    reply_slot_fail(slot);
            }
        }
    }
    finish_slot(slot);
}

// --- commands -----------------------------------------------------------------------------

struct Command;
typedef void (*CommandFn)(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out);

struct Command {
    const char *name;
    size_t name_len;
    int arity;  // exact argument count including the name, or -N for at least N
    CommandFn run;  // NULL for GET and MGET, which answer through lookup
};
#define COMMAND(name, arity, run) {name, sizeof(name) - 1, arity, run}

static bool arg_is(const char *cmd, const RespArg *a, const char *word)
{
    return a->len == strlen(word) && strncasecmp(cmd + a->offset, word, a->len) == 0;
}

static void cmd_ping(RespClient *, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    if (argc > 2) {
        resp_add_error(out, "ERR wrong number of arguments for 'ping' command");
        return;
    }
    if (argc == 2)
        resp_add_bulk(out, cmd + args[1].offset, args[1].len);
    else
        resp_add_simple(out, "PONG");
}

static void cmd_echo(RespClient *, const char *cmd, const RespArg *args, int, evbuffer *out)
{
    resp_add_bulk(out, cmd + args[1].offset, args[1].len);
}

static void cmd_quit(RespClient *c, const char *, const RespArg *, int, evbuffer *out)
{
    resp_add_simple(out, "OK");
    c->closing = true;
}

static bool parse_integer(const char *s, size_t len, long long *out)
{
    char text[24];
    if (len == 0 || len >= sizeof(text))
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    char *end;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return errno == 0 && *end == '\0';
}

static void cmd_select(RespClient *c, const char *cmd, const RespArg *args, int, evbuffer *out)
{
    long long db;
    long long configured = c->front->env->config->redis_database;
    if (!parse_integer(cmd + args[1].offset, args[1].len, &db))
        resp_add_error(out, "ERR value is not an integer or out of range");
    else if (db != configured)
        resp_add_error(out, "ERR redis-proxy serves database %lld only", configured);
    else
        resp_add_simple(out, "OK");
}

static const size_t CLIENT_NAME_MAX = 256;  // a client's name is kept for its whole connection

// CLIENT SETNAME's rules, as Redis's: printable characters and no spaces; empty clears the name.
// Past CLIENT_NAME_MAX it is refused (Redis has no bound; a connection's memory here has one).
// False, with the error in out, when refused.
static bool set_client_name(RespClient *c, const char *name, size_t len, evbuffer *out)
{
    for (size_t i = 0; i < len; i++)
        if (name[i] < '!' || name[i] > '~') {
            resp_add_error(out, "ERR Client names cannot contain spaces, newlines or special characters.");
            return false;
        }
    if (len > CLIENT_NAME_MAX) {
        resp_add_error(out, "ERR Client names are limited to %zu bytes by redis-proxy", CLIENT_NAME_MAX);
        return false;
    }
    char *copy = len > 0 ? strndup(name, len) : NULL;
    if (len > 0 && copy == NULL) {
        resp_add_error(out, "ERR out of memory");
        return false;
    }
    free(c->name);
    c->name = copy;
    return true;
}

static void cmd_client(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    if (arg_is(cmd, &args[1], "SETNAME") && argc == 3) {
        if (set_client_name(c, cmd + args[2].offset, args[2].len, out))
            resp_add_simple(out, "OK");
    } else if (arg_is(cmd, &args[1], "GETNAME") && argc == 2) {
        if (c->name != NULL)
            resp_add_bulk(out, c->name, strlen(c->name));
        else
            resp_add_null(out);
    } else if (arg_is(cmd, &args[1], "SETINFO") && argc == 4) {
        // Redis 7.2's rules; the values themselves are not kept.
        const RespArg *attr = &args[2], *value = &args[3];
        bool known = arg_is(cmd, attr, "LIB-NAME") || arg_is(cmd, attr, "LIB-VER");
        bool printable = true;
        for (size_t i = 0; i < value->len; i++)
            printable = printable && cmd[value->offset + i] >= '!' && cmd[value->offset + i] <= '~';
        if (!known)
            resp_add_error(out, "ERR Unrecognized option '%.*s'", (int)(attr->len > 64 ? 64 : attr->len),
                           cmd + attr->offset);
        else if (!printable)
            resp_add_error(out, "ERR %.*s cannot contain spaces, newlines or special characters.", (int)attr->len,
                           cmd + attr->offset);
        else
            resp_add_simple(out, "OK");
    } else if (arg_is(cmd, &args[1], "ID") && argc == 2) {
        resp_add_integer(out, (long long)c->id);
    } else {
        resp_add_error(out, "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try CLIENT HELP.",
                       (int)(args[1].len > 64 ? 64 : args[1].len), cmd + args[1].offset);
    }
}

static void cmd_hello(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    if (argc >= 2) {
        long long version;
        if (!parse_integer(cmd + args[1].offset, args[1].len, &version) || version < 1) {
            resp_add_error(out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (version != 2) {
            // Clients then fall back to RESP2, which is all this proxy speaks.
            resp_add_error(out, "NOPROTO sorry, this protocol version is not supported");
            return;
        }
        for (int i = 2; i + 1 < argc; i++)
            if (arg_is(cmd, &args[i], "SETNAME") && !set_client_name(c, cmd + args[i + 1].offset, args[i + 1].len, out))
                return;
    }
    // RESP2 has no map type: the map goes out as a flat array of keys and values.
    resp_add_array_header(out, 14);
    resp_add_bulk(out, "server", 6);
    resp_add_bulk(out, "redis-proxy", 11);
    resp_add_bulk(out, "version", 7);
    resp_add_bulk(out, REDIS_PROXY_VERSION, strlen(REDIS_PROXY_VERSION));
    resp_add_bulk(out, "proto", 5);
    resp_add_integer(out, 2);
    resp_add_bulk(out, "id", 2);
    resp_add_integer(out, (long long)c->id);
    resp_add_bulk(out, "mode", 4);
    resp_add_bulk(out, "standalone", 10);
    resp_add_bulk(out, "role", 4);
    resp_add_bulk(out, "master", 6);
    resp_add_bulk(out, "modules", 7);
    resp_add_array_header(out, 0);
}

static void cmd_command(RespClient *, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    if (argc >= 2 && arg_is(cmd, &args[1], "COUNT"))
        resp_add_integer(out, 0);
    else
        resp_add_array_header(out, 0);
}

static void cmd_config(RespClient *, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    if (arg_is(cmd, &args[1], "GET")) {
        // What tools such as redis-benchmark ask about persistence; true of a proxy, which keeps
        // nothing on disk. Everything else: no such parameter.
        if (argc == 3 && arg_is(cmd, &args[2], "save")) {
            resp_add_array_header(out, 2);
            resp_add_bulk(out, "save", 4);
            resp_add_bulk(out, "", 0);
        } else if (argc == 3 && arg_is(cmd, &args[2], "appendonly")) {
            resp_add_array_header(out, 2);
            resp_add_bulk(out, "appendonly", 10);
            resp_add_bulk(out, "no", 2);
        } else {
            resp_add_array_header(out, 0);
        }
    }
    else
        resp_add_error(out, "ERR CONFIG %.*s is not supported by redis-proxy",
                       (int)(args[1].len > 32 ? 32 : args[1].len), cmd + args[1].offset);
}

// Whole-proxy numbers from the scoreboard, as /metrics shows them; the worker's own where there
// is no scoreboard.
static void cmd_info(RespClient *c, const char *, const RespArg *, int, evbuffer *out)
{
    const FrontEnv *env = c->front->env;
    ScoreboardTotals t;
    env->totals(env->arg, &t);
    const WorkerStats *s = &t.stats;
    uint64_t result[RESULT_COUNT] = {0};
    for (int f = 0; f < FRONT_COUNT; f++)
        for (int r = 0; r < RESULT_COUNT; r++)
            result[r] += s->requests[f][r];
    uint64_t lookups = 0;
    for (uint64_t n : result)
        lookups += n;
    char text[1600];
    // redis_version: what clients that feature-detect by version should assume of this subset.
    int n = snprintf(text, sizeof(text),
                     "# Server\r\nredis_version:7.0.0\r\nredis_proxy_version:%s\r\nredis_mode:standalone\r\n"
                     "redis_backend:%s\r\n"
                     "process_id:%d\r\nworker_id:%d\r\nworkers:%d\r\nuptime_in_seconds:%llu\r\n\r\n"
                     "# Clients\r\nconnected_clients:%llu\r\n\r\n"
                     "# Stats\r\n# (the whole proxy: every worker; each worker has a cache of its own)\r\n"
                     "cache_hits:%llu\r\ncache_misses:%llu\r\ncache_keys:%llu\r\ncache_bytes:%llu\r\n"
                     "cache_capacity:%lld\r\nevicted_keys:%llu\r\nexpired_keys:%llu\r\n"
                     "redis_unavailable:%llu\r\nredis_timeouts:%llu\r\nredis_errors:%llu\r\n"
                     "redis_connected_workers:%llu\r\ncoalesced:%llu\r\nstale_answers:%llu\r\n"
                     "tracking_workers:%llu\r\ninvalidations:%llu\r\ntracking_losses:%llu\r\n"
                     "cluster_moved:%llu\r\ncluster_asks:%llu\r\ncluster_retries:%llu\r\n",
                     REDIS_PROXY_VERSION, env->config->redis_cluster[0] ? "cluster" : "standalone", (int)getpid(), env->id, t.workers,
                     (unsigned long long)((monotonic_ms() - env->started_ms) / 1000),
                     (unsigned long long)(s->clients_open[FRONT_HTTP] + s->clients_open[FRONT_RESP]),
                     (unsigned long long)result[RESULT_HIT], (unsigned long long)(lookups - result[RESULT_HIT]),
                     (unsigned long long)s->cache_entries, (unsigned long long)s->cache_bytes,
                     (long long)env->config->capacity * t.workers, (unsigned long long)s->cache_evictions,
                     (unsigned long long)s->cache_expirations, (unsigned long long)result[RESULT_UNAVAILABLE],
                     (unsigned long long)result[RESULT_TIMEOUT], (unsigned long long)result[RESULT_ERROR],
                     (unsigned long long)s->redis_connected, (unsigned long long)s->coalesced,
                     (unsigned long long)s->stale_answers, (unsigned long long)s->tracking,
                     (unsigned long long)s->invalidations, (unsigned long long)s->tracking_losses,
                     (unsigned long long)s->cluster_moved, (unsigned long long)s->cluster_asks,
                     (unsigned long long)s->cluster_retries);
    resp_add_bulk(out, text, (size_t)n);
}

static void cmd_auth(RespClient *, const char *, const RespArg *, int, evbuffer *out)
{
    resp_add_error(out, "ERR AUTH <password> called without any password configured for the default user. "
                        "Are you sure your configuration is correct?");
}

static void cmd_read_only(RespClient *, const char *cmd, const RespArg *args, int, evbuffer *out)
{
    resp_add_error(out, "READONLY redis-proxy is a read-only cache: send '%.*s' to Redis directly",
                   (int)(args[0].len > 32 ? 32 : args[0].len), cmd + args[0].offset);
}

enum { COMMAND_GET, COMMAND_MGET };
static const Command commands[] = {
    COMMAND("GET", 2, NULL),    // COMMAND_GET
    COMMAND("MGET", -2, NULL),  // COMMAND_MGET
    COMMAND("PING", -1, cmd_ping),
    COMMAND("ECHO", 2, cmd_echo),
    COMMAND("QUIT", -1, cmd_quit),
    COMMAND("SELECT", 2, cmd_select),
    COMMAND("CLIENT", -2, cmd_client),
    COMMAND("HELLO", -1, cmd_hello),
    COMMAND("COMMAND", -1, cmd_command),
    COMMAND("CONFIG", -2, cmd_config),
    COMMAND("INFO", -1, cmd_info),
    COMMAND("AUTH", -2, cmd_auth),
};

// Commands that change data: refused with READONLY, so clients see why rather than "unknown".
static const char *const write_commands[] = {
    "SET", "SETNX", "SETEX", "PSETEX", "MSET", "MSETNX", "GETSET", "GETDEL", "GETEX", "APPEND",
    "SETRANGE", "INCR", "DECR", "INCRBY", "DECRBY", "INCRBYFLOAT", "DEL", "UNLINK", "EXPIRE",
    "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST", "RENAME", "RENAMENX", "COPY", "MOVE", "RESTORE",
    "HSET", "HSETNX", "HMSET", "HDEL", "HINCRBY", "HINCRBYFLOAT", "LPUSH", "RPUSH", "LPUSHX",
    "RPUSHX", "LPOP", "RPOP", "LSET", "LREM", "LTRIM", "LINSERT", "LMOVE", "RPOPLPUSH", "SADD",
    "SREM", "SPOP", "SMOVE", "ZADD", "ZREM", "ZINCRBY", "ZPOPMIN", "ZPOPMAX", "XADD", "XDEL",
    "XTRIM", "PFADD", "PFMERGE", "SETBIT", "BITOP", "GEOADD", "FLUSHDB", "FLUSHALL", "SWAPDB",
    "EVAL", "EVALSHA", "FCALL", "MULTI", "EXEC", "PUBLISH",
};

static void unknown_command(const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    // Redis's own wording, so that client libraries and people recognise it.
    char text[400];
    int n = snprintf(text, sizeof(text), "ERR unknown command '%.*s', with args beginning with: ",
                     (int)(args[0].len > 128 ? 128 : args[0].len), cmd + args[0].offset);
    for (int i = 1; i < argc && n < 300; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "'%.*s' ",
                      (int)(args[i].len > 64 ? 64 : args[i].len), cmd + args[i].offset);
    resp_add_error(out, "%s", text);
}

static void dispatch(RespClient *c, const char *cmd, const RespArg *args, int argc)
{
    const FrontEnv *env = c->front->env;
    const Command *command = NULL;
    for (const Command &candidate : commands)
        if (args[0].len == candidate.name_len &&
            strncasecmp(cmd + args[0].offset, candidate.name, candidate.name_len) == 0) {
            command = &candidate;
            break;
        }
    bool arity_ok = command != NULL &&
                    (command->arity > 0 ? argc == command->arity : argc >= -command->arity);
    if (command != NULL && command->run == NULL && arity_ok) {
        // (its keys' bytes: up to the end of the last argument)
        size_t cost = LOOKUP_STATE_BYTES + (size_t)(argc - 1) * KEY_STATE_BYTES + args[argc - 1].offset +
                      args[argc - 1].len;
        ReplySlot *r = reply_queue_push(&c->replies, &c->front->slots, cost);
        if (r == NULL)
            return;  // out of memory: the queue has failed, and the client is closed
        if (command == &commands[COMMAND_GET]) {
            lookup_get(env->lookup, FRONT_RESP, cmd + args[1].offset, args[1].len, on_get_done, r);
            return;
        }
        RespFront *f = c->front;
        size_t n = (size_t)argc - 1;
        if (n > f->keys_cap) {
            LookupKey *keys = (LookupKey *)realloc(f->keys, n * sizeof(LookupKey));
            if (keys == NULL) {
                on_mget_done(r, NULL, 0);
                return;
            }
            f->keys = keys;
            f->keys_cap = n;
        }
        for (size_t i = 0; i < n; i++)
            f->keys[i] = {cmd + args[i + 1].offset, args[i + 1].len};
        lookup_get_many(env->lookup, FRONT_RESP, f->keys, n, on_mget_done, r);
        return;
    }
    ReplySlot *queued;
    evbuffer *out = reply_queue_immediate(&c->replies, &c->front->slots, &queued);
    if (out == NULL)
        return;  // out of memory: the queue has failed, and the client is closed
    if (command == NULL) {
        bool is_write = false;
        for (const char *name : write_commands)
            if (arg_is(cmd, &args[0], name))
                is_write = true;
        if (is_write)
            cmd_read_only(c, cmd, args, argc, out);
        else
            unknown_command(cmd, args, argc, out);
        env->stats->bad_requests[FRONT_RESP]++;
    } else if (!arity_ok) {
        char name[32];
        size_t len = strlen(command->name);
        for (size_t i = 0; i <= len; i++)
            name[i] = (char)(command->name[i] | (command->name[i] ? 0x20 : 0));  // lower case
        resp_add_error(out, "ERR wrong number of arguments for '%s' command", name);
        env->stats->bad_requests[FRONT_RESP]++;
    } else {
        command->run(c, cmd, args, argc, out);
    }
    if (queued != NULL)
        finish_slot(queued);
    else
        schedule_write(c);
}

// --- connections --------------------------------------------------------------------------

static void client_close(RespClient *c)
{
    client_memory_set(c->front->env->client_memory, &c->memory, 0);
    // Answers still on their way from Redis are dropped when they arrive.
    reply_queue_abandon(&c->replies);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->front->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    event_free(c->read_event);
    event_free(c->write_event);
    event_free(c->deadline_event);
    close(c->fd);
    evbuffer_free(c->replies.out);
    resp_parser_free(&c->parser);
    free(c->in);
    free(c->name);
    c->front->env->client_closed(c->front->env->arg, FRONT_RESP);
    free(c);
}

// Answers a protocol error after every earlier answer, then closes, as Redis does: the stream
// cannot be trusted past this point.
static void answer_protocol_error(RespClient *c, const char *error)
{
    ReplySlot *queued;
    evbuffer *out = reply_queue_immediate(&c->replies, &c->front->slots, &queued);
    if (out != NULL)
        resp_add_error(out, "ERR %s", error);
    if (queued != NULL)
        finish_slot(queued);
    c->front->env->stats->bad_requests[FRONT_RESP]++;
    c->closing = true;
    schedule_write(c);
}

// --- bounds: what one client may hold (client_memory.h) ----------------------------------

static const char *const evict_reasons[EVICT_REASONS] = {
    "sent a command larger than max_request_size",
    "held answers unread and lookups under way past max_client_output",
    "held the most while the worker's clients passed max_client_memory",
};

// Counted always; logged with the client's address (client_memory_log_quietly).
static void log_eviction(RespClient *c, EvictReason reason)
{
    RespFront *f = c->front;
    f->env->stats->clients_evicted[reason]++;
    bool quiet = client_memory_log_quietly(f->env->client_memory, monotonic_ms());
    char address[128] = "?";
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0)
        address_format((struct sockaddr *)&ss, address, sizeof(address));
    log_msg(quiet ? LOG_DEBUG : LOG_WARN, "worker %d: closing RESP client %s (id %llu, holding %zu bytes): it %s",
            f->env->id, address, (unsigned long long)c->id, c->memory, evict_reasons[reason]);
}

static void evict(RespClient *c, EvictReason reason)
{
    log_eviction(c, reason);
    client_close(c);
}

// Past a bound while the client is being served (maybe deep inside its own commands): it reads
// nothing more, and is closed from its write event, on the next turn of the loop.
static void evict_later(RespClient *c, EvictReason reason)
{
    if (c->evicting)
        return;
    c->evicting = true;
    c->evict_reason = reason;
    if (c->reading) {
        c->reading = false;
        event_del(c->read_event);
    }
    event_active(c->write_event, EV_WRITE, 1);  // even while processing: on_writable evicts first
}

// Brings the client's share of the worker's client memory up to date: its input buffer, its
// answers not yet written, and what its slots hold (lookups under way, answers waiting for their
// turn). Past max_client_output, the client is closed. `unsent`: the length of replies.out.
static void account_with(RespClient *c, size_t unsent)
{
    const Config *config = c->front->env->config;
    size_t output = unsent + c->replies.held;
    client_memory_set(c->front->env->client_memory, &c->memory, c->in_cap + output);
    if (output > (size_t)config->max_client_output)
        evict_later(c, EVICT_OUTPUT);
}

// Out of line: finish_slot, on every answer, stays small enough to be inlined.
__attribute__((noinline)) static void account(RespClient *c)
{
    account_with(c, evbuffer_get_length(c->replies.out));
}

size_t resp_front_most_memory(RespFront *f, void **client)
{
    RespClient *most = NULL;
    for (RespClient *c = f->clients; c != NULL; c = c->next)
        if (c->memory > 0 && (most == NULL || c->memory > most->memory))
            most = c;
    *client = most;
    return most != NULL ? most->memory : 0;
}

void resp_front_evict(RespFront *f, void *client, EvictReason reason) { evict((RespClient *)client, reason); }


// Past max_client_memory, no client's command runs until the worker has evicted enough
// (resp_front_resume): one turn of the loop cannot take the worker far past its bound.
static bool may_read(const RespClient *c)
{
    return !c->closing && !c->evicting && !c->front->env->client_memory->over && !c->replies.failed &&
           c->replies.pending < MAX_PENDING_REPLIES &&
           evbuffer_get_length(c->replies.out) < MAX_UNSENT_BYTES;
}

static void update_reading(RespClient *c)
{
    bool want = may_read(c);
    if (want == c->reading)
        return;
    c->reading = want;
    if (want)
        event_add(c->read_event, c->front->idle_timeout);
    else
        event_del(c->read_event);
}
// Activates the write event of each client that was held back: on_writable runs its commands
// (if it has any waiting) and turns reading back on, each in its own callback.
void resp_front_resume(RespFront *f)
{
    for (RespClient *c = f->clients; c != NULL; c = c->next)
        if (!c->reading && may_read(c))
            event_active(c->write_event, EV_WRITE, 1);
}


// Runs every complete command in the input (all of them in one go: their answers leave in one
// write), unless backpressure says to wait.
static void process_input(RespClient *c)
{
    c->processing = true;
    size_t at = 0;
    bool partial = false;  // the input ends inside a command
    while (may_read(c) && at < c->in_len) {
        RespParseStatus status = resp_parse(&c->parser, c->in + at, c->in_len - at);
        if (status == RESP_INCOMPLETE) {
            partial = true;
            break;
        }
        if (status == RESP_ERROR) {
            answer_protocol_error(c, c->parser.error);
            at = c->in_len;
            break;
        }
        if (status == RESP_COMMAND) {
            c->used = true;
            dispatch(c, c->in + at, c->parser.args, c->parser.argc);
        }
        at += c->parser.consumed;
    }
    if (at > 0) {
        memmove(c->in, c->in + at, c->in_len - at);
        c->in_len -= at;
    }
    // The deadline runs from a command's first byte to its last (client_timeout only sees
    // silence, and a client trickling a byte a second is never silent). Restarted when a command
    // completes and the next one has begun; off while no command is under way, or while the
    // proxy itself holds the input back (backpressure: not the client's doing).
    if (!partial) {
        if (c->deadline_armed)  // (event_del costs more than this test, on every read)
            event_del(c->deadline_event);
        c->deadline_armed = false;
        if (c->front->draining && c->front->handover_targets == NULL)
            c->closing = true;  // no command under way: close once every answer is sent
    } else if (at > 0 || !c->deadline_armed) {
        event_add(c->deadline_event, c->front->request_timeout);
        c->deadline_armed = true;
    }
    if (c->in_len == 0 && c->in_cap > 64 * 1024) {  // let a one-off huge command's memory go
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    c->processing = false;
    account(c);
    update_reading(c);
}

static void on_writable(evutil_socket_t fd, short, void *arg);
static bool owes_nothing(const RespClient *c);
static bool hand_over(RespClient *c);

static void on_deadline(evutil_socket_t, short, void *arg)
{
    RespClient *c = (RespClient *)arg;
    log_debug("worker %d: RESP client %llu sent no complete command within request_timeout, closing",
              c->front->env->id, (unsigned long long)c->id);
    client_close(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    RespClient *c = (RespClient *)arg;
    if (what & EV_TIMEOUT) {
        log_debug("worker %d: RESP client %llu idle for client_timeout, closing", c->front->env->id,
                  (unsigned long long)c->id);
        client_close(c);
        return;
    }
    if (c->in_cap - c->in_len < 1024) {
        // What is left in the input is one command not yet complete (complete ones have run, or
        // wait with reading off). The buffer never grows past max_request_size: full, that
        // command cannot be complete within the bound.
        size_t limit = (size_t)c->front->env->config->max_request_size;
        if (c->in_len >= limit) {
            log_eviction(c, EVICT_REQUEST);
            answer_protocol_error(c, "Protocol error: request larger than max_request_size");
            update_reading(c);
            return;
        }
        size_t cap = c->in_cap ? c->in_cap * 2 : INPUT_START;
        if (cap > limit)
            cap = limit;
        char *in = (char *)realloc(c->in, cap);
        if (in == NULL) {
            client_close(c);
            return;
        }
        c->in = in;
        c->in_cap = cap;
    }
    ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            client_close(c);
        return;
    }
    if (n == 0) {
        // The client has finished sending (it may have only shut down its writing half, as
        // `printf 'GET k\r\n' | nc` does): answer what it asked, then close.
        c->closing = true;
        update_reading(c);
        if (c->replies.head == NULL && evbuffer_get_length(c->replies.out) == 0)
            client_close(c);
        else
            schedule_write(c);
        return;
    }
    c->in_len += (size_t)n;
    process_input(c);
    on_writable(fd, EV_WRITE, c);  // the answers made now, in one write; may close c
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    RespClient *c = (RespClient *)arg;
    evbuffer *out = c->replies.out;
    if (c->evicting) {
        evict(c, c->evict_reason);
        return;
    }
    if (what & EV_TIMEOUT) {
        // Its answers have waited client_timeout for room in the socket: a client that does not
        // read holds its slot and its output like one that does not send (nginx's send_timeout).
        log_debug("worker %d: RESP client %llu read none of its answers within client_timeout, closing",
                  c->front->env->id, (unsigned long long)c->id);
        c->front->env->stats->clients_timed_out[FRONT_RESP]++;
        client_close(c);
        return;
    }
    if (c->replies.failed) {
        // An answer could not be stored: every later one would pair with the wrong command.
        log_warn("worker %d: out of memory for an answer to RESP client %llu; closing it",
                 c->front->env->id, (unsigned long long)c->id);
        client_close(c);
        return;
    }
    if (evbuffer_get_length(out) > 0) {
        int n = evbuffer_write(out, fd);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            client_close(c);
            return;
        }
    }
    size_t unsent = evbuffer_get_length(out);
    account_with(c, unsent);
    if (unsent > 0) {
        // The socket is full: wait until it drains, client_timeout at most between two writes.
        event_add(c->write_event, c->front->idle_timeout);
        return;
    }
    if (c->closing && c->replies.head == NULL) {
        client_close(c);
        return;
    }
    // Answers went out: commands held back by backpressure may run now; theirs go out next turn.
    if (c->in_len > 0 && may_read(c) && !c->reading) {
        process_input(c);
        if (evbuffer_get_length(out) > 0 || c->replies.failed)
            event_active(c->write_event, EV_WRITE, 1);
        return;
    }
    if (c->front->handover_targets != NULL && owes_nothing(c) && hand_over(c))
        return;  // a retiring worker's client, at a boundary: served by a new worker from here
    update_reading(c);
}

// A client on a connected socket: accepted here, or handed over by a retiring worker. NULL (the
// socket closed) when out of memory.
static RespClient *client_open(RespFront *f, int fd)
{
    RespClient *c = (RespClient *)calloc(1, sizeof(RespClient));
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->front = f;
    c->fd = fd;
    c->id = ++f->next_id;
    c->replies.out = evbuffer_new();
    c->replies.owner = c;
    c->read_event = event_new(f->env->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->write_event = event_new(f->env->base, fd, EV_WRITE, on_writable, c);
    c->deadline_event = evtimer_new(f->env->base, on_deadline, c);
    if (c->replies.out == NULL || c->read_event == NULL || c->write_event == NULL || c->deadline_event == NULL) {
        if (c->replies.out)
            evbuffer_free(c->replies.out);
        if (c->read_event)
            event_free(c->read_event);
        if (c->write_event)
            event_free(c->write_event);
        if (c->deadline_event)
            event_free(c->deadline_event);
        close(fd);
        free(c);
        return NULL;
    }
    const Config *config = f->env->config;
    resp_parser_init(&c->parser, (int)config->resp_max_args, (size_t)config->max_key_size);
    c->next = f->clients;
    if (f->clients != NULL)
        f->clients->prev = c;
    f->clients = c;
    f->env->client_opened(f->env->arg, FRONT_RESP);
    c->reading = false;
    update_reading(c);
    return c;
}

static void on_accept(evconnlistener *, evutil_socket_t fd, struct sockaddr *, int, void *arg)
{
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));  // answers are small: send now
    client_open((RespFront *)arg, fd);
}

void resp_front_adopt(RespFront *f, int fd, const HandoverClient *state)
{
    RespClient *c = client_open(f, fd);
    if (c == NULL)
        return;
    c->used = state->used != 0;
    if (state->name_len > 0 && state->name_len <= sizeof(state->name))
        c->name = strndup(state->name, state->name_len);
    f->env->stats->connections_handed_over++;
    log_debug("worker %d: RESP client %llu handed over from the previous generation", f->env->id,
              (unsigned long long)c->id);
}

// A retiring worker's client that owes nothing (no command under way, no answer unsent, no unread
// input of ours) goes to the next new worker; its socket, closed here, lives on there. Whatever
// the client sends meanwhile waits in the kernel for the new worker. False if no target took it.
static bool hand_over(RespClient *c)
{
    RespFront *f = c->front;
    HandoverClient state;
    memset(&state, 0, sizeof(state));
    state.used = c->used;
    if (c->name != NULL) {
        state.name_len = (uint32_t)strlen(c->name);
        memcpy(state.name, c->name, state.name_len);
    }
    for (int tries = 0; tries < f->handover_count; tries++) {
        int target = f->handover_targets[f->handover_next++ % f->handover_count];
        if (handover_send(target, HANDOVER_CLIENT, &c->fd, 1, &state, sizeof(state))) {
            client_close(c);
            return true;
        }
    }
    // Every new worker's queue full, or gone: shortly again (the deadline bounds the tries).
    if (!evtimer_pending(f->handover_retry, NULL)) {
        struct timeval tv = {0, 20 * 1000};
        evtimer_add(f->handover_retry, &tv);
    }
    return false;
}

static bool owes_nothing(const RespClient *c)
{
    return !c->closing && !c->replies.failed && c->in_len == 0 && c->replies.head == NULL &&
           evbuffer_get_length(c->replies.out) == 0;
}

static void hand_over_idle(RespFront *f)
{
    RespClient *next;
    for (RespClient *c = f->clients; c != NULL; c = next) {
        next = c->next;
        if (owes_nothing(c) && !hand_over(c))
            return;  // every target refused: the retry timer goes on from here
    }
}

static void on_handover_retry(evutil_socket_t, short, void *arg) { hand_over_idle((RespFront *)arg); }

void resp_front_hand_over(RespFront *f, const int *targets, int n)
{
    f->draining = true;
    f->handover_targets = targets;
    f->handover_count = n;
    hand_over_idle(f);
}

static void on_accept_error(evconnlistener *, void *arg)
{
    ((RespFront *)arg)->env->pause_accepting(((RespFront *)arg)->env->arg, "RESP", EVUTIL_SOCKET_ERROR());
}

RespFront *resp_front_create(const FrontEnv *env, const ListenFds *listen_fds)
{
    RespFront *f = (RespFront *)calloc(1, sizeof(RespFront));
    if (f == NULL)
        return NULL;
    f->env = env;
    struct timeval idle = timeval_of_ms((uint64_t)env->config->client_timeout_ms);
    f->idle_timeout = event_base_init_common_timeout(env->base, &idle);
    struct timeval deadline = timeval_of_ms((uint64_t)env->config->request_timeout_ms);
    f->request_timeout = event_base_init_common_timeout(env->base, &deadline);
    f->handover_retry = evtimer_new(env->base, on_handover_retry, f);
    if (f->idle_timeout == NULL || f->request_timeout == NULL || f->handover_retry == NULL ||
        !listener_set_open(&f->listeners, env->base, listen_fds, on_accept, f, on_accept_error, NULL)) {
        resp_front_destroy(f);
        return NULL;
    }
    return f;
}

void resp_front_destroy(RespFront *f)
{
    if (f == NULL)
        return;
    while (f->clients != NULL)
        client_close(f->clients);
    listener_set_free(&f->listeners);
    if (f->handover_retry != NULL)
        event_free(f->handover_retry);
    reply_pool_free(&f->slots);
    free(f->keys);
    free(f);
}

void resp_front_drain(RespFront *f)
{
    f->draining = true;
    RespClient *next;
    for (RespClient *c = f->clients; c != NULL; c = next) {
        next = c->next;
        // A command under way, or a client that has not sent its first one yet (it connected
        // for it): process_input closes it once that is complete.
        if (c->in_len > 0 || !c->used)
            continue;
        c->closing = true;
        if (c->replies.head == NULL && evbuffer_get_length(c->replies.out) == 0)
            client_close(c);
        else
            schedule_write(c);  // closes after the answers still on their way
    }
}

void resp_front_set_accepting(RespFront *f, bool accepting)
{
    listener_set_enable(&f->listeners, accepting);
}
