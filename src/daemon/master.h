// The master process: binds the listening sockets, forks the workers, restarts any that die,
// reloads the configuration on SIGHUP, and stops them all on SIGTERM/SIGINT (gracefully) or
// SIGQUIT (at once). Runs in the foreground (systemd style).
#pragma once

struct Config;
struct ConfigSource;

// `source` is where a reload reads the configuration again. Returns the process exit code.
int master_run(const Config *config, const ConfigSource *source);
