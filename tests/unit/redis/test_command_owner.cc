// Reply contexts owned by their sender: taken back while it lives, cancelled when it dies, in
// whatever order the replies then come.
#include <CppUTest/TestHarness.h>

#include "command_owner.h"

TEST_GROUP(CommandOwner)
{
    int me = 0;
    CommandOwner owner = {nullptr, &me};
    OwnedCommand a = {}, b = {}, c = {};
};

TEST(CommandOwner, test_a_reply_finds_its_living_owner_once)
{
    command_owner_add(&owner, &a);
    command_owner_add(&owner, &b);
    command_owner_add(&owner, &c);
    POINTERS_EQUAL(&me, owned_command_take(&b));  // from the middle
    POINTERS_EQUAL(&me, owned_command_take(&c));  // the head
    POINTERS_EQUAL(&me, owned_command_take(&a));  // the last one
    POINTERS_EQUAL(nullptr, owner.head);
    POINTERS_EQUAL(nullptr, owned_command_take(&a));  // taken once only
}

TEST(CommandOwner, test_replies_after_the_owner_died_find_nobody)
{
    command_owner_add(&owner, &a);
    command_owner_add(&owner, &b);
    POINTERS_EQUAL(&me, owned_command_take(&a));
    command_owner_cancel_all(&owner);
    POINTERS_EQUAL(nullptr, owner.head);
    POINTERS_EQUAL(nullptr, owned_command_take(&b));
    // The owner's list is no longer touched by a cancelled command: a new one starts afresh.
    command_owner_add(&owner, &c);
    POINTERS_EQUAL(&c, owner.head);
    POINTERS_EQUAL(nullptr, c.next);
}
