/*
 * mqtt_plain.h - moondog's own MQTT 3.1.1 client for plain TCP, the one
 * mqtt.c uses unless a connection needs TLS or MQTT 5 (see mqtt_plain.c for
 * why it exists). Its functions are mqtt.h's, one for one, with the same
 * contracts: mqtt.c calls them for a client it created here. Also the
 * network-change watch both clients share (defined in mqtt.c).
 *
 * Threads: the loop thread only. Ownership: as in mqtt.h.
 */
#ifndef MD_MQTT_PLAIN_H
#define MD_MQTT_PLAIN_H

#include "mqtt.h"

typedef struct md_mqttp md_mqttp;

md_mqttp *md_mqttp_new(md_loop *loop, const md_mqtt_config *cfg,
                       const md_mqtt_handlers *h, void *ud, char *err, size_t errlen,
                       const char **code);
int md_mqttp_publish(md_mqttp *m, const char *topic, const void *payload, size_t len,
                     int qos, bool retain, void *tag, int *mid);
void md_mqttp_forget(md_mqttp *m, void *tag);
int md_mqttp_subscribe(md_mqttp *m, const char *filter, int qos, int *mid);
int md_mqttp_unsubscribe(md_mqttp *m, const char *filter);
bool md_mqttp_connected(const md_mqttp *m);
void md_mqttp_get_stats(const md_mqttp *m, md_mqtt_stats *out);
void md_mqttp_close(md_mqttp *m, bool graceful);

/* Network changes (rtnetlink: a link, an address or a route added). Open
 * a watch calling fn when the socket is readable: returns its fd, or -1
 * when there is no netlink (then the backoff alone applies). */
int md_mqtt_net_open(md_loop *loop, md_watch_fn fn, void *ud, md_watch **w);
/* Read what is pending on fd; whether any of it is a fresh network event. */
bool md_mqtt_net_fresh(int fd);

#endif
