#include "redis_error.h"

#include <string.h>

static bool starts_with(const char *text, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(text, prefix, n) == 0;
}

// Whether `word` appears in the text, ignoring case (Redis words its errors in either case).
static bool mentions(const char *text, size_t len, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(text + i, word, n) == 0)
            return true;
    return false;
}

RedisErrorClass redis_error_class(const char *text, size_t len)
{
    static const char *const transient[] = {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"};
    for (const char *prefix : transient)
        if (starts_with(text, len, prefix))
            return REDIS_ERROR_TRANSIENT;
    if (starts_with(text, len, "ERR max number of clients reached"))
        return REDIS_ERROR_TRANSIENT;
    if (starts_with(text, len, "NOPERM") || mentions(text, len, "unknown command") || mentions(text, len, "unknown subcommand"))
        return REDIS_ERROR_REFUSED;
    return REDIS_ERROR_ANSWER;
}
