#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "acl.h"
#include "address.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "resp_args.h"
#include "resp_client.h"
#include "scoreboard.h"
#include "version.h"

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

bool resp_add_get_answer(evbuffer *out, const LookupResult *r, int protocol)
{
    if (r->status == LOOKUP_FOUND)
        return add_value(out, r);
    if (r->status == LOOKUP_NOT_FOUND)
        resp_add_nil(out, protocol);
    else
        add_failure(out, r);
    return true;
}

bool resp_add_mget_answer(evbuffer *out, const LookupResult *results, size_t n, int protocol)
{
    const LookupResult *failed = NULL;
    for (size_t i = 0; i < n && failed == NULL; i++)
        if (results[i].status != LOOKUP_FOUND && results[i].status != LOOKUP_NOT_FOUND)
            failed = &results[i];
    if (failed != NULL) {
        add_failure(out, failed);  // one key could not be read: the whole MGET fails
        return true;
    }
    resp_add_array_header(out, n);
    for (size_t i = 0; i < n; i++) {
        if (results[i].status != LOOKUP_FOUND)
            resp_add_nil(out, protocol);
        else if (!add_value(out, &results[i]))
            return false;
    }
    return true;
}

static void on_get_done(void *arg, const LookupResult *r)
{
    ReplySlot *slot = (ReplySlot *)arg;
    evbuffer *out = reply_slot_output(slot);
    if (out != NULL && !resp_add_get_answer(out, r, reply_slot_protocol(slot)))
        reply_slot_fail(slot);
    resp_finish_slot(slot);
}

static void on_mget_done(void *arg, const LookupResult *results, size_t n)
{
    ReplySlot *slot = (ReplySlot *)arg;
    evbuffer *out = reply_slot_output(slot);
    if (out != NULL && results == NULL)
        resp_add_error(out, "ERR out of memory");
    else if (out != NULL && !resp_add_mget_answer(out, results, n, reply_slot_protocol(slot)))
        reply_slot_fail(slot);
    resp_finish_slot(slot);
}

// With an access log, the same callbacks, each with its note (resp_access.cc).
static void on_get_logged(void *arg, const LookupResult *r)
{
    AccessNote *note = (AccessNote *)arg;
    ReplySlot *slot = (ReplySlot *)resp_access_note_arg(note);
    evbuffer *out = reply_slot_output(slot);
    size_t before = out != NULL ? evbuffer_get_length(out) : 0;
    if (out != NULL && !resp_add_get_answer(out, r, reply_slot_protocol(slot)))
        reply_slot_fail(slot);
    resp_access_done(note, out, before, resp_access_cache(r, 1));
    resp_finish_slot(slot);
}

static void on_mget_logged(void *arg, const LookupResult *results, size_t n)
{
    AccessNote *note = (AccessNote *)arg;
    ReplySlot *slot = (ReplySlot *)resp_access_note_arg(note);
    evbuffer *out = reply_slot_output(slot);
    size_t before = out != NULL ? evbuffer_get_length(out) : 0;
    if (out != NULL && results == NULL)
        resp_add_error(out, "ERR out of memory");
    else if (out != NULL && !resp_add_mget_answer(out, results, n, reply_slot_protocol(slot)))
        reply_slot_fail(slot);
    resp_access_done(note, out, before, results != NULL ? resp_access_cache(results, n) : NULL);
    resp_finish_slot(slot);
}

// --- commands -----------------------------------------------------------------------------

#define COMMAND(name, arity, run, flags) {name, sizeof(name) - 1, arity, run, flags}
// A command that changes data: refused with -READONLY, so clients see why rather than "unknown".
#define WRITE(name) COMMAND(name, -1, cmd_read_only, CMD_WRITE)


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


