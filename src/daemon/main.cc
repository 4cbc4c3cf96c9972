// redis-proxy: a caching HTTP proxy in front of Redis. The command line, then the master.
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "health_probe.h"
#include "log.h"
#include "master.h"
#include "pid_file.h"
#include "version.h"
static const char DEFAULT_CONFIG[] = "/etc/redis-proxy/proxy.ini";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: redis-proxy [-c FILE] [-o section.key=value]... [-t [-q] | -T | -R PID | -s SIGNAL | --health]\n"
            "\n"
            "  -c, --config FILE   configuration file (default %s)\n"
            "  -o S.K=V            override one setting, e.g. -o cache.ttl=30s (repeatable)\n"
            "  -t, --test          check the configuration and exit (0 valid, %d invalid)\n"
            "  -q, --quiet         with -t: say nothing when it is valid\n"
            "  -T                  check the configuration, print every setting and exit\n"
            "  -R, --reload PID    check the configuration; if valid, tell the master PID to reload\n"
            "                      it (SIGHUP), else say why and exit %d (systemctl reload runs it)\n"
            "  -s, --signal SIGNAL signal the master named in [proxy] pid_file: reload (as -R, the\n"
            "                      configuration checked first), stop (graceful), quit (at once),\n"
            "                      reopen (the access log's file, after it was rotated)\n"
            "      --health        ask the running proxy's /readyz (at [admin] listen): exit 0 if\n"
            "                      ready, 1 if not (a container's HEALTHCHECK)\n"
            "      --settings      print every setting (default, values, meaning) as a markdown table\n"
            "  -v, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n"
            "\n"
            "Exit status: 0 after a stop, %d for a configuration error or an address in use, 1 else.\n",
            DEFAULT_CONFIG, EXIT_CONFIG, EXIT_CONFIG, EXIT_CONFIG);
}

// -s: the signal its name stands for, or 0.
static int signal_of(const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } known[] = {{"reload", SIGHUP}, {"stop", SIGTERM}, {"quit", SIGQUIT}, {"reopen", SIGUSR1}};
    for (const auto &k : known)
        if (strcmp(name, k.name) == 0)
            return k.sig;
    return 0;
}

// Sends sig to the master whose PID the configuration's pid_file holds. False, with the reason on
// stderr, if not.
static bool signal_master(const Config *config, int sig, const char *name)
{
    if (config->pid_file[0] == '\0') {
        fprintf(stderr, "redis-proxy: -s needs [proxy] pid_file in the configuration (the running proxy's)\n");
        return false;
    }
    char err[600];
    pid_t pid = pid_file_read(config->pid_file, err, sizeof(err));
    if (pid == 0) {
        fprintf(stderr, "redis-proxy: cannot %s: %s\n", name, err);
        return false;
    }
    if (kill(pid, sig) != 0) {
        fprintf(stderr, "redis-proxy: cannot signal the master (pid %d) to %s: %s\n", (int)pid, name, strerror(errno));
        return false;
    }
    return true;
}

// Sends SIGHUP to the master whose PID is `text`. False, with the reason on stderr, if not.
static bool signal_reload(const char *text)
{
    char *end;
    long pid = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || pid <= 1) {
        fprintf(stderr, "redis-proxy: -R needs the PID of the running master, not '%s'\n", text);
        return false;
    }
    if (kill((pid_t)pid, SIGHUP) != 0) {
        fprintf(stderr, "redis-proxy: cannot signal the master (pid %ld) to reload: %s\n", pid, strerror(errno));
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    log_init();
    const char *path = DEFAULT_CONFIG;
    bool test_only = false, print_config = false, quiet = false, health = false;
    const char *reload_pid = NULL, *signal_name = NULL;
    const char *overrides[64];
    int override_count = 0;
    int opt;
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},        {"reload", required_argument, NULL, 'R'},
        {"version", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {"health", no_argument, NULL, 'H'},       {"signal", required_argument, NULL, 's'},
        {"settings", no_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    while ((opt = getopt_long(argc, argv, "c:o:tqTR:s:vh", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'o':
            if (override_count == 64) {
                fprintf(stderr, "redis-proxy: too many -o options (at most 64)\n");
                return 1;
            }
            overrides[override_count++] = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'T':
            print_config = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'R':
            reload_pid = optarg;
            break;
        case 'H':
            health = true;
            break;
        case 'S':
            config_print_reference(stdout);
            return 0;
        case 's':
            signal_name = optarg;
            if (signal_of(signal_name) == 0) {
                fprintf(stderr, "redis-proxy: -s takes reload, stop or quit, not '%s'\n", signal_name);
                return 1;
            }
            break;
        case 'v':
            printf("redis-proxy %s\n", REDIS_PROXY_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "redis-proxy: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 1;
    }

    static Config config;  // lives as long as the process: workers keep pointers into it
    ConfigSource source = {path, overrides, override_count};
    char err[1024];
    if (!config_load(&config, &source, err, sizeof(err))) {
        fprintf(stderr, "redis-proxy: %s\n", err);
        // The file is read first, then each -o: an override's error is the override's alone.
        bool override_failed = strncmp(err, "-o ", 3) == 0;
        if ((test_only || print_config) && override_failed)
            fprintf(stderr, "redis-proxy: configuration test failed on the -o override (file %s is valid)\n", path);
        else if (test_only || print_config)
            fprintf(stderr, "redis-proxy: configuration file %s test failed\n", path);
        else if (reload_pid != NULL || signal_name != NULL)
            fprintf(stderr, "redis-proxy: %s refused: the running configuration stays in force\n",
                    signal_name != NULL ? signal_name : "reload");
        return health ? 1 : EXIT_CONFIG;  // (a health check answers 0 or 1 only)
    }
    if (print_config) {
        config_print(&config, stdout);
        return 0;
    }
    if (test_only) {
        if (!quiet)
            fprintf(stderr, "redis-proxy: configuration file %s test is successful\n", path);
        return 0;
    }
    if (reload_pid != NULL)
        return signal_reload(reload_pid) ? 0 : 1;
    if (signal_name != NULL)
        return signal_master(&config, signal_of(signal_name), signal_name) ? 0 : 1;
    if (health)
        return health_probe(&config);
    log_set_level((int)config.log_level);
    return master_run(&config, &source);
}
