#include <CppUTest/TestHarness.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "acl.h"

static std::string hex_digest(const std::string &text)
{
    unsigned char d[ACL_DIGEST_SIZE];
    CHECK(acl_sha256(text.data(), text.size(), d));
    std::string out;
    char two[3];
    for (size_t i = 0; i < ACL_DIGEST_SIZE; i++) {
        snprintf(two, sizeof(two), "%02x", d[i]);
        out += two;
    }
    return out;
}

static bool contains(const std::string &haystack, const std::string &needle)
{
    return haystack.find(needle) != std::string::npos;
}

TEST_GROUP(Acl)
{
    AclUsers *users;
    char err[1024];

    void setup() override
    {
        users = (AclUsers *)malloc(sizeof(AclUsers));
        acl_users_init(users);
        err[0] = '\0';
    }
    void teardown() override { free(users); }

    bool parse(const char *name, const char *rules)
    {
        err[0] = '\0';
        return acl_user_parse(users, name, rules, err, sizeof(err));
    }
    // Parses, and fails the test with the error if it was refused.
    const AclUser *define(const char *name, const char *rules)
    {
        if (!parse(name, rules))
            FAIL(err);
        return acl_user_find(users, name, strlen(name));
    }
    // Refused, with an error holding every one of the words.
    void refused(const char *name, const char *rules, std::vector<std::string> words)
    {
        CHECK_FALSE_TEXT(parse(name, rules), rules);
        for (const std::string &w : words)
            CHECK_TEXT(contains(err, w), (std::string("'") + w + "' not in: " + err).c_str());
    }
    const AclUser *auth(const char *name, const char *password)
    {
        return acl_authenticate(users, name, strlen(name), password, strlen(password));
    }
    bool may_read(const AclUser *u, const char *key) { return acl_key_allowed(u, key, strlen(key)); }
};

