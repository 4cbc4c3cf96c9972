// Transactions made of reads: MULTI, the commands queued (+QUEUED), then EXEC answers them all,
// in order, in one array; DISCARD drops them. A write or an unknown command inside refuses itself
// at once and aborts the transaction (EXEC answers EXECABORT), as Redis does. WATCH is refused:
// it guards writes, which go to Redis directly.
//
// Consistency: every key the transaction reads (its GETs' and MGETs') is looked up as one
// snapshot (lookup_get_snapshot): all hits are answered from the cache, consistent up to the
// invalidation delay; if any key misses, all of them are fetched again with one MGET (one per
// slot in a cluster), which Redis answers atomically.
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "resp_client.h"

struct QueuedCommand {
    const Command *command;
    int argc;
    size_t first_arg;  // into Transaction.args
};

struct Transaction {
    bool aborted;    // a command was refused while queueing
    char *bytes;     // the queued commands' arguments, one after another
    size_t len, cap;
    RespArg *args;   // offsets into bytes
    size_t nargs, args_cap;
    QueuedCommand *commands;
    size_t count, commands_cap;
};

size_t resp_transaction_bytes(const Transaction *t)
{
    return sizeof(Transaction) + t->cap + t->args_cap * sizeof(RespArg) + t->commands_cap * sizeof(QueuedCommand);
}

void resp_transaction_abort(Transaction *t) { t->aborted = true; }

void resp_transaction_free(Transaction *t)
{
    if (t == NULL)
        return;
    free(t->bytes);
    free(t->args);
    free(t->commands);
    free(t);
}

// Room for `more` elements of `size` bytes in *array (capacity *cap, `used` used): doubling.
static bool reserve(void **array, size_t *cap, size_t used, size_t more, size_t size)
{
    if (used + more <= *cap)
        return true;
    size_t want = *cap > 0 ? *cap * 2 : 16;
    while (want < used + more)
        want *= 2;
    void *grown = realloc(*array, want * size);
    if (grown == NULL)
        return false;
    *array = grown;
    *cap = want;
    return true;
}

void resp_transaction_queue(RespClient *c, const Command *command, bool arity_ok, const char *cmd,
                            const RespArg *args, int argc, evbuffer *out)
{
    Transaction *t = c->transaction;
    if (resp_refuse(c, command, arity_ok, cmd, args, argc, out))
        return;
    if (command->flags & CMD_NO_TRANSACTION) {
        resp_add_error(out, "ERR Command not allowed inside a transaction");
        t->aborted = true;
        return;
    }
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += args[i].len;
    // A transaction holds its commands until EXEC: all of them together are bounded as one
    // command is (max_request_size), beside the client's memory bound that counts them too.
    size_t after = resp_transaction_bytes(t) + bytes + (size_t)argc * sizeof(RespArg) + sizeof(QueuedCommand);
    if (after > (size_t)c->front->env->config->max_request_size) {
        resp_add_error(out, "ERR transaction too large: its queued commands pass max_request_size");
        t->aborted = true;
        return;
    }
    if (!reserve((void **)&t->bytes, &t->cap, t->len, bytes, 1) ||
        !reserve((void **)&t->args, &t->args_cap, t->nargs, (size_t)argc, sizeof(RespArg)) ||
        !reserve((void **)&t->commands, &t->commands_cap, t->count, 1, sizeof(QueuedCommand))) {
        resp_add_error(out, "ERR out of memory");
        t->aborted = true;
        return;
    }
    t->commands[t->count++] = {command, argc, t->nargs};
    for (int i = 0; i < argc; i++) {
        memcpy(t->bytes + t->len, cmd + args[i].offset, args[i].len);
        t->args[t->nargs++] = {t->len, args[i].len};
        t->len += args[i].len;
    }
    resp_add_simple(out, "QUEUED");
    resp_account(c);
}

