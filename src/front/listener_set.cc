#include "listener_set.h"

#include <event2/http.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bool reserve(ListenerSet *set)
{
    if (set->count < set->cap)
        return true;
    int cap = set->cap > 0 ? set->cap * 2 : 4;
    evconnlistener **item = (evconnlistener **)realloc(set->item, (size_t)cap * sizeof(*item));
    if (item != NULL)
        set->item = item;
    evhttp_bound_socket **bound = (evhttp_bound_socket **)realloc(set->bound, (size_t)cap * sizeof(*bound));
    if (bound != NULL)
        set->bound = bound;
    int *adopted_for = (int *)realloc(set->adopted_for, (size_t)cap * sizeof(*adopted_for));
    if (adopted_for != NULL)
        set->adopted_for = adopted_for;
    bool *tls = (bool *)realloc(set->tls, (size_t)cap * sizeof(*tls));
    if (tls != NULL)
        set->tls = tls;
    if (item == NULL || bound == NULL || adopted_for == NULL || tls == NULL)
        return false;
    set->cap = cap;
    return true;
}

// A listener on fd; `options` say whether freeing it closes fd (an adopted socket's copy).
static bool add(ListenerSet *set, int fd, bool tls, int adopted_for, unsigned options)
{
    const ListenHandlers *how = &set->how;
    evhttp *http = tls ? how->https : how->http;
    evconnlistener_cb on_accept = tls ? how->on_accept_tls : how->on_accept;
    if ((http == NULL && on_accept == NULL) || !reserve(set))
        return false;
    // backlog 0: the master has already called listen(2) on the socket.
    evconnlistener *l = evconnlistener_new(set->base, http != NULL ? NULL : on_accept, how->arg, options, 0, fd);
    if (l == NULL)
        return false;
    evhttp_bound_socket *bound = NULL;
    if (http != NULL && (bound = evhttp_bind_listener(http, l)) == NULL) {
        evconnlistener_free(l);
        return false;
    }
    if (how->on_error != NULL)
        evconnlistener_set_error_cb(l, how->on_error);
    if (!set->enabled)
        evconnlistener_disable(l);
    set->item[set->count] = l;
    set->bound[set->count] = bound;
    set->adopted_for[set->count] = adopted_for;
    set->tls[set->count] = tls;
    set->count++;
    return true;
}

bool listen_fds_any_tls(const ListenFds *fds)
{
    for (int i = 0; fds->tls != NULL && i < fds->count; i++)
        if (fds->tls[i])
            return true;
    return false;
}

bool listener_set_open(ListenerSet *set, event_base *base, const ListenFds *fds, const ListenHandlers *how)
{
    *set = {};
    set->enabled = true;
    set->base = base;
    set->how = *how;
    for (int i = 0; i < fds->count; i++)
        if (!add(set, fds->fd[i], fds->tls != NULL && fds->tls[i], -1, LEV_OPT_CLOSE_ON_EXEC))
            return false;
    return true;
}

void listener_set_enable(ListenerSet *set, bool enabled)
{
    set->enabled = enabled;
    for (int i = 0; i < set->count; i++) {
        if (enabled)
            evconnlistener_enable(set->item[i]);
        else
            evconnlistener_disable(set->item[i]);
    }
}

bool listener_set_adopt(ListenerSet *set, int fd, bool tls, int slot)
{
    if (add(set, fd, tls, slot, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE))
        return true;
    close(fd);
    return false;
}

static void free_one(ListenerSet *set, int i)
{
    if (set->bound[i] != NULL)
        evhttp_del_accept_socket(set->tls[i] ? set->how.https : set->how.http, set->bound[i]);  // frees the listener too
    else
        evconnlistener_free(set->item[i]);
}

void listener_set_release(ListenerSet *set, int slot)
{
    for (int i = 0; i < set->count;) {
        if (set->adopted_for[i] != slot) {
            i++;
            continue;
        }
        free_one(set, i);
        set->count--;
        set->item[i] = set->item[set->count];
        set->bound[i] = set->bound[set->count];
        set->adopted_for[i] = set->adopted_for[set->count];
        set->tls[i] = set->tls[set->count];
    }
}

// Whether a listener bound at `l` takes connections to `local`: the same port and family, and the
// same address or a wildcard one.
static bool listens_for(const struct sockaddr_storage *l, const struct sockaddr_storage *local)
{
    if (l->ss_family != local->ss_family)
        return false;
    if (l->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)l, *b = (const struct sockaddr_in *)local;
        return a->sin_port == b->sin_port &&
               (a->sin_addr.s_addr == htonl(INADDR_ANY) || a->sin_addr.s_addr == b->sin_addr.s_addr);
    }
    if (l->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)l, *b = (const struct sockaddr_in6 *)local;
        return a->sin6_port == b->sin6_port &&
               (memcmp(&a->sin6_addr, &in6addr_any, sizeof(a->sin6_addr)) == 0 ||
                memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0);
    }
    return false;
}

bool listener_set_address_is_tls(const ListenerSet *set, int conn)
{
    struct sockaddr_storage local, l;
    socklen_t len = sizeof(local);
    if (getsockname(conn, (struct sockaddr *)&local, &len) != 0)
        return false;
    for (int i = 0; i < set->count; i++) {
        len = sizeof(l);
        if (set->tls[i] && getsockname(evconnlistener_get_fd(set->item[i]), (struct sockaddr *)&l, &len) == 0 &&
            listens_for(&l, &local))
            return true;
    }
    return false;
}

void listener_set_free(ListenerSet *set)
{
    // An evhttp frees its own listeners with it; adopted ones too, closing their sockets' copies.
    for (int i = 0; i < set->count; i++)
        if (set->bound[i] == NULL)
            free_one(set, i);
    free(set->item);
    free(set->bound);
    free(set->adopted_for);
    free(set->tls);
    *set = {};
}
