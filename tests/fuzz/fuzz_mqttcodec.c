/*
 * fuzz_mqttcodec.c - libFuzzer target for the streaming decoder of
 * core/mqttcodec.c: the bytes an MQTT broker sends to moondog's plain
 * client (core/mqtt_plain.c).
 *
 * Input: byte 0 picks the chunk size the stream is fed in (0: all at
 * once); the rest is the stream.
 *
 * Contracts checked (abort on a broken one), besides crashes and sanitizer
 * reports:
 *   - the decoder's answer (packets and the error, in order) does not
 *     depend on how the stream is chunked;
 *   - an error is final: the decoder answers -1 again afterwards;
 *   - a decoded PUBLISH or ack encodes back (md_mqttc_put_publish /
 *     put_ack) to the same bytes after its fixed header, and a PUBLISH
 *     topic is a valid topic name of the length the packet gave;
 *   - the decoder's buffer never holds more than the stream.
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_mqttcodec.c core/mqttcodec.c core/mqtt_queue.c \
 *         core/err.c -o /tmp/fuzz_mqttcodec
 *   /tmp/fuzz_mqttcodec tests/fuzz/corpus/mqttcodec
 *
 * Seeds (tests/fuzz/corpus/mqttcodec/): a CONNACK with a PUBLISH at each
 * QoS, the acks, a SUBACK and a PINGRESP; a packet split over a 1-byte
 * chunking; a 5-byte remaining length; a huge announced length.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mqtt_queue.h"
#include "mqttcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_EVENTS = 4096 };

typedef struct event {
    int type, rc;
    unsigned mid;
    size_t len;
    uint32_t hash; /* of the PUBLISH topic and payload */
} event;

typedef struct run {
    event ev[MAX_EVENTS];
    int n;
} run;

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

/* The bytes after the fixed header starting at raw. */
static const uint8_t *body_of(const uint8_t *raw, size_t *rem)
{
    size_t i = 1, v = 0;
    do {
        v |= (size_t)(raw[i] & 0x7F) << (7 * (i - 1));
    } while (raw[i++] & 0x80);
    *rem = v;
    return raw + i;
}

/* Re-encode p, which the stream held at raw, and compare. */
static void check_round_trip(const md_mqttc_packet *p, const uint8_t *raw)
{
    md_mqttc_buf b = {0};
    if (p->type == MD_MQTTC_PUBLISH) {
        CHECK(md_mqtt_check_topic(p->topic, false) == 0);
        CHECK(md_mqttc_put_publish(&b, p->topic, strlen(p->topic), p->payload, p->len,
                                   p->qos, p->retain, p->dup, p->mid) == 0);
    } else if (p->type >= MD_MQTTC_PUBACK && p->type <= MD_MQTTC_PUBCOMP) {
        CHECK(md_mqttc_put_ack(&b, p->type, p->mid) == 0);
    } else {
        return;
    }
    size_t want_rem, got_rem;
    const uint8_t *want = body_of(raw, &want_rem);
    const uint8_t *got = body_of(b.p, &got_rem);
    CHECK(raw[0] == b.p[0]);
    CHECK(want_rem == got_rem);
    /* the decoder moved the topic in place: compare after it */
    size_t skip = p->type == MD_MQTTC_PUBLISH ? 2 + strlen(p->topic) : 0;
    CHECK(memcmp(want + skip, got + skip, got_rem - skip) == 0);
    md_mqttc_buf_free(&b);
}

static void decode(const uint8_t *s, size_t n, size_t chunk, run *r)
{
    md_mqttc_dec d = {0};
    r->n = 0;
    size_t off = 0;
    bool failed = false;
    while (off < n && !failed) {
        size_t k = chunk && n - off > chunk ? chunk : n - off;
        CHECK(md_mqttc_dec_feed(&d, s + off, k) == 0);
        off += k;
        CHECK(d.in.len <= n);
        for (;;) {
            size_t start = d.start;
            md_mqttc_packet p;
            int rc = md_mqttc_dec_next(&d, &p);
            if (rc == 0)
                break;
            event *e = &r->ev[r->n < MAX_EVENTS ? r->n++ : MAX_EVENTS - 1];
            memset(e, 0, sizeof *e); /* memcmp'd: no stray padding */
            e->rc = rc;
            if (rc < 0) {
                md_mqttc_packet again;
                CHECK(md_mqttc_dec_next(&d, &again) == -1);
                failed = true;
                break;
            }
            if (!chunk) /* fed at once: the stream's bytes are at start */
                check_round_trip(&p, s + start);
            e->type = p.type;
            e->mid = p.mid;
            e->len = p.len;
            if (p.type == MD_MQTTC_PUBLISH)
                e->hash =
                    fnv(fnv(2166136261u, p.topic, strlen(p.topic)), p.payload, p.len);
            else if (p.type == MD_MQTTC_CONNACK)
                e->hash = (uint32_t)(p.rc << 1 | p.session_present);
            else if (p.type == MD_MQTTC_SUBACK)
                e->hash = (uint32_t)p.granted;
        }
    }
    md_mqttc_dec_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run whole, split;
    if (size < 1)
        return 0;
    size_t chunk = data[0];
    decode(data + 1, size - 1, 0, &whole);
    if (chunk) {
        decode(data + 1, size - 1, chunk, &split);
        CHECK(whole.n == split.n);
        CHECK(memcmp(whole.ev, split.ev, (size_t)whole.n * sizeof whole.ev[0]) == 0);
    }
    return 0;
}
