#include "protected_mode.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "acl.h"
#include "address.h"
#include "log.h"

bool protected_mode_active(const Config *c)
{
    if (c->protected_mode == 0)
        return false;
    if (c->users.count == 0)
        return true;
    const AclUser *d = acl_user_find(&c->users, "default", 7);
    return d != NULL && d->enabled && d->nopass;  // as Redis: a default user with no password
}

static const char REASON[] =
    "redis-proxy is running in protected mode: nobody has to authenticate (no user is defined in [users], or the "
    "default user takes any password), so only clients on the loopback interface are served. To serve this client, "
    "either define a user with a password in [users] and have the client authenticate, or, where the network "
    "itself is trusted, set protected_mode = off in [proxy]; then reload.";

void protected_mode_refuse(int fd, RefusalAnswer how, uint64_t *denied)
{
    bool http = how == REFUSE_HTTP;
    (*denied)++;
    char address[128];
    address_of_peer(fd, address, sizeof(address));
    log_msg_once_per_kind(LOG_WARN, "protected mode refusal",
                          "protected mode: refused %s client %s (not on loopback, and nobody has to authenticate); "
                          "at most one such line a second", http ? "HTTP" : how == REFUSE_RESP ? "RESP" : "TLS", address);
    char answer[1024];
    int n = http ? snprintf(answer, sizeof(answer),
                            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                            sizeof(REASON), REASON)
                 : snprintf(answer, sizeof(answer), "-DENIED %s\r\n", REASON);
    if (n > 0 && (size_t)n < sizeof(answer) && how != REFUSE_SILENTLY)
        send(fd, answer, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    char discard[4096];
    for (int i = 0; i < 16 && recv(fd, discard, sizeof(discard), MSG_DONTWAIT) > 0; i++) {
    }
    shutdown(fd, SHUT_WR);
}
