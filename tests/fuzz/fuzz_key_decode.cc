// libFuzzer target: the HTTP request-target to key decoder, checked against a plain reference
// decoder written the obvious way (no pointer arithmetic to get wrong).
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <string>

#include "key_decode.h"

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static KeyDecodeResult reference(const std::string &t, size_t max_len, std::string *key)
{
    size_t at;
    if (!t.empty() && t[0] == '/') {
        at = 1;
    } else {
        size_t scheme = t.find("://");
        if (scheme == std::string::npos)
            return KEY_BAD_TARGET;
        size_t slash = t.find('/', scheme + 3);
        if (slash == std::string::npos)
            return KEY_EMPTY;
        at = slash + 1;
    }
    key->clear();
    for (; at < t.size() && t[at] != '?' && t[at] != '#'; at++) {
        char c = t[at];
        if (c == '%') {
            if (at + 2 >= t.size())
                return KEY_BAD_ENCODING;
            int hi = hex(t[at + 1]), lo = hex(t[at + 2]);
            if (hi < 0 || lo < 0)
                return KEY_BAD_ENCODING;
            c = (char)(hi * 16 + lo);
            at += 2;
        }
        if (key->size() == max_len)
            return KEY_TOO_LONG;
        key->push_back(c);
    }
    return key->empty() ? KEY_EMPTY : KEY_OK;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max_len = 1 + data[0] % 64;
    // evhttp hands the decoder a NUL-terminated string: the target ends at the first NUL.
    std::string target((const char *)data + 1, size - 1);
    target = target.substr(0, strlen(target.c_str()));
    std::string expected;
    KeyDecodeResult want = reference(target, max_len, &expected);
    char out[64];
    size_t out_len = 0;
    KeyDecodeResult got = key_from_request_target(target.c_str(), out, max_len, &out_len);
    assert(got == want);
    if (got == KEY_OK)
        assert(std::string(out, out_len) == expected);
    return 0;
}
