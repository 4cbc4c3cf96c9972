// Reading a Redis connection: every read is framed (reply_frame.h) and its complete replies
// counted before any is delivered; a reply past max_reply_size is answered at once and skipped.
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backend_state.h"
#include "clock.h"
#include "config.h"
#include "log.h"

// Stands in a read's batch for a reply being skipped as larger than max_reply_size: its command
// is answered BACKEND_TOO_LARGE as soon as that is known, not when the reply's last byte has
// passed, and the connection goes on.
static redisReply too_large_marker;

static void free_batch(Backend *b, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (b->batch[i] != &too_large_marker)
            freeReplyObject(b->batch[i]);
}

static bool batch_push(Backend *b, size_t n, redisReply *reply)
{
    if (n == b->batch_cap) {
        size_t cap = b->batch_cap ? b->batch_cap * 2 : 64;
        redisReply **batch = (redisReply **)realloc(b->batch, cap * sizeof(*batch));
        if (batch == NULL)
            return false;
        b->batch = batch;
        b->batch_cap = cap;
    }
    b->batch[n] = reply;
    return true;
}

// Frames the bytes of one read reply by reply (reply_frame.h) into b->batch: each reply within
// max_reply_size is fed to hiredis and taken out whole; one past it stands in the batch as
// too_large_marker from the moment it passes, and the rest of it is skipped, none of it kept.
// Returns how many replies, or -1 when the bytes cannot be framed or hiredis reads them
// otherwise (*why says which).
static long take_replies(Backend *b, const char *p, size_t len, const char **why)
{
    size_t n = 0;
    uint64_t limit = (uint64_t)b->config->redis_max_reply_size;
    for (;;) {
        FrameEvent event;
        size_t used = frame_scan(&b->frame, p, len, limit, &event);
        if (event == FRAME_BAD) {
            *why = "not a RESP2 reply";
            break;
        }
        if (event == FRAME_TOO_LARGE) {
            // What the parser holds of this reply goes with it: a fresh parser for the next one.
            redisReaderFree(b->reader);
            if ((b->reader = redisReaderCreate()) == NULL || !batch_push(b, n, &too_large_marker)) {
                *why = "out of memory";
                break;
            }
            n++;
        } else if (!frame_skipping(&b->frame) && used > 0 && redisReaderFeed(b->reader, p, used) != REDIS_OK) {
            *why = "out of memory";
            break;
        }
        p += used;
        len -= used;
        if (event == FRAME_END && !frame_skipping(&b->frame)) {
            void *reply = NULL;
            if (redisReaderGetReply(b->reader, &reply) != REDIS_OK || reply == NULL) {
                *why = b->reader->err ? b->reader->errstr : "a reply the parser does not end where it ends";
                break;
            }
            if (!batch_push(b, n, (redisReply *)reply)) {
                freeReplyObject(reply);
                *why = "out of memory";
                break;
            }
            n++;
        }
        if (len == 0 && event != FRAME_TOO_LARGE && !b->frame.end_due)
            return (long)n;
    }
    free_batch(b, 0, n);
    return -1;
}

static bool read_once(Backend *b, char *chunk);

void backend_on_readable(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    if (!b->connected) {  // TLS's handshake waited for this
        backend_continue_connect(b);
        return;
    }
    char chunk[READ_CHUNK];
    uint64_t serial = b->serial;
    // TLS gives one record (16 KiB at most) a read: read on until it would wait, a bounded number
    // of times a turn. If the bound is reached with bytes already inside OpenSSL, which no
    // readiness would announce, the read event is made active to come back for them.
    bool more = true;
    for (int i = 0; i < 64 && more; i++) {
        more = read_once(b, chunk) && b->tr.ssl != NULL;
        if (b->serial != serial)
            return;
    }
    if (more && transport_pending(&b->tr))
        event_active(b->read_event, EV_READ, 1);
    if (b->tr.read_wants_write && !b->write_pending) {
        event_add(b->write_event, NULL);
        b->write_pending = true;
    }
    if (b->tr.write_wants_read)  // TLS: a write waited for this
        backend_write_queued(b);
}

