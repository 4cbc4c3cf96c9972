// libFuzzer target: what a client authenticates with over RESP. The input is parsed as commands
// (the request parser); each AUTH and HELLO is read by its parser (resp_args.h), and the
// credentials found are checked against a fixed set of users. Beside memory safety (ASan/UBSan):
// a login succeeds only with the user's own password, a HELLO's protocol is 0, 2 or 3, and every
// argument found lies within the command.
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "resp_args.h"
#include "resp_parser.h"

static AclUsers *fuzz_users()
{
    static AclUsers *users = NULL;
    if (users == NULL) {
        users = (AclUsers *)malloc(sizeof(AclUsers));
        acl_users_init(users);
        char err[256];
        if (!acl_user_parse(users, "default", "on >fuzz-default ~*", err, sizeof(err)) ||
            !acl_user_parse(users, "app", "on >fuzz-pw ~user:*", err, sizeof(err)) ||
            !acl_user_parse(users, "off", "off >fuzz-off ~*", err, sizeof(err)))
            abort();
    }
    return users;
}

static void check_login(const char *cmd, size_t len, const RespArg *user, const RespArg *password)
{
    assert(password != NULL);
    assert(password->offset + password->len <= len);
    const char *name = user != NULL ? cmd + user->offset : "default";
    size_t name_len = user != NULL ? user->len : 7;
    if (user != NULL)
        assert(user->offset + user->len <= len);
    const AclUser *u = acl_authenticate(fuzz_users(), name, name_len, cmd + password->offset, password->len);
    if (u == NULL)
        return;
    const char *expected = strcmp(u->name, "app") == 0 ? "fuzz-pw" : "fuzz-default";
    assert(strcmp(u->name, "off") != 0);  // a user that is off never logs in
    assert(password->len == strlen(expected) && memcmp(cmd + password->offset, expected, password->len) == 0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    RespParser p;
    resp_parser_init(&p, 16, 256);
    size_t at = 0;
    while (at < size) {
        RespParseStatus s = resp_parse(&p, (const char *)data + at, size - at);
        if (s != RESP_COMMAND && s != RESP_EMPTY)
            break;
        if (s == RESP_COMMAND) {
            const char *cmd = resp_arg_base(&p, (const char *)data + at);
            char error[160];
            if (resp_arg_is(cmd, &p.args[0], "AUTH")) {
                AuthRequest auth;
                if (resp_auth_parse(p.args, p.argc, &auth, error, sizeof(error)))
                    check_login(cmd, p.consumed, auth.user, auth.password);
                else
                    assert(strncmp(error, "ERR ", 4) == 0);
            } else if (resp_arg_is(cmd, &p.args[0], "HELLO")) {
                HelloRequest hello;
                if (resp_hello_parse(cmd, p.args, p.argc, &hello, error, sizeof(error))) {
                    assert(hello.protocol == 0 || hello.protocol == 2 || hello.protocol == 3);
                    if (hello.user != NULL)
                        check_login(cmd, p.consumed, hello.user, hello.password);
                    if (hello.name != NULL)
                        assert(hello.name->offset + hello.name->len <= p.consumed);
                } else {
                    assert(strlen(error) < sizeof(error) - 1);
                }
            }
        }
        at += p.consumed;
    }
    resp_parser_free(&p);
    return 0;
}
