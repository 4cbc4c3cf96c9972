// The HTTP front door: evhttp on the worker's listening sockets. Decodes GET/HEAD /<key>,
// asks lookup, and writes the answer with its status code and headers.
#pragma once

#include "listener_set.h"

struct Worker;
struct HttpFront;

HttpFront *http_front_create(Worker *w, const ListenFds *listen_fds);
void http_front_destroy(HttpFront *h);

// Stops or resumes accepting new connections (open ones are unaffected).
void http_front_set_accepting(HttpFront *h, bool accepting);

// The worker is stopping: idle connections are closed now; one with a request under way or
// being answered gets its answer with "Connection: close", and closes after it.
void http_front_drain(HttpFront *h);
