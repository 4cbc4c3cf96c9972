#include <CppUTest/TestHarness.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "address.h"

TEST_GROUP(AddressLoopback)
{
    bool ipv4(const char *text)
    {
        struct sockaddr_in in;
        memset(&in, 0, sizeof(in));
        in.sin_family = AF_INET;
        CHECK_EQUAL(1, inet_pton(AF_INET, text, &in.sin_addr));
        return address_is_loopback((struct sockaddr *)&in);
    }
    bool ipv6(const char *text)
    {
        struct sockaddr_in6 in6;
        memset(&in6, 0, sizeof(in6));
        in6.sin6_family = AF_INET6;
        CHECK_EQUAL(1, inet_pton(AF_INET6, text, &in6.sin6_addr));
        return address_is_loopback((struct sockaddr *)&in6);
    }
};

TEST(AddressLoopback, TheWholeOf127SlashEightIsLoopback)
{
    CHECK(ipv4("127.0.0.1"));
    CHECK(ipv4("127.0.0.2"));
    CHECK(ipv4("127.255.255.254"));
    CHECK_FALSE(ipv4("128.0.0.1"));
    CHECK_FALSE(ipv4("10.0.0.1"));
    CHECK_FALSE(ipv4("0.0.0.0"));
    CHECK_FALSE(ipv4("192.0.2.2"));
}

TEST(AddressLoopback, Ipv6LoopbackAndMappedIpv4)
{
    CHECK(ipv6("::1"));
    CHECK(ipv6("::ffff:127.0.0.1"));
    CHECK_FALSE(ipv6("::ffff:10.1.2.3"));
    CHECK_FALSE(ipv6("::"));
    CHECK_FALSE(ipv6("fd00::2"));
    CHECK_FALSE(ipv6("fe80::1"));
}

TEST(AddressLoopback, AUnixSocketIsLocal)
{
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    CHECK(address_is_loopback((struct sockaddr *)&un));
}
