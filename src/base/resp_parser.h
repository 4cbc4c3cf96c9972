// RESP2 request parsing and reply encoding, with no I/O: the front hands it bytes, it hands back
// commands. Binary safe. Both request forms Redis accepts:
//   multibulk  *2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n   (what client libraries send)
//   inline     GET foo\r\n                       (what telnet sends: split as Redis splits it, on
//                                                  spaces and tabs, with "double" quotes taking
//                                                  \n \r \t \b \a \xHH escapes and 'single' quotes)
// Resumable: when a command is incomplete the parser keeps how far it got (as offsets, so the
// caller may move its buffer), and resumes there when more bytes arrive. A command that trickles
// in byte by byte is never rescanned from its start.
#pragma once

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

static const size_t RESP_MAX_INLINE = 64 * 1024;  // as Redis's PROTO_INLINE_MAX_SIZE

struct RespArg {
    size_t offset;  // from the start of the command
    size_t len;
};

enum RespParseStatus {
    RESP_COMMAND,     // a whole command: argc args in args[]; `consumed` bytes make it up
    RESP_INCOMPLETE,  // need more bytes; progress kept
    RESP_EMPTY,       // an empty line or *0: nothing to run; skip `consumed` bytes
    RESP_ERROR,       // protocol error: reply error, then close the connection
};

struct RespParser {
    // limits
    size_t max_bulk;  // longest argument
    int max_args;     // most arguments in one command
    RespArg *args;    // grows on demand up to max_args: memory follows what a client really sends
    int args_cap;
    // result
    int argc;
    size_t consumed;
    const char *error;  // for RESP_ERROR: "Protocol error: ..."
    // progress through the current command
    int expected;     // multibulk count, or 0 while unknown
    size_t pos;       // bytes of the command consumed so far
    size_t scanned;   // inline: bytes already searched for the newline
    long long bulk;   // length of the bulk being read, -1 while its header is unread
    // An inline command's arguments, unquoted: args[] are offsets into this instead of into the
    // command's bytes (resp_arg_base). NULL after a multibulk command.
    const char *base;
    char *inline_buf;
    size_t inline_cap;
};

// Where the last command's args[] offsets point: the command's own bytes (`buf`, as given to
// resp_parse), or the parser's copy of an inline command's unquoted arguments.
inline const char *resp_arg_base(const RespParser *p, const char *buf) { return p->base != NULL ? p->base : buf; }

void resp_parser_init(RespParser *p, int max_args, size_t max_bulk);
void resp_parser_free(RespParser *p);

// Parses the command starting at buf[0] (len bytes available). After RESP_COMMAND or RESP_EMPTY
// the caller drops `consumed` bytes and calls again for the next command.
RespParseStatus resp_parse(RespParser *p, const char *buf, size_t len);

// Reply encoding, appended to an evbuffer. No printf on the way: formatting the "$32\r\n" in
// front of every value with snprintf was a quarter of a pipelined GET's instructions.
static const size_t RESP_HEADER_MAX = 24;
// Writes type, n and CRLF ("$32\r\n") to out (RESP_HEADER_MAX bytes); returns the length.
size_t resp_format_header(char *out, char type, long long n);
void resp_add_simple(evbuffer *out, const char *s);           // +s
void resp_add_error(evbuffer *out, const char *fmt, ...)       // -...
    __attribute__((format(printf, 2, 3)));
void resp_add_integer(evbuffer *out, long long n);             // :n
void resp_add_bulk(evbuffer *out, const char *s, size_t len);  // $len s (copied)
void resp_add_bulk_header(evbuffer *out, size_t len);          // $len\r\n (body follows, then CRLF)
// A nil as the connection's protocol says: RESP2's null bulk string, or RESP3's null (_).
void resp_add_nil(evbuffer *out, int protocol);
void resp_add_map_header(evbuffer *out, size_t n);             // %n (RESP3): n keys, n values
void resp_add_array_header(evbuffer *out, size_t n);           // *n
