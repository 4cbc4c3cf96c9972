// How to take an error that Redis answered: one place decides, and every caller asks it (the
// fetch and its HTTP status, the PTTL, tracking and its heartbeat, the cluster's retries).
// No I/O: the text of the error is enough.
#pragma once

#include <stddef.h>

enum RedisErrorClass {
    // Redis cannot serve for now (loading its data, busy with a script, without its primary,
    // resharding, the cluster down, out of client slots): as if it could not be reached, and
    // asking again later will do. A lost or timed-out connection is the same to its callers.
    REDIS_ERROR_TRANSIENT,
    // The command will not be allowed however often it is asked (an ACL's NOPERM, a command or
    // subcommand this Redis does not know): stop asking, go without it.
    REDIS_ERROR_REFUSED,
    // Redis's answer to this request (WRONGTYPE, and any error not named above): it stands, and
    // is passed on to the client as it is.
    REDIS_ERROR_ANSWER,
};

RedisErrorClass redis_error_class(const char *text, size_t len);
