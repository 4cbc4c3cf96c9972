// Users of the proxy and the keys each may read (issue 28): no I/O but a password file's read.
//
// A user is one line of a [users] section, name = rules, in the grammar of Redis's ACL SETUSER,
// the part of it that means something to a read-only cache:
//   on, off                    may log in, or not
//   >password, <password       adds, removes a password (stored as its SHA-256 digest only)
//   #<64 hex>, !<64 hex>       adds, removes a password given as its SHA-256 (sha256sum's output)
//   nopass                     any password is accepted (and the passwords are forgotten)
//   resetpass                  no password, and not nopass: the user cannot log in
//   ~pattern, %R~pattern       keys it may read: a glob as Redis's stringmatchlen
//   %RW~pattern                the same: it grants reads as ~pattern does (which in Redis means
//                              %RW~); that writes are granted too means nothing here
//   allkeys (or ~*)            every key; resetkeys: none
//   reset                      off, no password, not nopass, no keys: a user as if just created
// Rules apply left to right to the user, as ACL SETUSER applies them: a new user starts off, with
// no password and no key. Refused, with the rule named and what to do: command rules (+get,
// -@all, allcommands, nocommands: the proxy only answers reads), channels (&chan, allchannels,
// resetchannels: there is no Pub/Sub), selectors ((...), clearselectors), and %W~pattern (it grants
// no read, and nothing but reads happens here). A word that is no rule at all is refused by its
// position, not shown: it may be a password someone forgot the '>' of, and errors get logged.
//
// Why digests only: the struct is copied into every worker and lives as long as the process; a
// core dump, a debugger or a stray log of it must not give a password away. Redis stores its ACL
// passwords the same way, and its #<hash> form lets a configuration file hold no password at all.
// A password with spaces, or one kept out of the configuration, comes from a file instead
// (acl_read_secret_file, then acl_user_add_password).
//
// Why fixed sizes: Config is a flat struct, copied by value, handed to workers across fork() and
// built anew on every reload; users embedded in it need no allocation, no free, no deep copy (=
// copies them, and there is nothing to free). The limits below are far above what a cache's
// users need, and passing one is an error that says which; all of it is about 150 KiB.
//
// Patterns match as Redis 7's stringmatchlen matches them (case-sensitive), without its recursion:
// the matcher backtracks to the last '*' only, O(pattern * key) at worst, and reproduces Redis's
// bound on nesting (a pattern with more than 1000 groups of '*' before its end matches nothing). One
// deliberate difference: ranges in [...] compare bytes unsigned (Redis compares C chars, signed
// on x86, so there [a-\xff] does not match b..z).
#pragma once

#include <stddef.h>
#include <stdint.h>

static const int ACL_MAX_USERS = 64;
static const size_t ACL_MAX_NAME = 64;       // bytes of a user's name: printable ASCII, no space
static const int ACL_MAX_PASSWORDS = 8;      // per user (two suffice to rotate one)
static const int ACL_MAX_PATTERNS = 32;      // key patterns per user
static const size_t ACL_PATTERN_BYTES = 2048;  // one user's patterns, all together
static const size_t ACL_DIGEST_SIZE = 32;    // SHA-256
static const size_t ACL_SECRET_MAX = 4096;   // a password file's bytes
static const int ACL_GLOB_MAX_NESTING = 1000;  // groups of '*' before the pattern's end, as Redis

struct AclUser {
    char name[ACL_MAX_NAME + 1];  // NUL-terminated
    uint8_t name_len;
    bool enabled;   // on
    bool nopass;    // any password is accepted
    bool allkeys;   // every key (no pattern is then kept)
    uint8_t digest_count;
    uint8_t pattern_count;
    // Pattern i is pattern_bytes[pattern_end[i - 1] (0 for the first) .. pattern_end[i]).
    uint16_t pattern_end[ACL_MAX_PATTERNS];
    // The bytes a key must begin with when pattern i is that text and one '*' after it (user:*,
    // the usual form): its check is a comparison, not a glob. 0xffff: the pattern is another form.
    uint16_t pattern_prefix[ACL_MAX_PATTERNS];
    unsigned char digests[ACL_MAX_PASSWORDS][ACL_DIGEST_SIZE];
    char pattern_bytes[ACL_PATTERN_BYTES];
};

// The proxy's users, in the order they were first defined. Plain data: copy it with =.
struct AclUsers {
    int count;  // 0: no user configured
    AclUser users[ACL_MAX_USERS];
};

// No user.
void acl_users_init(AclUsers *users);

// Applies rules (separated by spaces or tabs) to the user called name, made first (off, no
// password, no key) when there is none. All or nothing: on error the users are as they were, and
// err says "user 'NAME': what, and what to do" (never a password). Whether a name given twice in
// a file is an error or goes on over several lines is the caller's choice (a value starting with
// "reset" replaces a user wholly).
bool acl_user_parse(AclUsers *users, const char *name, const char *rules, char *err, size_t errlen);

// Adds a password given as bytes (from a password file: any byte, spaces included), as the rule
// >password would, to the user called name, made first when there is none.
bool acl_user_add_password(AclUsers *users, const char *name, const char *password, size_t len, char *err,
                           size_t errlen);

// The user called name (len bytes), or NULL.
const AclUser *acl_user_find(const AclUsers *users, const char *name, size_t len);

// The user that these credentials log in as, or NULL: no such user, the user is off, or the
// password is none of its passwords (a nopass user takes any). The password is hashed and compared
// with every digest slot (CRYPTO_memcmp) whether the user exists or not, so a wrong name and a
// wrong password take the same time. AUTH with a password alone is user "default", as in Redis.
const AclUser *acl_authenticate(const AclUsers *users, const char *name, size_t name_len, const char *password,
                                size_t password_len);

// For a token without a name (HTTP's Authorization: Bearer): the first user, in definition order,
// that is on and has this password (nopass users are not matched: they have no password), or
// NULL. Every digest of every user is compared.
const AclUser *acl_authenticate_token(const AclUsers *users, const char *token, size_t len);

// Whether user may read key: allkeys, or one of its patterns matches. No pattern: nothing.
bool acl_key_allowed(const AclUser *user, const char *key, size_t len);

// Redis's glob (stringmatchlen, case-sensitive): * any run, ? one byte, [abc] [a-z] [^a] classes
// (a reversed range [z-a] is a-z; an unclosed [ takes the rest of the pattern as its class), \x
// the byte x (a trailing \ is itself). An empty string matches only the empty pattern, as in Redis.
bool acl_glob_match(const char *pattern, size_t plen, const char *str, size_t slen);

// SHA-256 of data into out (ACL_DIGEST_SIZE bytes), with OpenSSL's libcrypto. False only when
// libcrypto fails (out of memory).
bool acl_sha256(const void *data, size_t len, unsigned char *out);

// Reads a password from a file: all of it, less one trailing "\n" or "\r\n", into out
// (NUL-terminated; at most cap - 1 and ACL_SECRET_MAX bytes). Refused, with the file named in err:
// a file others may read, write or run (mode & 007; but under /run/secrets/ and /run/credentials/,
// where a container runtime or systemd gives the service its own secrets, their mode is theirs),
// not a regular file, empty, too large, or holding a NUL byte. out is wiped on error. For [redis] password_file and the users' passwords.
bool acl_read_secret_file(const char *path, char *out, size_t cap, char *err, size_t errlen);
