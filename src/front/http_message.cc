// What a request or an answer must be, apart from serving it: the checks of what evhttp lets
// through, the framing it leaves out, and the validators of a value. No I/O.
#include "http_message.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h>  // a request's HTTP version, which 2.1 has no getter for
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

// What evhttp 2.1 accepts but must not be served:
//  - a version it parsed with sscanf (so "HTTP/-1.-1" passes, and would be echoed in our status
//    line): only 1.0 and 1.x are served, 1.2 and above are answered as 1.1 (RFC 9110 2.5);
//  - request framing it reads differently from a proxy in front of us (request smuggling):
//    conflicting Content-Length headers (it reads the first); a Transfer-Encoding other than
//    one plain "chunked" (it ignores any other and falls back on Content-Length), or one beside
//    a Content-Length; and any body on a HEAD or TRACE, whose framing it ignores altogether (the
//    body would be read as the next request). Such a request's body may end elsewhere than
//    evhttp thought, so the connection is closed after the 400.
bool http_request_flaw(evhttp_request *req, HttpFlaw *flaw)
{
    if (req->major != 1 || req->minor < 0) {
        bool ancient = req->major == 0 && req->minor >= 9;
        req->major = 1;  // the version our answer's status line carries
        req->minor = 1;
        if (ancient)
            *flaw = {505, "HTTP Version Not Supported", "only HTTP/1.x is supported\n"};
        else
            *flaw = {400, "Bad Request", "malformed HTTP version\n"};
        return true;
    }
    if (req->minor > 1)
        req->minor = 1;
    const char *length = NULL;
    int lengths = 0, encodings = 0;
    bool chunked = false;
    for (const evkeyval *h = evhttp_request_get_input_headers(req)->tqh_first; h != NULL; h = h->next.tqe_next) {
        if (strcasecmp(h->key, "Content-Length") == 0) {
            if (lengths++ > 0 && strcmp(h->value, length) != 0) {
                *flaw = {400, "Bad Request", "conflicting Content-Length headers\n"};
                return true;
            }
            length = h->value;
        } else if (strcasecmp(h->key, "Transfer-Encoding") == 0) {
            encodings++;
            chunked = strcasecmp(h->value, "chunked") == 0;
        }
    }
    if (encodings > 1 || (encodings == 1 && (!chunked || lengths > 0))) {
        *flaw = {400, "Bad Request", "unsupported Transfer-Encoding\n"};
        return true;
    }
    evhttp_cmd_type method = evhttp_request_get_command(req);
    bool bodiless = method == EVHTTP_REQ_HEAD || method == EVHTTP_REQ_TRACE;
    if (bodiless && (encodings > 0 || (length != NULL && strcmp(length, "0") != 0))) {
        *flaw = {400, "Bad Request", "a HEAD request carries no body\n"};
        return true;
    }
    return false;
}

// evhttp 2.1 adds Date and Content-Length to HTTP/1.1 answers only; an HTTP/1.0 client gets them
// too (RFC 9110 wants a Date from any server with a clock, and Content-Length lets a 1.0 client
// that asked for keep-alive find the end of the body). The Date line is formatted once a second.
void http_add_http10_framing(evhttp_request *req, bool with_length)
{
    static time_t formatted_at;
    static char date[64];
    time_t now = time(NULL);
    if (now != formatted_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        formatted_at = now;
    }
    evkeyvalq *headers = evhttp_request_get_output_headers(req);
    if (evhttp_find_header(headers, "Date") == NULL)
        evhttp_add_header(headers, "Date", date);
    if (with_length && evhttp_find_header(headers, "Content-Length") == NULL) {
        char length[24];
        snprintf(length, sizeof(length), "%zu", evbuffer_get_length(evhttp_request_get_output_buffer(req)));
        evhttp_add_header(headers, "Content-Length", length);
    }
}

// A strong validator for a value: its digest (kept with its cache entry, made once), in quotes.
void http_format_etag(char *out, uint64_t digest)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '"';
    for (int i = 0; i < 16; i++)
        out[1 + i] = hex[(digest >> (60 - 4 * i)) & 15];
    out[17] = '"';
    out[18] = '\0';
}

// Whether an If-None-Match header names this tag: "*", or a list of tags, weak (W/) or not (it
// compares weakly, RFC 9110 13.1.2).
bool http_etag_listed(const char *header, const char *etag)
{
    const char *p = header;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end - start == 1 && *start == '*')
            return true;
        if (end - start >= 2 && start[0] == 'W' && start[1] == '/')
            start += 2;
        if ((size_t)(end - start) == HTTP_ETAG_LEN && memcmp(start, etag, HTTP_ETAG_LEN) == 0)
            return true;
    }
    return false;
}

bool http_request_names_etag(evhttp_request *req, const char *etag)
{
    for (const evkeyval *h = evhttp_request_get_input_headers(req)->tqh_first; h != NULL; h = h->next.tqe_next)
        if (strcasecmp(h->key, "If-None-Match") == 0 && http_etag_listed(h->value, etag))
            return true;
    return false;
}
