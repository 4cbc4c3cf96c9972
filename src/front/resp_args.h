// Reading a RESP command's arguments, with no client and no I/O: the helpers every command uses,
// and the parsers of what a client authenticates with (AUTH, HELLO ... AUTH), kept pure so that
// a fuzz target can run them on anything (tests/fuzz/fuzz_resp_auth.cc).
#pragma once

#include <stddef.h>

#include "resp_parser.h"

// Whether argument a is `word`, in any case.
bool resp_arg_is(const char *cmd, const RespArg *a, const char *word);

// An integer as Redis reads one (string2ll): digits with an optional '-', no spaces, no '+', no
// leading zero. False when it is not one, or out of range.
bool resp_parse_integer(const char *s, size_t len, long long *out);

// AUTH <password> | AUTH <username> <password>. user is NULL for the first form (the default
// user). False, with Redis's error in `error`, for any other argument count.
struct AuthRequest {
    const RespArg *user;
    const RespArg *password;
};
bool resp_auth_parse(const RespArg *args, int argc, AuthRequest *out, char *error, size_t errlen);

// HELLO [protover [AUTH username password] [SETNAME clientname]]: every option read before any
// takes effect, as Redis does. protocol is 0 when not given; user, password and name NULL when
// not given. False, with Redis's error in `error`, when malformed.
struct HelloRequest {
    int protocol;
    const RespArg *user;
    const RespArg *password;
    const RespArg *name;
};
bool resp_hello_parse(const char *cmd, const RespArg *args, int argc, HelloRequest *out, char *error, size_t errlen);
