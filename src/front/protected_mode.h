// Protected mode, as Redis's: while nobody has to authenticate (no [users], or a default user
// that is on and takes any password) and protected_mode = on, a front serves only clients on the
// loopback interface (or a unix socket). Any other is told why and how to change it, at accept,
// and closed there: it never holds a client slot, nor is anything read for it. The proxy is then
// never more open than a Redis with no password would be.
#pragma once

#include <stdint.h>

#include "config.h"

// Whether connections are checked: protected_mode = on, and nobody needs a password.
bool protected_mode_active(const Config *c);

// How a refused client is told: a RESP -DENIED error, an HTTP 403 answer, or, on a TLS address,
// nothing (it could not read plain text; the log says why).
enum RefusalAnswer { REFUSE_RESP, REFUSE_HTTP, REFUSE_SILENTLY };

// Refuses a just-accepted connection: the reason written without waiting (small: the socket
// takes it), what the client has sent already read away (so that closing sends a FIN, not a
// reset that could destroy the answer), counted in *denied and logged once a second for the
// proxy. The caller closes the socket.
void protected_mode_refuse(int fd, RefusalAnswer answer, uint64_t *denied);
