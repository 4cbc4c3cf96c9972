#include "access_log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "clock.h"
#include "journal_stream.h"
#include "log.h"
#include "stats.h"

static const size_t FLUSH_AT = 64 * 1024;  // or once a second, whichever comes first
static const size_t KEY_SHOWN = 256;      // a key's bytes shown; the rest is cut
static const size_t METHOD_SHOWN = 32;
static const size_t LINE_MAX_BYTES = 4 * (KEY_SHOWN + METHOD_SHOWN) + 256;  // every byte escaped
static const size_t BUFFER_SIZE = FLUSH_AT + LINE_MAX_BYTES;

struct AccessLog {
    char path[256];  // empty: stderr
    int fd;
    bool is_socket;  // written with MSG_DONTWAIT (the journal's stream)
    WorkerStats *stats;
    event *flush_timer;
    bool failing;    // the last write failed: said once, until one succeeds
    time_t second;   // the second `stamp` holds
    char stamp[24];  // "2026-12-06T13:24:26"
    size_t used;
    char buffer[BUFFER_SIZE];
};

// A descriptor for stderr that never blocks the loop: a pipe's reader that stalls must cost lines,
// not the worker's time. A pipe is opened again through /proc (a description of our own, which
// O_NONBLOCK may change without touching the master's stderr); a socket (the journal) is written
// with MSG_DONTWAIT; a terminal or a file is written as it is.
static int open_stderr(bool *is_socket)
{
    struct stat st;
    *is_socket = false;
    if (fstat(STDERR_FILENO, &st) != 0)
        return -1;
    if (S_ISSOCK(st.st_mode) && log_to_journal()) {
        // A stream of the worker's own to the journal (as stderr is one, the journal's): the
        // workers' lines cannot interleave inside one, whatever part of a write it takes.
        int fd = journal_stream_open("redis-proxy");
        if (fd >= 0) {
            *is_socket = true;
            return fd;
        }
    }
    if (S_ISSOCK(st.st_mode)) {
        *is_socket = true;
    } else if (S_ISFIFO(st.st_mode)) {
        int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            return fd;
    }
    return fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
}

static int open_target(const char *path, bool *is_socket)
{
    if (path[0] == '\0')
        return open_stderr(is_socket);
    *is_socket = false;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
}

static void on_flush_timer(evutil_socket_t, short, void *arg) { access_log_flush((AccessLog *)arg); }

