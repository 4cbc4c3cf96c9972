#include "listener_set.h"

#include <event2/http.h>
#include <stdlib.h>

bool listener_set_open(ListenerSet *set, event_base *base, const ListenFds *fds, evconnlistener_cb on_accept,
                       void *arg, evconnlistener_errorcb on_error, evhttp *http)
{
    set->item = (evconnlistener **)calloc((size_t)fds->count, sizeof(evconnlistener *));
    set->count = 0;
    set->owned_by_http = http != NULL;
    if (set->item == NULL)
        return false;
    for (int i = 0; i < fds->count; i++) {
        // backlog 0: the master has already called listen(2) on the socket.
        evconnlistener *l = evconnlistener_new(base, on_accept, arg, LEV_OPT_CLOSE_ON_EXEC, 0, fds->fd[i]);
        if (l == NULL)
            return false;
        if (http != NULL && evhttp_bind_listener(http, l) == NULL) {
            evconnlistener_free(l);
            return false;
        }
        if (on_error != NULL)
            evconnlistener_set_error_cb(l, on_error);
        set->item[set->count++] = l;
    }
    return true;
}

void listener_set_enable(ListenerSet *set, bool enabled)
{
    for (int i = 0; i < set->count; i++) {
        if (enabled)
            evconnlistener_enable(set->item[i]);
        else
            evconnlistener_disable(set->item[i]);
    }
}

void listener_set_free(ListenerSet *set)
{
    if (!set->owned_by_http)
        for (int i = 0; i < set->count; i++)
            evconnlistener_free(set->item[i]);
    free(set->item);
    set->item = NULL;
    set->count = 0;
}
