#include "key_decode.h"

#include <string.h>

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

KeyDecodeResult key_from_request_target(const char *target, char *out, size_t max_len, size_t *out_len)
{
    const char *p = target;
    if (*p != '/') {
        // absolute-form (RFC 7230 5.3.2), as sent to proxies: skip scheme and authority
        const char *scheme_end = strstr(p, "://");
        if (scheme_end == NULL)
            return KEY_BAD_TARGET;
        // The authority ends at the path, the query or the fragment: "http://h?/k" has no path.
        p = scheme_end + 3 + strcspn(scheme_end + 3, "/?#");
        if (*p != '/')
            return KEY_EMPTY;
    }
    p++;
    size_t n = 0;
    for (; *p != '\0' && *p != '?' && *p != '#'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            int hi = hex_value((unsigned char)p[1]);
            int lo = hi < 0 ? -1 : hex_value((unsigned char)p[2]);
            if (lo < 0)
                return KEY_BAD_ENCODING;
            c = (unsigned char)(hi << 4 | lo);
            p += 2;
        }
        if (n == max_len)
            return KEY_TOO_LONG;
        out[n++] = (char)c;
    }
    if (n == 0)
        return KEY_EMPTY;
    *out_len = n;
    return KEY_OK;
}
