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

void log_init(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    to_journal = stream != NULL && sscanf(stream, "%llu:%llu", &dev, &ino) == 2 &&
                 fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                 (unsigned long long)st.st_ino == ino;
}

void log_set_level(int level) { log_level = level; }

bool log_enabled(int level) { return level <= log_level; }

void log_msg(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char line[2048];
    size_t n;
    if (to_journal) {
        n = (size_t)snprintf(line, sizeof(line), "<%d>[%d] ", syslog_priorities[level], (int)getpid());
    } else {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        localtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
        n += snprintf(line + n, sizeof(line) - n, ".%03d [%d] %s: ", (int)(tv.tv_usec / 1000),
                      (int)getpid(), level_names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    n = (m < 0) ? n : (n + (size_t)m < sizeof(line) - 1 ? n + (size_t)m : sizeof(line) - 2);
    line[n++] = '\n';
    // One write(2) per line, so lines from the master and the workers never interleave.
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
}
