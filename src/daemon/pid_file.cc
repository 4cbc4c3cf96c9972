#include "pid_file.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool pid_file_write(const char *path, char *err, size_t errlen)
{
    char temp[4200];
    if ((size_t)snprintf(temp, sizeof(temp), "%s.%d.new", path, (int)getpid()) >= sizeof(temp)) {
        snprintf(err, errlen, "pid_file %s: path too long", path);
        return false;
    }
    FILE *f = fopen(temp, "w");
    if (f == NULL) {
        snprintf(err, errlen, "pid_file %s: cannot write: %s", path, strerror(errno));
        return false;
    }
    bool written = fprintf(f, "%d\n", (int)getpid()) > 0;
    written = fclose(f) == 0 && written;
    if (!written || rename(temp, path) != 0) {
        snprintf(err, errlen, "pid_file %s: cannot write: %s", path, strerror(errno));
        unlink(temp);
        return false;
    }
    return true;
}

void pid_file_remove(const char *path)
{
    char unused[160];
    if (pid_file_read(path, unused, sizeof(unused)) == getpid())
        unlink(path);
}

pid_t pid_file_read(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "pid_file %s: %s (is the proxy running?)", path, strerror(errno));
        return 0;
    }
    char line[32] = "";
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    char *end;
    long pid = got ? strtol(line, &end, 10) : 0;
    if (!got || pid <= 1 || (*end != '\n' && *end != '\0')) {
        snprintf(err, errlen, "pid_file %s: holds no PID", path);
        return 0;
    }
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        snprintf(err, errlen, "pid_file %s: no process %ld (a stale file: is the proxy running?)", path, pid);
        return 0;
    }
    return (pid_t)pid;
}
