/*
 * test_mqttcodec.c - cmocka driver for core/mqttcodec.c, the MQTT 3.1.1
 * packets of the plain client, without a socket or a broker.
 *
 * What is checked: CONNECT, PUBLISH, the acks, SUBSCRIBE, UNSUBSCRIBE and
 * PINGREQ encode to the bytes of the standard's examples (written out by
 * hand here); remaining lengths at the varint boundaries (127/128,
 * 16383/16384); the decoder reassembles a stream fed one byte at a time
 * and splits several packets in one feed; PUBLISH fields at QoS 0/1/2 with
 * DUP and retain; each malformed case is refused with a sentence: a
 * 5-byte remaining length, reserved types and flags, wrong fixed lengths,
 * a topic past the packet, a NUL or a wildcard in a topic, QoS 3, message
 * id 0, a SUBACK return code 3; and a huge announced length is refused
 * (for a fixed-length type) or waited for without allocating it.
 *
 * Design: packets are built with the encoders and fed back; expected bytes
 * are literal arrays. ASan/valgrind see every buffer freed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqttcodec.h"

static void expect_bytes(const md_mqttc_buf *b, const uint8_t *want, size_t n)
{
    assert_int_equal(b->len, n);
    assert_memory_equal(b->p, want, n);
}

static void encode_connect(void **state)
{
    (void)state;
    md_mqttc_buf b = {0};
    md_mqttc_connect c = {.client_id = "id",
                          .clean = true,
                          .keepalive = 30,
                          .username = "u",
                          .password = "pw",
                          .will_topic = "w",
                          .will_payload = "x",
                          .will_len = 1,
                          .will_qos = 1,
                          .will_retain = true};
    assert_int_equal(md_mqttc_put_connect(&b, &c), 0);
    static const uint8_t want[] = {0x10, 27,  0, 4, 'M', 'Q', 'T', 'T', 4,   0xEE,
                                   0,    30,  0, 2, 'i', 'd', 0,   1,   'w', 0,
                                   1,    'x', 0, 1, 'u', 0,   2,   'p', 'w'};
    expect_bytes(&b, want, sizeof want);
    b.len = 0;
    md_mqttc_connect bare = {.client_id = "", .clean = false, .keepalive = 5};
    assert_int_equal(md_mqttc_put_connect(&b, &bare), 0);
    static const uint8_t want2[] = {0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 5, 0, 0};
    expect_bytes(&b, want2, sizeof want2);
    md_mqttc_buf_free(&b);
}

static void encode_others(void **state)
{
    (void)state;
    md_mqttc_buf b = {0};
    assert_int_equal(md_mqttc_put_publish(&b, "a/b", 3, "hi", 2, 1, true, true, 10), 0);
    static const uint8_t pub[] = {0x3B, 9, 0, 3, 'a', '/', 'b', 0, 10, 'h', 'i'};
    expect_bytes(&b, pub, sizeof pub);
    b.len = 0;
    assert_int_equal(md_mqttc_put_publish(&b, "t", 1, NULL, 0, 0, false, false, 0), 0);
    static const uint8_t pub0[] = {0x30, 3, 0, 1, 't'};
    expect_bytes(&b, pub0, sizeof pub0);
    b.len = 0;
    assert_int_equal(md_mqttc_put_ack(&b, MD_MQTTC_PUBREL, 0x1234), 0);
    assert_int_equal(md_mqttc_put_ack(&b, MD_MQTTC_PUBACK, 1), 0);
    static const uint8_t acks[] = {0x62, 2, 0x12, 0x34, 0x40, 2, 0, 1};
    expect_bytes(&b, acks, sizeof acks);
    b.len = 0;
    assert_int_equal(md_mqttc_put_subscribe(&b, 2, "x/#", 2), 0);
    assert_int_equal(md_mqttc_put_unsubscribe(&b, 3, "x/#"), 0);
    assert_int_equal(md_mqttc_put_empty(&b, MD_MQTTC_PINGREQ), 0);
    assert_int_equal(md_mqttc_put_empty(&b, MD_MQTTC_DISCONNECT), 0);
    static const uint8_t rest[] = {0x82, 8, 0, 2, 0,   3,   'x', '/',  '#', 2,    0xA2, 7,
                                   0,    3, 0, 3, 'x', '/', '#', 0xC0, 0,   0xE0, 0};
    expect_bytes(&b, rest, sizeof rest);
    md_mqttc_buf_free(&b);
}

/* The remaining length's varint at its boundaries, through the decoder. */
static void varint_boundaries(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 127 - 5, 128 - 5, 16383 - 5, 16384 - 5, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        md_mqttc_buf b = {0};
        uint8_t *payload = calloc(1, sizes[i] + 1);
        assert_non_null(payload);
        assert_int_equal(
            md_mqttc_put_publish(&b, "t", 1, payload, sizes[i], 0, false, false, 0), 0);
        size_t rem = 3 + sizes[i];
        size_t hdr = rem < 128 ? 2 : rem < 16384 ? 3 : 4;
        assert_int_equal(b.len, hdr + rem);
        md_mqttc_dec d = {0};
        md_mqttc_packet p;
        assert_int_equal(md_mqttc_dec_feed(&d, b.p, b.len), 0);
        assert_int_equal(md_mqttc_dec_next(&d, &p), 1);
        assert_int_equal(p.len, sizes[i]);
        assert_string_equal(p.topic, "t");
        assert_int_equal(md_mqttc_dec_next(&d, &p), 0);
        md_mqttc_dec_free(&d);
        md_mqttc_buf_free(&b);
        free(payload);
    }
}

