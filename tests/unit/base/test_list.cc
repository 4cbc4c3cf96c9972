#include <CppUTest/TestHarness.h>

#include "list.h"

struct Item {
    int value;
    ListLink link;
};

static int values(ListLink *head, int *out, int max)
{
    int n = 0;
    for (ListLink *l = list_first(head); l != head && n < max; l = l->next)
        out[n++] = LIST_ELEMENT(l, Item, link)->value;
    return n;
}

TEST_GROUP(List){};

TEST(List, test_push_remove_and_order)
{
    ListLink head;
    list_init(&head);
    CHECK(list_empty(&head));
    Item a = {1, {}}, b = {2, {}}, c = {3, {}};
    list_push_back(&head, &a.link);
    list_push_back(&head, &b.link);
    list_push_front(&head, &c.link);
    int got[4];
    LONGS_EQUAL(3, values(&head, got, 4));
    LONGS_EQUAL(3, got[0]);
    LONGS_EQUAL(1, got[1]);
    LONGS_EQUAL(2, got[2]);
    POINTERS_EQUAL(&b, LIST_ELEMENT(list_last(&head), Item, link));
    list_remove(&a.link);  // from the middle
    LONGS_EQUAL(2, values(&head, got, 4));
    LONGS_EQUAL(3, got[0]);
    LONGS_EQUAL(2, got[1]);
    list_remove(&c.link);  // the first
    list_remove(&b.link);  // the last
    CHECK(list_empty(&head));
}
