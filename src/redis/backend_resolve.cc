// A Redis given by name is looked up again before every connect, without blocking the worker:
// when its container is recreated with a new address, the next reconnect finds it, where an
// address resolved once at start would be refused for ever. A name that does not resolve is a
// failed attempt like a refused connect: logged, retried with back-off, its misses answered 503
// meanwhile.
//
// The lookup is the system's own (glibc's getaddrinfo_a: nsswitch, /etc/hosts, resolv.conf with
// its search domains and its name servers in their order, as every other program on the host
// or in the container resolves), run by glibc on a thread of its own; the worker looks whether it
// is done every few milliseconds while it runs, and not at all otherwise. (libevent's evdns was
// tried first: it rotates over the name servers, so in a container whose resolv.conf lists the
// network's name server and then the host's, every other lookup of a service name failed.)
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "address.h"
#include "backend_state.h"
#include "clock.h"
#include "log.h"

struct Resolution {
    gaicb request;
    gaicb *list[1];
    addrinfo hints;
    char host[256];
};

static const uint64_t POLL_MS = 5;

static void on_resolve_timer(evutil_socket_t, short, void *arg)
{
    Backend *b = (Backend *)arg;
    Resolution *r = b->resolving;
    int result = gai_error(&r->request);
    if (result == EAI_INPROGRESS) {
        struct timeval tv = timeval_of_ms(POLL_MS);
        evtimer_add(b->resolve_timer, &tv);
        return;
    }
    b->resolving = NULL;
    addrinfo *found = r->request.ar_result;
    free(r);
    // Every address, in the resolver's order, once: the first may be one Redis does not listen
    // on (::1 for localhost, where Redis binds 127.0.0.1), so an attempt tries each in turn, as
    // redis-cli, curl and hiredis do.
    char before[64];
    snprintf(before, sizeof(before), "%s", b->address_count > 0 ? b->addresses[0] : "");
    b->address_count = 0;
    for (addrinfo *a = result == 0 ? found : NULL; a != NULL && b->address_count < BACKEND_MAX_ADDRESSES; a = a->ai_next) {
        char ip[64] = "";
        if (a->ai_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof(ip));
        else if (a->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr, ip, sizeof(ip));
        bool seen = ip[0] == '\0';
        for (int i = 0; i < b->address_count && !seen; i++)
            seen = strcmp(b->addresses[i], ip) == 0;
        if (!seen)
            snprintf(b->addresses[b->address_count++], sizeof(b->addresses[0]), "%s", ip);
    }
    if (found != NULL)
        freeaddrinfo(found);
    b->address_next = 1;
    b->attempt_failures[0] = '\0';
    if (b->address_count == 0) {
        b->target.ip[0] = '\0';
        backend_schedule_reconnect(b, "cannot resolve its name", result != 0 ? gai_strerror(result) : "no address");
        return;
    }
    snprintf(b->target.ip, sizeof(b->target.ip), "%s", b->addresses[0]);
    if (evtimer_pending(b->reconnect_timer, NULL))
        return;  // the attempt failed meanwhile (its commands timed out): the next one looks again
    if (before[0] != '\0' && strcmp(before, b->addresses[0]) != 0)
        log_info("redis %s%s: %s now resolves to %s (was %s)", b->target.display, b->hooks.label, b->target.host,
                 b->addresses[0], before);
    backend_connect_now(b);
}

bool backend_next_address(Backend *b, const char *why, const char **detail)
{
    size_t used = strlen(b->attempt_failures);
    if (b->target.by_name && b->address_count > 1)
        snprintf(b->attempt_failures + used, sizeof(b->attempt_failures) - used, "%s%s (%s)", used > 0 ? ", " : "",
                 b->target.ip, why);
    if (b->target.by_name && b->address_next < b->address_count) {
        snprintf(b->target.ip, sizeof(b->target.ip), "%s", b->addresses[b->address_next++]);
        return true;
    }
    *detail = b->attempt_failures[0] != '\0' ? b->attempt_failures : why;
    return false;
}

