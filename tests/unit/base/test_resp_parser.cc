#include <CppUTest/TestHarness.h>

#include <event2/buffer.h>
#include <string.h>

#include <string>
#include <vector>

#include "resp_parser.h"

TEST_GROUP(RespParser)
{
    RespParser p;

    void setup() override { resp_parser_init(&p, 8, 64); }
    void teardown() override { resp_parser_free(&p); }

    std::vector<std::string> argv(const std::string &buf)
    {
        std::vector<std::string> out;
        const char *base = resp_arg_base(&p, buf.data());
        for (int i = 0; i < p.argc; i++)
            out.push_back(std::string(base + p.args[i].offset, p.args[i].len));
        return out;
    }

    // Feeds buf growing one byte at a time: incomplete until the last byte, then one command.
    void check_every_prefix(const std::string &buf, const std::vector<std::string> &expected)
    {
        for (size_t n = 1; n < buf.size(); n++)
            LONGS_EQUAL_TEXT(RESP_INCOMPLETE, resp_parse(&p, buf.data(), n), ("prefix " + std::to_string(n)).c_str());
        LONGS_EQUAL(RESP_COMMAND, resp_parse(&p, buf.data(), buf.size()));
        LONGS_EQUAL(buf.size(), p.consumed);
        CHECK(expected == argv(buf));
    }

    // Feeds the first k bytes, then all of it, for every k.
    void check_every_split(const std::string &buf, const std::vector<std::string> &expected)
    {
        for (size_t k = 0; k <= buf.size(); k++) {
            resp_parser_free(&p);
            resp_parser_init(&p, 8, 64);
            RespParseStatus first = resp_parse(&p, buf.data(), k);
            if (k < buf.size())
                LONGS_EQUAL(RESP_INCOMPLETE, first);
            LONGS_EQUAL(RESP_COMMAND, resp_parse(&p, buf.data(), buf.size()));
            CHECK(expected == argv(buf));
        }
    }

    RespParseStatus parse(const std::string &buf) { return resp_parse(&p, buf.data(), buf.size()); }
};

TEST(RespParser, test_multibulk_get)
{
    std::string buf = "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
    LONGS_EQUAL(RESP_COMMAND, parse(buf));
    LONGS_EQUAL(buf.size(), p.consumed);
    CHECK((std::vector<std::string>{"GET", "foo"}) == argv(buf));
}

TEST(RespParser, test_multibulk_one_byte_at_a_time) { check_every_prefix("*2\r\n$3\r\nGET\r\n$5\r\nab\r\nc\r\n", {"GET", "ab\r\nc"}); }

TEST(RespParser, test_multibulk_every_split_point) { check_every_split("*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$0\r\n\r\n", {"MGET", "a", ""}); }

TEST(RespParser, test_binary_safe_argument)
{
    std::string buf("*2\r\n$3\r\nGET\r\n$4\r\na\0\r\xff\r\n", 23);
    LONGS_EQUAL(RESP_COMMAND, parse(buf));
    CHECK((std::vector<std::string>{"GET", std::string("a\0\r\xff", 4)}) == argv(buf));
}

TEST(RespParser, test_inline_command) { check_every_prefix("GET  foo\tbar\r\n", {"GET", "foo", "bar"}); }

TEST(RespParser, test_inline_with_bare_newline) { check_every_split("PING\n", {"PING"}); }

TEST(RespParser, test_empty_inline_line_is_skipped)
{
    LONGS_EQUAL(RESP_EMPTY, parse("\r\nPING\r\n"));
    LONGS_EQUAL(2, p.consumed);
}

TEST(RespParser, test_zero_and_negative_multibulk_are_skipped)
{
    LONGS_EQUAL(RESP_EMPTY, parse("*0\r\n"));
    LONGS_EQUAL(4, p.consumed);
    LONGS_EQUAL(RESP_EMPTY, parse("*-1\r\n"));
    LONGS_EQUAL(5, p.consumed);
}

