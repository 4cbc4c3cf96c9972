#include "http_credentials.h"

#include <string.h>
#include <strings.h>

static bool blank(char c) { return c == ' ' || c == '\t'; }

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

// Standard base64 (RFC 4648 section 4). The padding may be left out, as some clients do; if it is
// there it must be right. Returns the decoded length, or -1.
static long base64_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t pad = 0;
    while (pad < len && pad < 2 && in[len - 1 - pad] == '=')
        pad++;
    if (pad > 0 && len % 4 != 0)
        return -1;
    size_t data = len - pad;
    if (data % 4 == 1)
        return -1;  // one character is six bits: not a byte
    size_t decoded = data / 4 * 3 + (data % 4 == 0 ? 0 : data % 4 - 1);
    if (decoded > cap)
        return -1;
    size_t o = 0;
    unsigned bits = 0;
    int have = 0;
    for (size_t i = 0; i < data; i++) {
        int v = base64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;  // '=' within, '-' or '_' (base64url), a blank, anything else
        bits = (bits << 6) | (unsigned)v;
        have += 6;
        if (have >= 8) {
            have -= 8;
            out[o++] = (char)((bits >> have) & 0xff);
        }
    }
    return (long)o;
}

HttpCredentialsKind http_credentials_parse(const char *value, size_t len, char *buf, size_t cap,
                                           HttpCredentials *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = HTTP_CREDENTIALS_MALFORMED;
    size_t start = 0, end = len;
    while (start < end && blank(value[start]))
        start++;
    while (end > start && blank(value[end - 1]))
        end--;
    size_t scheme_end = start;
    while (scheme_end < end && !blank(value[scheme_end]))
        scheme_end++;
    size_t at = scheme_end;
    while (at < end && blank(value[at]))
        at++;
    const char *scheme = value + start;
    size_t scheme_len = scheme_end - start;
    const char *credentials = value + at;
    size_t credentials_len = end - at;
    if (scheme_len == 0)
        return out->kind;
    for (size_t i = 0; i < credentials_len; i++) {
        unsigned char c = (unsigned char)credentials[i];
        if (c < 0x21 || c == 0x7f)
            return out->kind;  // a blank within the credentials, or a control character
    }
    bool basic = scheme_len == 5 && strncasecmp(scheme, "Basic", 5) == 0;
    bool bearer = scheme_len == 6 && strncasecmp(scheme, "Bearer", 6) == 0;
    if (!basic && !bearer) {
        out->kind = HTTP_CREDENTIALS_OTHER_SCHEME;
        return out->kind;
    }
    if (credentials_len == 0)
        return out->kind;
    if (bearer) {
        out->password = credentials;
        out->password_len = credentials_len;
        out->kind = HTTP_CREDENTIALS_BEARER;
        return out->kind;
    }
    long decoded = base64_decode(credentials, credentials_len, buf, cap);
    if (decoded < 0)
        return out->kind;
    // RFC 7617: the user-id holds no ':', so the first one ends it; the password may hold more.
    const char *colon = (const char *)memchr(buf, ':', (size_t)decoded);
    if (colon == NULL)
        return out->kind;
    out->user = buf;
    out->user_len = (size_t)(colon - buf);
    out->password = colon + 1;
    out->password_len = (size_t)decoded - out->user_len - 1;
    out->kind = HTTP_CREDENTIALS_BASIC;
    return out->kind;
}
