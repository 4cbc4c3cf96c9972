// libFuzzer target: Authorization header values (http_credentials_parse). The first byte sizes the
// decoding buffer, the rest is the value. Checked: what is found lies within the value or the
// buffer; Basic's user holds no ':' and encodes back to the value's credentials; a token holds no
// blank or control character.
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "http_credentials.h"

static std::string base64(const std::string &in)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
        for (int k = 3; k >= 0; k--)
            out += alphabet[(v >> (6 * k)) & 63];
    }
    if (in.size() - i == 1) {
        unsigned v = (unsigned char)in[i] << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
    } else if (in.size() - i == 2) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
    }
    return out;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = data[0];
    // A value of its own allocation, so that ASan sees any read past its end.
    size_t len = size - 1;
    char *value = (char *)malloc(len == 0 ? 1 : len);
    memcpy(value, data + 1, len);
    char *buf = (char *)malloc(cap == 0 ? 1 : cap);
    HttpCredentials c;
    HttpCredentialsKind kind = http_credentials_parse(value, len, buf, cap, &c);
    assert(kind == c.kind);
    if (kind == HTTP_CREDENTIALS_BASIC) {
        assert(c.user == buf && c.user_len + 1 + c.password_len <= cap);
        assert(c.password == c.user + c.user_len + 1 && c.user[c.user_len] == ':');
        assert(memchr(c.user, ':', c.user_len) == NULL);
        std::string decoded(buf, c.user_len + 1 + c.password_len);
        std::string again = base64(decoded);
        // The credentials, without blanks around and without padding, are the encoding again (but
        // for the unused low bits of the last character, which a decoder ignores).
        std::string text(value, len);
        size_t end = text.find_last_not_of(" \t");
        size_t start = text.find_first_of(" \t", text.find_first_not_of(" \t"));
        start = text.find_first_not_of(" \t", start);
        std::string credentials = text.substr(start, end + 1 - start);
        credentials = credentials.substr(0, credentials.find('='));
        assert(credentials.size() == again.size());
        assert(credentials.compare(0, credentials.size() - 1, again, 0, again.size() - 1) == 0);
    } else if (kind == HTTP_CREDENTIALS_BEARER) {
        assert(c.user == NULL && c.password > value && c.password + c.password_len <= value + len);
        assert(c.password_len > 0);
        for (size_t i = 0; i < c.password_len; i++)
            assert((unsigned char)c.password[i] > ' ' && c.password[i] != 0x7f);
    } else {
        assert(c.user == NULL && c.password == NULL);
    }
    free(buf);
    free(value);
    return 0;
}
