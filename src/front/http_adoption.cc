#include "http_adoption.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>

static void adopt_pending(evutil_socket_t, short, void *arg)
{
    HttpAdoption *a = (HttpAdoption *)arg;
    for (size_t i = 0; i < a->pending_len; i++) {
        bufferevent *bev = a->pending[i];
        bufferevent_data_cb readcb = NULL;
        void *cbarg = NULL;
        bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
        // evhttp sets the callbacks to NULL when it frees a connection.
        a->adopted(a->arg, bev, readcb != NULL && cbarg != NULL ? (evhttp_connection *)cbarg : NULL);
        bufferevent_decref(bev);
    }
    a->pending_len = 0;
}

bool http_adoption_init(HttpAdoption *a, event_base *base)
{
    a->pending_event = event_new(base, -1, 0, adopt_pending, a);
    return a->pending_event != NULL;
}

bufferevent *http_adoption_new_connection(event_base *base, void *arg)
{
    HttpAdoption *a = (HttpAdoption *)arg;
    if (a->pending_len == a->pending_cap) {
        size_t cap = a->pending_cap ? a->pending_cap * 2 : 16;
        bufferevent **pending = (bufferevent **)realloc(a->pending, cap * sizeof(*pending));
        if (pending == NULL)
            return NULL;  // evhttp then makes its own bufferevent, which is just not counted
        a->pending = pending;
        a->pending_cap = cap;
    }
    bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    bufferevent_incref(bev);
    a->pending[a->pending_len++] = bev;
    event_active(a->pending_event, EV_TIMEOUT, 1);
    a->accepted(a->arg);
    return bev;
}

void http_adoption_free(HttpAdoption *a)
{
    if (a->pending_event != NULL) {
        adopt_pending(-1, 0, a);
        event_free(a->pending_event);
    }
    free(a->pending);
    a->pending = NULL;
    a->pending_event = NULL;
}
