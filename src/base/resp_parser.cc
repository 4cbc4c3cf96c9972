#include "resp_parser.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void resp_parser_init(RespParser *p, int max_args, size_t max_bulk)
{
    memset(p, 0, sizeof(*p));
    p->max_args = max_args;
    p->max_bulk = max_bulk;
    p->bulk = -1;
}

void resp_parser_free(RespParser *p)
{
    free(p->args);
    p->args = NULL;
    p->args_cap = 0;
    free(p->inline_buf);
    p->inline_buf = NULL;
    p->inline_cap = 0;
}

// Makes room for n arguments (n <= max_args).
static bool reserve_args(RespParser *p, int n)
{
    if (n <= p->args_cap)
        return true;
    int cap = p->args_cap ? p->args_cap : 4;
    while (cap < n)
        cap *= 2;
    if (cap > p->max_args)
        cap = p->max_args;
    RespArg *args = (RespArg *)realloc(p->args, (size_t)cap * sizeof(RespArg));
    if (args == NULL)
        return false;
    p->args = args;
    p->args_cap = cap;
    return true;
}

static void reset_progress(RespParser *p)
{
    p->expected = 0;
    p->pos = 0;
    p->scanned = 0;
    p->bulk = -1;
}

static RespParseStatus fail(RespParser *p, const char *error)
{
    p->error = error;
    reset_progress(p);
    return RESP_ERROR;
}

static RespParseStatus done(RespParser *p, RespParseStatus status, size_t consumed)
{
    p->consumed = consumed;
    reset_progress(p);
    return status;
}

// Parses a CRLF-terminated decimal at buf[start..len), in one pass. Returns the offset just past
// the CRLF, 0 if incomplete, or SIZE_MAX if malformed or too long (more than 18 digits).
static size_t parse_number_line(const char *buf, size_t start, size_t len, long long *out)
{
    // The usual line first: one or two digits and its end, all arrived (a command's count and
    // its arguments' lengths). The same answer as the loop below gives.
    if (start + 4 <= len) {
        unsigned d0 = (unsigned char)buf[start] - '0', d1 = (unsigned char)buf[start + 1] - '0';
        if (d0 <= 9 && buf[start + 1] == '\r' && buf[start + 2] == '\n') {
            *out = d0;
            return start + 3;
        }
        if (d0 <= 9 && d1 <= 9 && buf[start + 2] == '\r' && buf[start + 3] == '\n') {
            *out = d0 * 10 + d1;
            return start + 4;
        }
    }
    size_t i = start;
    bool negative = i < len && buf[i] == '-';
    i += negative;
    long long v = 0;
    size_t digits_start = i;
    for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
        if (i - digits_start == 18)
            return SIZE_MAX;
        v = v * 10 + (buf[i] - '0');
    }
    if (i == len)
        return 0;  // the line goes on past what has arrived
    if (i == digits_start || buf[i] != '\r')
        return SIZE_MAX;
    if (i + 1 == len)
        return 0;  // the '\n' has not arrived yet
    if (buf[i + 1] != '\n')
        return SIZE_MAX;
    *out = negative ? -v : v;
    return i + 2;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// Splits an inline line into p->inline_buf as Redis's sdssplitargs does: arguments separated by
// spaces and tabs; a double quote (anywhere in an argument) starts a quoted part with \n \r \t
// \b \a \xHH and \<any> escapes, a single quote one where only \' is an escape; a closing quote
// must end the argument. Returns the argument count, or -1 with p->error set.
static int split_inline(RespParser *p, const char *line, size_t len)
{
    if (len > p->inline_cap) {
        char *grown = (char *)realloc(p->inline_buf, len);
        if (grown == NULL) {
            p->error = "Protocol error: out of memory";
            return -1;
        }
        p->inline_buf = grown;
        p->inline_cap = len;
    }
    char *out = p->inline_buf;
    size_t i = 0, w = 0;
    int argc = 0;
    for (;;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == len)
            return argc;
        size_t start = w;
        char quote = 0;  // '"' or '\'' while inside quotes
        for (;;) {
            if (i == len) {
                if (quote != 0) {
                    p->error = "Protocol error: unbalanced quotes in request";
                    return -1;
                }
                break;
            }
            char ch = line[i];
            if (quote == '"' && ch == '\\' && i + 3 < len && line[i + 1] == 'x' && hex_digit(line[i + 2]) >= 0 &&
                hex_digit(line[i + 3]) >= 0) {
                out[w++] = (char)(hex_digit(line[i + 2]) * 16 + hex_digit(line[i + 3]));
                i += 4;
            } else if (quote == '"' && ch == '\\' && i + 1 < len) {
                char e = line[i + 1];
                out[w++] = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e == 'b' ? '\b' : e == 'a' ? '\a' : e;
                i += 2;
            } else if (quote == '\'' && ch == '\\' && i + 1 < len && line[i + 1] == '\'') {
                out[w++] = '\'';
                i += 2;
            } else if (quote != 0 && ch == quote) {
                i++;
                if (i < len && line[i] != ' ' && line[i] != '\t') {  // a closing quote ends the argument
                    p->error = "Protocol error: unbalanced quotes in request";
                    return -1;
                }
                quote = 0;
                break;
            } else if (quote == 0 && (ch == ' ' || ch == '\t')) {
                break;
            } else if (quote == 0 && (ch == '"' || ch == '\'')) {
                quote = ch;
                i++;
            } else {
                out[w++] = ch;
                i++;
            }
        }
        if (argc == p->max_args) {
            p->error = "Protocol error: too many arguments";
            return -1;
        }
        if (!reserve_args(p, argc + 1)) {
            p->error = "Protocol error: out of memory";
            return -1;
        }
        if (w - start > p->max_bulk) {
            p->error = "Protocol error: argument longer than max_key_size";
            return -1;
        }
        p->args[argc].offset = start;
        p->args[argc].len = w - start;
        argc++;
    }
}

