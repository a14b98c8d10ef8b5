/*
 * mqtt.h - an MQTT client driven by moondog's event loop: moondog's own
 * MQTT 3.1.1 client for plain TCP (mqtt_plain.c), libmosquitto for TLS and
 * MQTT 5, or for everything with MOONDOG_MQTT_LIB=mosquitto (mqtt.c picks
 * one per client; the contracts below hold for both).
 *
 * One md_mqtt is one broker connection. It connects in the background and
 * reconnects forever with backoff; QoS 1/2 messages published while it is
 * down wait in libmosquitto's queue, which this module bounds (messages and
 * bytes) and counts. See mqtt.c for the design: loading libmosquitto on
 * first use, the fd watch, DNS off the loop thread, timers, the queue bound.
 *
 * Threads. Every function here runs on the loop thread, and so does every
 * handler. Handlers are called from inside the client's read path: they
 * may record state, queue work and wake tasks (md_task_done), and may call
 * md_mqtt_subscribe, but never md_mqtt_close and never Lua.
 *
 * Liveness. An open client holds the loop (md_loop_hold) until it is
 * closed: a connection is something a program waits on.
 *
 * Ownership. md_mqtt_new copies every string of the config. The client is
 * freed by md_mqtt_close.
 */
#ifndef MD_MQTT_H
#define MD_MQTT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "loop.h"
#include "mqtt_queue.h"

typedef struct md_mqtt md_mqtt;

enum {
    MD_MQTT_MAX_QUEUED = 60000, /* below libmosquitto's 16-bit message ids */
};

typedef struct md_mqtt_config {
    const char *host;      /* a literal address, or a name resolved off the loop */
    int port;              /* 1..65535 */
    const char *client_id; /* NULL: libmosquitto picks one (clean sessions only) */
    const char *username, *password; /* NULL: none */
    int keepalive;                   /* seconds, >= 5 */
    bool clean_session;
    int protocol; /* 3: MQTT 3.1.1, 5: MQTT 5 */

    bool tls;
    const char *ca_file, *ca_path, *cert_file, *key_file; /* NULL: unused */
    bool tls_insecure; /* skip the host name check: for tests only */

    const char *will_topic; /* NULL: no last will */
    const void *will_payload;
    int will_len, will_qos;
    bool will_retain;

    int max_queued;          /* QoS 1/2 messages not yet acknowledged, 1..MAX_QUEUED */
    size_t max_queued_bytes; /* their topics and payloads, in bytes */
    int max_inflight;        /* sent but not yet acknowledged, 1..65535 */
    int connect_timeout_ms;  /* resolve + connect + TLS + CONNACK */
    int backoff_min_ms, backoff_max_ms;
    const char *name; /* for log lines; NULL: "host:port" */
} md_mqtt_config;

typedef enum {
    MD_MQTT_CONNECTED,     /* the broker accepted the connection (CONNACK 0) */
    MD_MQTT_DISCONNECTED,  /* an established connection ended */
    MD_MQTT_ATTEMPT_FAILED /* a connection attempt failed; the next one is scheduled */
} md_mqtt_event;

typedef struct md_mqtt_handlers {
    /* code: a stable token ("refused", "not_authorized", "tls", ...), message:
     * a sentence for a person; both NULL for MD_MQTT_CONNECTED, where flag is
     * session_present. */
    void (*state)(void *ud, md_mqtt_event ev, bool flag, const char *code,
                  const char *message);
    /* A tagged QoS 1/2 message was acknowledged (PUBACK / PUBCOMP). */
    void (*delivered)(void *ud, void *tag);
    /* The outgoing queue became empty. */
    void (*drained)(void *ud);
    void (*message)(void *ud, const char *topic, const void *payload, int len, int qos,
                    bool retain);
    /* granted: the QoS the broker granted, or 128 when it refused. */
    void (*subscribed)(void *ud, int mid, int granted);
} md_mqtt_handlers;

