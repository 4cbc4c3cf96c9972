// The answers of one connection, in request order, whatever order they become ready in: a
// cache hit is ready at once, a miss when Redis answers, and a pipelining client must get them
// in the order it asked. No I/O: answers are moved into `out`, which the connection writes.
//
// Each command that cannot be answered at once takes a slot. An answer ready while an earlier
// one still waits is kept in its slot's own buffer until its turn; the head slot writes straight
// into `out`. A connection that closes abandons its slots: those still waiting for Redis are
// orphaned, and dropped when their answer arrives.
#pragma once

#include <stddef.h>

struct evbuffer;
struct ReplySlot;

// Recycled slots, shared by every connection of a front: no allocation per command once warm.
struct ReplySlotPool {
    ReplySlot *free;
};

struct ReplyQueue {
    ReplySlot *head, *tail;
    size_t pending;  // slots not yet moved into out
    evbuffer *out;   // answers in order, ready to send; owned by the connection
    // What the slots hold, for the connection's memory bound: the cost given for each one still
    // waiting (the lookup under way), the bytes of each answered one waiting for its turn.
    size_t held;
    void *owner;     // the connection, handed back by reply_slot_finish
    // The RESP version its answers are written in (2, or 3 after HELLO 3): each slot keeps the
    // one in force when its command came (reply_slot_protocol).
    int protocol;
    // Out of memory for a slot or an answer's buffer: one answer is missing, so every later one
    // would pair with the wrong command. The connection must close (it is never answered again).
    bool failed;
};

void reply_pool_free(ReplySlotPool *pool);

// A slot for the next answer, holding `cost` bytes while it waits. NULL when out of memory (the
// queue has failed).
ReplySlot *reply_queue_push(ReplyQueue *q, ReplySlotPool *pool, size_t cost);

// Where the slot's answer is to be written now. NULL when its connection has gone, or when out of
// memory (the queue has failed): skip it.
evbuffer *reply_slot_output(ReplySlot *s);

// The protocol its answer is to be written in.
int reply_slot_protocol(const ReplySlot *s);

// Out of memory while writing the slot's answer: the queue has failed (finish the slot still).
void reply_slot_fail(ReplySlot *s);

// The slot's answer is complete. Moves every complete answer at the head of the line into
// `out`. Returns the queue's owner when there is something new in `out` or the queue has failed,
// else NULL (also when the connection has gone; the slot is then recycled). *owner is the
// queue's owner either way (NULL when the connection has gone): what its slots hold changed.
void *reply_slot_finish(ReplySlot *s, void **owner);

// For an answer known at once: `out` itself when nothing waits ahead of it (*slot = NULL),
// else a new slot's buffer (finish it with reply_slot_finish). NULL when out of memory (the queue
// has failed; a slot it took, if any, is still to be finished).
evbuffer *reply_queue_immediate(ReplyQueue *q, ReplySlotPool *pool, ReplySlot **slot);

// The connection is closing: complete slots are recycled, waiting ones orphaned.
void reply_queue_abandon(ReplyQueue *q);