static RespParseStatus parse_inline(RespParser *p, const char *buf, size_t len)
{
    const char *nl = (const char *)memchr(buf + p->scanned, '\n', len - p->scanned);
    if (nl == NULL) {
        if (len > RESP_MAX_INLINE)
            return fail(p, "Protocol error: too big inline request");
        p->scanned = len;
        return RESP_INCOMPLETE;
    }
    size_t line_end = (size_t)(nl - buf), consumed = line_end + 1;
    if (line_end > RESP_MAX_INLINE)
        return fail(p, "Protocol error: too big inline request");
    if (line_end > 0 && buf[line_end - 1] == '\r')
        line_end--;
    int argc = split_inline(p, buf, line_end);
    if (argc < 0)
        return fail(p, p->error);
    p->argc = argc;
    p->base = p->inline_buf;
    return done(p, argc == 0 ? RESP_EMPTY : RESP_COMMAND, consumed);
}

RespParseStatus resp_parse(RespParser *p, const char *buf, size_t len)
{
    if (len == 0)
        return RESP_INCOMPLETE;
    p->base = NULL;
    if (buf[0] != '*')
        return parse_inline(p, buf, len);
    if (p->expected == 0) {
        long long n;
        size_t next = parse_number_line(buf, 1, len, &n);
        if (next == 0)
            return RESP_INCOMPLETE;
        if (next == SIZE_MAX)
            return fail(p, "Protocol error: invalid multibulk length");
        if (n <= 0)
            return done(p, RESP_EMPTY, next);  // *0 and *-1 are ignored, as Redis does
        if (n > p->max_args)
            return fail(p, "Protocol error: invalid multibulk length");
        // The count is the client's word: grow toward it as the arguments really arrive.
        if (!reserve_args(p, n < 16 ? (int)n : 16))
            return fail(p, "Protocol error: out of memory");
        p->expected = (int)n;
        p->argc = 0;
        p->pos = next;
    }
    while (p->argc < p->expected) {
        if (p->bulk < 0) {
            if (p->pos >= len)
                return RESP_INCOMPLETE;
            if (buf[p->pos] != '$')
                return fail(p, "Protocol error: expected '$'");
            long long n;
            size_t next = parse_number_line(buf, p->pos + 1, len, &n);
            if (next == 0)
                return RESP_INCOMPLETE;
            if (next == SIZE_MAX || n < 0)
                return fail(p, "Protocol error: invalid bulk length");
            if ((unsigned long long)n > p->max_bulk)
                return fail(p, "Protocol error: argument longer than max_key_size");
            p->bulk = n;
            p->pos = next;
        }
        size_t end = p->pos + (size_t)p->bulk;
        if (end + 2 > len)
            return RESP_INCOMPLETE;
        if (buf[end] != '\r' || buf[end + 1] != '\n')
            return fail(p, "Protocol error: bulk not terminated by CRLF");
        if (!reserve_args(p, p->argc + 1))
            return fail(p, "Protocol error: out of memory");
        p->args[p->argc].offset = p->pos;
        p->args[p->argc].len = (size_t)p->bulk;
        p->argc++;
        p->pos = end + 2;
        p->bulk = -1;
    }
    return done(p, RESP_COMMAND, p->pos);
}

size_t resp_format_header(char *out, char type, long long n)
{
    char digits[24];
    size_t len = 0;
    bool negative = n < 0;
    unsigned long long v = negative ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do {
        digits[len++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    size_t at = 0;
    out[at++] = type;
    if (negative)
        out[at++] = '-';
    while (len > 0)
        out[at++] = digits[--len];
    out[at++] = '\r';
    out[at++] = '\n';
    return at;
}

static void add_header(evbuffer *out, char type, long long n)
{
    char header[RESP_HEADER_MAX];
    evbuffer_add(out, header, resp_format_header(header, type, n));
}

void resp_add_simple(evbuffer *out, const char *s)
{
    size_t len = strlen(s);
    char line[128];
    if (len + 3 > sizeof(line)) {
        evbuffer_add_printf(out, "+%s\r\n", s);
        return;
    }
    line[0] = '+';
    memcpy(line + 1, s, len);
    memcpy(line + 1 + len, "\r\n", 2);
    evbuffer_add(out, line, len + 3);
}

void resp_add_error(evbuffer *out, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(text))
        n = sizeof(text) - 1;
    // An error is one line: newlines inside it would break the protocol.
    for (int i = 0; i < n; i++)
        if (text[i] == '\r' || text[i] == '\n')
            text[i] = ' ';
    evbuffer_add(out, "-", 1);
    evbuffer_add(out, text, (size_t)n);
    evbuffer_add(out, "\r\n", 2);
}

void resp_add_integer(evbuffer *out, long long n) { add_header(out, ':', n); }

void resp_add_bulk_header(evbuffer *out, size_t len) { add_header(out, '$', (long long)len); }

void resp_add_bulk(evbuffer *out, const char *s, size_t len)
{
    resp_add_bulk_header(out, len);
    evbuffer_add(out, s, len);
    evbuffer_add(out, "\r\n", 2);
}

void resp_add_nil(evbuffer *out, int protocol)
{
    if (protocol == 3)
        evbuffer_add(out, "_\r\n", 3);
    else
        evbuffer_add(out, "$-1\r\n", 5);
}

void resp_add_map_header(evbuffer *out, size_t n) { add_header(out, '%', (long long)n); }

void resp_add_array_header(evbuffer *out, size_t n) { add_header(out, '*', (long long)n); }
