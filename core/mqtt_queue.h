/*
 * mqtt_queue.h - the MQTT client's bookkeeping that needs neither Lua nor
 * libmosquitto, so that tests/c/test_mqtt_queue.c can drive it alone:
 *
 *  - topic names and filters: validity and matching (MQTT 3.1.1 section
 *    4.7, the rules libmosquitto's mosquitto_topic_matches_sub and
 *    mosquitto_{pub,sub}_topic_check apply);
 *  - md_mqtt_outq: the outgoing QoS 1/2 messages libmosquitto holds until
 *    the broker acknowledges them, counted in publish order with a bound in
 *    messages, bytes and message ids (mqtt.c);
 *  - md_mqtt_inq: the incoming messages of one subscription that its
 *    handler has not taken yet, bounded per subscription in messages and,
 *    with an md_mqtt_budget shared by all subscriptions of a client, in
 *    bytes; what does not fit is dropped and counted (mqtt_lua.c);
 *  - md_mqtt_events: connection events for next_event, oldest dropped
 *    past a bound (mqtt_lua.c).
 *
 * The queues are plain structs embedded in their owner (zero-initialised
 * is empty), not opaque handles: they are parts of one client, never
 * shared. Threads: the loop thread only, like the client.
 */
#ifndef MD_MQTT_QUEUE_H
#define MD_MQTT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* {===== topics ===== */

/* Whether topic (a topic name, no wildcards) matches filter. Both must be
 * valid (md_mqtt_check_topic); an invalid one matches nothing. A filter
 * starting with a wildcard never matches a topic starting with '$'. */
bool md_mqtt_matches(const char *filter, const char *topic);

/* 0 when topic is a valid topic name (is_filter false) or filter: 1 to
 * 65535 bytes of UTF-8 without U+0000, surrogates, non-characters or
 * control characters; a name has no '+' or '#'; in a filter '+' is a whole
 * level and '#' a whole last level. Else -MD_MQTT_ETOPIC (mqtt.h). */
int md_mqtt_check_topic(const char *topic, bool is_filter);

/* }===== */

/* {===== outgoing: QoS 1/2 messages awaiting their acknowledgement ===== */

#define MD_MQTT_MID_SPAN 65000 /* ids handed out since the oldest queued, at most */

typedef struct md_mqtt_track {
    uint64_t seq; /* md_mqtt_outq_issue() when the message got its id */
    void *tag;    /* the caller's, returned on acknowledgement */
    uint32_t bytes;
    uint16_t mid;
    bool live; /* false: acknowledged, waiting to leave the ring's head */
} md_mqtt_track;

typedef struct md_mqtt_outq {
    int max_queued;
    size_t max_queued_bytes;
    /* oldest first: ring[(head + i) & (cap - 1)] for i < len */
    md_mqtt_track *ring;
    size_t cap, head, len;
    int queued; /* live entries */
    size_t queued_bytes;
    uint64_t ids_issued; /* message ids handed out (publish, subscribe, ...) */
} md_mqtt_outq;

/* Count one message id handed out (any packet); returns its sequence number. */
uint64_t md_mqtt_outq_issue(md_mqtt_outq *q);
/* Whether a message of bytes fits: below max_queued and max_queued_bytes,
 * and fewer than MD_MQTT_MID_SPAN ids handed out since the oldest queued
 * message (libmosquitto's 16-bit ids would wrap onto it). */
bool md_mqtt_outq_has_room(const md_mqtt_outq *q, size_t bytes);
/* Record a queued message. 0, or -ENOMEM. */
int md_mqtt_outq_add(md_mqtt_outq *q, int mid, size_t bytes, void *tag, uint64_t seq);
/* The broker acknowledged mid: returns its tag (NULL if none) and sets
 * *found to whether it was queued. */
void *md_mqtt_outq_done(md_mqtt_outq *q, int mid, bool *found);
/* The caller of tag went away: its acknowledgement returns NULL. */
void md_mqtt_outq_forget(md_mqtt_outq *q, void *tag);
void md_mqtt_outq_free(md_mqtt_outq *q);

/* }===== */

/* {===== incoming: messages waiting for a subscription's handler ===== */

typedef struct md_mqtt_msg {
    struct md_mqtt_msg *next;
    char *topic; /* points into data, after the payload */
    size_t len;  /* of the payload */
    int qos;
    bool retain;
    char data[]; /* payload, then topic with its NUL */
} md_mqtt_msg;

/* Shared by the subscriptions of one client. */
typedef struct md_mqtt_budget {
    int max_count;    /* per subscription */
    size_t max_bytes; /* over all subscriptions */
    size_t bytes;     /* queued now */
    uint64_t dropped; /* over all subscriptions, ever */
} md_mqtt_budget;

typedef struct md_mqtt_inq {
    md_mqtt_msg *head, *tail;
    int count;
    uint64_t dropped; /* since the queue last ran empty (for the log) */
} md_mqtt_inq;

/* Bytes a message counts against the budget. */
size_t md_mqtt_msg_size(const md_mqtt_msg *m);

/*
 * A copy of an incoming message for q, or NULL when it does not fit: q
 * already holds max_count messages, or it holds one or more and the
 * message would take the budget past max_bytes (one message per
 * subscription always fits, however large). A message that does not fit,
 * or finds no memory, is dropped and counted in q and b; *first_drop is
 * set when it is the first since q ran empty (log it once). The copy is
 * not queued yet: md_mqtt_inq_push it, or hand it to a waiting receiver.
 */
md_mqtt_msg *md_mqtt_inq_admit(md_mqtt_inq *q, md_mqtt_budget *b, const char *topic,
                               const void *payload, size_t len, int qos, bool retain,
                               bool *first_drop);
/* Queue m (from md_mqtt_inq_admit for q) behind the others. */
void md_mqtt_inq_push(md_mqtt_inq *q, md_mqtt_budget *b, md_mqtt_msg *m);
/* The oldest message, now the caller's (free()), or NULL. *dropped gets the
 * number dropped since q last ran empty when this pop empties it (log it:
 * the handler caught up), else 0. */
md_mqtt_msg *md_mqtt_inq_pop(md_mqtt_inq *q, md_mqtt_budget *b, uint64_t *dropped);
/* Free every queued message. */
void md_mqtt_inq_clear(md_mqtt_inq *q, md_mqtt_budget *b);

/* }===== */

/* {===== connection events waiting for next_event ===== */

typedef struct md_mqtt_event_rec {
    struct md_mqtt_event_rec *next;
    int ev; /* md_mqtt_event (mqtt.h) */
    bool flag;
    char code[32], message[300];
} md_mqtt_event_rec;

/* A state history: bounded, and the oldest entries matter least, so past
 * max the oldest is dropped. */
typedef struct md_mqtt_events {
    md_mqtt_event_rec *head, *tail;
    int count, max;
} md_mqtt_events;

/* A new event (code and message NULL: empty), or NULL when out of memory. */
md_mqtt_event_rec *md_mqtt_event_new(int ev, bool flag, const char *code,
                                     const char *message);
/* Append e (taken over); drops the oldest past q->max. */
void md_mqtt_events_push(md_mqtt_events *q, md_mqtt_event_rec *e);
/* The oldest event, now the caller's (free()), or NULL. */
md_mqtt_event_rec *md_mqtt_events_pop(md_mqtt_events *q);
void md_mqtt_events_clear(md_mqtt_events *q);

/* }===== */

#endif
