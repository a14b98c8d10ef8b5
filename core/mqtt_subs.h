/*
 * mqtt_subs.h - the subscriptions of one MQTT client, without Lua or
 * libmosquitto: the list and its ids, finding one by id or by the message
 * id of its SUBSCRIBE, and dispatching an incoming message into the queue
 * (mqtt_queue.h) of every subscription whose filter matches, or straight
 * to the call that waits on it. mqtt_lua.c keeps only its waiting calls
 * (receiver, suback: opaque here); tests/c/test_mqtt_subs.c drives the
 * rest alone. Threads: the loop thread only, like the client.
 */
#ifndef MD_MQTT_SUBS_H
#define MD_MQTT_SUBS_H

#include <stdbool.h>
#include <stddef.h>

#include "mqtt_queue.h"

typedef struct md_mqtt_sub {
    struct md_mqtt_sub *next;
    int id, qos;
    int mid;           /* of its SUBSCRIBE in flight, 0: none */
    md_mqtt_inq queue; /* messages its receiver has not taken yet */
    void *receiver;    /* the owner's call waiting for a message, or NULL */
    void *suback;      /* the owner's call waiting for the SUBACK, or NULL */
    char filter[];
} md_mqtt_sub;

/* Zero-initialised is empty; set budget.max_count and max_bytes. */
typedef struct md_mqtt_subs {
    md_mqtt_sub *head; /* newest first */
    int last_id;
    md_mqtt_budget budget; /* queued messages, all subscriptions */
} md_mqtt_subs;

/* A new subscription to filter (valid: md_mqtt_check_topic) with the next
 * id (1, 2, ...), first in the list; NULL when out of memory. */
md_mqtt_sub *md_mqtt_subs_add(md_mqtt_subs *l, const char *filter, int qos);
/* The subscription with id, or NULL. */
md_mqtt_sub *md_mqtt_subs_find(const md_mqtt_subs *l, long long id);
/* The subscription whose SUBSCRIBE has message id mid (> 0), or NULL. */
md_mqtt_sub *md_mqtt_subs_by_mid(const md_mqtt_subs *l, int mid);
/* Whether another subscription has the same filter (then the broker's
 * subscription stays when s goes). */
bool md_mqtt_subs_shared(const md_mqtt_subs *l, const md_mqtt_sub *s);
/* Unlink s and free it with its queued messages. Its receiver and suback
 * are the owner's to end first. */
void md_mqtt_subs_remove(md_mqtt_subs *l, md_mqtt_sub *s);

/* What dispatch tells the owner. hand: a receiver waits on s; m is its
 * (the owner clears s->receiver). dropped: s dropped a message that did
 * not fit, the first since its queue ran empty (log it once). */
typedef struct md_mqtt_subs_fns {
    void (*hand)(void *ud, md_mqtt_sub *s, md_mqtt_msg *m);
    void (*dropped)(void *ud, md_mqtt_sub *s);
} md_mqtt_subs_fns;

/* An incoming message: a copy for every subscription whose filter matches
 * topic, handed to its receiver or queued within the budget. Returns the
 * number of subscriptions that matched. */
int md_mqtt_subs_dispatch(md_mqtt_subs *l, const char *topic, const void *payload,
                          size_t len, int qos, bool retain, const md_mqtt_subs_fns *fns,
                          void *ud);

#endif
