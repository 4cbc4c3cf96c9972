// libFuzzer target: the key-pattern glob (acl_glob_match), against a reference written the obvious
// way (recursion over pattern and string, memoized), for patterns and keys up to 48 bytes; longer
// ones are matched for crashes and time only. The input is the pattern, a 0xff byte, the key.
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <string>

#include "acl.h"

static const size_t REF_MAX = 48;

// Where the class that opens at p[i] == '[' ends, and whether c is in it: stringmatchlen's reading.
static size_t ref_class(const std::string &p, size_t i, unsigned char c, bool *in)
{
    i++;
    bool negate = false;
    if (i < p.size() && p[i] == '^') {
        negate = true;
        i++;
    }
    bool found = false;
    while (i < p.size()) {
        size_t left = p.size() - i;
        if (p[i] == '\\' && left >= 2) {
            found = found || (unsigned char)p[i + 1] == c;
            i += 2;
        } else if (p[i] == ']') {
            i++;
            *in = found != negate;
            return i;
        } else if (left >= 3 && p[i + 1] == '-') {
            unsigned char a = (unsigned char)p[i], b = (unsigned char)p[i + 2];
            unsigned char lo = a < b ? a : b, hi = a < b ? b : a;
            found = found || (c >= lo && c <= hi);
            i += 3;
        } else {
            found = found || (unsigned char)p[i] == c;
            i++;
        }
    }
    *in = found != negate;
    return p.size();
}

struct Reference {
    const std::string &p, &s;
    signed char memo[REF_MAX + 1][REF_MAX + 1];

    // Whether p[pi..] matches s[si..], where si > 0 or the string is not empty.
    bool rest(size_t pi, size_t si)
    {
        signed char &m = memo[pi][si];
        if (m >= 0)
            return m;
        bool r;
        if (pi == p.size()) {
            r = si == s.size();
        } else if (p[pi] == '*') {
            r = rest(pi + 1, si) || (si < s.size() && rest(pi, si + 1));
        } else if (si == s.size()) {
            r = false;
        } else {
            unsigned char c = (unsigned char)s[si];
            size_t next;
            bool ok;
            if (p[pi] == '?') {
                next = pi + 1;
                ok = true;
            } else if (p[pi] == '\\') {
                size_t at = pi + 1 < p.size() ? pi + 1 : pi;
                next = at + 1;
                ok = (unsigned char)p[at] == c;
            } else if (p[pi] == '[') {
                next = ref_class(p, pi, c, &ok);
            } else {
                next = pi + 1;
                ok = (unsigned char)p[pi] == c;
            }
            r = ok && rest(next, si + 1);
        }
        m = r;
        return r;
    }
};

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cut = (const uint8_t *)memchr(data, 0xff, size);
    size_t plen = cut == NULL ? size : (size_t)(cut - data);
    std::string pattern((const char *)data, plen);
    std::string key = cut == NULL ? std::string("user:1") : std::string((const char *)cut + 1, size - plen - 1);
    bool got = acl_glob_match(pattern.data(), pattern.size(), key.data(), key.size());
    if (pattern.size() > REF_MAX || key.size() > REF_MAX)
        return 0;
    Reference ref = {pattern, key, {}};
    memset(ref.memo, -1, sizeof(ref.memo));
    bool want = key.empty() ? pattern.empty() : ref.rest(0, 0);
    assert(got == want);
    return 0;
}
