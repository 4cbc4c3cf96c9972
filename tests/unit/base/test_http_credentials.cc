#include <CppUTest/TestHarness.h>

#include <string.h>

#include <string>

#include "http_credentials.h"

TEST_GROUP(HttpCredentials)
{
    char buf[64];
    HttpCredentials c;
    std::string value;  // what c points into

    HttpCredentialsKind parse(const std::string &value) { return parse_into(value, sizeof(buf)); }
    HttpCredentialsKind parse_into(const std::string &text, size_t cap)
    {
        memset(buf, 0x55, sizeof(buf));
        value = text;
        return http_credentials_parse(value.data(), value.size(), buf, cap, &c);
    }
    std::string user() { return std::string(c.user, c.user_len); }
    std::string password() { return std::string(c.password, c.password_len); }
    void malformed(const std::string &text)
    {
        LONGS_EQUAL_TEXT(HTTP_CREDENTIALS_MALFORMED, parse(text), ("'" + text + "'").c_str());
        POINTERS_EQUAL(NULL, c.user);
        POINTERS_EQUAL(NULL, c.password);
    }
};

TEST(HttpCredentials, test_basic_gives_user_and_password)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic dXNlcjpwYXNz"));  // user:pass
    STRCMP_EQUAL("user", user().c_str());
    STRCMP_EQUAL("pass", password().c_str());
    CHECK(c.user >= buf && c.user < buf + sizeof(buf));
}

TEST(HttpCredentials, test_scheme_is_case_insensitive)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("basic dXNlcjpwYXNz"));
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("BASIC dXNlcjpwYXNz"));
    LONGS_EQUAL(HTTP_CREDENTIALS_BEARER, parse("bEARER t"));
}

TEST(HttpCredentials, test_blanks_around_and_between_are_allowed)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("  Basic \t  dXNlcjpwYXNz \t"));
    STRCMP_EQUAL("pass", password().c_str());
    LONGS_EQUAL(HTTP_CREDENTIALS_BEARER, parse("\tBearer   tok  "));
    STRCMP_EQUAL("tok", password().c_str());
}

TEST(HttpCredentials, test_password_may_hold_colons_and_user_or_password_may_be_empty)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic dTphOmI6Yw=="));  // u:a:b:c
    STRCMP_EQUAL("u", user().c_str());
    STRCMP_EQUAL("a:b:c", password().c_str());
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic OnB3"));  // :pw
    STRCMP_EQUAL("", user().c_str());
    STRCMP_EQUAL("pw", password().c_str());
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic dTo="));  // u:
    STRCMP_EQUAL("u", user().c_str());
    LONGS_EQUAL(0, c.password_len);
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic Og=="));  // :
    LONGS_EQUAL(0, c.user_len);
    LONGS_EQUAL(0, c.password_len);
}

TEST(HttpCredentials, test_padding_may_be_left_out)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic dXNlcjpwYXNzMQ"));  // user:pass1
    STRCMP_EQUAL("pass1", password().c_str());
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic dXNlcjpwYXNzMTI"));  // user:pass12
    STRCMP_EQUAL("pass12", password().c_str());
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic dXNlcjpwYXNzMTI="));
    STRCMP_EQUAL("pass12", password().c_str());
}

TEST(HttpCredentials, test_binary_bytes_decode_as_they_are)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse("Basic dTr/AA=="));  // "u:" 0xff 0x00
    LONGS_EQUAL(2, c.password_len);
    LONGS_EQUAL(0xff, (unsigned char)c.password[0]);
    LONGS_EQUAL(0, c.password[1]);
}

TEST(HttpCredentials, test_bearer_gives_the_token_in_place)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_BEARER, parse("Bearer abc-DEF._~+/xyz=="));
    POINTERS_EQUAL(value.data() + 7, c.password);
    STRCMP_EQUAL("abc-DEF._~+/xyz==", password().c_str());
    POINTERS_EQUAL(NULL, c.user);
    LONGS_EQUAL(HTTP_CREDENTIALS_BEARER, parse("Bearer p@ss!w%rd"));  // a password, not only RFC 6750's token68
    STRCMP_EQUAL("p@ss!w%rd", password().c_str());
}

TEST(HttpCredentials, test_bearer_token_needs_no_buffer)
{
    std::string token(10000, 't');
    LONGS_EQUAL(HTTP_CREDENTIALS_BEARER, http_credentials_parse(("Bearer " + token).c_str(), 7 + token.size(), NULL, 0, &c));
    LONGS_EQUAL(token.size(), c.password_len);
}

TEST(HttpCredentials, test_other_schemes_are_told_apart)
{
    LONGS_EQUAL(HTTP_CREDENTIALS_OTHER_SCHEME, parse("Digest username=\"x\""));
    LONGS_EQUAL(HTTP_CREDENTIALS_OTHER_SCHEME, parse("Negotiate abc"));
    LONGS_EQUAL(HTTP_CREDENTIALS_OTHER_SCHEME, parse("Basics dXNlcjpwYXNz"));
    LONGS_EQUAL(HTTP_CREDENTIALS_OTHER_SCHEME, parse("Bas dXNlcjpwYXNz"));
    LONGS_EQUAL(HTTP_CREDENTIALS_OTHER_SCHEME, parse("Token"));
}

TEST(HttpCredentials, test_malformed_values)
{
    malformed("");
    malformed("   ");
    malformed("Basic");
    malformed("Basic    ");
    malformed("Bearer");
    malformed("Bearer \t");
    malformed("Basic dXNlcnBhc3M=");      // userpass: no colon
    malformed("Basic !!!!");              // not base64
    malformed("Basic dXNlcjpwYXNz=");     // padding that does not make a multiple of four
    malformed("Basic dXNlcjpwYXN=z");     // '=' within
    malformed("Basic dX=lcjpwYXNz");
    malformed("Basic dXNlcjpwYXNzM");     // five bits too many: not a byte
    malformed("Basic d");
    malformed("Basic ====");
    malformed("Basic dXNl cjpwYXNz");     // a blank within
    malformed("Basic dXNlcjpwYXNz dXNl");
    malformed("Basic dXNlcjpw-_Nz");      // base64url
    malformed("Basic dXNlcjpwYXNz===");
    malformed("Bearer a b");
    malformed("Bearer a\x01");
    malformed("Bearer a\x7f");
    malformed(std::string("Bearer a\0b", 10));
    malformed("Bearer a\r\nX-Injected: 1");
}

TEST(HttpCredentials, test_more_than_the_buffer_is_malformed)
{
    // "u:" and 46 x's: 48 bytes, which fit in 48 and not in 47.
    std::string fits = "Basic dTp4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4";
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse(fits));
    LONGS_EQUAL(46, c.password_len);
    LONGS_EQUAL(HTTP_CREDENTIALS_MALFORMED, parse_into(fits, 47));
    LONGS_EQUAL(HTTP_CREDENTIALS_BASIC, parse_into(fits, 48));
    std::string huge = "Basic " + std::string(1 << 20, 'A');
    LONGS_EQUAL(HTTP_CREDENTIALS_MALFORMED, parse(huge));
    LONGS_EQUAL(HTTP_CREDENTIALS_MALFORMED, parse_into("Basic dXNlcjpwYXNz", 0));
}

TEST(HttpCredentials, test_value_need_not_end_with_nul)
{
    value = "Bearer tokenMORE";
    LONGS_EQUAL(HTTP_CREDENTIALS_BEARER, http_credentials_parse(value.data(), 12, buf, sizeof(buf), &c));
    STRCMP_EQUAL("token", password().c_str());
}
