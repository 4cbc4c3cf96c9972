// Protected mode, as Redis's: with no user defined ([users]) and protected_mode = on, a front
// serves only clients on the loopback interface (or a unix socket). Any other client is told why
// and how to change it, in the place where it reads its first answer: a RESP error to its first
// command, an HTTP 403 to its first request, then the connection is closed. The proxy is then
// never more open than a Redis with no password would be.
#pragma once

#include "config.h"

// Whether connections are checked: protected_mode = on and nobody to authenticate as.
inline bool protected_mode_active(const Config *c) { return c->protected_mode != 0 && c->users.count == 0; }

inline constexpr char PROTECTED_MODE_RESP[] =
    "DENIED redis-proxy is running in protected mode: no user is defined in [users], so only clients on the "
    "loopback interface are served. To serve this client, either define a user in [users] and have the client "
    "authenticate (AUTH), or, where the network itself is trusted, set protected_mode = off in [proxy]; then "
    "reload.";

inline constexpr char PROTECTED_MODE_HTTP[] =
    "redis-proxy is running in protected mode: no user is defined in [users], so only clients on the loopback "
    "interface are served.\nTo serve this client, either define a user in [users] and send its credentials "
    "(Authorization: Basic or Bearer), or, where the network itself is trusted, set protected_mode = off in "
    "[proxy]; then reload.\n";