TEST(RespParser, test_pipelined_commands_parse_one_after_another)
{
    std::string buf = "*1\r\n$4\r\nPING\r\nGET k\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n";
    size_t at = 0;
    std::vector<std::vector<std::string>> seen;
    while (at < buf.size()) {
        LONGS_EQUAL(RESP_COMMAND, resp_parse(&p, buf.data() + at, buf.size() - at));
        seen.push_back(argv(buf.substr(at)));
        at += p.consumed;
    }
    LONGS_EQUAL(3, seen.size());
    CHECK((std::vector<std::string>{"PING"}) == seen[0]);
    CHECK((std::vector<std::string>{"GET", "k"}) == seen[1]);
    CHECK((std::vector<std::string>{"GET", "x"}) == seen[2]);
}

TEST(RespParser, test_bulk_longer_than_max_is_an_error_before_its_body_arrives)
{
    LONGS_EQUAL(RESP_ERROR, parse("*2\r\n$3\r\nGET\r\n$65\r\n"));
    STRCMP_EQUAL("Protocol error: argument longer than max_key_size", p.error);
}

TEST(RespParser, test_too_many_arguments)
{
    LONGS_EQUAL(RESP_ERROR, parse("*9\r\n"));
    STRCMP_EQUAL("Protocol error: invalid multibulk length", p.error);
    LONGS_EQUAL(RESP_ERROR, parse("a b c d e f g h i\r\n"));
    STRCMP_EQUAL("Protocol error: too many arguments", p.error);
}

TEST(RespParser, test_garbage)
{
    LONGS_EQUAL(RESP_ERROR, parse("*x\r\n"));
    STRCMP_EQUAL("Protocol error: invalid multibulk length", p.error);
    LONGS_EQUAL(RESP_ERROR, parse("*1\r\n:3\r\n"));
    STRCMP_EQUAL("Protocol error: expected '$'", p.error);
    LONGS_EQUAL(RESP_ERROR, parse("*1\r\n$-3\r\n"));
    STRCMP_EQUAL("Protocol error: invalid bulk length", p.error);
    LONGS_EQUAL(RESP_ERROR, parse("*1\r\n$3\r\nGETxx"));
    STRCMP_EQUAL("Protocol error: bulk not terminated by CRLF", p.error);
    LONGS_EQUAL(RESP_ERROR, parse("*1\r\n$3\nGET\r\n"));
    STRCMP_EQUAL("Protocol error: invalid bulk length", p.error);
    LONGS_EQUAL(RESP_ERROR, parse("*1\r\n$99999999999999999999999\r\n"));
}

// Counts and lengths of one and two digits take a shorter way than longer ones: every length
// from 0 to 63 (max_bulk) reads the same, also written with a leading zero, and a line that
// breaks off or ends wrong right after its digits is still incomplete or an error.
TEST(RespParser, test_short_and_long_number_lines_read_alike)
{
    for (size_t n = 0; n <= 63; n++) {
        std::string arg(n, 'a');
        for (std::string len : {std::to_string(n), "0" + std::to_string(n), "00" + std::to_string(n)}) {
            resp_parser_free(&p);
            resp_parser_init(&p, 8, 64);
            std::string buf = "*01\r\n$" + len + "\r\n" + arg + "\r\n";
            LONGS_EQUAL_TEXT(RESP_COMMAND, parse(buf), buf.c_str());
            CHECK((std::vector<std::string>{arg}) == argv(buf));
        }
    }
    for (const char *bad : {"*1\r\n$1\r\r", "*1\r\n$12\rx\n", "*1\r\n$1x\r\n", "*2\n\r", "*1\r\n$\r\n\r\n"}) {
        resp_parser_free(&p);
        resp_parser_init(&p, 8, 64);
        LONGS_EQUAL_TEXT(RESP_ERROR, parse(bad), bad);
    }
    resp_parser_free(&p);
    resp_parser_init(&p, 8, 64);
    LONGS_EQUAL(RESP_INCOMPLETE, parse("*1\r\n$12\r"));
}

TEST(RespParser, test_number_line_without_crlf_is_bounded)
{
    LONGS_EQUAL(RESP_INCOMPLETE, parse("*12"));
    LONGS_EQUAL(RESP_ERROR, parse("*" + std::string(40, '1')));
}

TEST(RespParser, test_inline_line_too_long)
{
    std::string buf = "GET " + std::string(RESP_MAX_INLINE + 10, 'x');
    LONGS_EQUAL(RESP_ERROR, parse(buf));
    STRCMP_EQUAL("Protocol error: too big inline request", p.error);
}

