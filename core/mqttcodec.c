/*
 * mqttcodec.c - MQTT 3.1.1 packet encoding and a streaming decoder; see
 * mqttcodec.h. Written from the OASIS MQTT 3.1.1 standard, sections 2
 * (fixed header, remaining length) and 3 (each packet). Topic names are
 * checked with mqtt_queue.c's rules, the ones publishing uses.
 */
#include "mqttcodec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_queue.h"

/* {===== encoding ===== */

void md_mqttc_buf_free(md_mqttc_buf *b)
{
    free(b->p);
    *b = (md_mqttc_buf){0};
}

static int reserve(md_mqttc_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* The fixed header of a packet with rem bytes after it, and room for them. */
static int put_header(md_mqttc_buf *b, int byte0, size_t rem)
{
    if (rem > MD_MQTTC_MAX_REMAINING)
        return -EMSGSIZE;
    if (reserve(b, 5 + rem) < 0)
        return -ENOMEM;
    uint8_t *p = b->p + b->len;
    *p++ = (uint8_t)byte0;
    do {
        uint8_t d = rem % 128;
        rem /= 128;
        *p++ = (uint8_t)(rem ? d | 0x80 : d);
    } while (rem);
    b->len = (size_t)(p - b->p);
    return 0;
}

/* Only after put_header reserved the room. */
static void put_u16(md_mqttc_buf *b, unsigned v)
{
    b->p[b->len++] = (uint8_t)(v >> 8);
    b->p[b->len++] = (uint8_t)v;
}

static void put_bytes(md_mqttc_buf *b, const void *s, size_t n)
{
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_str(md_mqttc_buf *b, const void *s, size_t n)
{
    put_u16(b, (unsigned)n);
    put_bytes(b, s, n);
}

int md_mqttc_put_connect(md_mqttc_buf *b, const md_mqttc_connect *c)
{
    size_t id = strlen(c->client_id);
    size_t wt = c->will_topic ? strlen(c->will_topic) : 0;
    size_t user = c->username ? strlen(c->username) : 0;
    size_t pass = c->password ? strlen(c->password) : 0;
    if (id > 65535 || wt > 65535 || c->will_len > 65535 || user > 65535 || pass > 65535)
        return -EMSGSIZE;
    size_t rem = 10 + 2 + id;
    int flags = c->clean ? 0x02 : 0;
    if (c->will_topic) {
        rem += 2 + wt + 2 + c->will_len;
        flags |= 0x04 | (c->will_qos & 3) << 3 | (c->will_retain ? 0x20 : 0);
    }
    if (c->username) {
        rem += 2 + user;
        flags |= 0x80;
        if (c->password) {
            rem += 2 + pass;
            flags |= 0x40;
        }
    }
    int rc = put_header(b, MD_MQTTC_CONNECT << 4, rem);
    if (rc < 0)
        return rc;
    put_str(b, "MQTT", 4);
    b->p[b->len++] = 4; /* protocol level: 3.1.1 */
    b->p[b->len++] = (uint8_t)flags;
    put_u16(b, (unsigned)c->keepalive);
    put_str(b, c->client_id, id);
    if (c->will_topic) {
        put_str(b, c->will_topic, wt);
        put_str(b, c->will_payload, c->will_len);
    }
    if (c->username) {
        put_str(b, c->username, user);
        if (c->password)
            put_str(b, c->password, pass);
    }
    return 0;
}

int md_mqttc_put_publish(md_mqttc_buf *b, const char *topic, size_t topic_len,
                         const void *payload, size_t len, int qos, bool retain, bool dup,
                         uint16_t mid)
{
    if (topic_len > 65535 || len > MD_MQTTC_MAX_REMAINING)
        return -EMSGSIZE;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + len;
    int byte0 = MD_MQTTC_PUBLISH << 4 | (dup ? 8 : 0) | (qos & 3) << 1 | (retain ? 1 : 0);
    int rc = put_header(b, byte0, rem);
    if (rc < 0)
        return rc;
    put_str(b, topic, topic_len);
    if (qos)
        put_u16(b, mid);
    put_bytes(b, payload, len);
    return 0;
}

int md_mqttc_put_ack(md_mqttc_buf *b, int type, uint16_t mid)
{
    int rc = put_header(b, type << 4 | (type == MD_MQTTC_PUBREL ? 2 : 0), 2);
    if (rc < 0)
        return rc;
    put_u16(b, mid);
    return 0;
}

int md_mqttc_put_subscribe(md_mqttc_buf *b, uint16_t mid, const char *filter, int qos)
{
    size_t n = strlen(filter);
    if (n > 65535)
        return -EMSGSIZE;
    int rc = put_header(b, MD_MQTTC_SUBSCRIBE << 4 | 2, 2 + 2 + n + 1);
    if (rc < 0)
        return rc;
    put_u16(b, mid);
    put_str(b, filter, n);
    b->p[b->len++] = (uint8_t)(qos & 3);
    return 0;
}

int md_mqttc_put_unsubscribe(md_mqttc_buf *b, uint16_t mid, const char *filter)
{
    size_t n = strlen(filter);
    if (n > 65535)
        return -EMSGSIZE;
    int rc = put_header(b, MD_MQTTC_UNSUBSCRIBE << 4 | 2, 2 + 2 + n);
    if (rc < 0)
        return rc;
    put_u16(b, mid);
    put_str(b, filter, n);
    return 0;
}

int md_mqttc_put_empty(md_mqttc_buf *b, int type)
{
    return put_header(b, type << 4, 0);
}

/* }===== */

/* {===== decoding ===== */

int md_mqttc_dec_feed(md_mqttc_dec *d, const void *data, size_t n)
{
    if (d->start) { /* drop what was decoded */
        memmove(d->in.p, d->in.p + d->start, d->in.len - d->start);
        d->in.len -= d->start;
        d->start = 0;
    }
    if (reserve(&d->in, n) < 0)
        return -ENOMEM;
    put_bytes(&d->in, data, n);
    return 0;
}

void md_mqttc_dec_reset(md_mqttc_dec *d)
{
    d->in.len = d->start = 0;
    d->error[0] = '\0';
}

void md_mqttc_dec_free(md_mqttc_dec *d)
{
    md_mqttc_buf_free(&d->in);
    d->start = 0;
}

static int bad(md_mqttc_dec *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int bad(md_mqttc_dec *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    if (!d->error[0])
        snprintf(d->error, sizeof d->error, "a malformed packet");
    return -1;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static int decode_publish(md_mqttc_dec *d, uint8_t *body, size_t rem, md_mqttc_packet *p)
{
    p->qos = p->flags >> 1 & 3;
    p->dup = p->flags & 8;
    p->retain = p->flags & 1;
    if (p->qos == 3)
        return bad(d, "a PUBLISH with QoS 3");
    size_t need = 2 + (p->qos ? 2u : 0u);
    if (rem < need)
        return bad(d, "a PUBLISH of %d bytes is too short", (int)rem);
    size_t tl = get_u16(body);
    if (tl == 0 || tl > rem - need)
        return bad(d, "a PUBLISH names a topic of %d bytes in a packet of %d", (int)tl,
                   (int)rem);
    if (p->qos) {
        p->mid = get_u16(body + 2 + tl);
        if (p->mid == 0)
            return bad(d, "a QoS %d PUBLISH with message id 0", p->qos);
    }
    p->payload = body + need + tl;
    p->len = rem - need - tl;
    if (memchr(body + 2, 0, tl))
        return bad(d, "a PUBLISH topic holds a NUL byte");
    /* the topic moves over its length field, and its NUL over its last
     * two bytes, leaving the message id and payload where they are */
    memmove(body, body + 2, tl);
    body[tl] = '\0';
    p->topic = (const char *)body;
    if (md_mqtt_check_topic(p->topic, false) < 0)
        return bad(d, "a PUBLISH topic is not valid UTF-8 or holds a wildcard");
    return 1;
}

int md_mqttc_dec_next(md_mqttc_dec *d, md_mqttc_packet *p)
{
    if (d->error[0])
        return -1;
    uint8_t *s = d->in.p + d->start;
    size_t avail = d->in.len - d->start;
    if (avail < 2)
        return 0;
    size_t rem = 0, i = 1;
    for (;; i++) {
        if (i > 4)
            return bad(d, "a remaining length longer than 4 bytes (over 268435455)");
        if (i >= avail)
            return 0;
        rem |= (size_t)(s[i] & 0x7F) << (7 * (i - 1));
        if (!(s[i] & 0x80))
            break;
    }
    size_t hdr = i + 1;
    /* the header is checked before the body arrives */
    *p = (md_mqttc_packet){.type = s[0] >> 4, .flags = s[0] & 0x0F};
    int fixed = -1; /* the exact length of packets that have one */
    int flags = 0;
    switch (p->type) {
    case MD_MQTTC_CONNACK: fixed = 2; break;
    case MD_MQTTC_PUBLISH: flags = p->flags; break;
    case MD_MQTTC_PUBACK:
    case MD_MQTTC_PUBREC:
    case MD_MQTTC_PUBCOMP:
    case MD_MQTTC_UNSUBACK: fixed = 2; break;
    case MD_MQTTC_PUBREL:
        fixed = 2;
        flags = 2;
        break;
    case MD_MQTTC_SUBACK: break;
    case MD_MQTTC_PINGRESP: fixed = 0; break;
    default:
        return bad(d, "a packet of type %d, which a broker never sends to a client",
                   p->type);
    }
    if (p->flags != flags)
        return bad(d, "reserved flags 0x%x in a packet of type %d", p->flags, p->type);
    if (fixed >= 0 && rem != (size_t)fixed)
        return bad(d, "a packet of type %d with %d bytes after its header", p->type,
                   (int)rem);
    if (avail - hdr < rem)
        return 0; /* the buffer grows only as bytes arrive */
    uint8_t *body = s + hdr;
    switch (p->type) {
    case MD_MQTTC_CONNACK:
        if (body[0] & 0xFE)
            return bad(d, "CONNACK flags 0x%x", body[0]);
        p->session_present = body[0] & 1;
        p->rc = body[1];
        break;
    case MD_MQTTC_PUBLISH:
        if (decode_publish(d, body, rem, p) < 0)
            return -1;
        break;
    case MD_MQTTC_SUBACK:
        if (rem < 3)
            return bad(d, "a SUBACK of %d bytes", (int)rem);
        p->mid = get_u16(body);
        for (size_t k = 2; k < rem; k++)
            if (body[k] > 2 && body[k] != 0x80)
                return bad(d, "a SUBACK return code %d", body[k]);
        p->granted = body[2];
        break;
    case MD_MQTTC_PINGRESP: break;
    default: p->mid = get_u16(body); break;
    }
    d->start += hdr + rem;
    return 1;
}

/* }===== */
