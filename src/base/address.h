// Network addresses as written in the config: "host:port", "[v6addr]:port", "unix:/path".
#pragma once

#include <stddef.h>
#include <sys/socket.h>

struct Address {
    bool is_unix;
    char host[256];  // without brackets
    int port;
    char path[108];  // sun_path
};

// Parses without resolving. On failure returns false and sets *why to a short reason.
bool address_parse(const char *text, bool allow_unix, Address *out, const char **why);

// Resolves host names with getaddrinfo (blocking: call at start-up, never in a worker's loop).
// passive: for bind(2) ("*" or "0.0.0.0" mean every IPv4 address).
bool address_resolve(const Address *a, bool passive, struct sockaddr_storage *ss, socklen_t *len,
                     char *err, size_t errlen);

// "127.0.0.1:6379", "[::1]:6379" or "unix:/path", for logs.
void address_format(const struct sockaddr *sa, char *out, size_t outlen);

// The address of a connected socket's peer, formatted as above; "?" when it cannot be had.
void address_of_peer(int fd, char *out, size_t outlen);

// Whether a peer's address is this machine's own loopback (127.0.0.0/8, ::1, ::ffff:127.x.y.z)
// or a unix socket: the clients protected mode serves (as Redis's protected mode).
bool address_is_loopback(const struct sockaddr *sa);