/* Return codes of md_mqtt_publish / subscribe / unsubscribe (negative). */
/* Aliases of err.h's codes (md_strerror, md_err_token). */
enum {
    MD_MQTT_ENOTCONN = MD_ENOTCONN,   /* QoS 0, subscribe or unsubscribe while not
                                         connected */
    MD_MQTT_EFULL = MD_EFULL,         /* the outgoing queue is at its bound: dropped */
    MD_MQTT_ETOPIC = MD_ETOPIC,       /* not a valid topic (or filter) */
    MD_MQTT_ETOOLARGE = MD_ETOOLARGE, /* payload over MQTT's 268435455 bytes */
    MD_MQTT_ENOMEM = ENOMEM,
    MD_MQTT_ELIB = MD_ELIB, /* libmosquitto failed in another way */
};

typedef struct md_mqtt_stats {
    const char *state; /* "connecting", "connected", "waiting" (backoff), "closed" */
    bool connected;
    uint64_t connects;    /* CONNACKs accepted */
    uint64_t attempts;    /* connection attempts started */
    uint64_t disconnects; /* established connections lost */
    uint64_t published;   /* messages accepted by md_mqtt_publish */
    uint64_t delivered;   /* QoS 1/2 messages acknowledged by the broker */
    uint64_t dropped;     /* refused because the queue was full */
    uint64_t not_sent;    /* QoS 0 refused while not connected */
    uint64_t received;
    int queued; /* QoS 1/2 messages not yet acknowledged */
    size_t queued_bytes;
    const char *last_code; /* of the last failure, or NULL */
    const char *last_error;
} md_mqtt_stats;

/*
 * Load libmosquitto (first call only). Returns 0, or -1 with a sentence in
 * err when the library is missing.
 */
int md_mqtt_library(char *err, size_t errlen);

/*
 * Create a client and start connecting. Returns NULL with a sentence in err
 * (size errlen) and a token in *code when the configuration cannot work
 * (library missing, TLS files unreadable, ...).
 */
md_mqtt *md_mqtt_new(md_loop *loop, const md_mqtt_config *cfg, const md_mqtt_handlers *h,
                     void *ud, char *err, size_t errlen, const char **code);

/*
 * Publish. QoS 1/2 messages are queued while disconnected and delivered
 * after the reconnect; tag (may be NULL) is handed to h->delivered on
 * acknowledgement. *mid receives libmosquitto's message id.
 * Returns 0, -MD_MQTT_ENOTCONN (QoS 0 while down), -MD_MQTT_EFULL,
 * -MD_MQTT_ETOPIC, -MD_MQTT_ETOOLARGE, -MD_MQTT_ENOMEM or -MD_MQTT_ELIB.
 */
int md_mqtt_publish(md_mqtt *m, const char *topic, const void *payload, size_t len,
                    int qos, bool retain, void *tag, int *mid);
/* Forget a tag whose waiter went away (h->delivered is never called with it). */
void md_mqtt_forget(md_mqtt *m, void *tag);

/* Send SUBSCRIBE / UNSUBSCRIBE now. Returns 0 with *mid set, -MD_MQTT_ENOTCONN,
 * -MD_MQTT_ETOPIC, -MD_MQTT_ENOMEM or -MD_MQTT_ELIB. */
int md_mqtt_subscribe(md_mqtt *m, const char *filter, int qos, int *mid);
int md_mqtt_unsubscribe(md_mqtt *m, const char *filter);

bool md_mqtt_connected(const md_mqtt *m);
void md_mqtt_get_stats(const md_mqtt *m, md_mqtt_stats *out);

/* md_mqtt_matches and md_mqtt_check_topic: see mqtt_queue.h. */

/*
 * Close and free the client; no handler runs after this. graceful: send
 * DISCONNECT first, so that the broker does not publish the last will;
 * otherwise the connection just ends and the broker does publish it.
 * engine_closing: the loop no longer runs (kept for callers: a DNS lookup
 * in flight is cancelled without waiting either way, see conn.h).
 */
void md_mqtt_close(md_mqtt *m, bool graceful, bool engine_closing);

#endif
