// The master's PID in a file ([proxy] pid_file), as nginx keeps one: for `redis-proxy -s
// reload|stop|quit` and for scripts, where no service manager knows the PID (make run).
#pragma once

#include <stddef.h>
#include <sys/types.h>

// Writes this process's PID to path (a whole new file put in place: never half written). False,
// with the reason, if it cannot.
bool pid_file_write(const char *path, char *err, size_t errlen);
// Removes path if it still holds this process's PID (not a successor's).
void pid_file_remove(const char *path);
// The PID in path, if it names a running process; else 0, with the reason.
pid_t pid_file_read(const char *path, char *err, size_t errlen);
