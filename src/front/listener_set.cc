#include "listener_set.h"

#include <event2/http.h>
#include <stdlib.h>
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
    if (item == NULL || bound == NULL || adopted_for == NULL)
        return false;
    set->cap = cap;
    return true;
}

// A listener on fd; `options` say whether freeing it closes fd (an adopted socket's copy).
static bool add(ListenerSet *set, int fd, int adopted_for, unsigned options)
{
    if (!reserve(set))
        return false;
    // backlog 0: the master has already called listen(2) on the socket.
    evconnlistener *l = evconnlistener_new(set->base, set->on_accept, set->arg, options, 0, fd);
    if (l == NULL)
        return false;
    evhttp_bound_socket *bound = NULL;
    if (set->http != NULL && (bound = evhttp_bind_listener(set->http, l)) == NULL) {
        evconnlistener_free(l);
        return false;
    }
    if (set->on_error != NULL)
        evconnlistener_set_error_cb(l, set->on_error);
    if (!set->enabled)
        evconnlistener_disable(l);
    set->item[set->count] = l;
    set->bound[set->count] = bound;
    set->adopted_for[set->count] = adopted_for;
    set->count++;
    return true;
}

bool listener_set_open(ListenerSet *set, event_base *base, const ListenFds *fds, evconnlistener_cb on_accept,
                       void *arg, evconnlistener_errorcb on_error, evhttp *http)
{
    *set = {};
    set->enabled = true;
    set->base = base;
    set->on_accept = on_accept;
    set->arg = arg;
    set->on_error = on_error;
    set->http = http;
    for (int i = 0; i < fds->count; i++)
        if (!add(set, fds->fd[i], -1, LEV_OPT_CLOSE_ON_EXEC))
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

bool listener_set_adopt(ListenerSet *set, int fd, int slot)
{
    if (add(set, fd, slot, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE))
        return true;
    close(fd);
    return false;
}

static void free_one(ListenerSet *set, int i)
{
    if (set->bound[i] != NULL)
        evhttp_del_accept_socket(set->http, set->bound[i]);  // frees the listener too
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
    }
}

void listener_set_free(ListenerSet *set)
{
    // An evhttp frees its own listeners with it; adopted ones too, closing their sockets' copies.
    if (set->http == NULL)
        for (int i = 0; i < set->count; i++)
            free_one(set, i);
    free(set->item);
    free(set->bound);
    free(set->adopted_for);
    *set = {};
}
