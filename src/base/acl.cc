#include "acl.h"

#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- the glob --------------------------------------------------------------------------------

// Whether the token at *at (anything but '*') matches byte c; *at moves past the token. Where a
// token ends depends on the pattern alone, never on c: the matcher below relies on it.
static bool glob_token_matches(const unsigned char *p, size_t plen, size_t *at, unsigned char c)
{
    size_t i = *at;
    if (p[i] == '?') {
        *at = i + 1;
        return true;
    }
    if (p[i] == '\\') {
        if (plen - i >= 2)
            i++;  // a trailing backslash stands for itself
        *at = i + 1;
        return p[i] == c;
    }
    if (p[i] != '[') {
        *at = i + 1;
        return p[i] == c;
    }
    i++;
    bool negate = i < plen && p[i] == '^';
    if (negate)
        i++;
    bool match = false;
    for (;;) {
        if (i >= plen)
            break;  // unclosed: the class was the rest of the pattern
        if (p[i] == '\\' && plen - i >= 2) {
            i++;
            match |= p[i] == c;
        } else if (p[i] == ']') {
            i++;
            break;
        } else if (plen - i >= 3 && p[i + 1] == '-') {
            unsigned char lo = p[i], hi = p[i + 2];
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            match |= c >= lo && c <= hi;
            i += 2;
        } else {
            match |= p[i] == c;
        }
        i++;
    }
    *at = i;
    return match != negate;
}

// Groups of '*' that have more pattern after them: how deep Redis's recursive matcher would nest.
static size_t glob_nesting(const unsigned char *p, size_t plen)
{
    size_t groups = 0, i = 0;
    while (i < plen) {
        if (p[i] == '*') {
            while (i < plen && p[i] == '*')
                i++;
            if (i < plen)
                groups++;
        } else {
            glob_token_matches(p, plen, &i, 0);
        }
    }
    return groups;
}

// Every token but '*' takes exactly one byte, so on a mismatch only the last '*' needs to take one
// byte more (an earlier one taking more could only put the rest later, where the last '*' already
// looks): at most plen * slen steps, and no recursion for a pattern to exhaust the stack with.
bool acl_glob_match(const char *pattern, size_t plen, const char *str, size_t slen)
{
    const unsigned char *p = (const unsigned char *)pattern;
    const unsigned char *s = (const unsigned char *)str;
    // Redis's loop runs while both have bytes left: an empty string matches only an empty pattern
    // ("*" included).
    if (slen == 0)
        return plen == 0;
    size_t pi = 0, si = 0;
    size_t star_p = 0, star_s = 0;
    bool star = false;
    bool matched;
    for (;;) {
        if (si == slen) {
            while (pi < plen && p[pi] == '*')
                pi++;
            matched = pi == plen;
            break;
        }
        if (pi < plen && p[pi] == '*') {
            while (pi < plen && p[pi] == '*')
                pi++;
            if (pi == plen) {
                matched = true;
                break;
            }
            star = true;
            star_p = pi;
            star_s = si;
            continue;
        }
        size_t next = pi;
        if (pi < plen && glob_token_matches(p, plen, &next, s[si])) {
            pi = next;
            si++;
            continue;
        }
        if (!star) {
            matched = false;
            break;
        }
        pi = star_p;
        si = ++star_s;
    }
    // Redis gives up (no match) where its recursion would pass ACL_GLOB_MAX_NESTING: the same
    // answer, found without the recursion.
    return matched && glob_nesting(p, plen) <= (size_t)ACL_GLOB_MAX_NESTING;
}

// ---- digests ---------------------------------------------------------------------------------

