// libFuzzer target: a [users] line's rules (acl_user_parse). The input's first line is the user's
// name, the rest its rules. Checked: what is kept stays within its bounds; a refused line changes
// nothing; an error never shows a password: the same rules with other passwords fail the same way.
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "acl.h"

static AclUsers users, before, other;  // other: the same rules, with other passwords

static void check_user(const AclUser *u)
{
    assert(u->name_len >= 1 && u->name_len <= ACL_MAX_NAME && strlen(u->name) == u->name_len);
    assert(u->digest_count <= ACL_MAX_PASSWORDS && u->pattern_count <= ACL_MAX_PATTERNS);
    assert(!(u->nopass && u->digest_count > 0));
    assert(!(u->allkeys && u->pattern_count > 0));
    size_t start = 0;
    for (int i = 0; i < u->pattern_count; i++) {
        assert(u->pattern_end[i] >= start && u->pattern_end[i] <= ACL_PATTERN_BYTES);
        start = u->pattern_end[i];
    }
    // Every kept digest is unique (the same password twice is kept once).
    for (int i = 0; i < u->digest_count; i++)
        for (int j = i + 1; j < u->digest_count; j++)
            assert(memcmp(u->digests[i], u->digests[j], ACL_DIGEST_SIZE) != 0);
    (void)acl_key_allowed(u, "user:1", 6);
}

// The rules with the letters of every password (a word after '>' or '<') in the other case: a
// bijection that keeps which passwords are equal, so the outcome must be the same, and an error
// that showed a password would differ.
static std::string other_passwords(const std::string &rules)
{
    std::string out = rules;
    bool in_password = false;
    for (size_t i = 0; i < out.size(); i++) {
        char c = out[i];
        if (c == ' ' || c == '\t') {
            in_password = false;
        } else if ((i == 0 || out[i - 1] == ' ' || out[i - 1] == '\t') && (c == '>' || c == '<')) {
            in_password = true;
        } else if (in_password && c >= 'a' && c <= 'z') {
            out[i] = (char)(c - 'a' + 'A');
        } else if (in_password && c >= 'A' && c <= 'Z') {
            out[i] = (char)(c - 'A' + 'a');
        }
    }
    return out;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string input((const char *)data, size);
    input = input.substr(0, strlen(input.c_str()));  // the config hands NUL-terminated text
    size_t newline = input.find('\n');
    std::string name = newline == std::string::npos ? "app" : input.substr(0, newline);
    std::string rules = newline == std::string::npos ? input : input.substr(newline + 1);
    acl_users_init(&users);
    acl_users_init(&other);
    char err[512];
    // Twice: a new user, then the same rules again on the user as the first call left it.
    for (int round = 0; round < 2; round++) {
        before = users;
        err[0] = '\0';
        if (acl_user_parse(&users, name.c_str(), rules.c_str(), err, sizeof(err))) {
            const AclUser *u = acl_user_find(&users, name.data(), name.size());
            assert(u != NULL);
            check_user(u);
        } else {
            assert(err[0] != '\0');
            assert(memcmp(&users, &before, sizeof(users)) == 0);
        }
        char other_err[sizeof(err)];
        other_err[0] = '\0';
        bool other_ok = acl_user_parse(&other, name.c_str(), other_passwords(rules).c_str(), other_err, sizeof(other_err));
        assert(other_ok == (err[0] == '\0'));
        assert(strcmp(err, other_err) == 0);
    }
    return 0;
}