void resp_cmd_multi(RespClient *c, const char *, const RespArg *, int, evbuffer *out)
{
    if (c->transaction != NULL) {
        resp_add_error(out, "ERR MULTI calls can not be nested");
        return;
    }
    if ((c->transaction = (Transaction *)calloc(1, sizeof(Transaction))) == NULL) {
        resp_add_error(out, "ERR out of memory");
        return;
    }
    resp_add_simple(out, "OK");
}

void resp_cmd_discard(RespClient *c, const char *, const RespArg *, int, evbuffer *out)
{
    if (c->transaction == NULL) {
        resp_add_error(out, "ERR DISCARD without MULTI");
        return;
    }
    resp_transaction_free(c->transaction);
    c->transaction = NULL;
    resp_add_simple(out, "OK");
}

void resp_cmd_watch(RespClient *c, const char *, const RespArg *, int, evbuffer *out)
{
    if (c->transaction != NULL)
        resp_add_error(out, "ERR WATCH inside MULTI is not allowed");
    else
        resp_add_error(out, "ERR WATCH is not supported by redis-proxy: it guards writes, which go to Redis directly");
}

void resp_cmd_unwatch(RespClient *, const char *, const RespArg *, int, evbuffer *out) { resp_add_simple(out, "OK"); }

// --- EXEC ------------------------------------------------------------------------------------

// One queued command's part of EXEC's answer: a lookup's keys, or an answer made at EXEC.
struct ExecPart {
    const Command *command;
    size_t first_key, keys;  // into the results, for GET and MGET
    size_t answer_len;       // bytes in Exec.answers, for the others
};

struct Exec {
    ReplySlot *slot;
    AccessNote *note;   // its access log line's; NULL without one
    evbuffer *answers;  // the other commands' answers, one after another
    size_t bound;       // max_client_output: a larger answer is refused, not built
    size_t count;
    ExecPart parts[];
};

// What EXEC's answer would take, at most (values, and a little framing per key).
static size_t answer_size(const Exec *e, const LookupResult *results, size_t n)
{
    size_t bytes = evbuffer_get_length(e->answers) + 16;
    for (size_t i = 0; i < n; i++)
        bytes += results[i].value_len + RESP_HEADER_MAX;
    return bytes;
}

static void on_exec_done(void *arg, const LookupResult *results, size_t n)
{
    Exec *e = (Exec *)arg;
    evbuffer *out = reply_slot_output(e->slot);
    size_t before = out != NULL ? evbuffer_get_length(out) : 0;
    int protocol = reply_slot_protocol(e->slot);
    if (out != NULL && results == NULL && n == 0) {
        resp_add_error(out, "ERR out of memory");
    } else if (out != NULL && answer_size(e, results, n) > e->bound) {
        // Checked before the answer is built: a few keys repeated many times must not make the
        // worker build (and stall on) gigabytes that the client's bound would then refuse.
        resp_add_error(out, "ERR EXEC's answers pass max_client_output: transaction discarded");
    } else if (out != NULL) {
        resp_add_array_header(out, e->count);
        for (size_t i = 0; i < e->count; i++) {
            const ExecPart *p = &e->parts[i];
            bool ok;
            if (!(p->command->flags & CMD_LOOKUP))
                ok = evbuffer_remove_buffer(e->answers, out, p->answer_len) == (int)p->answer_len;
            else if (p->command->flags & CMD_MANY_KEYS)
                ok = resp_add_mget_answer(out, results + p->first_key, p->keys, protocol);
            else
                ok = resp_add_get_answer(out, results + p->first_key, protocol);
            if (!ok) {
                reply_slot_fail(e->slot);
                break;
            }
        }
    }
    if (e->note != NULL)
        resp_access_done(e->note, out, before, results != NULL ? resp_access_cache(results, n) : NULL);
    evbuffer_free(e->answers);
    ReplySlot *slot = e->slot;
    free(e);
    resp_finish_slot(slot);
}