bool acl_sha256(const void *data, size_t len, unsigned char *out)
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == ACL_DIGEST_SIZE;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool digest_from_hex(const char *hex, size_t len, unsigned char *out)
{
    if (len != 2 * ACL_DIGEST_SIZE)
        return false;
    for (size_t i = 0; i < ACL_DIGEST_SIZE; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    return true;
}

// ---- rules -----------------------------------------------------------------------------------

static const char RULES_KNOWN[] =
    "on, off, >password, <password, #<sha256 hex>, !<sha256 hex>, nopass, resetpass, ~pattern, %R~pattern, "
    "allkeys, resetkeys, reset";

static bool rule_error(char *err, size_t errlen, const AclUser *u, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool rule_error(char *err, size_t errlen, const AclUser *u, const char *fmt, ...)
{
    int n = snprintf(err, errlen, "user '%s': ", u->name);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool word_is(const char *word, size_t len, const char *keyword)
{
    return strlen(keyword) == len && strncasecmp(word, keyword, len) == 0;
}

static int digest_index(const AclUser *u, const unsigned char *digest)
{
    for (int i = 0; i < u->digest_count; i++)
        if (memcmp(u->digests[i], digest, ACL_DIGEST_SIZE) == 0)
            return i;
    return -1;
}

static bool add_digest(AclUser *u, const unsigned char *digest, char *err, size_t errlen)
{
    u->nopass = false;
    if (digest_index(u, digest) >= 0)
        return true;  // as Redis: the same password twice is kept once
    if (u->digest_count == ACL_MAX_PASSWORDS)
        return rule_error(err, errlen, u, "too many passwords (at most %d a user)", ACL_MAX_PASSWORDS);
    memcpy(u->digests[u->digest_count++], digest, ACL_DIGEST_SIZE);
    return true;
}

static bool remove_digest(AclUser *u, const unsigned char *digest, int position, char *err, size_t errlen)
{
    int i = digest_index(u, digest);
    if (i < 0)
        return rule_error(err, errlen, u,
                          "rule %d removes a password the user does not have (rules apply left to right: "
                          "a password is removed after the rule that adds it)",
                          position);
    memmove(u->digests[i], u->digests[i + 1], (size_t)(u->digest_count - i - 1) * ACL_DIGEST_SIZE);
    u->digest_count--;
    return true;
}

static void clear_patterns(AclUser *u)
{
    u->pattern_count = 0;
    u->allkeys = false;
}

static bool add_pattern(AclUser *u, const char *pattern, size_t len, char *err, size_t errlen)
{
    if (u->allkeys)
        return rule_error(err, errlen, u,
                          "pattern '~%.*s' comes after allkeys (or ~*), which already lets the user read every "
                          "key: remove one of them, or put resetkeys before the patterns",
                          (int)len, pattern);
    size_t used = u->pattern_count == 0 ? 0 : u->pattern_end[u->pattern_count - 1];
    for (int i = 0, start = 0; i < u->pattern_count; start = u->pattern_end[i], i++)
        if ((size_t)(u->pattern_end[i] - start) == len && memcmp(u->pattern_bytes + start, pattern, len) == 0)
            return true;  // as Redis: the same pattern twice is kept once
    if (u->pattern_count == ACL_MAX_PATTERNS)
        return rule_error(err, errlen, u, "too many key patterns (at most %d a user)", ACL_MAX_PATTERNS);
    if (len > ACL_PATTERN_BYTES - used)
        return rule_error(err, errlen, u, "key patterns too long (at most %zu bytes a user, all together)",
                          ACL_PATTERN_BYTES);
    memcpy(u->pattern_bytes + used, pattern, len);
    // A literal prefix and a last '*': nothing but that '*' is special ('*', '?', '[', '\\'), and
    // it does not stand alone (an empty key matches only an empty pattern, as in Redis).
    bool prefix = len >= 2 && pattern[len - 1] == '*';
    for (size_t i = 0; prefix && i + 1 < len; i++)
        prefix = strchr("*?[\\", pattern[i]) == NULL;
    u->pattern_prefix[u->pattern_count] = prefix ? (uint16_t)(len - 1) : 0xffff;
    u->pattern_end[u->pattern_count++] = (uint16_t)(used + len);
    return true;
}

// %R~pattern and the like: the permissions between '%' and '~', as Redis reads them (R and W,
// each at most once, any case). Returns where the pattern starts, or 0 with err written.
static size_t key_permission(AclUser *u, const char *word, size_t len, char *err, size_t errlen)
{
    bool read = false, write = false;
    size_t i = 1;
    for (; i < len && word[i] != '~'; i++) {
        if ((word[i] == 'R' || word[i] == 'r') && !read)
            read = true;
        else if ((word[i] == 'W' || word[i] == 'w') && !write)
            write = true;
        else
            break;
    }
    if (i == len || word[i] != '~' || (!read && !write)) {
        rule_error(err, errlen, u,
                   "'%.*s' is not a key permission: write %%R~pattern (or ~pattern) for keys the user may read",
                   (int)len, word);
        return 0;
    }
    if (!read) {
        rule_error(err, errlen, u,
                   "'%.*s' grants writes only, and the proxy only reads: write ~%.*s (or %%R~%.*s) to let the "
                   "user read those keys, or remove it",
                   (int)len, word, (int)(len - i - 1), word + i + 1, (int)(len - i - 1), word + i + 1);
        return 0;
    }
    return i + 1;
}

// Of a refused rule, only its first byte is shown, but for the keywords (allcommands, ...): it
// may be a password with the wrong sign before it (+secret for >secret), and errors get logged.
static bool is_keyword(const char *word, size_t len)
{
    return isalpha((unsigned char)word[0]) && len > 1;
}
static int shown_len(const char *word, size_t len) { return is_keyword(word, len) ? (int)len : 1; }
static const char *shown_more(const char *word, size_t len) { return is_keyword(word, len) || len == 1 ? "" : "..."; }

static const char *ordinal_suffix(int n)
{
    if (n % 100 >= 11 && n % 100 <= 13)
        return "th";
    return n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
}

// One rule, the position-th of its line, applied to u.
static bool apply_rule(AclUser *u, const char *word, size_t len, int position, char *err, size_t errlen)
{
    unsigned char digest[ACL_DIGEST_SIZE];
    if (word_is(word, len, "on")) {
        u->enabled = true;
    } else if (word_is(word, len, "off")) {
        u->enabled = false;
    } else if (word_is(word, len, "nopass")) {
        u->nopass = true;
        u->digest_count = 0;
    } else if (word_is(word, len, "resetpass")) {
        u->nopass = false;
        u->digest_count = 0;
    } else if (word_is(word, len, "allkeys") || (len == 2 && word[0] == '~' && word[1] == '*')) {
        clear_patterns(u);
        u->allkeys = true;
    } else if (word_is(word, len, "resetkeys")) {
        clear_patterns(u);
    } else if (word_is(word, len, "reset")) {
        u->enabled = false;
        u->nopass = false;
        u->digest_count = 0;
        clear_patterns(u);
    } else if (word[0] == '>' || word[0] == '<') {
        if (len == 1)
            return rule_error(err, errlen, u,
                              "rule %d is an empty password (%c with nothing after it): for a user without a "
                              "password write nopass",
                              position, word[0]);
        if (!acl_sha256(word + 1, len - 1, digest))
            return rule_error(err, errlen, u, "cannot hash a password (libcrypto failed)");
        if (word[0] == '>')
            return add_digest(u, digest, err, errlen);
        return remove_digest(u, digest, position, err, errlen);
    } else if (word[0] == '#' || word[0] == '!') {
        // Not shown either: a mistyped hash may be a password.
        if (!digest_from_hex(word + 1, len - 1, digest))
            return rule_error(err, errlen, u,
                              "rule %d is not a hashed password: after '%c' come the 64 hexadecimal digits of "
                              "the password's SHA-256 (printf %%s PASSWORD | sha256sum)",
                              position, word[0]);
        if (word[0] == '#')
            return add_digest(u, digest, err, errlen);
        return remove_digest(u, digest, position, err, errlen);
    } else if (word[0] == '~') {
        return add_pattern(u, word + 1, len - 1, err, errlen);
    } else if (word[0] == '%') {
        size_t start = key_permission(u, word, len, err, errlen);
        if (start == 0)
            return false;
        return add_pattern(u, word + start, len - start, err, errlen);
    } else if (word[0] == '+' || word[0] == '-' || word_is(word, len, "allcommands") ||
               word_is(word, len, "nocommands")) {
        return rule_error(err, errlen, u,
                          "the %d%s rule ('%.*s%s') is a command permission, which does not apply here: the proxy "
                          "answers reads only (GET, MGET, ...) and every user may send them; remove it, and give "
                          "the keys with ~pattern",
                          position, ordinal_suffix(position), shown_len(word, len), word, shown_more(word, len));
    } else if (word[0] == '&' || word_is(word, len, "allchannels") || word_is(word, len, "resetchannels")) {
        return rule_error(err, errlen, u,
                          "the %d%s rule ('%.*s%s') is a Pub/Sub channel permission, which does not apply here: the "
                          "proxy has no Pub/Sub; remove it",
                          position, ordinal_suffix(position), shown_len(word, len), word, shown_more(word, len));
    } else if (word[0] == '(' || word[0] == ')' || word_is(word, len, "clearselectors")) {
        return rule_error(err, errlen, u,
                          "the %d%s rule ('%.*s%s') is part of a selector, which does not apply here: give the keys "
                          "the user may read as ~pattern rules of the user itself; remove it",
                          position, ordinal_suffix(position), shown_len(word, len), word, shown_more(word, len));
    } else {
        return rule_error(err, errlen, u,
                          "the %d%s rule is not one the proxy knows (not shown, in case it is a password: a "
                          "password is written >password); the rules are: %s",
                          position, ordinal_suffix(position), RULES_KNOWN);
    }
    return true;
}

static bool name_valid(const char *name, size_t len)
{
    if (len == 0 || len > ACL_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

// The user called name, copied into *work (or made anew there): the rules change the copy, which
// replaces the user only once every rule applied. Returns the user's slot, or -1 with err written.
static int user_to_change(const AclUsers *users, const char *name, AclUser *work, char *err, size_t errlen)
{
    size_t len = strlen(name);
    if (!name_valid(name, len)) {
        snprintf(err, errlen,
                 "user name '%.*s' is not valid: 1 to %zu characters, printable ASCII without spaces",
                 (int)(len > 2 * ACL_MAX_NAME ? 2 * ACL_MAX_NAME : len), name, ACL_MAX_NAME);
        return -1;
    }
    const AclUser *found = acl_user_find(users, name, len);
    if (found != NULL) {
        *work = *found;
        return (int)(found - users->users);
    }
    if (users->count == ACL_MAX_USERS) {
        snprintf(err, errlen, "user '%s': too many users (at most %d)", name, ACL_MAX_USERS);
        return -1;
    }
    memset(work, 0, sizeof(*work));
    memcpy(work->name, name, len);
    work->name_len = (uint8_t)len;
    return users->count;
}

static void user_commit(AclUsers *users, int slot, const AclUser *work)
{
    users->users[slot] = *work;
    if (slot == users->count)
        users->count++;
}

void acl_users_init(AclUsers *users)
{
    users->count = 0;
}

bool acl_user_parse(AclUsers *users, const char *name, const char *rules, char *err, size_t errlen)
{
    AclUser work;
    int slot = user_to_change(users, name, &work, err, errlen);
    if (slot < 0)
        return false;
    const char *at = rules;
    for (int position = 1;; position++) {
        while (*at == ' ' || *at == '\t')
            at++;
        if (*at == '\0')
            break;
        size_t len = strcspn(at, " \t");
        if (!apply_rule(&work, at, len, position, err, errlen)) {
            OPENSSL_cleanse(&work, sizeof(work));
            return false;
        }
        at += len;
    }
    user_commit(users, slot, &work);
    return true;
}

bool acl_user_add_password(AclUsers *users, const char *name, const char *password, size_t len, char *err,
                           size_t errlen)
{
    AclUser work;
    int slot = user_to_change(users, name, &work, err, errlen);
    if (slot < 0)
        return false;
    unsigned char digest[ACL_DIGEST_SIZE];
    if (len == 0)
        return rule_error(err, errlen, &work, "the password is empty: for a user without a password write nopass");
    if (!acl_sha256(password, len, digest))
        return rule_error(err, errlen, &work, "cannot hash a password (libcrypto failed)");
    if (!add_digest(&work, digest, err, errlen))
        return false;
    user_commit(users, slot, &work);
    return true;
}

// ---- lookups ---------------------------------------------------------------------------------

const AclUser *acl_user_find(const AclUsers *users, const char *name, size_t len)
{
    // Every user is looked at, found or not: the time says little about which names exist.
    const AclUser *found = NULL;
    for (int i = 0; i < users->count; i++) {
        const AclUser *u = &users->users[i];
        if (found == NULL && u->name_len == len && memcmp(u->name, name, len) == 0)
            found = u;
    }
    return found;
}

// Whether digest is one of u's: every slot is compared, used or not, so the time does not depend on
// how many passwords u has, nor on which one matched.
static bool digest_matches(const AclUser *u, const unsigned char *digest)
{
    int matched = 0;
    for (int i = 0; i < ACL_MAX_PASSWORDS; i++) {
        int equal = CRYPTO_memcmp(u->digests[i], digest, ACL_DIGEST_SIZE) == 0;
        matched |= equal & (i < u->digest_count);
    }
    return matched != 0;
}

const AclUser *acl_authenticate(const AclUsers *users, const char *name, size_t name_len, const char *password,
                                size_t password_len)
{
    static const AclUser nobody = {};  // compared with when there is no such user: the same work
    unsigned char digest[ACL_DIGEST_SIZE] = {0};
    bool hashed = acl_sha256(password, password_len, digest);
    const AclUser *u = acl_user_find(users, name, name_len);
    bool matched = digest_matches(u != NULL ? u : &nobody, digest);
    OPENSSL_cleanse(digest, sizeof(digest));
    if (u == NULL || !hashed || !u->enabled)
        return NULL;
    return u->nopass || matched ? u : NULL;
}

const AclUser *acl_authenticate_token(const AclUsers *users, const char *token, size_t len)
{
    unsigned char digest[ACL_DIGEST_SIZE];
    if (!acl_sha256(token, len, digest))
        return NULL;
    const AclUser *found = NULL;
    for (int i = 0; i < users->count; i++) {
        const AclUser *u = &users->users[i];
        if (digest_matches(u, digest) && found == NULL && u->enabled)
            found = u;
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    return found;
}

bool acl_key_allowed(const AclUser *user, const char *key, size_t len)
{
    if (user->allkeys)
        return true;
    size_t start = 0;
    for (int i = 0; i < user->pattern_count; i++) {
        size_t end = user->pattern_end[i], prefix = user->pattern_prefix[i];
        // (the first byte first: most patterns a key does not match differ there)
        const char *pattern = user->pattern_bytes + start;
        if (prefix != 0xffff ? len >= prefix && len > 0 && key[0] == pattern[0] && memcmp(pattern, key, prefix) == 0
                             : acl_glob_match(pattern, end - start, key, len))
            return true;
        start = end;
    }
    return false;
}

// ---- password files --------------------------------------------------------------------------

bool acl_read_secret_file(const char *path, char *out, size_t cap, char *err, size_t errlen)
{
    if (cap == 0) {
        snprintf(err, errlen, "%s: no room for a password", path);
        return false;
    }
    out[0] = '\0';
    size_t limit = cap - 1 < ACL_SECRET_MAX ? cap - 1 : ACL_SECRET_MAX;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "password file %s: cannot open: %s", path, strerror(errno));
        return false;
    }
    // The file's own mode, from the descriptor read: no window for a swap between check and read.
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "password file %s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "password file %s is not a regular file", path);
        close(fd);
        return false;
    }
    // Where a platform hands secrets to the service alone (a container's /run/secrets, systemd's
    // credentials), it sets their mode: Docker bind-mounts a compose secret with its host file's
    // mode, often 0644, in a filesystem no other user of the host sees.
    // (Judged by where the path really leads: no "..", no symbolic link out of those folders.)
    char real[PATH_MAX];
    bool platform = realpath(path, real) != NULL &&
                    (strncmp(real, "/run/secrets/", 13) == 0 || strncmp(real, "/run/credentials/", 17) == 0);
    if (!platform && (st.st_mode & 0007) != 0) {
        snprintf(err, errlen,
                 "password file %s is open to other users (mode %04o): make it readable by the proxy only "
                 "(chmod o= %s; 0600, or 0640 with the proxy's group)",
                 path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return false;
    }
    // Up to limit + 1 bytes into out, then up to two more aside: enough to tell a password of
    // limit bytes and its "\r\n" from a file too large.
    char tail[2];
    size_t got = 0, tail_got = 0;
    for (;;) {
        bool in_out = got < limit + 1;
        if (!in_out && tail_got == sizeof(tail))
            break;
        ssize_t n = in_out ? read(fd, out + got, limit + 1 - got) : read(fd, tail + tail_got, sizeof(tail) - tail_got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "password file %s: cannot read: %s", path, strerror(errno));
            close(fd);
            OPENSSL_cleanse(out, cap);
            out[0] = '\0';
            return false;
        }
        if (n == 0)
            break;
        if (in_out)
            got += (size_t)n;
        else
            tail_got += (size_t)n;
    }
    close(fd);
    size_t total = got + tail_got;
    auto byte_at = [&](size_t i) { return i < got ? out[i] : tail[i - got]; };  // across out and tail
    if (total >= 2 && byte_at(total - 2) == '\r' && byte_at(total - 1) == '\n')
        total -= 2;
    else if (total >= 1 && byte_at(total - 1) == '\n')
        total -= 1;
    OPENSSL_cleanse(tail, sizeof(tail));
    const char *refused = NULL;
    if (total > limit)
        refused = "is too large";
    else if (total == 0)
        refused = "is empty";
    else if (memchr(out, '\0', total) != NULL)
        refused = "holds a NUL byte";
    if (refused != NULL) {
        snprintf(err, errlen, "password file %s %s (a password of 1 to %zu bytes, one trailing newline ignored)",
                 path, refused, limit);
        OPENSSL_cleanse(out, cap);
        out[0] = '\0';
        return false;
    }
    got = total;
    out[got] = '\0';
    return true;
}
