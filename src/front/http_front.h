// The HTTP front door: evhttp on the worker's listening sockets. Decodes GET/HEAD /<key>,
// asks lookup, and writes the answer with its status code and headers.
#pragma once

#include <stddef.h>

#include "listener_set.h"
#include "stats.h"

struct FrontEnv;
struct HttpFront;

HttpFront *http_front_create(const FrontEnv *env, const ListenFds *listen_fds);
void http_front_destroy(HttpFront *h);

// The client whose answer holds the most memory (client_memory.h) and how much; 0 and NULL when
// none does. Only a client with an answer being written holds any: a request waiting for Redis
// holds none of its own, and is never closed under it.
size_t http_front_most_memory(HttpFront *h, void **client);
// Closes that client, counting and logging why (max_client_memory).
void http_front_evict(HttpFront *h, void *client);

// Stops or resumes accepting new connections (open ones are unaffected).
void http_front_set_accepting(HttpFront *h, bool accepting);
// Its listeners: the worker adds and drops a dead slot's sockets there (listener_set.h).
ListenerSet *http_front_listeners(HttpFront *front);


// The worker is stopping: every connection's next answer carries "Connection: close", and the
// connection closes after it. Idle keep-alive connections are closed now (a stop), or kept until
// their next request is answered so (close_idle false: a reload, where closing one under a client
// that may be sending a request right then would make it see an error, as HAProxy's
// idle-close-on-response avoids). The worker's shutdown_timeout ends the ones that stay idle.
// `revoked`: who may read what has changed (a reload's [users] or protected_mode): idle
// connections are closed, and a request that still comes on one is not served by the old rules
// (503, Retry-After, and the connection closes: the client retries on the new generation).
void http_front_drain(HttpFront *h, bool close_idle, bool revoked);
