// One line per event on stderr: "2026-11-23 07:30:00.123 [pid] level: message". When stderr is
// the systemd journal, "<N>[pid] message" instead: N is the syslog priority (sd-daemon.h's
// prefixes), so `journalctl -p warning` filters by level, and the journal adds the time itself.
#pragma once

#include <stdint.h>

enum LogLevel { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

// Looks whether stderr is the journal (JOURNAL_STREAM names its device and inode). Call once at
// start, before anything is logged.
void log_init(void);
// Whether stderr is the journal (log_init found it so).
bool log_to_journal(void);

// Process-wide threshold, set once at start-up (and in each worker after fork).
void log_set_level(int level);
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// What every worker would log alike (Redis down: each worker's connections fail together): the
// first worker to say a line says it, and the same line from the others within a second is
// dropped, so one event is one line per proxy, not one per worker. Lines count as the same up to
// a "; retrying in ..." (a delay each worker jitters).
struct LogShared {
    static const int SLOTS = 16;
    // One word per slot, changed with compare-and-swap: the top 40 bits of a line's hash (digits
    // up to its retry delay), the low 24 bits when it stops being dropped, in tenths of a second
    // (wrapping).
    uint64_t slot[SLOTS];
};
// A worker logs through this table (in shared memory) from here on.
void log_share(LogShared *shared);
void log_msg_once(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// As log_msg_once, but lines count as the same when their `kind` is: one line a second for a
// kind of event whatever its details (a refused client, with its address).
void log_msg_once_per_kind(int level, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
