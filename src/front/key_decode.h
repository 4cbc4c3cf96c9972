// Turns an HTTP request-target into a cache key: the path after the first '/', percent-decoded,
// without query or fragment. Binary safe: %00 is a key byte like any other.
#pragma once

#include <stddef.h>

enum KeyDecodeResult {
    KEY_OK,
    KEY_EMPTY,         // "/" or "/?x": no key
    KEY_BAD_ENCODING,  // '%' not followed by two hex digits
    KEY_TOO_LONG,      // decoded key longer than max_len
    KEY_BAD_TARGET,    // neither "/path" nor "http://host/path"
};

// Writes at most max_len bytes to out.
KeyDecodeResult key_from_request_target(const char *target, char *out, size_t max_len, size_t *out_len);
