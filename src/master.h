// The master process: binds the listening sockets, forks the workers, restarts any that die,
// and stops them all on SIGTERM/SIGINT. Runs in the foreground (systemd style).
#pragma once

struct Config;

// Returns the process exit code.
int master_run(const Config *config);
