// The RESP front's lines in the access log (access_log.h): a command answered at once is logged
// as it is answered; one answered through lookup carries a note of what its line needs (the
// client, the command, its key and when it came), since its client may be gone by the time
// Redis answers. Only with [log] access: without it, dispatch takes none of these paths.
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "clock.h"
#include "resp_client.h"

static const size_t NOTE_KEY_BYTES = 257;  // the shown 256, and one to say it was cut
static const size_t NOTE_METHOD_BYTES = 33;

struct AccessNote {
    AccessLog *log;
    uint64_t started_us;
    char client[80];
    char method[NOTE_METHOD_BYTES];
    size_t method_len;
    char key[NOTE_KEY_BYTES];
    size_t key_len;  // the key's whole length (only NOTE_KEY_BYTES of it kept)
    bool has_key;
    void *arg;  // what the lookup's callback would have had
};

static const char *peer_of(RespClient *c)
{
    if (c->peer[0] == '\0')
        access_log_peer(c->fd, c->peer, sizeof(c->peer));
    return c->peer;
}

// OK, or the error's code: the reply's first word after '-'.
static void status_of(evbuffer *out, size_t at, char *status, size_t len)
{
    char head[24];
    evbuffer_ptr p;
    ev_ssize_t n = -1;
    if (evbuffer_ptr_set(out, &p, at, EVBUFFER_PTR_SET) == 0)
        n = evbuffer_copyout_from(out, &p, head, sizeof(head));
    if (n <= 1 || head[0] != '-') {
        snprintf(status, len, "OK");
        return;
    }
    size_t i = 1;
    while (i < (size_t)n && i < len && head[i] != ' ' && head[i] != '\r')
        i++;
    snprintf(status, len, "%.*s", (int)(i - 1), head + 1);
}

static void fill_entry(AccessEntry *e, const char *client, const char *method, size_t method_len, const char *key,
                       size_t key_len, const char *status, uint64_t bytes, const char *cache, uint64_t started_us)
{
    *e = {client, "resp", method, method_len, key, key_len, status, bytes, cache, monotonic_us() - started_us};
}

void resp_access_immediate(RespClient *c, const char *cmd, const RespArg *args, int argc, bool has_key,
                           evbuffer *out, size_t before, uint64_t started_us)
{
    if (out == NULL)
        return;
    char status[20];
    status_of(out, before, status, sizeof(status));
    AccessEntry e;
    has_key = has_key && argc > 1;
    fill_entry(&e, peer_of(c), cmd + args[0].offset, args[0].len, has_key ? cmd + args[1].offset : NULL,
               has_key ? args[1].len : 0, status, evbuffer_get_length(out) - before, NULL, started_us);
    access_log_write(c->front->env->access_log, &e);
}

AccessNote *resp_access_note(RespClient *c, const char *cmd, const RespArg *args, int argc, void *arg)
{
    AccessNote *n = (AccessNote *)malloc(sizeof(AccessNote));
    if (n == NULL)
        return NULL;
    n->log = c->front->env->access_log;
    n->started_us = monotonic_us();
    memcpy(n->client, peer_of(c), sizeof(n->client));  // (NUL-terminated within it)
    n->method_len = args[0].len < sizeof(n->method) ? args[0].len : sizeof(n->method);
    memcpy(n->method, cmd + args[0].offset, n->method_len);
    n->has_key = argc > 1;
    n->key_len = n->has_key ? args[1].len : 0;
    memcpy(n->key, cmd + args[1 % argc].offset, n->key_len < sizeof(n->key) ? n->key_len : sizeof(n->key));
    n->arg = arg;
    return n;
}

void *resp_access_note_arg(const AccessNote *n) { return n->arg; }

const char *resp_access_cache(const LookupResult *results, size_t count)
{
    const char *cache = "HIT";
    for (size_t i = 0; i < count; i++) {
        if (results[i].status != LOOKUP_FOUND && results[i].status != LOOKUP_NOT_FOUND)
            return NULL;  // the whole answer is an error
        if (results[i].stale)
            cache = "STALE";
        else if (!results[i].hit)
            return "MISS";
    }
    return cache;
}

void resp_access_done(AccessNote *n, evbuffer *out, size_t before, const char *cache)
{
    char status[20] = "-";  // the client has gone: its answer was dropped
    size_t bytes = 0;
    if (out != NULL) {
        status_of(out, before, status, sizeof(status));
        bytes = evbuffer_get_length(out) - before;
    }
    AccessEntry e;
    fill_entry(&e, n->client, n->method, n->method_len, n->has_key ? n->key : NULL, n->key_len, status, bytes,
               status[0] == 'O' ? cache : NULL, n->started_us);
    // A key longer than what the note kept is shown cut, as access_log_write would cut it.
    if (e.key_len > sizeof(n->key))
        e.key_len = sizeof(n->key);
    access_log_write(n->log, &e);
    free(n);
}