// One read, and the replies it completed delivered. True when bytes were read (there may be
// more), false when it would wait or the connection went.
static bool read_once(Backend *b, char *chunk)
{
    ssize_t got = transport_recv(&b->tr, chunk, READ_CHUNK);
    if (got == 0) {
        backend_drop(b, BACKEND_UNAVAILABLE, "connection lost", "closed by server");
        return false;
    }
    if (got < 0) {
        if (errno == EPROTO && b->tr.tls_refused)
            backend_count_tls_failure(b);  // (a refusal after the handshake: a client certificate)
        if (errno != EAGAIN && errno != EINTR)
            backend_drop(b, BACKEND_UNAVAILABLE, "connection lost", errno == EPROTO ? b->tr.error : strerror(errno));
        return false;
    }
    uint64_t serial = b->serial;
    const char *why = NULL;
    long n = take_replies(b, chunk, (size_t)got, &why);
    if (n < 0) {
        if (b->reader == NULL)  // out of memory for a fresh parser: not the server's fault
            backend_drop(b, BACKEND_UNAVAILABLE, "connection lost", why);
        else
            backend_drop_untrusted(b, "unreadable reply", why);
        return false;
    }
    if (n > 0 && b->sent == 0 && !b->push_mode) {
        // The server spoke before it was asked anything: a refusal at accept (-ERR max number of
        // clients reached, -DENIED in protected mode), not replies out of step with commands. A
        // failed attempt, backed off; what was read through earlier connections stands.
        char detail[200];
        const redisReply *first = b->batch[0] != &too_large_marker ? b->batch[0] : NULL;
        snprintf(detail, sizeof(detail), "%.*s", first != NULL && first->type == REDIS_REPLY_ERROR ? (int)first->len : 27,
                 first != NULL && first->type == REDIS_REPLY_ERROR ? first->str : "it spoke before it was asked");
        free_batch(b, 0, (size_t)n);
        backend_drop_attempt(b, detail);
        return false;
    }
    if ((size_t)n > b->ring_len && !b->push_mode) {
        // Checked before delivering any of them: with commands pipelined, an extra reply would
        // otherwise be handed to the next command and cached under its key.
        char detail[96];
        snprintf(detail, sizeof(detail), "%ld replies for %zu command(s) outstanding", n, b->ring_len);
        free_batch(b, 0, (size_t)n);
        backend_drop_untrusted(b, "more replies than commands", detail);
        return false;
    }
    uint64_t now_us = n > 0 ? monotonic_us() : 0;
    for (size_t i = 0; i < (size_t)n; i++) {
        if (b->ring_len == 0) {  // push mode: a message or a subscription's confirmation
            if (b->batch[i] == &too_large_marker) {
                // A message skipped is a message lost (an invalidation, maybe): the owner must
                // hear of it as of a lost connection.
                free_batch(b, i + 1, (size_t)n);
                char detail[96];
                snprintf(detail, sizeof(detail), "a message of more than %lld bytes",
                         (long long)b->config->redis_max_reply_size);
                backend_drop(b, BACKEND_UNAVAILABLE, "message larger than max_reply_size", detail);
                return false;
            }
            if (b->hooks.on_push != NULL)
                b->hooks.on_push(b->hooks.arg, b->batch[i]);
            freeReplyObject(b->batch[i]);
            if (b->serial != serial) {  // the owner reset the connection
                free_batch(b, i + 1, (size_t)n);
                return false;
            }
            continue;
        }
        PendingCommand cmd = backend_pop_command(b);
        redisReply *reply = b->batch[i];
        if (reply != &too_large_marker && reply->type != REDIS_REPLY_ERROR)
            b->answered++;  // it served (an error may be a refusal: -ERR max number of clients reached)
        if (reply == &too_large_marker) {
            b->stats->redis_replies_too_large++;
            if (!b->too_large_logged)
                log_warn("redis %s%s: a reply of more than %lld bytes (max_reply_size) is skipped, its request "
                         "answered with an error; further ones are counted in redis_replies_too_large_total",
                         b->target.display, b->hooks.label, (long long)b->config->redis_max_reply_size);
            b->too_large_logged = true;
            if (cmd.fn != NULL)
                cmd.fn(cmd.arg, NULL, BACKEND_TOO_LARGE);
        } else if (cmd.fn != NULL) {
            histogram_observe(&b->stats->redis_seconds, now_us - cmd.sent_us);
            cmd.fn(cmd.arg, reply, BACKEND_OK);
            freeReplyObject(reply);
        } else {  // answered as timed out already: this late reply goes nowhere
            freeReplyObject(reply);
            continue;
        }
        if (b->distrusted) {
            free_batch(b, i + 1, (size_t)n);
            backend_drop_untrusted(b, "reply of the wrong type", NULL);
            return false;
        }
        if (b->serial != serial) {  // the handshake failed, or the callback reset the connection
            free_batch(b, i + 1, (size_t)n);
            return false;
        }
    }
    return true;
}
