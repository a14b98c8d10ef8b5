/*
 * test_mqtt_subs.c - cmocka driver for core/mqtt_subs.c: an MQTT client's
 * subscription list and the dispatch of incoming messages, without a
 * broker, libmosquitto or Lua.
 *
 * What is checked: ids count up from 1 and are found again; a SUBSCRIBE's
 * message id finds its subscription (0 never does); two subscriptions with
 * one filter are "shared" until one goes; a message reaches every matching
 * subscription once (a copy each), goes straight to a waiting receiver and
 * is queued otherwise; past the per-subscription count it is dropped and
 * the drop is reported once; removing a subscription frees its queue and
 * gives its bytes back to the budget.
 *
 * Design: plain calls on a zero-initialised md_mqtt_subs; the callbacks
 * record into a struct. ASan/valgrind see every copy freed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt_subs.h"

typedef struct record {
    int handed, drops;
    md_mqtt_sub *last_sub;
    md_mqtt_msg *last_msg;
} record;

static void hand(void *ud, md_mqtt_sub *s, md_mqtt_msg *m)
{
    record *r = ud;
    r->handed++;
    r->last_sub = s;
    free(r->last_msg);
    r->last_msg = m;
    s->receiver = NULL;
}

static void dropped(void *ud, md_mqtt_sub *s)
{
    (void)s;
    ((record *)ud)->drops++;
}

static const md_mqtt_subs_fns fns = {.hand = hand, .dropped = dropped};

static void clear(md_mqtt_subs *l)
{
    while (l->head)
        md_mqtt_subs_remove(l, l->head);
    assert_int_equal(l->budget.bytes, 0);
}

static void ids_find_and_mid(void **state)
{
    (void)state;
    md_mqtt_subs l = {.budget = {.max_count = 4, .max_bytes = 1000}};
    md_mqtt_sub *a = md_mqtt_subs_add(&l, "a/#", 1);
    md_mqtt_sub *b = md_mqtt_subs_add(&l, "b", 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->id, 1);
    assert_int_equal(b->id, 2);
    assert_int_equal(a->qos, 1);
    assert_string_equal(b->filter, "b");
    assert_ptr_equal(md_mqtt_subs_find(&l, 1), a);
    assert_ptr_equal(md_mqtt_subs_find(&l, 2), b);
    assert_null(md_mqtt_subs_find(&l, 3));
    b->mid = 7;
    assert_ptr_equal(md_mqtt_subs_by_mid(&l, 7), b);
    assert_null(md_mqtt_subs_by_mid(&l, 8));
    assert_null(md_mqtt_subs_by_mid(&l, 0)); /* a's mid is 0: none in flight */
    md_mqtt_subs_remove(&l, a);
    assert_null(md_mqtt_subs_find(&l, 1));
    assert_int_equal(md_mqtt_subs_add(&l, "c", 2)->id, 3); /* ids are not reused */
    clear(&l);
}

static void shared_filters(void **state)
{
    (void)state;
    md_mqtt_subs l = {.budget = {.max_count = 4, .max_bytes = 1000}};
    md_mqtt_sub *a = md_mqtt_subs_add(&l, "x/+", 0);
    md_mqtt_sub *b = md_mqtt_subs_add(&l, "x/+", 1);
    md_mqtt_sub *c = md_mqtt_subs_add(&l, "y", 0);
    assert_true(md_mqtt_subs_shared(&l, a));
    assert_true(md_mqtt_subs_shared(&l, b));
    assert_false(md_mqtt_subs_shared(&l, c));
    md_mqtt_subs_remove(&l, b);
    assert_false(md_mqtt_subs_shared(&l, a));
    clear(&l);
}

static void dispatch_queues_and_hands(void **state)
{
    (void)state;
    record r = {0};
    md_mqtt_subs l = {.budget = {.max_count = 4, .max_bytes = 1000}};
    md_mqtt_sub *all = md_mqtt_subs_add(&l, "#", 0);
    md_mqtt_sub *ab = md_mqtt_subs_add(&l, "a/b", 0);
    md_mqtt_sub *other = md_mqtt_subs_add(&l, "c", 0);
    int waiting;
    ab->receiver = &waiting;

    assert_int_equal(md_mqtt_subs_dispatch(&l, "a/b", "hi", 2, 1, true, &fns, &r), 2);
    assert_int_equal(r.handed, 1); /* ab's receiver took it */
    assert_ptr_equal(r.last_sub, ab);
    assert_string_equal(r.last_msg->topic, "a/b");
    assert_int_equal(r.last_msg->len, 2);
    assert_memory_equal(r.last_msg->data, "hi", 2);
    assert_int_equal(r.last_msg->qos, 1);
    assert_true(r.last_msg->retain);
    assert_int_equal(all->queue.count, 1); /* "#" queued its own copy */
    assert_int_equal(ab->queue.count, 0);
    assert_int_equal(other->queue.count, 0);

    assert_int_equal(md_mqtt_subs_dispatch(&l, "a/b", "x", 1, 0, false, &fns, &r), 2);
    assert_int_equal(r.handed, 1); /* nobody waits now: queued */
    assert_int_equal(ab->queue.count, 1);
    assert_int_equal(md_mqtt_subs_dispatch(&l, "$SYS/x", "x", 1, 0, false, &fns, &r), 0);
    assert_int_equal(md_mqtt_subs_dispatch(&l, "d", "x", 1, 0, false, &fns, &r), 1);
    assert_int_equal(all->queue.count, 3);

    uint64_t dropped_n;
    md_mqtt_msg *m = md_mqtt_inq_pop(&ab->queue, &l.budget, &dropped_n);
    assert_non_null(m);
    assert_memory_equal(m->data, "x", 1);
    free(m);
    free(r.last_msg);
    clear(&l);
}

static void dispatch_drops_once_past_count(void **state)
{
    (void)state;
    record r = {0};
    md_mqtt_subs l = {.budget = {.max_count = 2, .max_bytes = 1000}};
    md_mqtt_sub *s = md_mqtt_subs_add(&l, "t", 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(md_mqtt_subs_dispatch(&l, "t", "p", 1, 0, false, &fns, &r), 1);
    assert_int_equal(s->queue.count, 2);
    assert_int_equal(r.drops, 1); /* reported once, not three times */
    assert_int_equal(l.budget.dropped, 3);
    assert_true(l.budget.bytes > 0);
    md_mqtt_subs_remove(&l, s); /* frees the queue, gives the bytes back */
    assert_int_equal(l.budget.bytes, 0);
    assert_null(l.head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ids_find_and_mid),
        cmocka_unit_test(shared_filters),
        cmocka_unit_test(dispatch_queues_and_hands),
        cmocka_unit_test(dispatch_drops_once_past_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
