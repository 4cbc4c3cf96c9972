#include "resp_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool resp_arg_is(const char *cmd, const RespArg *a, const char *word)
{
    return a->len == strlen(word) && strncasecmp(cmd + a->offset, word, a->len) == 0;
}

bool resp_parse_integer(const char *s, size_t len, long long *out)
{
    char text[24];
    if (len == 0 || len >= sizeof(text))
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (digits[0] < '0' || digits[0] > '9' || (digits[0] == '0' && (digits[1] != '\0' || digits != text)))
        return false;
    char *end;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return errno == 0 && *end == '\0';
}

bool resp_auth_parse(const RespArg *args, int argc, AuthRequest *out, char *error, size_t errlen)
{
    out->user = argc == 3 ? &args[1] : NULL;
    out->password = argc == 2 ? &args[1] : argc == 3 ? &args[2] : NULL;
    if (out->password == NULL) {
        snprintf(error, errlen, "ERR syntax error");
        return false;
    }
    return true;
}

bool resp_hello_parse(const char *cmd, const RespArg *args, int argc, HelloRequest *out, char *error, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (argc < 2)
        return true;
    long long version;
    if (!resp_parse_integer(cmd + args[1].offset, args[1].len, &version)) {
        snprintf(error, errlen, "ERR Protocol version is not an integer or out of range");
        return false;
    }
    if (version < 2 || version > 3) {
        snprintf(error, errlen, "NOPROTO unsupported protocol version");
        return false;
    }
    out->protocol = (int)version;
    for (int i = 2; i < argc; i++) {
        if (resp_arg_is(cmd, &args[i], "AUTH") && i + 2 < argc) {
            out->user = &args[i + 1];
            out->password = &args[i + 2];
            i += 2;
        } else if (resp_arg_is(cmd, &args[i], "SETNAME") && i + 1 < argc) {
            out->name = &args[++i];
        } else {
            snprintf(error, errlen, "ERR Syntax error in HELLO option '%.*s'", (int)(args[i].len > 64 ? 64 : args[i].len),
                     cmd + args[i].offset);
            return false;
        }
    }
    return true;
}
