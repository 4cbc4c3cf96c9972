// redis-proxy: a caching HTTP proxy in front of Redis. The command line, then the master.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "version.h"
static const char DEFAULT_CONFIG[] = "/etc/redis-proxy/proxy.ini";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: redis-proxy [-c FILE] [-o section.key=value]... [-t | -T]\n"
            "\n"
            "  -c FILE   configuration file (default %s)\n"
            "  -o S.K=V  override one setting, e.g. -o cache.ttl=30s (repeatable)\n"
            "  -t        check the configuration and exit (0 valid, 1 invalid)\n"
            "  -T        check the configuration, print every setting and exit\n"
            "  -v        print the version and exit\n"
            "  -h        print this help and exit\n",
            DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
    log_init();
    const char *path = DEFAULT_CONFIG;
    bool test_only = false, print_config = false;
    const char *overrides[64];
    int override_count = 0;
    int opt;
    while ((opt = getopt(argc, argv, "c:o:tTvh")) != -1) {
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
        if (test_only || print_config)
            fprintf(stderr, "redis-proxy: configuration file %s test failed\n", path);
        return 1;
    }
    if (print_config) {
        config_print(&config, stdout);
        return 0;
    }
    if (test_only) {
        fprintf(stderr, "redis-proxy: configuration file %s test is successful\n", path);
        return 0;
    }
    log_set_level((int)config.log_level);
    return master_run(&config, &source);
}