TEST(Acl, test_sha256_of_known_vectors)
{
    // FIPS 180-2's "abc", and the empty message.
    STRCMP_EQUAL("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex_digest("abc").c_str());
    STRCMP_EQUAL("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex_digest("").c_str());
}

TEST(Acl, test_new_user_starts_off_without_password_or_keys)
{
    const AclUser *u = define("app", "");
    CHECK(u != NULL);
    LONGS_EQUAL(1, users->count);
    CHECK_FALSE(u->enabled);
    CHECK_FALSE(u->nopass);
    CHECK_FALSE(u->allkeys);
    LONGS_EQUAL(0, u->digest_count);
    LONGS_EQUAL(0, u->pattern_count);
    CHECK_FALSE(may_read(u, "anything"));
}

TEST(Acl, test_on_and_off_decide_whether_a_password_logs_in)
{
    define("app", "on >secret ~*");
    CHECK(auth("app", "secret") != NULL);
    define("app", "off");
    POINTERS_EQUAL(NULL, auth("app", "secret"));
    define("app", "on");
    CHECK(auth("app", "secret") != NULL);
}

TEST(Acl, test_keywords_are_case_insensitive_as_in_redis)
{
    const AclUser *u = define("app", "ON NoPass AllKeys");
    CHECK(u->enabled);
    CHECK(u->nopass);
    CHECK(u->allkeys);
}

TEST(Acl, test_password_logs_in_and_only_its_digest_is_kept)
{
    const AclUser *u = define("app", "on >correct-horse ~*");
    POINTERS_EQUAL(u, auth("app", "correct-horse"));
    POINTERS_EQUAL(NULL, auth("app", "correct-hors"));
    POINTERS_EQUAL(NULL, auth("app", "correct-horse "));
    POINTERS_EQUAL(NULL, auth("app", ""));
    std::string memory((const char *)users, sizeof(*users));
    CHECK_FALSE(contains(memory, "correct-horse"));
    std::string digest = hex_digest("correct-horse");
    unsigned char raw[ACL_DIGEST_SIZE];
    CHECK(acl_sha256("correct-horse", 13, raw));
    MEMCMP_EQUAL(raw, u->digests[0], ACL_DIGEST_SIZE);
}

TEST(Acl, test_every_password_of_a_user_logs_in)
{
    define("app", "on >old >new ~*");
    CHECK(auth("app", "old") != NULL);
    CHECK(auth("app", "new") != NULL);
    POINTERS_EQUAL(NULL, auth("app", "other"));
}

TEST(Acl, test_same_password_twice_is_kept_once)
{
    const AclUser *u = define("app", ">a >a #" "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");  // sha256("a")
    LONGS_EQUAL(1, u->digest_count);
}

TEST(Acl, test_remove_password)
{
    define("app", "on >old >new <old ~*");
    POINTERS_EQUAL(NULL, auth("app", "old"));
    CHECK(auth("app", "new") != NULL);
}

TEST(Acl, test_removing_a_password_the_user_lacks_is_refused_without_showing_it)
{
    define("app", "on >one");
    refused("app", "<two", {"user 'app'", "rule 1", "does not have"});
    CHECK_FALSE(contains(err, "two"));
}

TEST(Acl, test_hashed_password_logs_in_with_its_clear_text)
{
    std::string rules = "on #" + hex_digest("hunter2") + " ~*";
    define("app", rules.c_str());
    CHECK(auth("app", "hunter2") != NULL);
    POINTERS_EQUAL(NULL, auth("app", "hunter3"));
}

TEST(Acl, test_hashed_password_in_upper_case_hex_is_the_same)
{
    std::string hex = hex_digest("hunter2");
    std::transform(hex.begin(), hex.end(), hex.begin(), ::toupper);
    define("app", ("on #" + hex).c_str());
    CHECK(auth("app", "hunter2") != NULL);
}

TEST(Acl, test_remove_hashed_password)
{
    std::string rules = "on >hunter2 >other !" + hex_digest("hunter2");
    define("app", rules.c_str());
    POINTERS_EQUAL(NULL, auth("app", "hunter2"));
    CHECK(auth("app", "other") != NULL);
    refused("app", ("!" + hex_digest("hunter2")).c_str(), {"does not have"});
}

TEST(Acl, test_bad_hashes_are_refused_without_being_shown)
{
    refused("app", "on #mysecretpassword", {"user 'app'", "rule 2", "64 hexadecimal digits", "sha256sum"});
    CHECK_FALSE(contains(err, "mysecretpassword"));
    std::string short_hex = "#" + hex_digest("x").substr(1);
    refused("app", short_hex.c_str(), {"rule 1", "64 hexadecimal"});
    std::string long_hex = "#" + hex_digest("x") + "0";
    refused("app", long_hex.c_str(), {"64 hexadecimal"});
    std::string not_hex = "!" + hex_digest("x").substr(1) + "g";
    refused("app", not_hex.c_str(), {"after '!'"});
    refused("app", "#", {"64 hexadecimal"});
}

TEST(Acl, test_empty_password_is_refused)
{
    refused("app", "on >", {"user 'app'", "rule 2", "empty password", "nopass"});
    refused("app", "<", {"empty password"});
}

TEST(Acl, test_nopass_takes_any_password_and_forgets_the_passwords)
{
    const AclUser *u = define("app", "on >secret nopass ~*");
    CHECK(u->nopass);
    LONGS_EQUAL(0, u->digest_count);
    POINTERS_EQUAL(u, auth("app", "whatever"));
    POINTERS_EQUAL(u, auth("app", ""));
}

TEST(Acl, test_a_password_after_nopass_ends_nopass)
{
    const AclUser *u = define("app", "on nopass >secret");
    CHECK_FALSE(u->nopass);
    POINTERS_EQUAL(NULL, auth("app", "whatever"));
    POINTERS_EQUAL(u, auth("app", "secret"));
}

TEST(Acl, test_nopass_user_that_is_off_does_not_log_in)
{
    define("app", "off nopass");
    POINTERS_EQUAL(NULL, auth("app", "x"));
}

TEST(Acl, test_resetpass_leaves_no_way_in)
{
    const AclUser *u = define("app", "on nopass resetpass");
    CHECK_FALSE(u->nopass);
    POINTERS_EQUAL(NULL, auth("app", "x"));
    define("app", ">a >b resetpass");
    LONGS_EQUAL(0, u->digest_count);
    POINTERS_EQUAL(NULL, auth("app", "a"));
}

TEST(Acl, test_user_without_password_does_not_log_in)
{
    define("app", "on ~*");
    POINTERS_EQUAL(NULL, auth("app", ""));
    POINTERS_EQUAL(NULL, auth("app", "x"));
}

TEST(Acl, test_unknown_user_does_not_log_in)
{
    define("app", "on nopass ~*");
    POINTERS_EQUAL(NULL, auth("ap", "x"));
    POINTERS_EQUAL(NULL, auth("app2", "x"));
    POINTERS_EQUAL(NULL, auth("default", "x"));
    POINTERS_EQUAL(NULL, acl_authenticate(users, "app", 2, "x", 1));  // "ap"
    CHECK(acl_authenticate(users, "app", 3, "x", 1) != NULL);
}

TEST(Acl, test_patterns_decide_the_keys)
{
    const AclUser *u = define("app", "on ~user:* ~session:?? ~exact");
    LONGS_EQUAL(3, u->pattern_count);
    CHECK(may_read(u, "user:1"));
    CHECK(may_read(u, "session:ab"));
    CHECK(may_read(u, "exact"));
    CHECK_FALSE(may_read(u, "session:abc"));
    CHECK_FALSE(may_read(u, "exact2"));
    CHECK_FALSE(may_read(u, "admin:1"));
    CHECK_FALSE(may_read(u, ""));
}

TEST(Acl, test_key_with_nul_byte_is_matched_as_bytes)
{
    const AclUser *u = define("app", "~a?c");
    CHECK(acl_key_allowed(u, "a\0c", 3));
    CHECK_FALSE(acl_key_allowed(u, "a\0cd", 4));
}

TEST(Acl, test_same_pattern_twice_is_kept_once)
{
    const AclUser *u = define("app", "~a* ~a* ~b");
    LONGS_EQUAL(2, u->pattern_count);
}

TEST(Acl, test_allkeys_and_tilde_star_read_every_key_even_the_empty_one)
{
    const AclUser *u = define("app", "~x allkeys");
    CHECK(u->allkeys);
    LONGS_EQUAL(0, u->pattern_count);
    CHECK(may_read(u, "anything"));
    CHECK(may_read(u, ""));
    u = define("other", "~*");
    CHECK(u->allkeys);
}

TEST(Acl, test_pattern_after_allkeys_is_refused)
{
    refused("app", "allkeys ~user:*", {"user 'app'", "'~user:*'", "after allkeys", "resetkeys"});
    refused("app", "~* ~user:*", {"after allkeys"});
}

TEST(Acl, test_resetkeys_leaves_no_key)
{
    const AclUser *u = define("app", "allkeys resetkeys ~a");
    CHECK_FALSE(u->allkeys);
    CHECK(may_read(u, "a"));
    CHECK_FALSE(may_read(u, "b"));
    define("app", "resetkeys");
    CHECK_FALSE(may_read(u, "a"));
}

TEST(Acl, test_read_permission_patterns_are_patterns)
{
    const AclUser *u = define("app", "%R~r:* %RW~rw:* %wr~wr:* %r~*");
    LONGS_EQUAL(4, u->pattern_count);
    CHECK_FALSE(u->allkeys);  // as in Redis: only ~* and allkeys are "all keys"
    CHECK(may_read(u, "r:1"));
    CHECK(may_read(u, "rw:1"));
    CHECK(may_read(u, "anything"));
    CHECK_FALSE(may_read(u, ""));  // "*" matches no empty key, as stringmatchlen
}

TEST(Acl, test_write_only_pattern_is_refused)
{
    refused("app", "%W~logs:*", {"user 'app'", "'%W~logs:*'", "writes only", "~logs:*", "%R~logs:*"});
}

TEST(Acl, test_malformed_key_permissions_are_refused)
{
    refused("app", "%X~a", {"'%X~a'", "not a key permission", "%R~pattern"});
    refused("app", "%R", {"'%R'", "not a key permission"});
    refused("app", "%~a", {"not a key permission"});
    refused("app", "%RR~a", {"not a key permission"});
    refused("app", "%", {"not a key permission"});
}

TEST(Acl, test_reset_makes_the_user_as_new)
{
    const AclUser *u = define("app", "on >a ~x nopass allkeys reset");
    CHECK_FALSE(u->enabled);
    CHECK_FALSE(u->nopass);
    CHECK_FALSE(u->allkeys);
    LONGS_EQUAL(0, u->digest_count);
    LONGS_EQUAL(0, u->pattern_count);
}

TEST(Acl, test_rules_go_on_over_several_calls_and_reset_replaces)
{
    define("app", "on >a");
    const AclUser *u = define("app", "~x");
    LONGS_EQUAL(1, users->count);
    CHECK(u->enabled);
    CHECK(auth("app", "a") != NULL);
    define("app", "reset on >b ~y");
    POINTERS_EQUAL(NULL, auth("app", "a"));
    CHECK(auth("app", "b") != NULL);
    CHECK_FALSE(may_read(u, "x"));
}

TEST(Acl, test_blanks_separate_rules)
{
    const AclUser *u = define("app", "  on\t>a \t ~x   ");
    CHECK(u->enabled);
    LONGS_EQUAL(1, u->digest_count);
    LONGS_EQUAL(1, u->pattern_count);
}

// A refused rule is named by its position and first byte (it may be a password with the wrong
// sign before it: +secret for >secret), a keyword by itself.
TEST(Acl, test_command_rules_are_refused_by_their_sign)
{
    const char *rules[] = {"+@all", "-get", "+get|x", "-@dangerous"};
    for (const char *r : rules) {
        std::string shown = std::string("('") + r[0] + "...')";
        refused("app", r, {"user 'app'", "1st rule", shown, "command permission", "reads only", "remove it"});
        CHECK_FALSE(contains(err, r + 1));
    }
    refused("app", "on allcommands", {"2nd rule ('allcommands')", "command permission"});
    refused("app", "nocommands", {"'nocommands'", "command permission"});
}

TEST(Acl, test_channel_rules_are_refused_by_their_sign)
{
    const char *rules[] = {"&news", "&*"};
    for (const char *r : rules)
        refused("app", r, {"user 'app'", "('&...')", "Pub/Sub", "remove it"});
    refused("app", "allchannels", {"'allchannels'", "Pub/Sub"});
    refused("app", "resetchannels", {"'resetchannels'", "Pub/Sub"});
}

TEST(Acl, test_selectors_are_refused_by_their_sign)
{
    refused("app", "on (~foo +get)", {"user 'app'", "2nd rule ('(...')", "selector", "~pattern", "remove it"});
    refused("app", "clearselectors", {"'clearselectors'", "selector"});
}

TEST(Acl, test_unknown_rule_is_refused_by_position_not_shown)
{
    refused("app", "on hunter2 ~*", {"user 'app'", "2nd rule", "not shown", ">password", "nopass", "~pattern"});
    CHECK_FALSE(contains(err, "hunter2"));
    refused("app", "on on on on on on on on on on on secret", {"12th rule"});
    refused("app", "x", {"1st rule"});
    refused("app", "on on x", {"3rd rule"});
    refused("app", "on on on x", {"4th rule"});
}

TEST(Acl, test_a_refused_line_changes_nothing)
{
    CHECK_FALSE(parse("new", "on >a +@all"));
    LONGS_EQUAL(0, users->count);
    POINTERS_EQUAL(NULL, acl_user_find(users, "new", 3));
    define("app", "on >a ~x");
    CHECK_FALSE(parse("app", "reset >b -get"));
    CHECK(auth("app", "a") != NULL);
    POINTERS_EQUAL(NULL, auth("app", "b"));
    CHECK(may_read(acl_user_find(users, "app", 3), "x"));
}

TEST(Acl, test_user_names)
{
    define("default", "on nopass");
    define("a.b-c_d:e@f", "on");
    define(std::string(ACL_MAX_NAME, 'n').c_str(), "");
    refused(std::string(ACL_MAX_NAME + 1, 'n').c_str(), "", {"not valid", "1 to 64"});
    refused("", "", {"user name '' is not valid"});
    refused("a b", "", {"not valid", "without spaces"});
    refused("a\x01", "", {"not valid"});
    refused("caf\xc3\xa9", "", {"not valid", "ASCII"});
    LONGS_EQUAL(3, users->count);
}

TEST(Acl, test_user_lookup_is_exact)
{
    define("app", "");
    define("apple", "");
    POINTERS_EQUAL(&users->users[0], acl_user_find(users, "app", 3));
    POINTERS_EQUAL(&users->users[1], acl_user_find(users, "apple", 5));
    POINTERS_EQUAL(NULL, acl_user_find(users, "App", 3));
    POINTERS_EQUAL(NULL, acl_user_find(users, "ap", 2));
    POINTERS_EQUAL(NULL, acl_user_find(users, "appl", 4));
}

TEST(Acl, test_too_many_users)
{
    char name[16];
    for (int i = 0; i < ACL_MAX_USERS; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        define(name, "on");
    }
    refused("one-more", "on", {"user 'one-more'", "too many users", "at most 64"});
    define("u3", "off");  // an existing one may still change
    LONGS_EQUAL(ACL_MAX_USERS, users->count);
}

TEST(Acl, test_too_many_passwords)
{
    std::string rules;
    for (int i = 0; i < ACL_MAX_PASSWORDS; i++)
        rules += " >p" + std::to_string(i);
    define("app", rules.c_str());
    refused("app", ">one-more", {"user 'app'", "too many passwords", "at most 8"});
    CHECK_FALSE(contains(err, "one-more"));
    define("app", "<p0 >one-more");
    CHECK(auth("app", "one-more") == NULL);  // off
    define("app", "on");
    CHECK(auth("app", "one-more") != NULL);
    CHECK(auth("app", "p7") != NULL);
}

TEST(Acl, test_too_many_patterns)
{
    std::string rules;
    for (int i = 0; i < ACL_MAX_PATTERNS; i++)
        rules += " ~k" + std::to_string(i) + ":*";
    const AclUser *u = define("app", rules.c_str());
    CHECK(may_read(u, "k31:x"));
    refused("app", "~more", {"user 'app'", "too many key patterns", "at most 32"});
}

TEST(Acl, test_patterns_too_long_together)
{
    std::string half(ACL_PATTERN_BYTES / 2, 'a');
    define("app", ("~" + half + " ~b" + half.substr(1)).c_str());  // exactly the room
    refused("app", "~c", {"user 'app'", "key patterns too long", "2048 bytes"});
    std::string too_long(ACL_PATTERN_BYTES + 1, 'x');
    refused("other", ("~" + too_long).c_str(), {"too long"});
}

TEST(Acl, test_add_password_from_bytes_takes_any_byte)
{
    const char password[] = "with spaces\tand\0nul";
    char err2[256];
    CHECK(acl_user_add_password(users, "app", password, sizeof(password) - 1, err2, sizeof(err2)));
    define("app", "on");
    CHECK(acl_authenticate(users, "app", 3, password, sizeof(password) - 1) != NULL);
    POINTERS_EQUAL(NULL, auth("app", "with spaces"));
    CHECK_FALSE(acl_user_add_password(users, "app", "", 0, err2, sizeof(err2)));
    CHECK(contains(err2, "empty"));
    CHECK_FALSE(acl_user_add_password(users, "bad name", "x", 1, err2, sizeof(err2)));
    CHECK(contains(err2, "not valid"));
}

TEST(Acl, test_users_copy_by_value)
{
    define("app", "on >a ~x");
    AclUsers *copy = (AclUsers *)malloc(sizeof(AclUsers));
    *copy = *users;
    define("app", "reset");
    CHECK(acl_authenticate(copy, "app", 3, "a", 1) != NULL);
    CHECK(acl_key_allowed(acl_user_find(copy, "app", 3), "x", 1));
    free(copy);
}

TEST(Acl, test_token_finds_the_user_whose_password_it_is)
{
    define("off-one", "off >shared ~*");
    define("reader", "on >shared >reader-token ~r:*");
    define("writer", "on >shared ~w:*");
    define("anyone", "on nopass ~*");
    POINTERS_EQUAL(acl_user_find(users, "reader", 6), acl_authenticate_token(users, "shared", 6));
    POINTERS_EQUAL(acl_user_find(users, "reader", 6), acl_authenticate_token(users, "reader-token", 12));
    POINTERS_EQUAL(NULL, acl_authenticate_token(users, "nobody's", 8));  // nopass matches no token
    POINTERS_EQUAL(NULL, acl_authenticate_token(users, "", 0));
}

TEST(Acl, test_error_is_cut_to_its_buffer)
{
    char small[16];
    memset(small, 'x', sizeof(small));
    CHECK_FALSE(acl_user_parse(users, "app", "+@all", small, sizeof(small)));
    LONGS_EQUAL(sizeof(small) - 1, strlen(small));
}

// A wrong name and a wrong password cost the same: the password is hashed and compared either way.
// Measured against a hash's cost (a missing user answered without hashing would be ~50 times faster),
// with a margin that sanitizers and a busy machine do not cross.
static double fastest_ns(const AclUsers *users, const char *name, const char *password)
{
    double best = 1e18;
    for (int round = 0; round < 30; round++) {
        timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < 200; i++)
            (void)acl_authenticate(users, name, strlen(name), password, strlen(password));
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
        best = std::min(best, ns);
    }
    return best;
}

TEST(Acl, test_wrong_name_and_wrong_password_take_the_same_time)
{
    define("app", "on >a >b >c ~*");
    const char *password = "a-password-of-some-length-that-takes-one-sha256-block";
    double wrong_password = fastest_ns(users, "app", password);
    double wrong_name = fastest_ns(users, "nobody", password);
    double right = fastest_ns(users, "app", "a");
    CHECK_TEXT(wrong_name > wrong_password / 3 && wrong_name < wrong_password * 3,
               ("wrong name " + std::to_string(wrong_name) + " ns, wrong password " + std::to_string(wrong_password)).c_str());
    CHECK(right > wrong_password / 3);
}

// stringmatchlen's answers (Redis 7, case-sensitive), including its corners.
struct GlobCase {
    const char *pattern, *str;
    bool match;
};
static const GlobCase glob_cases[] = {
    {"*", "", false},
    {"", "", true},
    {"a", "", false},
    {"*", "x", true},
    {"a*", "a", true},
    {"a?c", "abc", true},
    {"a?c", "ac", false},
    {"?", "x", true},
    {"[abc]", "b", true},
    {"[^abc]", "b", false},
    {"[^abc]", "d", true},
    {"[a-c]", "b", true},
    {"[c-a]", "b", true},
    {"[z-a]", "m", true},
    {"[z-a]", "A", false},
    {"\\*", "*", true},
    {"\\*", "a", false},
    {"a\\", "a\\", true},
    {"a\\", "a", false},
    {"[a", "a", true},
    {"[a", "b", false},
    {"[", "[", false},
    {"[^", "x", true},
    {"[^", "[^", false},
    {"[\\]]", "]", true},
    {"[\\]]", "\\", false},
    {"[a-]", "_", true},
    {"[a-]", "-", false},
    {"[a-]]", "_", true},
    {"[a-]]", "]", true},
    {"[]a]", "]a]", false},
    {"[]a]", "a]", false},
    {"[]", "x", false},
    {"a[\\", "a\\", true},
    {"a[b-", "a-", true},
    {"a[b-", "ab", true},
    {"user:*", "user:1", true},
    {"user:*", "user:", true},
    {"user:*", "users:1", false},
    {"*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaa", false},
    {"h\\?llo", "h?llo", true},
    {"h\\?llo", "hello", false},
    {"**a", "a", true},
    {"a**", "a", true},
    {"[\\-]", "-", true},
    {"[a\\-c]", "b", false},
    {"\\", "\\", true},
    {"\\a", "a", true},
    {"[^a-z]", "Q", true},
    {"[^a-z]", "q", false},
    {"*[", "x[", false},
    {"x*[]", "x]", false},
};

TEST(Acl, test_glob_matches_as_redis_stringmatchlen)
{
    for (const GlobCase &c : glob_cases) {
        bool got = acl_glob_match(c.pattern, strlen(c.pattern), c.str, strlen(c.str));
        CHECK_EQUAL_TEXT(c.match, got, (std::string("pattern '") + c.pattern + "' string '" + c.str + "'").c_str());
    }
}

TEST(Acl, test_glob_compares_bytes_unsigned_in_ranges)
{
    CHECK(acl_glob_match("[a-\xff]", 5, "\xe9", 1));
    CHECK(acl_glob_match("[a-\xff]", 5, "m", 1));
    CHECK_FALSE(acl_glob_match("[a-\xff]", 5, "A", 1));
    CHECK(acl_glob_match("\xc3\xa9*", 3, "\xc3\xa9t\xc3\xa9", 5));
}

TEST(Acl, test_glob_is_bounded_by_its_lengths_not_nul)
{
    CHECK(acl_glob_match("ab*", 2, "ab", 2));  // the '*' is past plen
    CHECK(acl_glob_match("ab", 2, "abc", 2));
    CHECK(acl_glob_match("a\0c", 3, "a\0c", 3));
    CHECK(acl_glob_match("a?c", 3, "a\0c", 3));
    CHECK_FALSE(acl_glob_match("[a", 1, "a", 1));  // just "[": an empty class
}

TEST(Acl, test_glob_pathological_pattern_is_quick)
{
    std::string key(20000, 'a');
    std::string pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
    timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK_FALSE(acl_glob_match(pattern.data(), pattern.size(), key.data(), key.size()));
    key.back() = 'b';
    CHECK(acl_glob_match(pattern.data(), pattern.size(), key.data(), key.size()));
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK((b.tv_sec - a.tv_sec) < 2);
}

// Redis's matcher recurses once per group of '*' and gives up past 1000; ours does not recurse but
// answers the same.
TEST(Acl, test_glob_nesting_bound_as_redis)
{
    for (int groups = 999; groups <= 1002; groups++) {
        std::string inner, trailing;
        for (int g = 0; g < groups; g++)
            inner += "*a";
        trailing = inner + "*";
        std::string key(groups + 3, 'a');
        bool want = groups <= ACL_GLOB_MAX_NESTING;
        CHECK_EQUAL_TEXT(want, acl_glob_match(inner.data(), inner.size(), key.data(), key.size()),
                         std::to_string(groups).c_str());
        // A trailing '*' ends the pattern: Redis matches it without nesting deeper, so 1000 groups
        // and a trailing one still match.
        CHECK_EQUAL_TEXT(want, acl_glob_match(trailing.data(), trailing.size(), key.data(), key.size()),
                         (std::to_string(groups) + " and a trailing *").c_str());
    }
}

// ---- password files ----------------------------------------------------------------------------

TEST_GROUP(AclSecretFile)
{
    char path[64];
    char out[ACL_SECRET_MAX + 16];
    char err[1024];

    void setup() override
    {
        strcpy(path, "/tmp/test_acl_secret_XXXXXX");
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        close(fd);
        err[0] = '\0';
    }
    void teardown() override { unlink(path); }

    void write_file(const std::string &content, mode_t mode)
    {
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        fwrite(content.data(), 1, content.size(), f);
        fclose(f);
        CHECK(chmod(path, mode) == 0);
    }
    bool read_secret(size_t cap) { return acl_read_secret_file(path, out, cap, err, sizeof(err)); }
    bool read_secret() { return read_secret(sizeof(out)); }
};

TEST(AclSecretFile, test_reads_the_whole_file_less_one_newline)
{
    write_file("s3cret\n", 0600);
    CHECK(read_secret());
    STRCMP_EQUAL("s3cret", out);
    write_file("s3cret\r\n", 0600);
    CHECK(read_secret());
    STRCMP_EQUAL("s3cret", out);
    write_file("s3cret", 0600);
    CHECK(read_secret());
    STRCMP_EQUAL("s3cret", out);
    write_file("with spaces \n\n", 0600);
    CHECK(read_secret());
    STRCMP_EQUAL("with spaces \n", out);
    write_file("a\r", 0600);
    CHECK(read_secret());
    STRCMP_EQUAL("a\r", out);
}

TEST(AclSecretFile, test_group_may_read)
{
    write_file("s3cret\n", 0640);
    CHECK(read_secret());
    write_file("s3cret\n", 0400);
    CHECK(read_secret());
}

TEST(AclSecretFile, test_file_open_to_others_is_refused_with_its_mode)
{
    const mode_t modes[] = {0644, 0604, 0602, 0601, 0666};
    for (mode_t m : modes) {
        write_file("s3cret\n", m);
        CHECK_FALSE(read_secret());
        char mode_text[16];
        snprintf(mode_text, sizeof(mode_text), "mode %04o", (unsigned)m);
        CHECK_TEXT(contains(err, path), err);
        CHECK_TEXT(contains(err, mode_text), err);
        CHECK_TEXT(contains(err, "chmod o="), err);
        STRCMP_EQUAL("", out);
        CHECK_FALSE(contains(err, "s3cret"));
    }
}

TEST(AclSecretFile, test_empty_is_refused)
{
    write_file("", 0600);
    CHECK_FALSE(read_secret());
    CHECK(contains(err, path));
    CHECK(contains(err, "is empty"));
    write_file("\n", 0600);
    CHECK_FALSE(read_secret());
    CHECK(contains(err, "is empty"));
    write_file("\r\n", 0600);
    CHECK_FALSE(read_secret());
}

TEST(AclSecretFile, test_oversize_is_refused)
{
    write_file(std::string(ACL_SECRET_MAX, 'x'), 0600);
    CHECK(read_secret());
    LONGS_EQUAL(ACL_SECRET_MAX, strlen(out));
    write_file(std::string(ACL_SECRET_MAX, 'x') + "\r\n", 0600);  // the newline is not the password's
    CHECK(read_secret());
    LONGS_EQUAL(ACL_SECRET_MAX, strlen(out));
    write_file(std::string(ACL_SECRET_MAX + 1, 'x') + "\n", 0600);
    CHECK_FALSE(read_secret());
    write_file(std::string(ACL_SECRET_MAX + 1, 'x'), 0600);
    CHECK_FALSE(read_secret());
    CHECK(contains(err, "too large"));
    CHECK(contains(err, "4096 bytes"));
    STRCMP_EQUAL("", out);
}

TEST(AclSecretFile, test_the_buffer_bounds_it_too)
{
    write_file("1234567\n", 0600);
    CHECK(read_secret(8));
    STRCMP_EQUAL("1234567", out);
    write_file("1234567\r\n", 0600);
    CHECK(read_secret(8));
    STRCMP_EQUAL("1234567", out);
    write_file("12345678", 0600);
    CHECK_FALSE(read_secret(8));
    CHECK(contains(err, "1 to 7 bytes"));
    CHECK_FALSE(read_secret(0));
}

TEST(AclSecretFile, test_nul_byte_is_refused)
{
    write_file(std::string("a\0b", 3), 0600);
    CHECK_FALSE(read_secret());
    CHECK(contains(err, "NUL"));
}

TEST(AclSecretFile, test_missing_file_and_directory_are_refused)
{
    CHECK_FALSE(acl_read_secret_file("/nonexistent/secret", out, sizeof(out), err, sizeof(err)));
    CHECK(contains(err, "/nonexistent/secret"));
    CHECK(contains(err, "No such file"));
    CHECK_FALSE(acl_read_secret_file("/tmp", out, sizeof(out), err, sizeof(err)));
    CHECK(contains(err, "not a regular file"));
}

// A pattern that is text and one last '*' is checked as a prefix, not a glob: the same answers.
TEST(Acl, test_prefix_patterns_answer_as_the_glob_does)
{
    const AclUser *u = define("p", "on nopass ~user:* ~a* ~x\\*y* ~s?:* ~[ab]:* ~lit");
    const char *keys[] = {"user:1", "user:", "user", "users:1", "a", "ab", "", "x*y", "x*yz", "xay", "s1:k", "a:k",
                          "b:k", "c:k", "lit", "lit2", "\xff"};
    for (const char *key : keys) {
        bool glob = false;
        size_t start = 0;
        for (int i = 0; i < u->pattern_count; i++) {
            glob = glob || acl_glob_match(u->pattern_bytes + start, u->pattern_end[i] - start, key, strlen(key));
            start = u->pattern_end[i];
        }
        CHECK_EQUAL_TEXT(glob, may_read(u, key), key);
    }
    CHECK(may_read(u, "user:9"));
    CHECK_FALSE(may_read(u, ""));  // an empty key matches only an empty pattern, as in Redis
    CHECK_EQUAL(5, u->pattern_prefix[0]);  // user:
    CHECK_EQUAL(0xffff, u->pattern_prefix[2]);  // x\*y*: an escape, so a glob
    CHECK_EQUAL(0xffff, u->pattern_prefix[5]);  // lit: no '*'
}