AccessLog *access_log_open(event_base *base, const char *target, WorkerStats *stats, char *err, size_t errlen)
{
    AccessLog *log = (AccessLog *)calloc(1, sizeof(AccessLog));
    if (log == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (strcmp(target, "stderr") != 0)
        snprintf(log->path, sizeof(log->path), "%s", target);
    log->stats = stats;
    log->fd = open_target(log->path, &log->is_socket);
    if (log->fd < 0) {
        snprintf(err, errlen, "cannot open '%s': %s", log->path[0] ? log->path : "stderr", strerror(errno));
        free(log);
        return NULL;
    }
    log->flush_timer = event_new(base, -1, EV_PERSIST, on_flush_timer, log);
    struct timeval second = {1, 0};
    if (log->flush_timer == NULL || event_add(log->flush_timer, &second) != 0) {
        snprintf(err, errlen, "out of memory");
        access_log_close(log);
        return NULL;
    }
    return log;
}

static uint64_t lines_in(const char *p, size_t len)
{
    uint64_t n = 0;
    for (const char *end = p + len; (p = (const char *)memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        n++;
    return n;
}

// Writes whole lines from the front of the buffer, as much as the file takes now. Lines from the
// workers never interleave in a file: O_APPEND places each write whole. A pipe or a socket is
// written at most PIPE_BUF bytes at a time, ending at a line's end (a pipe takes such a write
// whole or not at all).
void access_log_flush(AccessLog *log)
{
    size_t done = 0;
    bool stream = log->path[0] == '\0';
    while (done < log->used) {
        size_t len = log->used - done;
        if (stream && len > PIPE_BUF) {
            const char *last = (const char *)memrchr(log->buffer + done, '\n', PIPE_BUF);
            len = last != NULL ? (size_t)(last - (log->buffer + done)) + 1 : PIPE_BUF;
        }
        ssize_t n = log->is_socket ? send(log->fd, log->buffer + done, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                                   : write(log->fd, log->buffer + done, len);
        if (n > 0) {
            log->stats->access_log_lines += lines_in(log->buffer + done, (size_t)n);
            done += (size_t)n;
            log->failing = false;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;  // full for now: the rest waits for the next flush
        // What waiting will not mend (a full disk, a reader gone): the lines held are dropped.
        if (!log->failing)
            log_msg_once(LOG_WARN, "access log %s: %s; lines are dropped until it can be written again",
                         log->path[0] ? log->path : "stderr", n < 0 ? strerror(errno) : "nothing written");
        log->failing = true;
        log->stats->access_log_dropped += lines_in(log->buffer + done, log->used - done);
        done = log->used;
    }
    // A write that stopped inside a line leaves that line's rest at the front, to finish first.
    memmove(log->buffer, log->buffer + done, log->used - done);
    log->used -= done;
}

void access_log_reopen(AccessLog *log)
{
    access_log_flush(log);
    bool is_socket;
    int fd = open_target(log->path, &is_socket);
    if (fd < 0) {
        log_msg_once(LOG_WARN, "access log: cannot reopen %s: %s; writing on to the file open before",
                     log->path[0] ? log->path : "stderr", strerror(errno));
        return;
    }
    close(log->fd);
    log->fd = fd;
    log->is_socket = is_socket;
    log->failing = false;
}

void access_log_close(AccessLog *log)
{
    if (log == NULL)
        return;
    if (log->fd >= 0) {
        access_log_flush(log);
        close(log->fd);
    }
    if (log->flush_timer != NULL)
        event_free(log->flush_timer);
    free(log);
}

// Bytes a reader and a parser can take as they are; the rest as \xHH.
static char *put_escaped(char *p, const char *s, size_t len, size_t shown)
{
    static const char hex[] = "0123456789abcdef";
    if (len == 0) {
        *p++ = '"';
        *p++ = '"';
        return p;
    }
    size_t n = len < shown ? len : shown;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b > 0x20 && b < 0x7f && b != '\\' && b != '"') {
            *p++ = (char)b;
        } else {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[b >> 4];
            *p++ = hex[b & 15];
        }
    }
    if (n < len) {
        memcpy(p, "...", 3);
        p += 3;
    }
    return p;
}

static char *put_text(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

// A number in decimal (what a printf costs thirty times over, per line).
static char *put_uint(char *p, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

void access_log_write(AccessLog *log, const AccessEntry *e)
{
    if (BUFFER_SIZE - log->used < LINE_MAX_BYTES) {
        access_log_flush(log);
        if (BUFFER_SIZE - log->used < LINE_MAX_BYTES) {
            log->stats->access_log_dropped++;  // the file takes nothing now: never wait for it
            return;
        }
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != log->second) {  // the date is formatted once a second, not per line
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(log->stamp, sizeof(log->stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        log->second = now.tv_sec;
    }
    char *p = log->buffer + log->used;
    p = put_text(p, log->stamp);
    int ms = (int)(now.tv_nsec / 1000000);
    *p++ = '.';
    *p++ = (char)('0' + ms / 100);
    *p++ = (char)('0' + ms / 10 % 10);
    *p++ = (char)('0' + ms % 10);
    *p++ = 'Z';
    *p++ = ' ';
    p = put_text(p, e->client != NULL && e->client[0] != '\0' ? e->client : "-");
    *p++ = ' ';
    p = put_text(p, e->front);
    *p++ = ' ';
    p = put_escaped(p, e->method, e->method_len, METHOD_SHOWN);
    *p++ = ' ';
    if (e->key != NULL)
        p = put_escaped(p, e->key, e->key_len, KEY_SHOWN);
    else
        *p++ = '-';
    *p++ = ' ';
    size_t status_len = strnlen(e->status, 16);
    memcpy(p, e->status, status_len);
    p += status_len;
    *p++ = ' ';
    p = put_uint(p, e->bytes);
    *p++ = ' ';
    p = put_text(p, e->cache != NULL ? e->cache : "-");
    *p++ = ' ';
    p = put_uint(p, e->duration_us);
    *p++ = '\n';
    log->used = (size_t)(p - log->buffer);
    if (log->used >= FLUSH_AT)
        access_log_flush(log);
}

void access_log_peer(int fd, char *out, size_t len)
{
    address_of_peer(fd, out, len);
    if (strncmp(out, "unix:", 5) == 0)
        snprintf(out, len, "unix");
}
