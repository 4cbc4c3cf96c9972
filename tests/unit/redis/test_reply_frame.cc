// STL headers before CppUTest's, whose leak detector redefines new.
#include <string>
#include <vector>

#include <CppUTest/TestHarness.h>
#include <string.h>

#include "reply_frame.h"

// Scans `stream` fed in pieces of `piece` bytes; returns the events with the offset after each.
static std::vector<std::pair<FrameEvent, size_t>> scan(const std::string &stream, uint64_t limit, size_t piece)
{
    FrameScanner s;
    frame_scanner_init(&s);
    std::vector<std::pair<FrameEvent, size_t>> events;
    size_t at = 0;
    while (at < stream.size()) {
        size_t end = at + piece < stream.size() ? at + piece : stream.size();
        while (at < end) {
            FrameEvent e;
            size_t used = frame_scan(&s, stream.data() + at, end - at, limit, &e);
            at += used;
            if (e != FRAME_MORE)
                events.push_back({e, at});
            if (e == FRAME_BAD)
                return events;
        }
    }
    // An END due right after the last byte's TOO_LARGE.
    FrameEvent e;
    if (frame_scan(&s, "", 0, limit, &e) == 0 && e == FRAME_END)
        events.push_back({e, at});
    return events;
}

TEST_GROUP(ReplyFrame){};

TEST(ReplyFrame, test_each_reply_ends_where_it_ends_whatever_the_pieces)
{
    std::string stream = "+OK\r\n:42\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n-ERR no\r\n$0\r\n\r\n*-1\r\n*0\r\n";
    std::vector<size_t> ends = {5, 10, 19, 24, 43, 52, 58, 63, 67};
    for (size_t piece = 1; piece <= stream.size(); piece++) {
        auto events = scan(stream, 1000, piece);
        LONGS_EQUAL(ends.size(), events.size());
        for (size_t i = 0; i < ends.size(); i++) {
            CHECK_EQUAL(FRAME_END, events[i].first);
            LONGS_EQUAL(ends[i], events[i].second);
        }
    }
}

TEST(ReplyFrame, test_a_bulk_string_over_the_limit_is_known_at_its_header)
{
    std::string big(5000, 'x');
    std::string stream = "$5000\r\n" + big + "\r\n+OK\r\n";
    auto events = scan(stream, 1024, 4096);
    LONGS_EQUAL(3, events.size());
    CHECK_EQUAL(FRAME_TOO_LARGE, events[0].first);
    LONGS_EQUAL(7, events[0].second);  // right after "$5000\r\n": none of the string read
    CHECK_EQUAL(FRAME_END, events[1].first);
    LONGS_EQUAL(7 + 5002, events[1].second);
    CHECK_EQUAL(FRAME_END, events[2].first);
    LONGS_EQUAL(stream.size(), events[2].second);
}

TEST(ReplyFrame, test_an_array_passes_the_limit_by_its_elements_together)
{
    std::string value(400, 'v'), element = "$400\r\n" + value + "\r\n";
    std::string stream = "*3\r\n" + element + element + element + ":7\r\n";
    auto events = scan(stream, 1000, 100);
    LONGS_EQUAL(3, events.size());
    CHECK_EQUAL(FRAME_TOO_LARGE, events[0].first);
    LONGS_EQUAL(4 + 2 * element.size() + 6, events[0].second);  // at the third element's header
    CHECK_EQUAL(FRAME_END, events[1].first);
    LONGS_EQUAL(4 + 3 * element.size(), events[1].second);
    CHECK_EQUAL(FRAME_END, events[2].first);
}

TEST(ReplyFrame, test_the_limit_counts_framing_so_an_array_of_nils_is_bounded_too)
{
    std::string stream = "*300\r\n";
    for (int i = 0; i < 300; i++)
        stream += "$-1\r\n";
    auto events = scan(stream, 1024, 64);
    LONGS_EQUAL(2, events.size());
    CHECK_EQUAL(FRAME_TOO_LARGE, events[0].first);
    CHECK_EQUAL(FRAME_END, events[1].first);
    LONGS_EQUAL(stream.size(), events[1].second);
}

TEST(ReplyFrame, test_a_long_status_line_that_ends_as_it_passes_the_limit_still_ends)
{
    std::string stream = "+" + std::string(1022, 's') + "\r\n:1\r\n";  // its last byte is the 1,025th
    auto events = scan(stream, 1024, 2000);
    LONGS_EQUAL(3, events.size());
    CHECK_EQUAL(FRAME_TOO_LARGE, events[0].first);
    CHECK_EQUAL(FRAME_END, events[1].first);
    LONGS_EQUAL(1025, events[1].second);
    CHECK_EQUAL(FRAME_END, events[2].first);
}

TEST(ReplyFrame, test_a_lone_cr_in_a_status_line_is_text)
{
    auto events = scan("+a\rb\r\n", 100, 1);
    LONGS_EQUAL(1, events.size());
    CHECK_EQUAL(FRAME_END, events[0].first);
    LONGS_EQUAL(6, events[0].second);
}

TEST(ReplyFrame, test_what_cannot_be_framed_is_bad)
{
    const char *bad[] = {"%1\r\n", "_\r\n", "$x\r\n", "$\r\n", "$-2\r\n", "$1-\r\n", "*1\rx", "$1234567890123456789\r\n",
                         "hello"};
    for (const char *stream : bad) {
        auto events = scan(stream, 1000, 1);
        CHECK_TEXT(!events.empty() && events.back().first == FRAME_BAD, stream);
    }
}

TEST(ReplyFrame, test_a_value_of_exactly_the_limit_fits_its_framing_aside)
{
    std::string value(1024, 'v');
    auto events = scan("$1024\r\n" + value + "\r\n", 1024, 100);
    LONGS_EQUAL(1, events.size());
    CHECK_EQUAL(FRAME_END, events[0].first);
    events = scan("$1025\r\n" + value + "v\r\n", 1024, 100);
    CHECK_EQUAL(FRAME_TOO_LARGE, events[0].first);
}
