#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_priorities[] = {3, 4, 6, 7};  // err, warning, info, debug
static bool to_journal;
static pid_t main_pid;  // the master: the process the journal names as every line's sender

void log_init(void)
{
    main_pid = getpid();
    const char *stream = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    to_journal = stream != NULL && sscanf(stream, "%llu:%llu", &dev, &ino) == 2 &&
                 fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                 (unsigned long long)st.st_ino == ino;
}

bool log_to_journal(void) { return to_journal; }

void log_set_level(int level) { log_level = level; }

bool log_enabled(int level) { return level <= log_level; }

static LogShared *shared_lines;

void log_share(LogShared *shared) { shared_lines = shared; }

static void write_line(int level, const char *fmt, va_list ap);

void log_msg(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(level, fmt, ap);
    va_end(ap);
}

static uint64_t now_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

// Whether another process said this line within the last second; if not, it is marked as said
// (atomically: of workers saying it at the same instant, one does).
static bool said_lately(const char *text)
{
    // FNV-1a over the line up to its retry delay, which each worker jitters: lines that differ
    // elsewhere (another node's address) stay apart.
    const char *end = strstr(text, "; retrying in ");
    if (end == NULL)
        end = text + strlen(text);
    uint64_t hash = 1469598103934665603ULL;
    for (const char *c = text; c < end; c++)
        hash = (hash ^ (unsigned char)*c) * 1099511628211ULL;
    const uint64_t TIME_MASK = (1u << 24) - 1;
    uint64_t now = (now_ms() / 100) & TIME_MASK, tag = hash & ~TIME_MASK;
    // Every slot is looked at: two lines said together (a node's data connection and its link)
    // must not take turns in one slot and each be said again. A line takes the first slot not in
    // use; every worker looks in the same order, so two saying one line race for the same slot,
    // and the loser, looking again, finds the winner's.
    for (;;) {
        uint64_t *free_slot = NULL, free_seen = 0;
        for (int i = 0; i < LogShared::SLOTS; i++) {
            uint64_t seen = __atomic_load_n(&shared_lines->slot[i], __ATOMIC_ACQUIRE);
            uint64_t left = ((seen & TIME_MASK) - now) & TIME_MASK;  // tenths of a second still dropped
            bool in_use = left > 0 && left <= 10;
            if (in_use && (seen & ~TIME_MASK) == tag)
                return true;
            if (!in_use && free_slot == NULL) {
                free_slot = &shared_lines->slot[i];
                free_seen = seen;
            }
        }
        if (free_slot == NULL)
            return false;  // sixteen lines in one second: said (a line too many beats one lost)
        if (__atomic_compare_exchange_n(free_slot, &free_seen, tag | ((now + 10) & TIME_MASK), false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return false;
    }
}

void log_msg_once_per_kind(int level, const char *kind, const char *fmt, ...)
{
    if (level > log_level || (shared_lines != NULL && said_lately(kind)))
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(level, fmt, ap);
    va_end(ap);
}

void log_msg_once(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (shared_lines != NULL && said_lately(text))
        return;
    log_msg(level, "%s", text);
}

static void write_line(int level, const char *fmt, va_list ap)
{
    char line[2048];
    size_t n;
    if (to_journal) {
        // The journal records the sender's PID already (the master's, for the stream every
        // process writes to): only a worker's line says whose it is.
        pid_t pid = getpid();
        if (pid == main_pid)
            n = (size_t)snprintf(line, sizeof(line), "<%d>", syslog_priorities[level]);
        else
            n = (size_t)snprintf(line, sizeof(line), "<%d>[%d] ", syslog_priorities[level], (int)pid);
    } else {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        localtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
        n += snprintf(line + n, sizeof(line) - n, ".%03d [%d] %s: ", (int)(tv.tv_usec / 1000),
                      (int)getpid(), level_names[level]);
    }
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    n = (m < 0) ? n : (n + (size_t)m < sizeof(line) - 1 ? n + (size_t)m : sizeof(line) - 2);
    line[n++] = '\n';
    // One write(2) per line, so lines from the master and the workers never interleave.
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
}
