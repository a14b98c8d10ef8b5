/*
 * mqtt_subs.c - an MQTT client's subscription list and the dispatch of
 * incoming messages; see mqtt_subs.h. The queues and topic matching are
 * mqtt_queue.c's.
 */
#include "mqtt_subs.h"

#include <stdlib.h>
#include <string.h>

md_mqtt_sub *md_mqtt_subs_add(md_mqtt_subs *l, const char *filter, int qos)
{
    size_t flen = strlen(filter);
    md_mqtt_sub *s = calloc(1, sizeof *s + flen + 1);
    if (!s)
        return NULL;
    memcpy(s->filter, filter, flen + 1);
    s->id = ++l->last_id;
    s->qos = qos;
    s->next = l->head;
    l->head = s;
    return s;
}

md_mqtt_sub *md_mqtt_subs_find(const md_mqtt_subs *l, long long id)
{
    for (md_mqtt_sub *s = l->head; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

md_mqtt_sub *md_mqtt_subs_by_mid(const md_mqtt_subs *l, int mid)
{
    if (mid <= 0)
        return NULL;
    for (md_mqtt_sub *s = l->head; s; s = s->next)
        if (s->mid == mid)
            return s;
    return NULL;
}

bool md_mqtt_subs_shared(const md_mqtt_subs *l, const md_mqtt_sub *s)
{
    for (const md_mqtt_sub *o = l->head; o; o = o->next)
        if (o != s && strcmp(o->filter, s->filter) == 0)
            return true;
    return false;
}

void md_mqtt_subs_remove(md_mqtt_subs *l, md_mqtt_sub *s)
{
    for (md_mqtt_sub **p = &l->head; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    md_mqtt_inq_clear(&s->queue, &l->budget);
    free(s);
}

int md_mqtt_subs_dispatch(md_mqtt_subs *l, const char *topic, const void *payload,
                          size_t len, int qos, bool retain, const md_mqtt_subs_fns *fns,
                          void *ud)
{
    int matched = 0;
    for (md_mqtt_sub *s = l->head; s; s = s->next) {
        if (!md_mqtt_matches(s->filter, topic))
            continue;
        matched++;
        bool first_drop;
        md_mqtt_msg *m = md_mqtt_inq_admit(&s->queue, &l->budget, topic, payload, len,
                                           qos, retain, &first_drop);
        if (first_drop && fns->dropped)
            fns->dropped(ud, s);
        if (!m)
            continue;
        if (s->receiver)
            fns->hand(ud, s, m);
        else
            md_mqtt_inq_push(&s->queue, &l->budget, m);
    }
    return matched;
}
