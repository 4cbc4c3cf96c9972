// What a request or an answer must be, apart from serving it (http_message.cc). No I/O.
#pragma once

#include <stddef.h>
#include <stdint.h>

struct evhttp_request;

// Why a request that evhttp accepted must not be served: answered with this, then closed.
struct HttpFlaw {
    int code;
    const char *reason;
    const char *text;
};

// True, with the flaw, for a request to refuse: a malformed version (set to 1.1 for the answer's
// status line), or framing that a proxy in front of us could read differently (smuggling).
// A version above 1.1 is set to 1.1.
bool http_request_flaw(evhttp_request *req, HttpFlaw *flaw);

// evhttp 2.1 adds Date and Content-Length to HTTP/1.1 answers only: this adds them to an
// HTTP/1.0 one (Content-Length only `with_length`: a 304 has none of its own).
void http_add_http10_framing(evhttp_request *req, bool with_length);

// A value's ETag: its digest in hex, in quotes (HTTP_ETAG_LEN characters and a NUL).
static const size_t HTTP_ETAG_LEN = 18;
void http_format_etag(char *out, uint64_t digest);
// Whether an If-None-Match header names this ETag ("*", or a list of tags, weak or not).
bool http_etag_listed(const char *header, const char *etag);
// Whether any of the request's If-None-Match headers names it (a list may span several lines).
bool http_request_names_etag(evhttp_request *req, const char *etag);
