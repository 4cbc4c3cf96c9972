#include "cpus.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cpus_of_cpu_max(const char *text)
{
    long long quota, period;
    if (sscanf(text, "%lld %lld", &quota, &period) != 2)
        return 0;  // "max ...": no quota
    return cpus_of_cfs_quota(quota, period);
}

int cpus_of_cfs_quota(long long quota_us, long long period_us)
{
    if (quota_us <= 0 || period_us <= 0)
        return 0;
    long long cpus = (quota_us + period_us - 1) / period_us;
    return cpus > 1 << 20 ? 1 << 20 : (int)cpus;
}

// The first line of a small file, or false.
static bool read_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    return ok;
}

// The tightest quota on the way from the cgroup at `path` (under `root`) up to the top: a limit
// on any ancestor holds for its descendants too. v2 reads cpu.max, v1 cpu.cfs_quota_us.
static int quota_of(const char *root, const char *path, bool v2)
{
    char dir[512], file[600], text[128];
    snprintf(dir, sizeof(dir), "%s", path);
    int tightest = 0;
    for (;;) {
        int cpus = 0;
        if (v2) {
            snprintf(file, sizeof(file), "%s%s/cpu.max", root, strcmp(dir, "/") == 0 ? "" : dir);
            if (read_line(file, text, sizeof(text)))
                cpus = cpus_of_cpu_max(text);
        } else {
            snprintf(file, sizeof(file), "%s%s/cpu.cfs_quota_us", root, strcmp(dir, "/") == 0 ? "" : dir);
            char period[64];
            char period_file[600];
            snprintf(period_file, sizeof(period_file), "%s%s/cpu.cfs_period_us", root, strcmp(dir, "/") == 0 ? "" : dir);
            if (read_line(file, text, sizeof(text)) && read_line(period_file, period, sizeof(period)))
                cpus = cpus_of_cfs_quota(atoll(text), atoll(period));
        }
        if (cpus > 0 && (tightest == 0 || cpus < tightest))
            tightest = cpus;
        char *slash = strrchr(dir, '/');
        if (slash == NULL || strcmp(dir, "/") == 0)
            break;
        if (slash == dir)
            strcpy(dir, "/");
        else
            *slash = '\0';
    }
    return tightest;
}

// The CPU quota of this process's cgroup in whole CPUs, 0 for none: cgroup v2 ("0::PATH"), or
// v1's cpu controller ("N:cpu,cpuacct:PATH").
static int cgroup_quota()
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return 0;
    char line[640];
    int tightest = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *controllers = strchr(line, ':');
        char *path = controllers != NULL ? strchr(controllers + 1, ':') : NULL;
        if (path == NULL)
            continue;
        *path++ = '\0';
        controllers++;
        int cpus = 0;
        if (controllers[0] == '\0') {
            cpus = quota_of("/sys/fs/cgroup", path, true);
        } else {
            bool cpu = false;
            for (char *c = strtok(controllers, ","); c != NULL; c = strtok(NULL, ","))
                cpu = cpu || strcmp(c, "cpu") == 0;
            if (cpu && (cpus = quota_of("/sys/fs/cgroup/cpu", path, false)) == 0)
                cpus = quota_of("/sys/fs/cgroup/cpu,cpuacct", path, false);
        }
        if (cpus > 0 && (tightest == 0 || cpus < tightest))
            tightest = cpus;
    }
    fclose(f);
    return tightest;
}

int cpus_usable()
{
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online < 1 ? 1 : (int)online;
    }
    int quota = cgroup_quota();
    if (quota > 0 && quota < n)
        n = quota;
    return n;
}
