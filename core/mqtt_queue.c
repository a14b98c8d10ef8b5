/*
 * mqtt_queue.c - topic rules and the two message queues of the MQTT client;
 * see mqtt_queue.h. No Lua and no libmosquitto here: the topic rules are
 * moondog's own code, checked against libmosquitto's in
 * tests/c/test_mqtt_queue.c, so matching works before the library is loaded
 * (it is opened on first use, see mqtt.c).
 *
 * The outgoing ring is a power-of-two array in publish order: the broker
 * acknowledges QoS 1 messages in order, so an acknowledgement is normally
 * found at the head and the head advances over acknowledged entries; an
 * entry acknowledged out of order is only marked, and leaves when it
 * reaches the head. Ownership: each queue owns its storage; a popped or
 * admitted md_mqtt_msg is its caller's until pushed.
 */
#include "mqtt_queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

/* {===== topics ===== */

enum { TOPIC_MAX = 65535 };

/* The next code point of a NUL-terminated string, or -1 when the bytes at
 * s are not a well-formed UTF-8 sequence; *n gets its length. */
static long next_code_point(const unsigned char *s, int *n)
{
    unsigned char c = s[0];
    long cp;
    int len;
    if (c < 0x80) {
        *n = 1;
        return c;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07;
    } else {
        return -1;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
            return -1;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return -1; /* overlong or out of range */
    *n = len;
    return cp;
}

/* The code points MQTT forbids (U+0000 cannot occur in a C string) or that
 * libmosquitto refuses: surrogates, non-characters, control characters. */
static bool allowed(long cp)
{
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return false;
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFF) == 0xFFFE ||
        (cp & 0xFFFF) == 0xFFFF)
        return false;
    return !(cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F));
}

int md_mqtt_check_topic(const char *topic, bool is_filter)
{
    if (!topic || !topic[0])
        return -MD_MQTT_ETOPIC;
    const unsigned char *s = (const unsigned char *)topic;
    size_t len = 0;
    while (s[len]) {
        int n;
        long cp = next_code_point(s + len, &n);
        if (cp < 0 || !allowed(cp))
            return -MD_MQTT_ETOPIC;
        if (cp == '+' || cp == '#') {
            if (!is_filter)
                return -MD_MQTT_ETOPIC;
            bool starts = len == 0 || s[len - 1] == '/';
            bool ends = s[len + 1] == '\0' || (cp == '+' && s[len + 1] == '/');
            if (!starts || !ends)
                return -MD_MQTT_ETOPIC;
        }
        len += (size_t)n;
        if (len > TOPIC_MAX)
            return -MD_MQTT_ETOPIC;
    }
    return 0;
}

/* Length of the level starting at s (up to '/' or the end). */
static size_t level_len(const char *s)
{
    return strcspn(s, "/");
}

bool md_mqtt_matches(const char *filter, const char *topic)
{
    if (md_mqtt_check_topic(filter, true) < 0 || md_mqtt_check_topic(topic, false) < 0)
        return false;
    /* $SYS and friends: only a filter that names them explicitly */
    if ((filter[0] == '$') != (topic[0] == '$'))
        return false;
    const char *f = filter, *t = topic;
    for (;;) {
        size_t fl = level_len(f), tl = level_len(t);
        if (fl == 1 && f[0] == '#')
            return true; /* the rest, however many levels */
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        f += fl, t += tl;
        if (!*f && !*t)
            return true;
        if (!*t) /* "a/#" also matches "a" */
            return strcmp(f, "/#") == 0;
        if (!*f)
            return false;
        f++, t++; /* both at '/' */
    }
}

/* }===== */

/* {===== outgoing ===== */

static md_mqtt_track *slot(const md_mqtt_outq *q, size_t i)
{
    return &q->ring[(q->head + i) & (q->cap - 1)];
}

uint64_t md_mqtt_outq_issue(md_mqtt_outq *q)
{
    return q->ids_issued++;
}

bool md_mqtt_outq_has_room(const md_mqtt_outq *q, size_t bytes)
{
    if (q->queued + 1 > q->max_queued || q->queued_bytes + bytes > q->max_queued_bytes)
        return false;
    return q->len == 0 || q->ids_issued - slot(q, 0)->seq < MD_MQTT_MID_SPAN;
}

int md_mqtt_outq_add(md_mqtt_outq *q, int mid, size_t bytes, void *tag, uint64_t seq)
{
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        md_mqtt_track *ring = malloc(cap * sizeof *ring);
        if (!ring)
            return -ENOMEM;
        for (size_t i = 0; i < q->len; i++)
            ring[i] = *slot(q, i);
        free(q->ring);
        q->ring = ring;
        q->cap = cap;
        q->head = 0;
    }
    uint32_t b = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
    *slot(q, q->len++) = (md_mqtt_track){
        .seq = seq, .tag = tag, .bytes = b, .mid = (uint16_t)mid, .live = true};
    q->queued++;
    q->queued_bytes += b;
    return 0;
}

