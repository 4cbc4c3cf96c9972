#include <CppUTest/TestHarness.h>
#include <string.h>

#include "redis_error.h"

TEST_GROUP(RedisError){};

static RedisErrorClass class_of(const char *text) { return redis_error_class(text, strlen(text)); }

TEST(RedisError, test_redis_that_cannot_serve_for_now_is_transient)
{
    LONGS_EQUAL(REDIS_ERROR_TRANSIENT, class_of("LOADING Redis is loading the dataset in memory"));
    LONGS_EQUAL(REDIS_ERROR_TRANSIENT, class_of("BUSY Redis is busy running a script."));
    LONGS_EQUAL(REDIS_ERROR_TRANSIENT, class_of("MASTERDOWN Link with MASTER is down"));
    LONGS_EQUAL(REDIS_ERROR_TRANSIENT, class_of("TRYAGAIN Multiple keys request during rehashing of slot"));
    LONGS_EQUAL(REDIS_ERROR_TRANSIENT, class_of("CLUSTERDOWN The cluster is down"));
    LONGS_EQUAL(REDIS_ERROR_TRANSIENT, class_of("ERR max number of clients reached"));
}

TEST(RedisError, test_a_command_that_will_never_be_allowed_is_refused)
{
    LONGS_EQUAL(REDIS_ERROR_REFUSED, class_of("NOPERM this user has no permissions to run the 'publish' command"));
    LONGS_EQUAL(REDIS_ERROR_REFUSED, class_of("ERR unknown command 'CLIENT', with args beginning with:"));
    LONGS_EQUAL(REDIS_ERROR_REFUSED, class_of("ERR Unknown subcommand or wrong number of arguments for 'TRACKING'"));
}

TEST(RedisError, test_anything_else_is_redis_s_answer)
{
    LONGS_EQUAL(REDIS_ERROR_ANSWER, class_of("WRONGTYPE Operation against a key holding the wrong kind of value"));
    LONGS_EQUAL(REDIS_ERROR_ANSWER, class_of("ERR syntax error"));
    LONGS_EQUAL(REDIS_ERROR_ANSWER, class_of(""));
    LONGS_EQUAL(REDIS_ERROR_ANSWER, class_of("BUS"));  // a prefix of a prefix is not it
    LONGS_EQUAL(REDIS_ERROR_ANSWER, redis_error_class("LOADING", 4));
}
