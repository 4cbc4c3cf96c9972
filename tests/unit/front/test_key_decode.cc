#include <CppUTest/TestHarness.h>

#include <string>

#include "key_decode.h"

TEST_GROUP(KeyDecode)
{
    char out[16];
    size_t len = 0;

    KeyDecodeResult decode(const char *target, size_t max = 16)
    {
        return key_from_request_target(target, out, max, &len);
    }
    std::string key() { return std::string(out, len); }
};

TEST(KeyDecode, test_plain_path)
{
    LONGS_EQUAL(KEY_OK, decode("/user:42"));
    STRCMP_EQUAL("user:42", key().c_str());
}

TEST(KeyDecode, test_slashes_are_part_of_the_key)
{
    LONGS_EQUAL(KEY_OK, decode("/user/42"));
    STRCMP_EQUAL("user/42", key().c_str());
    LONGS_EQUAL(KEY_OK, decode("/user%2F42"));
    STRCMP_EQUAL("user/42", key().c_str());
    LONGS_EQUAL(KEY_OK, decode("//x"));
    STRCMP_EQUAL("/x", key().c_str());
}

TEST(KeyDecode, test_query_and_fragment_are_not_part_of_the_key)
{
    LONGS_EQUAL(KEY_OK, decode("/k?v=1"));
    STRCMP_EQUAL("k", key().c_str());
    LONGS_EQUAL(KEY_OK, decode("/k#frag"));
    STRCMP_EQUAL("k", key().c_str());
    LONGS_EQUAL(KEY_OK, decode("/a%3Fb"));
    STRCMP_EQUAL("a?b", key().c_str());
}

TEST(KeyDecode, test_binary_bytes)
{
    LONGS_EQUAL(KEY_OK, decode("/a%00b%ff%FE"));
    LONGS_EQUAL(5, len);
    MEMCMP_EQUAL("a\0b\xff\xfe", out, 5);
}

TEST(KeyDecode, test_plus_is_literal)
{
    LONGS_EQUAL(KEY_OK, decode("/a+b%20c"));
    STRCMP_EQUAL("a+b c", key().c_str());
}

TEST(KeyDecode, test_empty_key)
{
    LONGS_EQUAL(KEY_EMPTY, decode("/"));
    LONGS_EQUAL(KEY_EMPTY, decode("/?k=v"));
    LONGS_EQUAL(KEY_EMPTY, decode("/#x"));
}

TEST(KeyDecode, test_bad_encoding)
{
    LONGS_EQUAL(KEY_BAD_ENCODING, decode("/a%"));
    LONGS_EQUAL(KEY_BAD_ENCODING, decode("/a%4"));
    LONGS_EQUAL(KEY_BAD_ENCODING, decode("/a%4g"));
    LONGS_EQUAL(KEY_BAD_ENCODING, decode("/a%zz"));
}

TEST(KeyDecode, test_length_limit_applies_to_decoded_bytes)
{
    LONGS_EQUAL(KEY_OK, decode("/%41%42%43", 3));
    STRCMP_EQUAL("ABC", key().c_str());
    LONGS_EQUAL(KEY_TOO_LONG, decode("/abcd", 3));
    LONGS_EQUAL(KEY_TOO_LONG, decode("/%41%42%43%44", 3));
}

TEST(KeyDecode, test_absolute_form)
{
    LONGS_EQUAL(KEY_OK, decode("http://proxy:8080/k%2F1"));
    STRCMP_EQUAL("k/1", key().c_str());
    LONGS_EQUAL(KEY_EMPTY, decode("http://proxy:8080"));
    LONGS_EQUAL(KEY_EMPTY, decode("http://proxy?/hk"));  // a query, not a path
    LONGS_EQUAL(KEY_EMPTY, decode("http://proxy#/hk"));
    LONGS_EQUAL(KEY_OK, decode("http://proxy/hk?x=/y"));
    STRCMP_EQUAL("hk", key().c_str());
    LONGS_EQUAL(KEY_BAD_TARGET, decode("*"));
    LONGS_EQUAL(KEY_BAD_TARGET, decode("key"));
}
