// The credentials of an HTTP Authorization header's value (RFC 9110 11.6.2), no I/O and no
// allocation: "Basic <base64 of user:password>" (RFC 7617) or "Bearer <token>" (RFC 6750). The
// scheme is case-insensitive; blanks around the value and between scheme and credentials are
// allowed, anything else out of place makes the value malformed. What is found points into the
// value (a token) or into the caller's buffer (a user and password, decoded).
#pragma once

#include <stddef.h>

enum HttpCredentialsKind {
    HTTP_CREDENTIALS_MALFORMED,     // empty, bad base64, no ':' in Basic's, larger than the buffer...
    HTTP_CREDENTIALS_OTHER_SCHEME,  // well formed for all we know, but neither Basic nor Bearer
    HTTP_CREDENTIALS_BASIC,         // user and password
    HTTP_CREDENTIALS_BEARER,        // password only: the token
};

struct HttpCredentials {
    HttpCredentialsKind kind;
    const char *user;  // Basic: the user (may be empty); NULL otherwise
    size_t user_len;
    const char *password;  // Basic: the password (may be empty); Bearer: the token; NULL otherwise
    size_t password_len;
};

// Parses value (len bytes, not necessarily NUL-terminated). Basic's decoded bytes go into buf (cap
// bytes; a value that decodes to more is malformed). Returns out->kind.
HttpCredentialsKind http_credentials_parse(const char *value, size_t len, char *buf, size_t cap,
                                           HttpCredentials *out);
