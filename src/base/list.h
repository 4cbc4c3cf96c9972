// An intrusive circular doubly linked list, as nginx's ngx_queue.h: a ListLink inside each
// element, and a ListLink of its own as the list's head (a sentinel, so that no operation tests
// for an end). No allocation; every operation O(1).
#pragma once

#include <stddef.h>

struct ListLink {
    ListLink *prev, *next;
};

inline void list_init(ListLink *head) { head->prev = head->next = head; }
inline bool list_empty(const ListLink *head) { return head->next == head; }
inline ListLink *list_first(const ListLink *head) { return head->next; }
inline ListLink *list_last(const ListLink *head) { return head->prev; }

inline void list_insert_after(ListLink *at, ListLink *link)
{
    link->prev = at;
    link->next = at->next;
    at->next->prev = link;
    at->next = link;
}

inline void list_push_front(ListLink *head, ListLink *link) { list_insert_after(head, link); }
inline void list_push_back(ListLink *head, ListLink *link) { list_insert_after(head->prev, link); }

inline void list_remove(ListLink *link)
{
    link->prev->next = link->next;
    link->next->prev = link->prev;
}

// The element a link is the `member` of.
#define LIST_ELEMENT(link, type, member) ((type *)((char *)(link) - offsetof(type, member)))
