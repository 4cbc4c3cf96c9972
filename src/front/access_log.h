// The access log ([log] access): one line per HTTP request and per RESP command, as nginx's
// access_log and Redis's MONITOR let people see what a server is asked. Each worker keeps its
// own buffer and writes it whole lines at a time (every 64 KiB, and once a second), never
// waiting on the file: a line that finds the buffer full while the file cannot take more is
// dropped and counted (access_log_dropped_total), never left to block the loop.
//
// The format, one line per answer, fields separated by one space, none ever empty:
//
//   2026-12-06T13:24:26.123Z 127.0.0.1:53422 http GET user:1 200 5 HIT 37
//
//   time     when it was answered: UTC, milliseconds
//   client   address:port ([v6]:port; "unix" for a unix socket; "-" once it has gone)
//   front    http or resp
//   method   the HTTP method, or the RESP command as the client wrote it
//   key      the key, or an MGET's first key; "-" when none. Escaped: bytes outside 0x21-0x7e,
//            and '\' and '"', as \xHH; an empty key is "". Past 256 bytes it is cut, and "..."
//            follows
//   status   the HTTP status; for RESP, OK or the error's code (ERR, NOPERM, BACKENDDOWN, ...)
//   bytes    the answer's body (HTTP) or the whole reply (RESP), in bytes
//   cache    HIT, MISS or STALE for a read; for an MGET, MISS when any key was fetched, else
//            STALE when any was stale; "-" for anything else
//   duration from reading the request to answering it, in microseconds
#pragma once

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct WorkerStats;

struct AccessLog;

// What one line says; see the format above. Strings need not be NUL-terminated.
struct AccessEntry {
    const char *client;  // NULL: "-"
    const char *front;
    const char *method;
    size_t method_len;
    const char *key;  // NULL: "-"
    size_t key_len;
    const char *status;
    uint64_t bytes;
    const char *cache;  // NULL: "-"
    uint64_t duration_us;
};

// `target` is "stderr" or a file's path (appended to, created 0640). NULL, with the reason in
// err, when the file cannot be opened. The buffer is written once a second on `base`'s loop.
AccessLog *access_log_open(event_base *base, const char *target, WorkerStats *stats, char *err, size_t errlen);
void access_log_write(AccessLog *log, const AccessEntry *entry);
// Writes what is buffered; as much as the file takes without waiting.
void access_log_flush(AccessLog *log);
// SIGUSR1 (`redis-proxy -s reopen`, logrotate): what is buffered goes to the old file, and the
// path is opened again. If it cannot be, the old file is kept, and that is logged.
void access_log_reopen(AccessLog *log);
// Writes what is buffered, and closes.
void access_log_close(AccessLog *log);

// "address:port" of a connected socket's peer, or "unix": for the client field.
void access_log_peer(int fd, char *out, size_t len);
