#include <CppUTest/TestHarness.h>

#include <sched.h>

#include "cpus.h"

TEST_GROUP(Cpus){};

TEST(Cpus, test_a_cgroup_v2_quota_counts_whole_cpus_rounded_up)
{
    LONGS_EQUAL(0, cpus_of_cpu_max("max 100000\n"));
    LONGS_EQUAL(1, cpus_of_cpu_max("100000 100000\n"));
    LONGS_EQUAL(2, cpus_of_cpu_max("150000 100000\n"));
    LONGS_EQUAL(1, cpus_of_cpu_max("5000 100000"));  // a twentieth of a CPU still runs one worker
    LONGS_EQUAL(4, cpus_of_cpu_max("200000 50000"));
    LONGS_EQUAL(0, cpus_of_cpu_max(""));
    LONGS_EQUAL(0, cpus_of_cpu_max("garbage"));
}

TEST(Cpus, test_a_cgroup_v1_quota_of_minus_one_is_no_limit)
{
    LONGS_EQUAL(0, cpus_of_cfs_quota(-1, 100000));
    LONGS_EQUAL(3, cpus_of_cfs_quota(250000, 100000));
    LONGS_EQUAL(0, cpus_of_cfs_quota(100000, 0));
}

TEST(Cpus, test_usable_cpus_are_at_most_the_affinity_mask)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
    CHECK(cpus_usable() >= 1);
    CHECK(cpus_usable() <= CPU_COUNT(&set));
}