static void cmd_select(RespClient *c, const char *cmd, const RespArg *args, int, evbuffer *out)
{
    long long db;
    long long configured = c->front->env->config->redis_database;
    if (!resp_parse_integer(cmd + args[1].offset, args[1].len, &db))
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
    if (resp_arg_is(cmd, &args[1], "SETNAME") && argc == 3) {
        if (set_client_name(c, cmd + args[2].offset, args[2].len, out))
            resp_add_simple(out, "OK");
    } else if (resp_arg_is(cmd, &args[1], "GETNAME") && argc == 2) {
        if (c->name != NULL)
            resp_add_bulk(out, c->name, strlen(c->name));
        else
            resp_add_nil(out, c->replies.protocol);
    } else if (resp_arg_is(cmd, &args[1], "SETINFO") && argc == 4) {
        // Redis 7.2's rules; the values themselves are not kept.
        const RespArg *attr = &args[2], *value = &args[3];
        bool known = resp_arg_is(cmd, attr, "LIB-NAME") || resp_arg_is(cmd, attr, "LIB-VER");
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
    } else if (resp_arg_is(cmd, &args[1], "ID") && argc == 2) {
        resp_add_integer(out, (long long)c->id);
    } else {
        resp_add_error(out, "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try CLIENT HELP.",
                       (int)(args[1].len > 64 ? 64 : args[1].len), cmd + args[1].offset);
    }
}

// A map of n pairs: RESP3's map type, or RESP2's flat array of keys and values.
static void add_map_header(RespClient *c, evbuffer *out, size_t n)
{
    if (c->replies.protocol == 3)
        resp_add_map_header(out, n);
    else
        resp_add_array_header(out, 2 * n);
}

// A refused login, counted, and said at most once a second for the proxy, with the client's
// address. The user is named only when there is one by that name: what a client sends as a name
// may be a password typed in the wrong place, and none is ever logged.
static void note_auth_failure(RespClient *c, const char *name, size_t len)
{
    c->front->env->stats->auth_failures[FRONT_RESP]++;
    char address[128];
    address_of_peer(c->fd, address, sizeof(address));
    bool known = acl_user_find(&c->front->env->config->users, name, len) != NULL;
    log_msg_once_per_kind(LOG_WARN, "authentication failure",
                          "authentication failed for RESP client %s, %s%.*s%s (at most one such line a second)",
                          address, known ? "user '" : "an unknown user", known ? (int)len : 0, name,
                          known ? "'" : "");
}

// AUTH's and HELLO ... AUTH's check of a name (NULL: the default user) and a password. With no
// [users], the proxy is a Redis whose default user takes any password: `AUTH default <anything>`
// succeeds, as it does there, another user does not. False, with the error in out, when refused.
static bool authenticate(RespClient *c, const char *cmd, const RespArg *user, const RespArg *password, evbuffer *out)
{
    const char *name = user != NULL ? cmd + user->offset : "default";
    size_t len = user != NULL ? user->len : 7;
    if (!c->front->auth_required) {
        if (len == 7 && memcmp(name, "default", 7) == 0)
            return true;
        resp_add_error(out, "WRONGPASS invalid username-password pair or user is disabled.");
        return false;
    }
    const AclUser *u = acl_authenticate(&c->front->env->config->users, name, len, cmd + password->offset,
                                        password->len);
    if (u == NULL) {
        note_auth_failure(c, name, len);
        resp_add_error(out, "WRONGPASS invalid username-password pair or user is disabled.");
        return false;
    }
    c->user = u;
    resp_update_guard(c);
    return true;
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]: RESP2 or RESP3 from here on.
// Every option is checked before any takes effect, as Redis does.
static void cmd_hello(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    HelloRequest hello;
    char error[160];
    if (!resp_hello_parse(cmd, args, argc, &hello, error, sizeof(error))) {
        resp_add_error(out, "%s", error);
        return;
    }
    if (hello.user != NULL && !authenticate(c, cmd, hello.user, hello.password, out))
        return;
    if (c->front->auth_required && c->user == NULL) {  // (before SETNAME: nothing of it takes effect)
        resp_add_error(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
                            "HELLO AUTH <user> <pass> option can be used to authenticate the client and select the "
                            "RESP protocol version at the same time");
        return;
    }
    if (hello.name != NULL && !set_client_name(c, cmd + hello.name->offset, hello.name->len, out))
        return;
    int protocol = hello.protocol != 0 ? hello.protocol : c->replies.protocol;
    c->replies.protocol = protocol;
    add_map_header(c, out, 7);
    resp_add_bulk(out, "server", 6);
    resp_add_bulk(out, "redis-proxy", 11);
    resp_add_bulk(out, "version", 7);
    resp_add_bulk(out, REDIS_PROXY_VERSION, strlen(REDIS_PROXY_VERSION));
    resp_add_bulk(out, "proto", 5);
    resp_add_integer(out, protocol);
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
    if (argc >= 2 && resp_arg_is(cmd, &args[1], "COUNT"))
        resp_add_integer(out, 0);
    else
        resp_add_array_header(out, 0);
}

