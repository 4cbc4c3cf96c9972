// The clock helpers: the two monotonic clocks agree, and the back-off doubles up to its cap.
#include <CppUTest/TestHarness.h>

#include "clock.h"

TEST_GROUP(Clock){};

TEST(Clock, test_backoff_doubles_from_first_up_to_its_cap)
{
    LONGS_EQUAL(100, backoff_ms(100, 2000, 0));
    LONGS_EQUAL(200, backoff_ms(100, 2000, 1));
    LONGS_EQUAL(1600, backoff_ms(100, 2000, 4));
    LONGS_EQUAL(2000, backoff_ms(100, 2000, 5));
    LONGS_EQUAL(2000, backoff_ms(100, 2000, 1000));  // no overflow however many attempts
}

TEST(Clock, test_the_coarse_clock_never_runs_ahead_of_the_precise_one)
{
    for (int i = 0; i < 1000; i++) {
        uint64_t coarse = monotonic_ms();
        CHECK(coarse <= monotonic_us() / 1000);
    }
}
