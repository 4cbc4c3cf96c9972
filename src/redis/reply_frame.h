// Follows the framing of a stream of RESP2 replies without keeping their bytes: where each
// top-level reply ends and how many payload bytes it carries. The backend runs it ahead of
// hiredis's reader so that a reply too large to keep is skipped, none of it buffered, and the
// connection stays in step: the reply's lengths are in its headers, so its end is known without
// reading it.
#pragma once

#include <stddef.h>
#include <stdint.h>

enum FrameEvent {
    FRAME_MORE,       // every byte given was consumed, within a reply or between replies
    FRAME_END,        // a top-level reply ended with the last byte consumed
    FRAME_TOO_LARGE,  // the current reply just passed the limit (once per reply); it goes on
    FRAME_BAD,        // not RESP2: the stream cannot be framed any further
};

struct FrameScanner {
    uint64_t pending;    // items still to come in the current reply; 0 between replies
    uint64_t bulk_left;  // bytes of the current bulk string still to pass, its CRLF included
    uint64_t size;       // bytes of the current reply known so far (a bulk string's whole
                         // length once its header is read): what the limit bounds. A reply that
                         // is one bulk string (a GET's) counts its value only, so that a value
                         // of max_value_size fits a max_reply_size of the same; in an array every
                         // byte counts, framing too, so that an array of nils is bounded
    char top_type;       // the current reply's first type byte
    bool over;           // the current reply passed the limit
    bool end_due;        // it also ended on the byte that passed the limit: FRAME_END is next
    bool in_line;        // within a header line
    char type;           // of that line
    bool negative;       // its number's sign
    bool seen_cr;        // its CR, awaiting LF
    int digits;
    uint64_t number;
};

void frame_scanner_init(FrameScanner *s);

// Consumes bytes from p (at most n) and stops at the first event: a reply's end, or the moment it
// passes `limit` bytes. Returns how many bytes were consumed; *event says why it stopped.
size_t frame_scan(FrameScanner *s, const char *p, size_t n, uint64_t limit, FrameEvent *event);

// The current reply has passed the limit: its bytes are being skipped.
inline bool frame_skipping(const FrameScanner *s) { return s->over; }