static void cmd_config(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    if (resp_arg_is(cmd, &args[1], "GET")) {
        // What tools such as redis-benchmark ask about persistence; true of a proxy, which keeps
        // nothing on disk. Everything else: no such parameter.
        if (argc == 3 && resp_arg_is(cmd, &args[2], "save")) {
            add_map_header(c, out, 1);
            resp_add_bulk(out, "save", 4);
            resp_add_bulk(out, "", 0);
        } else if (argc == 3 && resp_arg_is(cmd, &args[2], "appendonly")) {
            add_map_header(c, out, 1);
            resp_add_bulk(out, "appendonly", 10);
            resp_add_bulk(out, "no", 2);
        } else {
            add_map_header(c, out, 0);
        }
    }
    else
        resp_add_error(out, "ERR CONFIG %.*s is not supported by redis-proxy",
                       (int)(args[1].len > 32 ? 32 : args[1].len), cmd + args[1].offset);
}

// As Redis: AUTH <password> is an error while the default user has no password.
static bool default_takes_any_password(const RespClient *c)
{
    const AclUser *d = acl_user_find(&c->front->env->config->users, "default", 7);
    return d != NULL && d->enabled && d->nopass;
}

static void cmd_auth(RespClient *c, const char *cmd, const RespArg *args, int argc, evbuffer *out)
{
    AuthRequest auth;
    char error[64];
    if (!resp_auth_parse(args, argc, &auth, error, sizeof(error)))
        resp_add_error(out, "%s", error);
    else if (auth.user == NULL && (!c->front->auth_required || default_takes_any_password(c)))
        resp_add_error(out, "ERR AUTH <password> called without any password configured for the default user. "
                            "Are you sure your configuration is correct?");
    else if (authenticate(c, cmd, auth.user, auth.password, out))
        resp_add_simple(out, "OK");
}

static void cmd_read_only(RespClient *, const char *cmd, const RespArg *args, int, evbuffer *out)
{
    resp_add_error(out, "READONLY redis-proxy is a read-only cache: send '%.*s' to Redis directly",
                   (int)(args[0].len > 32 ? 32 : args[0].len), cmd + args[0].offset);
}

