// Who a Redis command's reply context belongs to. A context is owned by whoever sent the command,
// not by the connection it went out on: the sender keeps its contexts on a list, and when the
// sender dies it cancels them. A cancelled context still gets its reply (or its failure) from the
// connection, which frees it and touches nothing else. So no teardown order between a sender and
// the connections it sends on can leave a reply pointing at freed memory.
//
//   struct MyCommand { OwnedCommand base; ... };   // base first
//   me->commands.self = me;                        // once
//   command_owner_add(&me->commands, &cmd->base);   // per command sent
//   ... in the reply callback:
//   Me *me = (Me *)owned_command_take(&cmd->base);  // NULL: cancelled; free cmd, nothing else
#pragma once

#include <stddef.h>

struct CommandOwner;

struct OwnedCommand {
    OwnedCommand *prev, *next;
    CommandOwner *owner;  // NULL once cancelled
};

// Embedded in the sender; `self` is what a reply's context hands back (the sender itself).
struct CommandOwner {
    OwnedCommand *head;
    void *self;
};

inline void command_owner_add(CommandOwner *o, OwnedCommand *c)
{
    c->owner = o;
    c->prev = NULL;
    c->next = o->head;
    if (o->head != NULL)
        o->head->prev = c;
    o->head = c;
}

// The reply came (or the command failed): takes the context off its owner's list. Returns the
// owner's self, or NULL if it was cancelled (the owner is gone: only free the context).
inline void *owned_command_take(OwnedCommand *c)
{
    CommandOwner *o = c->owner;
    if (o == NULL)
        return NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        o->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->owner = NULL;
    return o->self;
}

// The owner is dying: every context still waiting for a reply is cancelled (and stays allocated
// until its reply or failure comes, which frees it).
inline void command_owner_cancel_all(CommandOwner *o)
{
    for (OwnedCommand *c = o->head, *next; c != NULL; c = next) {
        next = c->next;
        c->prev = c->next = NULL;
        c->owner = NULL;
    }
    o->head = NULL;
}
