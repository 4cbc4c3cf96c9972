#include "address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

bool address_parse(const char *text, bool allow_unix, Address *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(text, "unix:", 5) == 0) {
        if (!allow_unix) {
            *why = "a unix socket is not allowed here";
            return false;
        }
        const char *path = text + 5;
        if (path[0] != '/') {
            *why = "unix socket path must be absolute (unix:/path/to/sock)";
            return false;
        }
        if (strlen(path) >= sizeof(out->path)) {
            *why = "unix socket path is too long";
            return false;
        }
        out->is_unix = true;
        strcpy(out->path, path);
        return true;
    }
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) {
        *why = "expected host:port";
        return false;
    }
    const char *host = text;
    size_t host_len = (size_t)(colon - text);
    if (host[0] == '[') {
        if (host_len < 3 || host[host_len - 1] != ']') {
            *why = "expected [ipv6]:port";
            return false;
        }
        host++;
        host_len -= 2;
    } else if (memchr(host, ':', host_len) != NULL) {
        *why = "an IPv6 address needs brackets: [::1]:port";
        return false;
    }
    if (host_len >= sizeof(out->host)) {
        *why = "host name is too long";
        return false;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
        *why = "port must be a number from 0 to 65535";
        return false;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (int)port;
    return true;
}

bool address_resolve(const Address *a, bool passive, struct sockaddr_storage *ss, socklen_t *len,
                     char *err, size_t errlen)
{
    memset(ss, 0, sizeof(*ss));
    if (a->is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, a->path);
        *len = sizeof(*un);
        return true;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    const char *host = (passive && strcmp(a->host, "*") == 0) ? NULL : a->host;
    char port[16];
    snprintf(port, sizeof(port), "%d", a->port);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", a->host, gai_strerror(rc));
        return false;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

void address_format(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%d", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%d", ip, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(out, outlen, "unix:%s", ((const struct sockaddr_un *)sa)->sun_path);
    } else {
        snprintf(out, outlen, "?");
    }
}

bool address_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_UNIX)
        return true;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

void address_of_peer(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        address_format((struct sockaddr *)&ss, out, outlen);
    else
        snprintf(out, outlen, "?");
}