static const Command commands[] = {
    COMMAND("GET", 2, NULL, CMD_LOOKUP | CMD_READONLY),
    COMMAND("MGET", -2, NULL, CMD_LOOKUP | CMD_MANY_KEYS | CMD_READONLY),
    COMMAND("PING", -1, cmd_ping, CMD_READONLY),
    COMMAND("ECHO", 2, cmd_echo, CMD_READONLY),
    COMMAND("QUIT", -1, cmd_quit, CMD_TRANSACTION | CMD_NO_AUTH),
    COMMAND("SELECT", 2, cmd_select, 0),
    COMMAND("CLIENT", -2, cmd_client, 0),
    COMMAND("HELLO", -1, cmd_hello, CMD_NO_TRANSACTION | CMD_NO_AUTH),
    COMMAND("COMMAND", -1, cmd_command, CMD_READONLY),
    COMMAND("CONFIG", -2, cmd_config, 0),
    COMMAND("INFO", -1, resp_cmd_info, CMD_READONLY),
    COMMAND("DBSIZE", 1, resp_cmd_dbsize, CMD_READONLY),
    COMMAND("AUTH", -2, cmd_auth, CMD_NO_AUTH),
    COMMAND("MULTI", 1, resp_cmd_multi, CMD_TRANSACTION),
    COMMAND("EXEC", 1, NULL, CMD_TRANSACTION | CMD_EXEC),
    COMMAND("DISCARD", 1, resp_cmd_discard, CMD_TRANSACTION),
    COMMAND("WATCH", -2, resp_cmd_watch, CMD_TRANSACTION),
    COMMAND("UNWATCH", 1, resp_cmd_unwatch, CMD_READONLY),
    WRITE("SET"), WRITE("SETNX"), WRITE("SETEX"), WRITE("PSETEX"), WRITE("MSET"), WRITE("MSETNX"),
    WRITE("GETSET"), WRITE("GETDEL"), WRITE("GETEX"), WRITE("APPEND"), WRITE("SETRANGE"), WRITE("INCR"),
    WRITE("DECR"), WRITE("INCRBY"), WRITE("DECRBY"), WRITE("INCRBYFLOAT"), WRITE("DEL"), WRITE("UNLINK"),
    WRITE("EXPIRE"), WRITE("PEXPIRE"), WRITE("EXPIREAT"), WRITE("PEXPIREAT"), WRITE("PERSIST"),
    WRITE("RENAME"), WRITE("RENAMENX"), WRITE("COPY"), WRITE("MOVE"), WRITE("RESTORE"), WRITE("HSET"),
    WRITE("HSETNX"), WRITE("HMSET"), WRITE("HDEL"), WRITE("HINCRBY"), WRITE("HINCRBYFLOAT"), WRITE("LPUSH"),
    WRITE("RPUSH"), WRITE("LPUSHX"), WRITE("RPUSHX"), WRITE("LPOP"), WRITE("RPOP"), WRITE("LSET"),
    WRITE("LREM"), WRITE("LTRIM"), WRITE("LINSERT"), WRITE("LMOVE"), WRITE("RPOPLPUSH"), WRITE("SADD"),
    WRITE("SREM"), WRITE("SPOP"), WRITE("SMOVE"), WRITE("ZADD"), WRITE("ZREM"), WRITE("ZINCRBY"),
    WRITE("ZPOPMIN"), WRITE("ZPOPMAX"), WRITE("XADD"), WRITE("XDEL"), WRITE("XTRIM"), WRITE("PFADD"),
    WRITE("PFMERGE"), WRITE("SETBIT"), WRITE("BITOP"), WRITE("GEOADD"), WRITE("FLUSHDB"), WRITE("FLUSHALL"),
    WRITE("SWAPDB"), WRITE("EVAL"), WRITE("EVALSHA"), WRITE("FCALL"),
    WRITE("PUBLISH"),
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

evbuffer *resp_answer_begin(RespClient *c, ReplySlot **queued)
{
    return reply_queue_immediate(&c->replies, &c->front->slots, queued);
}

void resp_answer_end(RespClient *c, ReplySlot *queued)
{
    if (queued != NULL)
        resp_finish_slot(queued);
    else
        resp_schedule_write(c);
}

bool resp_refuse(RespClient *c, const Command *command, bool arity_ok, const char *cmd, const RespArg *args, int argc,
                 evbuffer *out)
{
    if (command == NULL) {
        unknown_command(cmd, args, argc, out);
    } else if (command->flags & CMD_WRITE) {
        command->run(c, cmd, args, argc, out);
    } else if (!arity_ok) {
        char name[32];
        size_t len = strlen(command->name);
        for (size_t i = 0; i <= len; i++)
            name[i] = (char)(command->name[i] | (command->name[i] ? 0x20 : 0));  // lower case
        if ((command->flags & CMD_EXEC) && c->transaction != NULL) {
            // As Redis: an EXEC that cannot run ends the transaction, saying why.
            resp_add_error(out, "EXECABORT Transaction discarded because of: wrong number of arguments for '%s' command",
                           name);
            resp_transaction_free(c->transaction);
            c->transaction = NULL;
        } else {
            resp_add_error(out, "ERR wrong number of arguments for '%s' command", name);
        }
    } else {
        return false;
    }
    if (command != NULL && !arity_ok && !(command->flags & CMD_WRITE))
        c->front->env->stats->bad_requests[FRONT_RESP]++;  // a wrong arity: malformed
    else
        c->front->env->stats->refused_requests[FRONT_RESP]++;  // what a read-only cache does not do
    if (c->transaction != NULL)
        resp_transaction_abort(c->transaction);
    return true;
}

// A command answered at once: refused, queued in a transaction, or run. `logged_since`: when it
// was read, with the access log on; else 0.
static void answer_at_once(RespClient *c, const Command *command, bool arity_ok, const char *cmd,
                           const RespArg *args, int argc, uint64_t logged_since)
{
    ReplySlot *queued;
    evbuffer *out = resp_answer_begin(c, &queued);
    if (out != NULL) {  // (else out of memory: the queue has failed, and the client is closed)
        size_t before = logged_since != 0 ? evbuffer_get_length(out) : 0;
        if (c->transaction != NULL && (command == NULL || !(command->flags & CMD_TRANSACTION)))
            resp_transaction_queue(c, command, arity_ok, cmd, args, argc, out);
        else if (!resp_refuse(c, command, arity_ok, cmd, args, argc, out))
            command->run(c, cmd, args, argc, out);
        if (logged_since != 0)
            resp_access_immediate(c, cmd, args, argc, command != NULL && (command->flags & CMD_LOOKUP), out, before,
                                  logged_since);
    }
    resp_answer_end(c, queued);
}

// A GET or an MGET: from the cache, or once Redis has answered. With `logged`, its answer's line
// is written too (a note carried to the answer). Inlined where it is called, so that the unlogged
// path (a hit's) has none of the logged one's tests.
static inline __attribute__((always_inline)) void run_lookup(RespClient *c, const Command *command, const char *cmd,
                                                             const RespArg *args, int argc, bool logged)
{
    const FrontEnv *env = c->front->env;
    // (its keys' bytes: up to the end of the last argument)
    size_t cost = resp_lookup_cost((size_t)argc - 1, args[argc - 1].offset + args[argc - 1].len);
    ReplySlot *r = reply_queue_push(&c->replies, &c->front->slots, cost);
    if (r == NULL)
        return;  // out of memory: the queue has failed, and the client is closed
    AccessNote *note = logged ? resp_access_note(c, cmd, args, argc, r) : NULL;
    if (!(command->flags & CMD_MANY_KEYS)) {
        if (note != NULL)
            lookup_get(env->lookup, FRONT_RESP, cmd + args[1].offset, args[1].len, on_get_logged, note);
        else
            lookup_get(env->lookup, FRONT_RESP, cmd + args[1].offset, args[1].len, on_get_done, r);
        return;
    }
    RespFront *f = c->front;
    size_t n = (size_t)argc - 1;
    if (n > f->keys_cap) {
        LookupKey *keys = (LookupKey *)realloc(f->keys, n * sizeof(LookupKey));
        if (keys == NULL) {
            if (note != NULL)
                on_mget_logged(note, NULL, 0);
            else
                on_mget_done(r, NULL, 0);
            return;
        }
        f->keys = keys;
        f->keys_cap = n;
    }
    for (size_t i = 0; i < n; i++)
        f->keys[i] = {cmd + args[i + 1].offset, args[i + 1].len};
    if (note != NULL)
        lookup_get_many(env->lookup, FRONT_RESP, f->keys, n, on_mget_logged, note);
    else
        lookup_get_many(env->lookup, FRONT_RESP, f->keys, n, on_mget_done, r);
}

// A command refused for who asks (NOAUTH, NOPERM): inside a transaction, EXEC will abort it, as
// Redis does with a command its ACL refuses while queueing.
static void refuse_for_user(RespClient *c, const Command *command, const char *cmd, const RespArg *args, int argc,
                            uint64_t logged_since, const char *error)
{
    ReplySlot *queued;
    evbuffer *out = resp_answer_begin(c, &queued);
    c->front->env->stats->forbidden_requests[FRONT_RESP]++;
    if (c->transaction != NULL)
        resp_transaction_abort(c->transaction);
    if (out != NULL) {
        size_t before = evbuffer_get_length(out);
        resp_add_error(out, "%s", error);
        if (logged_since != 0)
            resp_access_immediate(c, cmd, args, argc, command != NULL && (command->flags & CMD_LOOKUP), out, before,
                                  logged_since);
    }
    resp_answer_end(c, queued);
}

// Whether the client's user may read every key the lookup command names (all of an MGET's).
static bool keys_allowed(const AclUser *user, const char *cmd, const RespArg *args, int argc)
{
    if (user->allkeys)
        return true;
    for (int i = 1; i < argc; i++)
        if (!acl_key_allowed(user, cmd + args[i].offset, args[i].len))
            return false;
    return true;
}

// What a client whose commands are watched goes through (RespClient.guarded): authentication
// first, then its user's key patterns, before any lookup (so that a forbidden key's answer is the
// same whether it is cached or not); and the access log. True when the command is to run on the
// plain path (it passed, and nothing is logged); false when it was answered here. Kept apart, so
// that an unwatched client's command pays one test for all of it.
static bool pass_guard(RespClient *c, const Command *command, bool arity_ok, const char *cmd, const RespArg *args,
                       int argc)
{
    bool logged = c->front->env->access_log != NULL;
    uint64_t since = logged ? monotonic_us() : 0;
    if (c->front->auth_required) {
        // (As Redis 7.0: an unknown command or a wrong arity is said first, then NOAUTH.)
        if (c->user == NULL && command != NULL && arity_ok && !(command->flags & CMD_NO_AUTH)) {
            refuse_for_user(c, command, cmd, args, argc, since, "NOAUTH Authentication required.");
            return false;
        }
        if (c->user != NULL && command != NULL && (command->flags & CMD_LOOKUP) && arity_ok &&
            !keys_allowed(c->user, cmd, args, argc)) {
            refuse_for_user(c, command, cmd, args, argc, since,
                            "NOPERM this user has no permissions to access one of the keys used as arguments");
            return false;
        }
    }
    if (!logged)
        return true;
    bool queues = c->transaction != NULL && (command == NULL || !(command->flags & CMD_TRANSACTION));
    if (!queues && command != NULL && (command->flags & CMD_EXEC) && arity_ok)
        resp_transaction_exec(c, resp_access_note(c, cmd, args, argc, NULL));
    else if (!queues && command != NULL && (command->flags & CMD_LOOKUP) && arity_ok)
        run_lookup(c, command, cmd, args, argc, true);
    else
        answer_at_once(c, command, arity_ok, cmd, args, argc, since);
    return false;
}

void resp_dispatch(RespClient *c, const char *cmd, const RespArg *args, int argc)
{
    c->front->env->stats->resp_commands++;
    const Command *command = NULL;
    for (const Command &candidate : commands)
        if (args[0].len == candidate.name_len &&
            strncasecmp(cmd + args[0].offset, candidate.name, candidate.name_len) == 0) {
            command = &candidate;
            break;
        }
    bool arity_ok = command != NULL &&
                    (command->arity > 0 ? argc == command->arity : argc >= -command->arity);
    if (c->guarded && !pass_guard(c, command, arity_ok, cmd, args, argc))
        return;
    if (c->transaction != NULL && (command == NULL || !(command->flags & CMD_TRANSACTION)))
        answer_at_once(c, command, arity_ok, cmd, args, argc, 0);
    else if (command != NULL && (command->flags & CMD_EXEC) && arity_ok)
        resp_transaction_exec(c, NULL);
    else if (command != NULL && (command->flags & CMD_LOOKUP) && arity_ok)
        run_lookup(c, command, cmd, args, argc, false);
    else
        answer_at_once(c, command, arity_ok, cmd, args, argc, 0);
}
