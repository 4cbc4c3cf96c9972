// How many CPUs this process may use, for workers = auto: not the machine's count, but what its
// affinity mask allows (taskset, systemd's CPUAffinity=) and what its cgroup's CPU quota allows
// (a container's --cpus, systemd's CPUQuota=), rounded up.
#pragma once

// At least 1.
int cpus_usable();

// A cgroup v2 cpu.max ("max 100000", "150000 100000") as whole CPUs, rounded up; 0 when it sets
// no limit or cannot be read.
int cpus_of_cpu_max(const char *text);

// A cgroup v1 quota and period (cpu.cfs_quota_us, cpu.cfs_period_us) as whole CPUs, rounded up;
// 0 when it sets no limit (a quota of -1).
int cpus_of_cfs_quota(long long quota_us, long long period_us);