static void answer_now(RespClient *c, const char *error, AccessNote *note)
{
    ReplySlot *queued;
    evbuffer *out = resp_answer_begin(c, &queued);
    size_t before = out != NULL ? evbuffer_get_length(out) : 0;
    if (out != NULL)
        resp_add_error(out, "%s", error);
    if (note != NULL)
        resp_access_done(note, out, before, NULL);
    resp_answer_end(c, queued);
}

void resp_transaction_exec(RespClient *c, AccessNote *note)
{
    Transaction *t = c->transaction;
    if (t == NULL) {
        answer_now(c, "ERR EXEC without MULTI", note);
        return;
    }
    c->transaction = NULL;
    if (t->aborted) {
        answer_now(c, "EXECABORT Transaction discarded because of previous errors.", note);
        resp_transaction_free(t);
        return;
    }
    size_t keys = 0;
    for (size_t i = 0; i < t->count; i++)
        if (t->commands[i].command->flags & CMD_LOOKUP)
            keys += (size_t)t->commands[i].argc - 1;
    Exec *e = (Exec *)malloc(sizeof(Exec) + t->count * sizeof(ExecPart));
    LookupKey *lookup_keys = (LookupKey *)malloc((keys > 0 ? keys : 1) * sizeof(LookupKey));
    evbuffer *answers = evbuffer_new();
    if (e == NULL || lookup_keys == NULL || answers == NULL) {
        free(e);
        free(lookup_keys);
        if (answers != NULL)
            evbuffer_free(answers);
        resp_transaction_free(t);
        answer_now(c, "ERR out of memory", note);
        return;
    }
    e->answers = answers;
    e->count = t->count;
    e->bound = (size_t)c->front->env->config->max_client_output;
    // The commands that are no lookup run now, in order, as Redis runs them at EXEC; their
    // answers wait for the lookups'. They are bounded as a client's unsent answers are: past
    // max_client_output, the EXEC is refused instead of built further.
    size_t k = 0, bound = (size_t)c->front->env->config->max_client_output;
    for (size_t i = 0; i < t->count; i++) {
        const QueuedCommand *q = &t->commands[i];
        const RespArg *args = t->args + q->first_arg;
        ExecPart *p = &e->parts[i];
        *p = {q->command, k, 0, 0};
        if (q->command->flags & CMD_LOOKUP) {
            for (int a = 1; a < q->argc; a++)
                lookup_keys[k++] = {t->bytes + args[a].offset, args[a].len};
            p->keys = k - p->first_key;
            continue;
        }
        size_t before = evbuffer_get_length(answers);
        q->command->run(c, t->bytes, args, q->argc, answers);
        p->answer_len = evbuffer_get_length(answers) - before;
        if (evbuffer_get_length(answers) > bound)
            break;
    }
    ReplySlot *slot = NULL;
    if (evbuffer_get_length(answers) <= bound)
        slot = reply_queue_push(&c->replies, &c->front->slots,
                                resp_lookup_cost(keys, t->len) + evbuffer_get_length(answers));
    if (slot == NULL) {
        bool too_large = evbuffer_get_length(answers) > bound;
        free(e);
        free(lookup_keys);
        evbuffer_free(answers);
        resp_transaction_free(t);
        if (too_large)
            answer_now(c, "ERR EXEC's answers pass max_client_output: transaction discarded", note);
        else if (note != NULL)
            resp_access_done(note, NULL, 0, NULL);  // out of memory: the client is closed (below)
        if (!too_large)
            resp_schedule_write(c);  // out of memory: the queue has failed, and the client is closed
        return;
    }
    e->slot = slot;
    e->note = note;
    // The keys are copied by the lookup: the transaction can go once it has them.
    lookup_get_snapshot(c->front->env->lookup, FRONT_RESP, lookup_keys, keys, on_exec_done, e);
    free(lookup_keys);
    resp_transaction_free(t);
}
