// A Redis given by name is looked up again before every connect, without blocking the worker
// (libevent's evdns, reading /etc/resolv.conf and /etc/hosts): when its container is recreated
// with a new address, the next reconnect finds it, where an address resolved once at start
// would be refused for ever. A name that does not resolve is a failed attempt like a refused
// connect: logged, retried with back-off, its misses answered 503 meanwhile.
#include <event2/dns.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backend_state.h"
#include "config.h"
#include "log.h"

// The resolver's configuration: /etc/resolv.conf (and /etc/hosts through it), or the file
// REDIS_PROXY_RESOLV_CONF names (the tests point it at a name server of their own).
static evdns_base *make_resolver(Backend *b)
{
    evdns_base *dns = evdns_base_new(b->base, 0);
    if (dns == NULL)
        return NULL;
    const char *path = getenv("REDIS_PROXY_RESOLV_CONF");
    int err = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, path != NULL ? path : "/etc/resolv.conf");
    if (err != 0 && evdns_base_count_nameservers(dns) == 0)
        evdns_base_nameserver_ip_add(dns, "127.0.0.1");  // as libc does without a resolv.conf
    // A name server that does not answer costs an attempt about connect_timeout, not 15 s.
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%.3f", (double)(b->config->connect_timeout_ms > 0 ? b->config->connect_timeout_ms : 1000) / 2000.0);
    evdns_base_set_option(dns, "timeout", timeout);
    evdns_base_set_option(dns, "attempts", "2");
    return dns;
}

static void on_resolved(int result, evutil_addrinfo *found, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL)
        return;  // the backend is going (backend_resolver_free): nothing of it may be touched
    Backend *b = (Backend *)arg;
    b->resolving = NULL;
    if (result != 0 || found == NULL) {
        if (found != NULL)
            evutil_freeaddrinfo(found);
        b->target.ip[0] = '\0';
        backend_schedule_reconnect(b, "cannot resolve its name", evutil_gai_strerror(result));
        return;
    }
    // The first address, IPv4 or IPv6, as the system resolver would order them.
    char ip[64] = "";
    const struct sockaddr *sa = found->ai_addr;
    if (sa->sa_family == AF_INET)
        evutil_inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else if (sa->sa_family == AF_INET6)
        evutil_inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    evutil_freeaddrinfo(found);
    if (ip[0] == '\0') {
        backend_schedule_reconnect(b, "cannot resolve its name", "no IPv4 or IPv6 address");
        return;
    }
    if (strcmp(ip, b->target.ip) != 0) {
        if (b->target.ip[0] != '\0')
            log_info("redis %s%s: %s now resolves to %s (was %s)", b->target.display, b->hooks.label, b->target.host,
                     ip, b->target.ip);
        snprintf(b->target.ip, sizeof(b->target.ip), "%s", ip);
    }
    backend_connect_now(b);
}

void backend_resolve(Backend *b)
{
    if (b->resolving != NULL)
        return;  // one lookup at a time
    if (b->dns == NULL && (b->dns = make_resolver(b)) == NULL) {
        backend_schedule_reconnect(b, "cannot resolve its name", "out of memory for the resolver");
        return;
    }
    evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    // May answer at once (from /etc/hosts, or a failure), calling on_resolved before it returns.
    evdns_getaddrinfo_request *req = evdns_getaddrinfo(b->dns, b->target.host, NULL, &hints, on_resolved, b);
    if (req != NULL)
        b->resolving = req;
}

void backend_resolver_free(Backend *b)
{
    if (b->resolving != NULL) {
        evdns_getaddrinfo_cancel(b->resolving);
        b->resolving = NULL;
    }
    if (b->dns != NULL) {
        evdns_base_free(b->dns, 0);
        b->dns = NULL;
    }
}
