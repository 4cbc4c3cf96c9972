// A stream of this process's own to the systemd journal (sd_journal_stream_fd), for lines that
// must not interleave with other processes' on the shared stderr. Apart from log.h: the journal's
// header brings syslog.h, whose LOG_* macros would clash with log.h's levels.
#pragma once

// A connected socket, or -1 (errno set) when there is no journal to connect to.
int journal_stream_open(const char *identifier);
