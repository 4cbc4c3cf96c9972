#include "reply_frame.h"

#include <string.h>

// 18 digits cannot overflow a count, and no real reply comes near 10^18 bytes or elements.
static const int MAX_DIGITS = 18;

void frame_scanner_init(FrameScanner *s) { memset(s, 0, sizeof(*s)); }

static bool is_text(char type) { return type == '+' || type == '-' || type == ':'; }

// One item (a line, a bulk string, an array header) is complete. Returns whether that ends the
// top-level reply.
static bool item_done(FrameScanner *s, uint64_t children)
{
    s->pending = s->pending - 1 + children;
    return s->pending == 0;
}

// A header line has ended (its CRLF consumed). Returns whether the reply ended with it.
static bool line_done(FrameScanner *s)
{
    s->in_line = false;
    if (is_text(s->type))
        return item_done(s, 0);
    if (s->negative)  // a nil ($-1 or *-1)
        return item_done(s, 0);
    if (s->type == '*')
        return item_done(s, s->number);
    s->bulk_left = s->number + 2;
    // The whole string counts as soon as its length is known; alone, its value only.
    s->size = s->top_type == '$' ? s->number : s->size + s->bulk_left;
    return false;
}

// After consuming up to p[i]: stops at the first event, or returns FRAME_MORE to go on.
static FrameEvent after_step(FrameScanner *s, bool ended, uint64_t limit)
{
    if (!s->over && s->size > limit) {
        s->over = true;
        s->end_due = ended;
        return FRAME_TOO_LARGE;
    }
    return ended ? FRAME_END : FRAME_MORE;
}

size_t frame_scan(FrameScanner *s, const char *p, size_t n, uint64_t limit, FrameEvent *event)
{
    if (s->end_due) {
        s->end_due = false;
        *event = FRAME_END;
        return 0;
    }
    size_t i = 0;
    while (i < n) {
        bool ended = false;
        if (s->bulk_left > 0) {
            uint64_t take = n - i < s->bulk_left ? n - i : s->bulk_left;
            i += take;
            s->bulk_left -= take;
            ended = s->bulk_left == 0 && item_done(s, 0);
        } else if (!s->in_line) {
            char type = p[i++];
            if (!is_text(type) && type != '$' && type != '*') {
                *event = FRAME_BAD;
                return i;
            }
            if (s->pending == 0) {
                s->pending = 1;
                s->size = 0;
                s->over = false;
                s->top_type = type;
            }
            s->size++;
            s->in_line = true;
            s->type = type;
            s->negative = s->seen_cr = false;
            s->digits = 0;
            s->number = 0;
        } else if (is_text(s->type)) {
            // Text up to CRLF: look for the CR, counting what it passes.
            const char *cr = s->seen_cr ? p + i : (const char *)memchr(p + i, '\r', n - i);
            if (cr == NULL) {
                s->size += n - i;
                i = n;
            } else if (!s->seen_cr) {
                s->size += (size_t)(cr - (p + i)) + 1;
                i = (size_t)(cr - p) + 1;
                s->seen_cr = true;
            } else {
                char ch = p[i++];
                s->size++;
                s->seen_cr = ch == '\r';  // a lone CR is text (as hiredis reads it)
                ended = ch == '\n' && line_done(s);
                if (ch == '\n')
                    s->in_line = false;
            }
        } else {
            // A length: optional '-', digits, CRLF; anything else cannot be framed.
            char ch = p[i++];
            s->size++;
            if (s->seen_cr) {
                if (ch != '\n' || s->digits == 0 || (s->negative && s->number != 1)) {
                    *event = FRAME_BAD;
                    return i;
                }
                ended = line_done(s);
            } else if (ch == '\r') {
                s->seen_cr = true;
            } else if (ch == '-' && s->digits == 0 && !s->negative) {
                s->negative = true;
            } else if (ch >= '0' && ch <= '9' && s->digits < MAX_DIGITS) {
                s->number = s->number * 10 + (uint64_t)(ch - '0');
                s->digits++;
            } else {
                *event = FRAME_BAD;
                return i;
            }
        }
        FrameEvent e = after_step(s, ended, limit);
        if (e != FRAME_MORE) {
            *event = e;
            return i;
        }
    }
    *event = FRAME_MORE;
    return i;
}