void *md_mqtt_outq_done(md_mqtt_outq *q, int mid, bool *found)
{
    *found = false;
    void *tag = NULL;
    for (size_t i = 0; i < q->len; i++) {
        md_mqtt_track *t = slot(q, i);
        if (t->live && t->mid == (uint16_t)mid) {
            t->live = false;
            tag = t->tag;
            q->queued--;
            q->queued_bytes -= t->bytes;
            *found = true;
            break;
        }
    }
    while (q->len && !slot(q, 0)->live) {
        q->head = (q->head + 1) & (q->cap - 1);
        q->len--;
    }
    return tag;
}

void md_mqtt_outq_forget(md_mqtt_outq *q, void *tag)
{
    for (size_t i = 0; i < q->len; i++)
        if (slot(q, i)->tag == tag)
            slot(q, i)->tag = NULL;
}

void md_mqtt_outq_free(md_mqtt_outq *q)
{
    free(q->ring);
    q->ring = NULL;
    q->cap = q->head = q->len = 0;
    q->queued = 0;
    q->queued_bytes = 0;
}

/* }===== */

/* {===== incoming ===== */

size_t md_mqtt_msg_size(const md_mqtt_msg *m)
{
    return m->len + strlen(m->topic) + 1;
}

md_mqtt_msg *md_mqtt_inq_admit(md_mqtt_inq *q, md_mqtt_budget *b, const char *topic,
                               const void *payload, size_t len, int qos, bool retain,
                               bool *first_drop)
{
    size_t tlen = strlen(topic);
    size_t size = len + tlen + 1;
    *first_drop = false;
    md_mqtt_msg *m = NULL;
    /* Bounded in count and in bytes (400 messages of 1 MB once took 399 MB,
     * issue 17); one message per subscription always fits. */
    if (q->count < b->max_count && (q->count == 0 || b->bytes + size <= b->max_bytes))
        m = malloc(sizeof *m + size);
    if (!m) {
        b->dropped++;
        *first_drop = q->dropped++ == 0;
        return NULL;
    }
    m->next = NULL;
    m->len = len;
    m->qos = qos;
    m->retain = retain;
    if (len > 0)
        memcpy(m->data, payload, len);
    m->topic = m->data + len;
    memcpy(m->topic, topic, tlen + 1);
    return m;
}

void md_mqtt_inq_push(md_mqtt_inq *q, md_mqtt_budget *b, md_mqtt_msg *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->count++;
    b->bytes += md_mqtt_msg_size(m);
}

md_mqtt_msg *md_mqtt_inq_pop(md_mqtt_inq *q, md_mqtt_budget *b, uint64_t *dropped)
{
    *dropped = 0;
    md_mqtt_msg *m = q->head;
    if (!m)
        return NULL;
    q->head = m->next;
    if (!q->head)
        q->tail = NULL;
    q->count--;
    b->bytes -= md_mqtt_msg_size(m);
    m->next = NULL;
    if (q->count == 0) {
        *dropped = q->dropped;
        q->dropped = 0;
    }
    return m;
}

void md_mqtt_inq_clear(md_mqtt_inq *q, md_mqtt_budget *b)
{
    while (q->head) {
        md_mqtt_msg *m = q->head;
        q->head = m->next;
        b->bytes -= md_mqtt_msg_size(m);
        free(m);
    }
    q->tail = NULL;
    q->count = 0;
}

/* }===== */

/* {===== events ===== */

md_mqtt_event_rec *md_mqtt_event_new(int ev, bool flag, const char *code,
                                     const char *message)
{
    md_mqtt_event_rec *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->ev = ev;
    e->flag = flag;
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    snprintf(e->message, sizeof e->message, "%s", message ? message : "");
    return e;
}

void md_mqtt_events_push(md_mqtt_events *q, md_mqtt_event_rec *e)
{
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    if (++q->count > q->max)
        free(md_mqtt_events_pop(q));
}

md_mqtt_event_rec *md_mqtt_events_pop(md_mqtt_events *q)
{
    md_mqtt_event_rec *e = q->head;
    if (!e)
        return NULL;
    q->head = e->next;
    if (!q->head)
        q->tail = NULL;
    q->count--;
    e->next = NULL;
    return e;
}

void md_mqtt_events_clear(md_mqtt_events *q)
{
    md_mqtt_event_rec *e;
    while ((e = md_mqtt_events_pop(q)))
        free(e);
}

/* }===== */
