#include <CppUTest/TestHarness.h>

#include "http_message.h"

TEST_GROUP(HttpMessage){};

TEST(HttpMessage, test_an_etag_is_the_digest_in_hex_in_quotes)
{
    char etag[HTTP_ETAG_LEN + 1];
    http_format_etag(etag, 0x0123456789abcdefULL);
    STRCMP_EQUAL("\"0123456789abcdef\"", etag);
    http_format_etag(etag, 0);
    STRCMP_EQUAL("\"0000000000000000\"", etag);
}

TEST(HttpMessage, test_if_none_match_lists_are_compared_weakly)
{
    const char *etag = "\"0123456789abcdef\"";
    CHECK(http_etag_listed("\"0123456789abcdef\"", etag));
    CHECK(http_etag_listed("W/\"0123456789abcdef\"", etag));
    CHECK(http_etag_listed("*", etag));
    CHECK(http_etag_listed("\"x\", \"0123456789abcdef\"", etag));
    CHECK(http_etag_listed("\"x\",W/\"0123456789abcdef\" , \"y\"", etag));
    CHECK(http_etag_listed("  \"0123456789abcdef\"\t", etag));
    CHECK_FALSE(http_etag_listed("", etag));
    CHECK_FALSE(http_etag_listed("\"0123456789abcdee\"", etag));
    CHECK_FALSE(http_etag_listed("0123456789abcdef", etag));    // unquoted: not this tag
    CHECK_FALSE(http_etag_listed("\"0123456789abcdef", etag));  // cut short
    CHECK_FALSE(http_etag_listed("\"0123456789abcdef\"x", etag));
    CHECK_FALSE(http_etag_listed("w/\"0123456789abcdef\"", etag));  // W/ is case-sensitive
    CHECK_FALSE(http_etag_listed("**", etag));
    CHECK_FALSE(http_etag_listed(",,,", etag));
}