static void stream_split_and_joined(void **state)
{
    (void)state;
    md_mqttc_buf b = {0};
    static const uint8_t connack[] = {0x20, 2, 1, 0};
    memcpy(b.p = malloc(64), connack, sizeof connack);
    b.len = sizeof connack;
    b.cap = 64;
    assert_int_equal(md_mqttc_put_publish(&b, "s/t", 3, "abc", 3, 2, true, true, 7), 0);
    assert_int_equal(md_mqttc_put_ack(&b, MD_MQTTC_PUBREL, 7), 0);
    static const uint8_t tail[] = {0x90, 3, 0, 9, 0x80, 0xD0, 0};
    memcpy(b.p + b.len, tail, sizeof tail);
    b.len += sizeof tail;
    for (int split = 0; split < 2; split++) {
        md_mqttc_dec d = {0};
        md_mqttc_packet p[8];
        int n = 0;
        for (size_t i = 0; i < b.len; i++) {
            size_t step = split ? 1 : b.len;
            if (split || i == 0)
                assert_int_equal(md_mqttc_dec_feed(&d, b.p + i, step), 0);
            int rc;
            while ((rc = md_mqttc_dec_next(&d, &p[n])) == 1) {
                if (p[n].type == MD_MQTTC_PUBLISH) /* check before the next feed */
                    assert_string_equal(p[n].topic, "s/t");
                n++;
            }
            assert_int_equal(rc, 0);
            if (!split)
                break;
        }
        assert_int_equal(n, 5);
        assert_int_equal(p[0].type, MD_MQTTC_CONNACK);
        assert_true(p[0].session_present);
        assert_int_equal(p[0].rc, 0);
        assert_int_equal(p[1].type, MD_MQTTC_PUBLISH);
        assert_int_equal(p[1].qos, 2);
        assert_true(p[1].dup);
        assert_true(p[1].retain);
        assert_int_equal(p[1].mid, 7);
        assert_int_equal(p[1].len, 3);
        assert_int_equal(p[2].type, MD_MQTTC_PUBREL);
        assert_int_equal(p[2].mid, 7);
        assert_int_equal(p[3].type, MD_MQTTC_SUBACK);
        assert_int_equal(p[3].mid, 9);
        assert_int_equal(p[3].granted, 128);
        assert_int_equal(p[4].type, MD_MQTTC_PINGRESP);
        md_mqttc_dec_free(&d);
    }
    md_mqttc_buf_free(&b);
}

static void refused(const void *bytes, size_t n)
{
    md_mqttc_dec d = {0};
    md_mqttc_packet p;
    assert_int_equal(md_mqttc_dec_feed(&d, bytes, n), 0);
    assert_int_equal(md_mqttc_dec_next(&d, &p), -1);
    assert_true(strlen(d.error) > 10);
    assert_int_equal(md_mqttc_dec_next(&d, &p), -1); /* stays failed */
    md_mqttc_dec_free(&d);
}

#define REFUSED(...)                                                                     \
    do {                                                                                 \
        static const uint8_t bad_[] = {__VA_ARGS__};                                     \
        refused(bad_, sizeof bad_);                                                      \
    } while (0)

static void malformed(void **state)
{
    (void)state;
    REFUSED(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01); /* 5-byte remaining length */
    REFUSED(0xF0, 0);                            /* reserved type 15 */
    REFUSED(0x00, 0);                            /* reserved type 0 */
    REFUSED(0x10, 0);                            /* CONNECT from a broker */
    REFUSED(0x82, 0);                            /* SUBSCRIBE from a broker */
    REFUSED(0x21, 2, 0, 0);                      /* CONNACK with flags */
    REFUSED(0x20, 3, 0, 0, 0);                   /* CONNACK of 3 bytes */
    REFUSED(0x20, 2, 2, 0);                      /* CONNACK reserved bit */
    REFUSED(0x60, 2, 0, 1);                      /* PUBREL without its flags */
    REFUSED(0x40, 3, 0, 1, 0);                   /* PUBACK of 3 bytes */
    REFUSED(0xD0, 0xFF, 0xFF, 0xFF, 0x7F);       /* PINGRESP of 268435455 bytes */
    REFUSED(0x30, 4, 0, 9, 'a', 'b');            /* topic past the packet */
    REFUSED(0x30, 2, 0, 0);                      /* empty topic */
    REFUSED(0x30, 4, 0, 2, 'a', 0);              /* NUL in the topic */
    REFUSED(0x30, 5, 0, 3, 'a', '/', '+');       /* wildcard */
    REFUSED(0x30, 4, 0, 2, 0xC3, 0x28);          /* not UTF-8 */
    REFUSED(0x36, 5, 0, 1, 'a', 0, 1);           /* QoS 3 */
    REFUSED(0x32, 5, 0, 1, 'a', 0, 0);           /* message id 0 */
    REFUSED(0x32, 3, 0, 1, 'a');                 /* no room for the id */
    REFUSED(0x90, 3, 0, 1, 3);                   /* SUBACK code 3 */
    REFUSED(0x90, 2, 0, 1);                      /* SUBACK without a code */
}

/* A PUBLISH announcing 268435455 bytes is waited for, not allocated. */
static void huge_length_waits(void **state)
{
    (void)state;
    static const uint8_t big[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, 't'};
    md_mqttc_dec d = {0};
    md_mqttc_packet p;
    assert_int_equal(md_mqttc_dec_feed(&d, big, sizeof big), 0);
    assert_int_equal(md_mqttc_dec_next(&d, &p), 0);
    assert_true(d.in.cap < 4096);
    md_mqttc_dec_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_connect),    cmocka_unit_test(encode_others),
        cmocka_unit_test(varint_boundaries), cmocka_unit_test(stream_split_and_joined),
        cmocka_unit_test(malformed),         cmocka_unit_test(huge_length_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
