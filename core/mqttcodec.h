/*
 * mqttcodec.h - MQTT 3.1.1 packets for the plain-TCP client (mqtt_plain.c):
 * encoders that append a packet to a growable buffer, and a streaming
 * decoder for what a broker sends. No I/O, no loop and no libmosquitto
 * here, so that tests/c/test_mqttcodec.c and tests/fuzz/fuzz_mqttcodec.c
 * can drive it alone.
 *
 * The decoder never trusts a length: a remaining length is read as a
 * varint of at most 4 bytes (at most 268435455), its buffer grows only as
 * bytes arrive, and every field is checked against the bytes its packet
 * holds. A packet a broker must not send, or a malformed one, is an error
 * with a sentence; the caller drops the connection (code `protocol`).
 *
 * Ownership: a buffer owns its bytes; a decoded packet points into the
 * decoder's buffer and is valid until the next md_mqttc_dec_feed.
 * Threads: none of its own; one decoder per connection.
 */
#ifndef MD_MQTTCODEC_H
#define MD_MQTTCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MD_MQTTC_MAX_REMAINING 268435455u

enum {
    MD_MQTTC_CONNECT = 1,
    MD_MQTTC_CONNACK = 2,
    MD_MQTTC_PUBLISH = 3,
    MD_MQTTC_PUBACK = 4,
    MD_MQTTC_PUBREC = 5,
    MD_MQTTC_PUBREL = 6,
    MD_MQTTC_PUBCOMP = 7,
    MD_MQTTC_SUBSCRIBE = 8,
    MD_MQTTC_SUBACK = 9,
    MD_MQTTC_UNSUBSCRIBE = 10,
    MD_MQTTC_UNSUBACK = 11,
    MD_MQTTC_PINGREQ = 12,
    MD_MQTTC_PINGRESP = 13,
    MD_MQTTC_DISCONNECT = 14,
};

/* {===== encoding ===== */

typedef struct md_mqttc_buf {
    uint8_t *p;
    size_t len, cap;
} md_mqttc_buf;

void md_mqttc_buf_free(md_mqttc_buf *b);

typedef struct md_mqttc_connect {
    const char *client_id; /* "" allowed with clean */
    bool clean;
    int keepalive;                   /* seconds */
    const char *username, *password; /* NULL: none */
    const char *will_topic;          /* NULL: no will */
    const void *will_payload;
    size_t will_len;
    int will_qos;
    bool will_retain;
} md_mqttc_connect;

/* Each appends one packet to b: 0, or -ENOMEM, or -EMSGSIZE when a field
 * or the packet is over MQTT's limits. */
int md_mqttc_put_connect(md_mqttc_buf *b, const md_mqttc_connect *c);
int md_mqttc_put_publish(md_mqttc_buf *b, const char *topic, size_t topic_len,
                         const void *payload, size_t len, int qos, bool retain, bool dup,
                         uint16_t mid);
/* PUBACK, PUBREC, PUBREL (its flags 2 are added) or PUBCOMP. */
int md_mqttc_put_ack(md_mqttc_buf *b, int type, uint16_t mid);
int md_mqttc_put_subscribe(md_mqttc_buf *b, uint16_t mid, const char *filter, int qos);
int md_mqttc_put_unsubscribe(md_mqttc_buf *b, uint16_t mid, const char *filter);
/* PINGREQ or DISCONNECT. */
int md_mqttc_put_empty(md_mqttc_buf *b, int type);

/* }===== */

/* {===== decoding ===== */

typedef struct md_mqttc_packet {
    int type, flags;
    uint16_t mid; /* PUBLISH QoS 1/2, acks, SUBACK, UNSUBACK */
    /* CONNACK */
    bool session_present;
    int rc;
    /* PUBLISH: topic NUL-terminated, checked (UTF-8, no wildcards) */
    const char *topic;
    const uint8_t *payload;
    size_t len;
    int qos;
    bool retain, dup;
    /* SUBACK: the first return code (0..2 or 128) */
    int granted;
} md_mqttc_packet;

typedef struct md_mqttc_dec {
    md_mqttc_buf in;
    size_t start; /* first byte not yet decoded */
    char error[160];
} md_mqttc_dec;

/* Append n bytes read from the socket. 0 or -ENOMEM. */
int md_mqttc_dec_feed(md_mqttc_dec *d, const void *data, size_t n);
/* The next whole packet: 1 and *p, 0 when more bytes are needed, -1 with a
 * sentence in d->error for a packet a broker must not send. After -1 the
 * decoder is unusable until reset. */
int md_mqttc_dec_next(md_mqttc_dec *d, md_mqttc_packet *p);
/* Forget buffered bytes (a new connection); keeps the storage. */
void md_mqttc_dec_reset(md_mqttc_dec *d);
void md_mqttc_dec_free(md_mqttc_dec *d);

/* }===== */

#endif
