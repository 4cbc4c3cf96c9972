#include "reply_queue.h"

#include <event2/buffer.h>
#include <stdlib.h>

struct ReplySlot {
    ReplySlot *next;
    ReplyQueue *queue;  // NULL once the connection has gone
    ReplySlotPool *pool;
    bool ready;
    unsigned char protocol;  // its queue's when it was pushed
    evbuffer *out;      // the answer, when it completes before its turn
    size_t held;        // what it counts in its queue's `held`
};

void reply_pool_free(ReplySlotPool *pool)
{
    while (pool->free != NULL) {
        ReplySlot *s = pool->free;
        pool->free = s->next;
        free(s);
    }
}

static void recycle(ReplySlot *s)
{
    if (s->out != NULL)
        evbuffer_free(s->out);
    s->next = s->pool->free;
    s->pool->free = s;
}

ReplySlot *reply_queue_push(ReplyQueue *q, ReplySlotPool *pool, size_t cost)
{
    ReplySlot *s = pool->free;
    if (s != NULL)
        pool->free = s->next;
    else if ((s = (ReplySlot *)malloc(sizeof(ReplySlot))) == NULL) {
        q->failed = true;
        return NULL;
    }
    s->next = NULL;
    s->queue = q;
    s->pool = pool;
    s->ready = false;
    s->protocol = (unsigned char)q->protocol;
    s->out = NULL;
    s->held = cost;
    q->held += cost;
    if (q->tail != NULL)
        q->tail->next = s;
    else
        q->head = s;
    q->tail = s;
    q->pending++;
    return s;
}

int reply_slot_protocol(const ReplySlot *s) { return s->protocol; }

evbuffer *reply_slot_output(ReplySlot *s)
{
    if (s->queue == NULL)
        return NULL;
    if (s->queue->head == s)
        return s->queue->out;
    if (s->out == NULL && (s->out = evbuffer_new()) == NULL)
        s->queue->failed = true;
    return s->out;
}

void reply_slot_fail(ReplySlot *s)
{
    if (s->queue != NULL)
        s->queue->failed = true;
}

void *reply_slot_finish(ReplySlot *s, void **owner)
{
    ReplyQueue *q = s->queue;
    s->ready = true;
    if (q == NULL) {
        *owner = NULL;
        recycle(s);
        return NULL;
    }
    *owner = q->owner;
    // Until its turn, it holds its answer's bytes instead of its lookup.
    q->held -= s->held;
    s->held = 0;
    if (s->out != NULL) {
        s->held = evbuffer_get_length(s->out);
        q->held += s->held;
    }
    bool moved = false;
    while (q->head != NULL && q->head->ready) {
        ReplySlot *done = q->head;
        q->head = done->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->pending--;
        q->held -= done->held;
        if (done->out != NULL)
            evbuffer_add_buffer(q->out, done->out);  // moves the chains: no copy
        recycle(done);
        moved = true;
    }
    return moved || q->failed ? q->owner : NULL;
}

evbuffer *reply_queue_immediate(ReplyQueue *q, ReplySlotPool *pool, ReplySlot **slot)
{
    *slot = NULL;
    if (q->head == NULL)
        return q->out;
    *slot = reply_queue_push(q, pool, 0);
    return *slot != NULL ? reply_slot_output(*slot) : NULL;
}

void reply_queue_abandon(ReplyQueue *q)
{
    ReplySlot *s = q->head;
    while (s != NULL) {
        ReplySlot *next = s->next;
        s->next = NULL;
        if (s->ready)
            recycle(s);
        else
            s->queue = NULL;  // its lookup still holds it: dropped on arrival
        s = next;
    }
    q->head = q->tail = NULL;
    q->pending = 0;
    q->held = 0;
}
