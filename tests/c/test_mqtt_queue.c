/*
 * test_mqtt_queue.c - cmocka driver for core/mqtt_queue.c: MQTT topic rules
 * and the client's two message queues, without a broker and without Lua.
 *
 * What is checked: topic names and filters are accepted and matched as
 * MQTT 3.1.1 says (a table of cases, '$' topics, "a/#" matching "a"), and
 * exactly as libmosquitto decides on a few hundred thousand generated
 * strings (a differential test: libmosquitto is linked here only for that).
 * The outgoing queue refuses a message past its message, byte and message
 * id bounds, returns tags on acknowledgement in any order, keeps order
 * while it grows, and forgets a tag. The incoming queue is first in, first
 * out, drops past its count or the shared byte budget (one message always
 * fits), says when the first drop happens and how many were dropped once
 * the handler caught up, and frees what is left. The event history keeps
 * the newest events, in order, past its bound.
 *
 * Design: plain function calls on structs made fresh in each test; the
 * generator is a fixed-seed xorshift, so a failure repeats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mosquitto.h>

#include "mqtt.h"
#include "mqtt_queue.h"

/* {===== topics ===== */

static void topics_valid_and_invalid(void **state)
{
    (void)state;
    static const char *const names[] = {"a", "a/b", "/", "a//b", "$SYS/x", "é/ü", "a b"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        assert_int_equal(md_mqtt_check_topic(names[i], false), 0);
        assert_int_equal(md_mqtt_check_topic(names[i], true), 0);
    }
    static const char *const bad_names[] = {"",      "a/+",  "#",
                                            "a\x01", "\xc3", "\xed\xa0\x80"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
        assert_int_equal(md_mqtt_check_topic(bad_names[i], false), -MD_MQTT_ETOPIC);
    static const char *const filters[] = {"+", "#", "a/+/c", "a/#", "+/+", "/#", "+/"};
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        assert_int_equal(md_mqtt_check_topic(filters[i], true), 0);
    static const char *const bad_filters[] = {"a+", "+a", "a/#/b", "a#", "##", "a/b#"};
    for (size_t i = 0; i < sizeof bad_filters / sizeof *bad_filters; i++)
        assert_int_equal(md_mqtt_check_topic(bad_filters[i], true), -MD_MQTT_ETOPIC);
    char *longest = malloc(65537);
    assert_non_null(longest);
    memset(longest, 'a', 65536);
    longest[65536] = '\0';
    assert_int_equal(md_mqtt_check_topic(longest, false), -MD_MQTT_ETOPIC);
    longest[65535] = '\0';
    assert_int_equal(md_mqtt_check_topic(longest, false), 0);
    free(longest);
}

static void topics_match(void **state)
{
    (void)state;
    static const struct {
        const char *filter, *topic;
        bool match;
    } cases[] = {
        {"a/b", "a/b", true},    {"a/b", "a/c", false},    {"a/+", "a/b", true},
        {"a/+", "a/b/c", false}, {"a/+", "a", false},      {"a/+", "a/", true},
        {"a/#", "a", true},      {"a/#", "a/b/c", true},   {"#", "a/b", true},
        {"#", "$SYS/x", false},  {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true},
        {"+/+", "/x", true},     {"a/+/#", "a/b", true},   {"a/b", "a/b/c", false},
        {"a", "a/b", false},     {"a/b/c", "a/b", false},  {"+", "a", true},
        {"a/+", "a/+", false}, /* a topic name never holds a wildcard */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (md_mqtt_matches(cases[i].filter, cases[i].topic) != cases[i].match)
            fail_msg("'%s' on '%s': want %d", cases[i].filter, cases[i].topic,
                     cases[i].match);
    }
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A short string from pieces that exercise every rule. */
static void random_topic(char *buf, size_t cap)
{
    static const char *const pieces[] = {
        "a", "b", "/", "/", "+", "#", "$", "é", "\x01", "\xc3", "\xef\xbf\xbf", " "};
    size_t n = 1 + next_random() % 6, len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = pieces[next_random() % (sizeof pieces / sizeof *pieces)];
        size_t pl = strlen(p);
        if (len + pl + 1 > cap)
            break;
        memcpy(buf + len, p, pl + 1);
        len += pl;
    }
}

static bool mosq_valid(const char *s, bool filter)
{
    if (!s[0] || mosquitto_validate_utf8(s, (int)strlen(s)) != MOSQ_ERR_SUCCESS)
        return false;
    return (filter ? mosquitto_sub_topic_check(s) : mosquitto_pub_topic_check(s)) ==
           MOSQ_ERR_SUCCESS;
}

static void topics_agree_with_libmosquitto(void **state)
{
    (void)state;
    int matched = 0;
    for (int i = 0; i < 300000; i++) {
        char filter[32], topic[32];
        random_topic(filter, sizeof filter);
        random_topic(topic, sizeof topic);
        bool fv = mosq_valid(filter, true), tv = mosq_valid(topic, false);
        if ((md_mqtt_check_topic(filter, true) == 0) != fv)
            fail_msg("filter '%s': libmosquitto says valid=%d", filter, fv);
        if ((md_mqtt_check_topic(topic, false) == 0) != tv)
            fail_msg("topic '%s': libmosquitto says valid=%d", topic, tv);
        bool want = false;
        if (fv && tv &&
            mosquitto_topic_matches_sub(filter, topic, &want) != MOSQ_ERR_SUCCESS)
            want = false;
        if (md_mqtt_matches(filter, topic) != want)
            fail_msg("'%s' on '%s': libmosquitto says %d", filter, topic, want);
        matched += want;
    }
    assert_true(matched > 1000); /* the generator makes matches, not only misses */
}

/* }===== */

/* {===== outgoing ===== */

static int tags[256];

static void queue_publish(md_mqtt_outq *q, int mid, size_t bytes)
{
    uint64_t seq = md_mqtt_outq_issue(q);
    assert_true(md_mqtt_outq_has_room(q, bytes));
    assert_int_equal(md_mqtt_outq_add(q, mid, bytes, &tags[mid % 256], seq), 0);
}

static void outq_bounds(void **state)
{
    (void)state;
    md_mqtt_outq q = {.max_queued = 3, .max_queued_bytes = 100};
    queue_publish(&q, 1, 40);
    queue_publish(&q, 2, 40);
    assert_false(md_mqtt_outq_has_room(&q, 21)); /* 101 bytes */
    assert_true(md_mqtt_outq_has_room(&q, 20));
    queue_publish(&q, 3, 20);
    assert_false(md_mqtt_outq_has_room(&q, 0)); /* 4 messages */
    assert_int_equal(q.queued, 3);
    assert_int_equal(q.queued_bytes, 100);
    bool found;
    assert_ptr_equal(md_mqtt_outq_done(&q, 2, &found), &tags[2]); /* out of order */
    assert_true(found);
    assert_int_equal(q.queued, 2);
    assert_int_equal(q.len, 3); /* 2 leaves when it reaches the head */
    assert_null(md_mqtt_outq_done(&q, 2, &found));
    assert_false(found); /* twice: not queued any more */
    md_mqtt_outq_forget(&q, &tags[1]);
    assert_null(md_mqtt_outq_done(&q, 1, &found)); /* forgotten tag */
    assert_true(found);
    assert_int_equal(q.len, 1); /* the head moved over 1 and 2 */
    assert_ptr_equal(md_mqtt_outq_done(&q, 3, &found), &tags[3]);
    assert_int_equal(q.queued, 0);
    assert_int_equal(q.queued_bytes, 0);
    assert_int_equal(q.len, 0);
    md_mqtt_outq_free(&q);
}

/* libmosquitto's ids are 16 bits: after MD_MQTT_MID_SPAN ids handed out
 * since the oldest queued message, a new one could take its id. */
static void outq_id_span(void **state)
{
    (void)state;
    md_mqtt_outq q = {.max_queued = 10, .max_queued_bytes = 1000};
    queue_publish(&q, 7, 1);
    for (int i = 0; i < MD_MQTT_MID_SPAN - 2; i++)
        md_mqtt_outq_issue(&q); /* QoS 0 publishes, subscribes */
    assert_true(md_mqtt_outq_has_room(&q, 1));
    md_mqtt_outq_issue(&q);
    assert_false(md_mqtt_outq_has_room(&q, 1));
    bool found;
    md_mqtt_outq_done(&q, 7, &found);
    assert_true(md_mqtt_outq_has_room(&q, 1));
    md_mqtt_outq_free(&q);
}

static void outq_grows_in_order(void **state)
{
    (void)state;
    md_mqtt_outq q = {.max_queued = 1000, .max_queued_bytes = 1u << 20};
    bool found;
    for (int mid = 1; mid <= 50; mid++)
        queue_publish(&q, mid, 10);
    for (int mid = 1; mid <= 30; mid++) /* the head moves: the ring wraps below */
        assert_ptr_equal(md_mqtt_outq_done(&q, mid, &found), &tags[mid]);
    for (int mid = 51; mid <= 200; mid++) /* past the first 64 slots */
        queue_publish(&q, mid, 10);
    assert_int_equal(q.queued, 170);
    for (int mid = 200; mid > 30; mid--) /* newest first: every tag still right */
        assert_ptr_equal(md_mqtt_outq_done(&q, mid, &found), &tags[mid % 256]);
    assert_int_equal(q.queued, 0);
    assert_int_equal(q.len, 0);
    md_mqtt_outq_free(&q);
}

/* }===== */

/* {===== incoming ===== */

static md_mqtt_msg *admit(md_mqtt_inq *q, md_mqtt_budget *b, const char *payload,
                          bool *first)
{
    return md_mqtt_inq_admit(q, b, "t/x", payload, strlen(payload), 1, false, first);
}

static void inq_fifo_and_count_limit(void **state)
{
    (void)state;
    md_mqtt_budget b = {.max_count = 3, .max_bytes = 1u << 20};
    md_mqtt_inq q = {0};
    bool first;
    static const char *const payloads[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        md_mqtt_msg *m = admit(&q, &b, payloads[i], &first);
        assert_non_null(m);
        assert_false(first);
        md_mqtt_inq_push(&q, &b, m);
    }
    assert_null(admit(&q, &b, "four", &first));
    assert_true(first); /* the first drop: log it */
    assert_null(admit(&q, &b, "five", &first));
    assert_false(first); /* not again */
    assert_int_equal(b.dropped, 2);
    uint64_t dropped;
    for (int i = 0; i < 3; i++) {
        md_mqtt_msg *m = md_mqtt_inq_pop(&q, &b, &dropped);
        assert_non_null(m);
        assert_int_equal(m->len, strlen(payloads[i]));
        assert_memory_equal(m->data, payloads[i], m->len);
        assert_string_equal(m->topic, "t/x");
        assert_int_equal(m->qos, 1);
        assert_int_equal(dropped, i == 2 ? 2 : 0); /* caught up: 2 were dropped */
        free(m);
    }
    assert_null(md_mqtt_inq_pop(&q, &b, &dropped));
    assert_int_equal(b.bytes, 0);
    /* After catching up, a drop is a first drop again. */
    assert_int_equal(q.dropped, 0);
}

static void inq_shared_byte_budget(void **state)
{
    (void)state;
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    md_mqtt_budget b = {.max_count = 100, .max_bytes = 1000};
    md_mqtt_inq q1 = {0}, q2 = {0};
    bool first;
    md_mqtt_msg *m = admit(&q1, &b, big, &first);
    assert_non_null(m);
    md_mqtt_inq_push(&q1, &b, m);
    assert_int_equal(b.bytes, 599 + 4);
    /* Another 603 bytes pass the budget, but q2 is empty: one always fits. */
    m = admit(&q2, &b, big, &first);
    assert_non_null(m);
    md_mqtt_inq_push(&q2, &b, m);
    /* Now neither queue takes more. */
    assert_null(admit(&q1, &b, "small", &first));
    assert_true(first);
    assert_null(admit(&q2, &b, big, &first));
    assert_true(first);
    assert_int_equal(b.dropped, 2);
    /* A payload with NUL bytes and an empty one keep their length. */
    md_mqtt_inq_clear(&q1, &b);
    m = md_mqtt_inq_admit(&q1, &b, "t", "a\0b", 3, 0, true, &first);
    assert_non_null(m);
    assert_int_equal(m->len, 3);
    assert_memory_equal(m->data, "a\0b", 3);
    assert_true(m->retain);
    md_mqtt_inq_push(&q1, &b, m);
    m = md_mqtt_inq_admit(&q1, &b, "t", NULL, 0, 0, false, &first);
    assert_non_null(m);
    md_mqtt_inq_push(&q1, &b, m);
    assert_int_equal(q1.count, 2);
    md_mqtt_inq_clear(&q1, &b);
    md_mqtt_inq_clear(&q2, &b);
    assert_int_equal(b.bytes, 0);
    assert_null(q1.head);
    assert_null(q1.tail);
}

/* }===== */

/* {===== events ===== */

static void events_keep_the_newest(void **state)
{
    (void)state;
    md_mqtt_events q = {.max = 3};
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "event %d", i);
        md_mqtt_event_rec *e =
            md_mqtt_event_new(i % 2, i == 4, i ? "refused" : NULL, msg);
        assert_non_null(e);
        md_mqtt_events_push(&q, e);
    }
    assert_int_equal(q.count, 3);
    for (int i = 2; i < 5; i++) { /* 0 and 1 were dropped, oldest first */
        md_mqtt_event_rec *e = md_mqtt_events_pop(&q);
        assert_non_null(e);
        char want[32];
        snprintf(want, sizeof want, "event %d", i);
        assert_string_equal(e->message, want);
        assert_string_equal(e->code, "refused");
        assert_int_equal(e->ev, i % 2);
        assert_int_equal(e->flag, i == 4);
        free(e);
    }
    assert_null(md_mqtt_events_pop(&q));
    assert_null(q.tail);
    md_mqtt_events_push(&q, md_mqtt_event_new(0, false, NULL, NULL));
    md_mqtt_events_push(&q, md_mqtt_event_new(1, false, "x", "y"));
    md_mqtt_event_rec *e = md_mqtt_events_pop(&q);
    assert_string_equal(e->code, ""); /* NULL becomes empty */
    free(e);
    md_mqtt_events_clear(&q);
    assert_int_equal(q.count, 0);
    assert_null(q.head);
}

/* }===== */

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(topics_valid_and_invalid),
        cmocka_unit_test(topics_match),
        cmocka_unit_test(topics_agree_with_libmosquitto),
        cmocka_unit_test(outq_bounds),
        cmocka_unit_test(outq_id_span),
        cmocka_unit_test(outq_grows_in_order),
        cmocka_unit_test(inq_fifo_and_count_limit),
        cmocka_unit_test(inq_shared_byte_budget),
        cmocka_unit_test(events_keep_the_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
