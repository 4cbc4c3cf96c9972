#include "journal_stream.h"

#include <systemd/sd-journal.h>

int journal_stream_open(const char *identifier) { return sd_journal_stream_fd(identifier, LOG_INFO, 0); }