void backend_resolve(Backend *b)
{
    if (b->resolving != NULL)
        return;  // one lookup at a time
    if (b->resolve_timer == NULL && (b->resolve_timer = evtimer_new(b->base, on_resolve_timer, b)) == NULL) {
        backend_schedule_reconnect(b, "cannot resolve its name", "out of memory");
        return;
    }
    Resolution *r = (Resolution *)calloc(1, sizeof(Resolution));
    if (r == NULL) {
        backend_schedule_reconnect(b, "cannot resolve its name", "out of memory");
        return;
    }
    snprintf(r->host, sizeof(r->host), "%s", b->target.host);
    r->hints.ai_family = AF_UNSPEC;
    r->hints.ai_socktype = SOCK_STREAM;
    r->request.ar_name = r->host;
    r->request.ar_request = &r->hints;
    r->list[0] = &r->request;
    int err = getaddrinfo_a(GAI_NOWAIT, r->list, 1, NULL);
    if (err != 0) {
        free(r);
        backend_schedule_reconnect(b, "cannot resolve its name", gai_strerror(err));
        return;
    }
    b->resolving = r;
    struct timeval tv = timeval_of_ms(0);
    evtimer_add(b->resolve_timer, &tv);
}

void backend_resolver_free(Backend *b)
{
    if (b->resolve_timer != NULL) {
        event_free(b->resolve_timer);
        b->resolve_timer = NULL;
    }
    Resolution *r = b->resolving;
    b->resolving = NULL;
    if (r == NULL)
        return;
    int cancel = gai_cancel(&r->request);
    if (cancel == EAI_CANCELED || cancel == EAI_ALLDONE) {
        if (r->request.ar_result != NULL)
            freeaddrinfo(r->request.ar_result);
        free(r);
    }
    // Else glibc's thread is still writing its answer into r: it is left to it (a few hundred
    // bytes, once per backend freed in the middle of a lookup).
}

bool backend_target_resolve(const char *address, BackendTarget *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->display, sizeof(t->display), "%s", address);
    Address a;
    const char *why;
    if (!address_parse(address, true, &a, &why)) {
        snprintf(err, errlen, "redis address '%s': %s", address, why);
        return false;
    }
    if (a.is_unix) {
        t->is_unix = true;
        strcpy(t->path, a.path);
        return true;
    }
    t->port = a.port;
    unsigned char numeric[16];
    if (inet_pton(AF_INET, a.host, numeric) == 1 || inet_pton(AF_INET6, a.host, numeric) == 1) {
        snprintf(t->ip, sizeof(t->ip), "%.63s", a.host);
        return true;
    }
    // A name: looked up by the backend before each connect, never here (a name server that does
    // not answer must not hold the master's start).
    t->by_name = true;
    snprintf(t->host, sizeof(t->host), "%s", a.host);
    return true;
}

int backend_target_resolve_now(const BackendTarget *t, BackendTarget *out, int max, char *err, size_t errlen)
{
    if (!t->by_name) {
        out[0] = *t;
        return 1;
    }
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(t->host, NULL, &hints, &found);
    if (rc != 0) {
        snprintf(err, errlen, "redis address '%s': cannot resolve '%s': %s", t->display, t->host, gai_strerror(rc));
        return -1;
    }
    int n = 0;
    for (addrinfo *a = found; a != NULL && n < max; a = a->ai_next) {
        BackendTarget each = *t;
        each.by_name = false;
        if (a->ai_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)a->ai_addr)->sin_addr, each.ip, sizeof(each.ip));
        else if (a->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr, each.ip, sizeof(each.ip));
        else
            continue;
        bool seen = false;
        for (int i = 0; i < n && !seen; i++)
            seen = strcmp(out[i].ip, each.ip) == 0;
        if (!seen) {
            snprintf(each.display, sizeof(each.display), strchr(each.ip, ':') ? "%s ([%s]:%d)" : "%s (%s:%d)", t->display,
                     each.ip, each.port);
            out[n++] = each;
        }
    }
    freeaddrinfo(found);
    if (n == 0)
        snprintf(err, errlen, "redis address '%s': '%s' has no IP address", t->display, t->host);
    return n > 0 ? n : -1;
}