TEST(RespParser, test_inline_argument_longer_than_max)
{
    LONGS_EQUAL(RESP_ERROR, parse("GET " + std::string(65, 'k') + "\r\n"));
}

TEST(RespParser, test_argument_array_grows_with_the_command)
{
    std::string buf = "*8\r\n";
    for (int i = 0; i < 8; i++)
        buf += "$1\r\n" + std::to_string(i) + "\r\n";
    LONGS_EQUAL(RESP_COMMAND, parse(buf));
    LONGS_EQUAL(8, p.argc);
    STRCMP_EQUAL("7", argv(buf)[7].c_str());
    CHECK(p.args_cap <= 8);
}

TEST(RespParser, test_progress_survives_a_moved_buffer)
{
    std::string buf = "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
    std::string first = buf.substr(0, 15);
    LONGS_EQUAL(RESP_INCOMPLETE, resp_parse(&p, first.data(), first.size()));
    std::string moved = buf;  // a different address, same bytes
    LONGS_EQUAL(RESP_COMMAND, resp_parse(&p, moved.data(), moved.size()));
    CHECK((std::vector<std::string>{"GET", "foo"}) == argv(moved));
}

TEST_GROUP(RespEncoder)
{
    evbuffer *out;
    void setup() override { out = evbuffer_new(); }
    void teardown() override { evbuffer_free(out); }
    std::string text()
    {
        size_t n = evbuffer_get_length(out);
        std::string s(n, '\0');
        evbuffer_copyout(out, &s[0], n);
        return s;
    }
};

TEST(RespEncoder, test_each_reply_type)
{
    resp_add_simple(out, "OK");
    resp_add_integer(out, -42);
    resp_add_bulk(out, "a\0b", 3);
    resp_add_nil(out, 2);
    resp_add_array_header(out, 2);
    resp_add_error(out, "ERR unknown command '%s'", "X");
    CHECK(std::string("+OK\r\n:-42\r\n$3\r\na\0b\r\n$-1\r\n*2\r\n-ERR unknown command 'X'\r\n", 55) == text());
}

TEST(RespEncoder, test_header_formatting)
{
    char buf[RESP_HEADER_MAX];
    STRCMP_EQUAL("$0\r\n", std::string(buf, resp_format_header(buf, '$', 0)).c_str());
    STRCMP_EQUAL("$32\r\n", std::string(buf, resp_format_header(buf, '$', 32)).c_str());
    STRCMP_EQUAL(":-1\r\n", std::string(buf, resp_format_header(buf, ':', -1)).c_str());
    STRCMP_EQUAL(":-9223372036854775808\r\n",
                 std::string(buf, resp_format_header(buf, ':', INT64_MIN)).c_str());
    STRCMP_EQUAL("*18446744073709551\r\n",
                 std::string(buf, resp_format_header(buf, '*', 18446744073709551LL)).c_str());
}

TEST(RespEncoder, test_error_never_spans_lines)
{
    resp_add_error(out, "ERR a\r\nb");
    STRCMP_EQUAL("-ERR a  b\r\n", text().c_str());
}

// Redis's own splitting (sdssplitargs): what redis-cli and telnet users type.
TEST(RespParser, test_inline_quotes_and_escapes_as_redis)
{
    check_every_split("GET \"a b\"\r\n", {"GET", "a b"});
    check_every_split("GET \"\\x41\\n\\t\\\"q\"\r\n", {"GET", "A\n\t\"q"});
    check_every_split("GET 'it\\'s'\r\n", {"GET", "it's"});
    check_every_split("GET 'no\\nescape'\r\n", {"GET", "no\\nescape"});
    check_every_split("GET \"\"\r\n", {"GET", ""});
    check_every_split("GET a\"b c\"\r\n", {"GET", "ab c"});  // a quote starts mid-argument too
}

TEST(RespParser, test_inline_unbalanced_quotes_are_a_protocol_error)
{
    const char *bad[] = {"GET \"abc\r\n", "GET 'abc\r\n", "GET \"a\"b\r\n", "GET 'a'b\r\n"};
    for (const char *line : bad) {
        resp_parser_free(&p);
        resp_parser_init(&p, 8, 64);
        LONGS_EQUAL_TEXT(RESP_ERROR, parse(line), line);
        STRCMP_EQUAL("Protocol error: unbalanced quotes in request", p.error);
    }
}
