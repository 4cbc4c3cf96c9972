// redis-proxy --health: the container's HEALTHCHECK. It asks the running proxy's /readyz at the
// admin address of the same configuration (so a config that moves the endpoint moves the probe
// with it), with a short timeout. No curl in the image, no hard-coded port.
#include "health_probe.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "address.h"
#include "clock.h"
#include "config.h"

static const int PROBE_TIMEOUT_MS = 2000;

// Waits for `events` on fd until the deadline. False on timeout or error.
static bool wait_for(int fd, short events, uint64_t deadline_ms)
{
    uint64_t now = monotonic_ms();
    if (now >= deadline_ms)
        return false;
    struct pollfd p = {fd, events, 0};
    return poll(&p, 1, (int)(deadline_ms - now)) == 1 && (p.revents & events);
}

int health_probe(const Config *config)
{
    if (config->admin_listen[0] == '\0') {
        fprintf(stderr, "redis-proxy: --health needs the admin endpoint ([admin] listen is off)\n");
        return 1;
    }
    Address a;
    const char *why;
    struct sockaddr_storage ss;
    socklen_t len;
    char err[300];
    if (!address_parse(config->admin_listen, false, &a, &why)) {
        fprintf(stderr, "redis-proxy: [admin] listen: %s\n", why);
        return 1;
    }
    // A wildcard listen address is reached on loopback.
    if (strcmp(a.host, "*") == 0 || strcmp(a.host, "0.0.0.0") == 0)
        snprintf(a.host, sizeof(a.host), "127.0.0.1");
    else if (strcmp(a.host, "::") == 0)
        snprintf(a.host, sizeof(a.host), "::1");
    if (!address_resolve(&a, false, &ss, &len, err, sizeof(err))) {
        fprintf(stderr, "redis-proxy: [admin] listen: %s\n", err);
        return 1;
    }
    uint64_t deadline = monotonic_ms() + PROBE_TIMEOUT_MS;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    bool sent = false;
    char answer[512];
    size_t got = 0;
    if (fd >= 0 && (connect(fd, (struct sockaddr *)&ss, len) == 0 || errno == EINPROGRESS) &&
        wait_for(fd, POLLOUT, deadline)) {
        static const char request[] = "GET /readyz HTTP/1.0\r\nHost: health\r\n\r\n";
        sent = send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(request) - 1);
        while (sent && got < sizeof(answer) - 1 && wait_for(fd, POLLIN, deadline)) {
            ssize_t n = recv(fd, answer + got, sizeof(answer) - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
    }
    if (fd >= 0)
        close(fd);
    answer[got] = '\0';
    if (!sent || got == 0) {
        fprintf(stderr, "redis-proxy: no answer from the admin endpoint at %s\n", config->admin_listen);
        return 1;
    }
    const char *body = strstr(answer, "\r\n\r\n");
    printf("%s", body != NULL ? body + 4 : "");
    return strncmp(answer, "HTTP/1.1 200 ", 13) == 0 || strncmp(answer, "HTTP/1.0 200 ", 13) == 0 ? 0 : 1;
}
