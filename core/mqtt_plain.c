/*
 * mqtt_plain.c - moondog's own MQTT 3.1.1 client for plain TCP, behind
 * mqtt.h (mqtt.c picks it for every connection without TLS and with
 * protocol 3; MOONDOG_MQTT_LIB=mosquitto picks libmosquitto instead).
 *
 * Why our own code: the brief allows it only where no library fits. The
 * Growatt proxy's RSS goal is under 5 MB (issue 13); libmosquitto has
 * libssl and libcrypto as fixed dependencies (DT_NEEDED, bound at load
 * with -z now on Debian), 2.2 MB of RSS from dlopen alone even when TLS is
 * never used, and the proxy measured 5.5-6.3 MB with MQTT on. No Debian
 * MQTT library avoids that in one package (libpaho-mqtt's non-SSL
 * variants run their own threads and would be a second fixed dependency).
 * TLS and MQTT 5 stay with libmosquitto, loaded on first use (mqtt.c):
 * writing TLS or MQTT 5 ourselves would buy nothing there, since TLS
 * needs OpenSSL anyway.
 *
 * Connection. conn.c resolves the host off the loop and connects
 * (TCP_NODELAY); the client sends CONNECT and waits for CONNACK under
 * connect_timeout_ms (resolve + connect + CONNACK). A lost connection or a
 * failed attempt schedules the next one with mqtt.c's backoff rules:
 * doubling from backoff_min to backoff_max with jitter, at once after a
 * connection that lasted 10 s, and at once on a network event during the
 * backoff.
 *
 * Writes. Packets go to a per-connection output buffer; a timer due at
 * once sends it with one send() when the loop comes round, so the
 * publishes of one loop turn leave in one segment and a lone publish
 * costs one send(). When the socket is full the rest waits for a write
 * watch. No threads, no socketpair.
 *
 * Reads. mqttcodec.c's streaming decoder; a packet a broker must not send
 * drops the connection with code `protocol` and a log line saying what
 * was wrong.
 *
 * Sessions. QoS 1/2 messages are kept (topic and payload) from publish to
 * their PUBACK / PUBCOMP, at most max_inflight of them sent at a time, in
 * publish order, bounded like libmosquitto's queue in mqtt.c (md_mqtt_outq:
 * messages, bytes, message ids). After a reconnect the unacknowledged ones
 * are sent again with DUP (or their PUBREL, once the broker had PUBREC'd
 * them). Incoming QoS 2 messages are handed over on PUBLISH and their ids
 * kept until PUBREL, so a resent PUBLISH is not handed over twice.
 *
 * Keepalive. A PINGREQ when nothing was sent or received for keepalive s;
 * no PINGRESP within half of it (1.5 x keepalive of silence in all) ends
 * the connection.
 *
 * Threads: the loop thread only. Ownership: the client owns its strings,
 * messages, buffers and timers; an attempt in flight belongs to conn.c
 * until cancelled.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mqtt_plain.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "mqttcodec.h"

#define STABLE_MS 10000    /* a connection this long resets the backoff */
#define MAX_OUT_KEEP 65536 /* an emptied output buffer larger than this is freed */

typedef enum { ST_CONNECTING, ST_CONNECTED, ST_WAITING, ST_CLOSED } conn_state;
typedef enum { O_NEW, O_SENT, O_REL } out_state;

/* An outgoing QoS 1/2 message until the broker acknowledges it. */
typedef struct omsg {
    struct omsg *next;
    uint16_t mid;
    uint8_t qos, st;
    bool retain, was_sent; /* was_sent: on an earlier connection (DUP) */
    size_t tlen, len;
    char data[]; /* topic, NUL, payload */
} omsg;

struct md_mqttp {
    md_loop *loop;
    md_mqtt_handlers h;
    void *ud;

    char *host, *name, *client_id, *username, *password, *will_topic;
    void *will_payload;
    size_t will_len;
    int will_qos;
    bool will_retain, clean_session;
    int port, keepalive, max_inflight, connect_timeout_ms;
    int backoff_min_ms, backoff_max_ms, backoff_ms;

    conn_state state;
    bool up;
    int fd;
    md_watch *watch;
    bool want_write; /* the watch includes WRITE */
    md_conn *attempt;
    md_timer *connect_timer, *backoff_timer, *ka_timer, *flush_timer;
    int net_fd;
    md_watch *net_watch;
    int64_t up_since, last_in, last_out, ping_sent; /* ping_sent 0: none */
    unsigned seed;

    md_mqttc_buf out;
    size_t out_off; /* bytes of out already sent */
    md_mqttc_dec dec;

    omsg *head, *tail, *unsent; /* unsent: the first not sent on this connection */
    int inflight;
    uint16_t last_mid;
    uint16_t *rx2; /* incoming QoS 2 ids PUBREC'd, waiting for PUBREL */
    int rx2_n, rx2_cap;

    md_mqtt_outq q;
    uint64_t drop_burst;
    uint64_t connects, attempts, disconnects, published, delivered, dropped, not_sent,
        received;
    char last_error[300];
    const char *last_code;
};

static void conn_ended(md_mqttp *m, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void begin_attempt(md_mqttp *m);
static void arm_keepalive(md_mqttp *m);
static void note_drain(md_mqttp *m);

static void cancel_timer(md_mqttp *m, md_timer **t)
{
    if (*t) {
        md_loop_timer_cancel(m->loop, *t);
        *t = NULL;
    }
}

static md_timer *timer(md_mqttp *m, int64_t due, md_timer_fn fn)
{
    md_timer *t = md_loop_timer(m->loop, due, fn, m);
    if (t)
        md_loop_timer_keepalive(m->loop, t, false);
    return t;
}

static const char *const packet_names[] = {
    "reserved", "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
    "PUBREL",   "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
    "PINGREQ",  "PINGRESP", "DISCONNECT", "reserved"};

/* {===== output ===== */

static void set_write_watch(md_mqttp *m, bool on)
{
    if (m->watch && on != m->want_write) {
        md_loop_watch_set(m->loop, m->watch, MD_LOOP_READ | (on ? MD_LOOP_WRITE : 0));
        m->want_write = on;
    }
}

/* One send() of what is buffered; the rest waits for the write watch. */
static void flush(md_mqttp *m)
{
    if (m->fd < 0 || m->out_off == m->out.len)
        return;
    ssize_t n = send(m->fd, m->out.p + m->out_off, m->out.len - m->out_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        conn_ended(m, "connection_lost", "cannot send to the broker: %s",
                   strerror(errno));
        return;
    }
    if (n > 0) {
        m->out_off += (size_t)n;
        m->last_out = md_loop_now(m->loop);
    }
    if (m->out_off == m->out.len) {
        m->out.len = m->out_off = 0;
        note_drain(m);
        if (m->out.cap > MAX_OUT_KEEP)
            md_mqttc_buf_free(&m->out);
    } else if (m->out_off > m->out.len / 2) { /* a broker slower than us: compact */
        memmove(m->out.p, m->out.p + m->out_off, m->out.len - m->out_off);
        m->out.len -= m->out_off;
        m->out_off = 0;
    }
    set_write_watch(m, m->out_off != m->out.len);
}

static void on_flush(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqttp *m = ud;
    m->flush_timer = NULL;
    flush(m);
}

/* Buffered bytes leave when the loop comes round (one send per turn). */
static void want_flush(md_mqttp *m)
{
    if (m->fd >= 0 && !m->flush_timer && !m->want_write && m->out.len > m->out_off)
        m->flush_timer = timer(m, md_loop_now(m->loop), on_flush);
}

static void out_of_memory(md_mqttp *m)
{
    conn_ended(m, "nomem", "out of memory while writing a packet");
}

/* }===== */

/* {===== outgoing messages ===== */

static void note_drop(md_mqttp *m, size_t bytes)
{
    m->dropped++;
    if (m->drop_burst++ == 0)
        md_log_warn("mqtt %s: the outgoing queue is full: a QoS 1/2 message of %zu bytes "
                    "does not fit beside %d messages, %zu bytes (limits %d messages, %zu "
                    "bytes); such messages are refused until it drains",
                    m->name, bytes, m->q.queued, m->q.queued_bytes, m->q.max_queued,
                    m->q.max_queued_bytes);
}

static void note_drain(md_mqttp *m)
{
    if (m->drop_burst && m->q.queued <= m->q.max_queued / 2 && m->out_off == m->out.len) {
        md_log_warn("mqtt %s: the outgoing queue has room again; %llu message(s) were "
                    "refused while it was full",
                    m->name, (unsigned long long)m->drop_burst);
        m->drop_burst = 0;
    }
}

static int send_msg(md_mqttp *m, omsg *o)
{
    int rc = o->st == O_REL
                 ? md_mqttc_put_ack(&m->out, MD_MQTTC_PUBREL, o->mid)
                 : md_mqttc_put_publish(&m->out, o->data, o->tlen, o->data + o->tlen + 1,
                                        o->len, o->qos, o->retain, o->was_sent, o->mid);
    if (rc < 0)
        return rc;
    if (o->st == O_NEW)
        o->st = O_SENT;
    o->was_sent = true;
    m->inflight++;
    return 0;
}

/* Send queued messages while the in-flight window has room. */
static void pump(md_mqttp *m)
{
    if (!m->up)
        return;
    while (m->unsent && m->inflight < m->max_inflight) {
        if (send_msg(m, m->unsent) < 0) {
            out_of_memory(m);
            return;
        }
        m->unsent = m->unsent->next;
    }
    want_flush(m);
}

/* The message mid in state st, unlinked; NULL when there is none. */
static omsg *take(md_mqttp *m, uint16_t mid, out_state st)
{
    omsg *prev = NULL;
    for (omsg *o = m->head; o && o != m->unsent; prev = o, o = o->next) {
        if (o->mid != mid || o->st != st)
            continue;
        if (prev)
            prev->next = o->next;
        else
            m->head = o->next;
        if (m->tail == o)
            m->tail = prev;
        m->inflight--;
        return o;
    }
    return NULL;
}

static void acknowledged(md_mqttp *m, omsg *o)
{
    bool found;
    void *tag = md_mqtt_outq_done(&m->q, o->mid, &found);
    free(o);
    if (found) {
        m->delivered++;
        note_drain(m);
        if (tag && m->h.delivered)
            m->h.delivered(m->ud, tag);
        if (m->q.queued == 0 && m->h.drained)
            m->h.drained(m->ud);
    }
    pump(m);
}

/* }===== */

/* {===== incoming packets ===== */

static int rx2_find(const md_mqttp *m, uint16_t mid)
{
    for (int i = 0; i < m->rx2_n; i++)
        if (m->rx2[i] == mid)
            return i;
    return -1;
}

static int rx2_add(md_mqttp *m, uint16_t mid)
{
    if (m->rx2_n == m->rx2_cap) {
        int cap = m->rx2_cap ? m->rx2_cap * 2 : 8;
        uint16_t *p = realloc(m->rx2, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        m->rx2 = p;
        m->rx2_cap = cap;
    }
    m->rx2[m->rx2_n++] = mid;
    return 0;
}

static const char *connack_text(int rc)
{
    switch (rc) {
    case 1: return "unacceptable protocol version";
    case 2: return "client identifier rejected";
    case 3: return "the server is unavailable";
    case 4: return "bad user name or password";
    case 5: return "not authorised";
    default: return "an unknown reason";
    }
}

static void on_connack(md_mqttp *m, const md_mqttc_packet *p)
{
    if (p->rc != 0) {
        const char *code = p->rc == 4   ? "bad_credentials"
                           : p->rc == 5 ? "not_authorized"
                                        : "refused_by_broker";
        conn_ended(m, code, "the broker refused the connection: %s", connack_text(p->rc));
        return;
    }
    m->up = true;
    m->state = ST_CONNECTED;
    m->connects++;
    m->up_since = md_loop_now(m->loop);
    cancel_timer(m, &m->connect_timer);
    if (!p->session_present)
        m->rx2_n = 0; /* the broker forgot the QoS 2 messages it was sending */
    md_log_info("mqtt %s: connected%s", m->name,
                m->connects > 1 ? " again; queued messages follow" : "");
    arm_keepalive(m);
    pump(m);
    if (m->h.state)
        m->h.state(m->ud, MD_MQTT_CONNECTED, p->session_present, NULL, NULL);
}

static void on_publish(md_mqttp *m, const md_mqttc_packet *p)
{
    bool deliver = true;
    int rc = 0;
    if (p->qos == 1) {
        rc = md_mqttc_put_ack(&m->out, MD_MQTTC_PUBACK, p->mid);
    } else if (p->qos == 2) {
        deliver = rx2_find(m, p->mid) < 0; /* else a resend: PUBREC again */
        if (deliver && rx2_add(m, p->mid) < 0)
            rc = -ENOMEM;
        else
            rc = md_mqttc_put_ack(&m->out, MD_MQTTC_PUBREC, p->mid);
    }
    if (rc < 0) {
        out_of_memory(m);
        return;
    }
    want_flush(m);
    if (deliver) {
        m->received++;
        if (m->h.message)
            m->h.message(m->ud, p->topic, p->payload, (int)p->len, p->qos, p->retain);
    }
}

/* Returns false when the connection ended. */
static bool on_packet(md_mqttp *m, const md_mqttc_packet *p)
{
    if (md_log_enabled(MD_LOG_TRACE))
        md_log(MD_LOG_TRACE, "mqtt %s: received %s (id %u%s%s, %zu bytes)", m->name,
               packet_names[p->type & 15], p->mid, p->topic ? ", topic " : "",
               p->topic ? p->topic : "", p->len);
    if (!m->up && p->type != MD_MQTTC_CONNACK) {
        conn_ended(m, "protocol",
                   "the broker broke the MQTT protocol: a packet of type %d before "
                   "CONNACK",
                   p->type);
        return false;
    }
    omsg *o;
    switch (p->type) {
    case MD_MQTTC_CONNACK:
        if (m->up) {
            conn_ended(m, "protocol",
                       "the broker broke the MQTT protocol: a second "
                       "CONNACK");
            return false;
        }
        on_connack(m, p);
        break;
    case MD_MQTTC_PUBLISH: on_publish(m, p); break;
    case MD_MQTTC_PUBACK:
        if ((o = take(m, p->mid, O_SENT)))
            acknowledged(m, o);
        break;
    case MD_MQTTC_PUBREC:
        for (o = m->head; o && o != m->unsent; o = o->next)
            if (o->mid == p->mid && o->qos == 2 && o->st == O_SENT)
                o->st = O_REL;
        if (md_mqttc_put_ack(&m->out, MD_MQTTC_PUBREL, p->mid) < 0) {
            out_of_memory(m);
            return false;
        }
        want_flush(m);
        break;
    case MD_MQTTC_PUBCOMP:
        if ((o = take(m, p->mid, O_REL)))
            acknowledged(m, o);
        break;
    case MD_MQTTC_PUBREL: {
        int i = rx2_find(m, p->mid);
        if (i >= 0)
            m->rx2[i] = m->rx2[--m->rx2_n];
        if (md_mqttc_put_ack(&m->out, MD_MQTTC_PUBCOMP, p->mid) < 0) {
            out_of_memory(m);
            return false;
        }
        want_flush(m);
        break;
    }
    case MD_MQTTC_SUBACK:
        if (m->h.subscribed)
            m->h.subscribed(m->ud, p->mid, p->granted);
        break;
    case MD_MQTTC_PINGRESP: m->ping_sent = 0; break;
    default: break; /* UNSUBACK */
    }
    return m->fd >= 0;
}

static void on_io(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w;
    md_mqttp *m = ud;
    if (events & MD_LOOP_WRITE) {
        flush(m);
        if (m->fd < 0)
            return;
    }
    if (!(events & MD_LOOP_READ) && !(events & ~MD_LOOP_WRITE))
        return;
    char buf[16384];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
        conn_ended(m, "connection_lost", "the broker closed the connection");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        conn_ended(m, errno == ECONNREFUSED ? "refused" : "connection_lost", "%s",
                   strerror(errno));
        return;
    }
    m->last_in = md_loop_now(m->loop);
    if (!m->up && n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* a common mistake: the broker's web or websocket port given */
        conn_ended(m, "protocol",
                   "%s:%d answered in HTTP, not MQTT: a web server (or a proxy on the "
                   "way), not a broker's MQTT port (usually 1883, or 8883 with TLS)",
                   m->host, m->port);
        return;
    }
    if (md_mqttc_dec_feed(&m->dec, buf, (size_t)n) < 0) {
        out_of_memory(m);
        return;
    }
    md_mqttc_packet p;
    int rc;
    while ((rc = md_mqttc_dec_next(&m->dec, &p)) > 0)
        if (!on_packet(m, &p))
            return;
    if (rc < 0 && !m->up) {
        conn_ended(
            m, "protocol",
            "%s:%d does not answer as an MQTT broker (%s): is it the broker's MQTT port?",
            m->host, m->port, m->dec.error);
    } else if (rc < 0) {
        conn_ended(m, "protocol", "the broker broke the MQTT protocol: %s", m->dec.error);
    }
}

/* }===== */

/* {===== connection life cycle ===== */

static void on_keepalive(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqttp *m = ud;
    m->ka_timer = NULL;
    if (!m->up)
        return;
    int64_t now = md_loop_now(m->loop), ka = m->keepalive * 1000LL;
    if (m->ping_sent && now - m->ping_sent >= ka / 2) {
        conn_ended(m, "connection_lost",
                   "no answer from the broker within the keepalive time");
        return;
    }
    if (!m->ping_sent && (now - m->last_out >= ka || now - m->last_in >= ka)) {
        if (md_mqttc_put_empty(&m->out, MD_MQTTC_PINGREQ) < 0) {
            out_of_memory(m);
            return;
        }
        m->ping_sent = now;
        m->last_out = now; /* not yet sent, but due at once */
        want_flush(m);
    }
    arm_keepalive(m);
}

static void arm_keepalive(md_mqttp *m)
{
    if (m->ka_timer || !m->up)
        return;
    int64_t ka = m->keepalive * 1000LL;
    int64_t due = m->ping_sent
                      ? m->ping_sent + ka / 2
                      : (m->last_out < m->last_in ? m->last_out : m->last_in) + ka;
    int64_t now = md_loop_now(m->loop);
    m->ka_timer = timer(m, due > now ? due : now, on_keepalive);
}

static void on_backoff(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqttp *m = ud;
    m->backoff_timer = NULL;
    begin_attempt(m);
}

static void on_netlink(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)events;
    md_mqttp *m = ud;
    if (md_mqtt_net_fresh(fd) && m->state == ST_WAITING && m->backoff_timer) {
        md_log_info("mqtt %s: the network changed; connecting now", m->name);
        cancel_timer(m, &m->backoff_timer);
        begin_attempt(m);
    }
}

static void schedule_attempt(md_mqttp *m, bool at_once)
{
    int delay = m->backoff_ms;
    delay -= (int)((long long)delay * (rand_r(&m->seed) % 256) / 1024); /* jitter */
    if (at_once)
        delay = 0;
    else
        m->backoff_ms =
            m->backoff_ms * 2 > m->backoff_max_ms ? m->backoff_max_ms : m->backoff_ms * 2;
    m->state = ST_WAITING;
    m->backoff_timer = timer(m, md_loop_now(m->loop) + delay, on_backoff);
    if (delay > 0 && m->net_fd < 0)
        m->net_fd = md_mqtt_net_open(m->loop, on_netlink, m, &m->net_watch);
    md_log_debug("mqtt %s: next connection attempt in %d ms", m->name, delay);
}

/* Close the socket and forget what belonged to this connection; queued
 * QoS 1/2 messages stay, to be sent again. */
static void drop_socket(md_mqttp *m)
{
    if (m->attempt) {
        md_conn_cancel(m->attempt);
        m->attempt = NULL;
    }
    if (m->fd >= 0)
        md_loop_unwatch_close(m->loop, &m->watch, &m->fd);
    m->want_write = false;
    cancel_timer(m, &m->connect_timer);
    cancel_timer(m, &m->ka_timer);
    cancel_timer(m, &m->flush_timer);
    m->out.len = m->out_off = 0;
    md_mqttc_dec_reset(&m->dec);
    m->ping_sent = 0;
    m->unsent = m->head;
    m->inflight = 0;
    m->up = false;
}

static void conn_ended(md_mqttp *m, const char *code, const char *fmt, ...)
{
    if (m->state != ST_CONNECTING && m->state != ST_CONNECTED)
        return;
    char message[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    bool was_up = m->up;
    bool same = m->last_code && strcmp(m->last_code, code) == 0 &&
                strcmp(m->last_error, message) == 0;
    drop_socket(m);
    if (!same) {
        snprintf(m->last_error, sizeof m->last_error, "%s", message);
        m->last_code = code;
    }
    bool stable = was_up && md_loop_now(m->loop) - m->up_since >= STABLE_MS;
    if (was_up) {
        m->disconnects++;
        if (stable)
            m->backoff_ms = m->backoff_min_ms;
        md_log_warn("mqtt %s: connection lost: %s; reconnecting (%d message(s) queued)",
                    m->name, message, m->q.queued);
    } else {
        md_log(same ? MD_LOG_DEBUG : MD_LOG_WARN,
               "mqtt %s: connection attempt failed: %s", m->name, message);
    }
    schedule_attempt(m, stable);
    if (m->h.state)
        m->h.state(m->ud, was_up ? MD_MQTT_DISCONNECTED : MD_MQTT_ATTEMPT_FAILED, false,
                   code, message);
}

static void on_connect_timeout(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqttp *m = ud;
    m->connect_timer = NULL;
    if (!m->up)
        conn_ended(m, md_err_token(-MD_ECONNTIMEOUT), "no answer within %g s",
                   m->connect_timeout_ms / 1000.0);
}

static void on_connected(md_loop *loop, int fd, int err, void *ud)
{
    (void)loop;
    md_mqttp *m = ud;
    m->attempt = NULL;
    if (fd < 0) {
        const char *code = md_err_token(md_err_connect(err));
        if (err == -ECONNREFUSED)
            conn_ended(m, code, "nothing accepts connections at %s:%d", m->host, m->port);
        else if (err == -EHOSTUNREACH || err == -ENETUNREACH)
            conn_ended(m, code, "%s is unreachable: %s", m->host, strerror(-err));
        else if (err == -MD_CONN_EDNS)
            conn_ended(m, "dns", "cannot resolve the host name %s", m->host);
        else
            conn_ended(m, code, "%s", md_strerror(err));
        return;
    }
    m->fd = fd;
    m->watch = md_loop_watch(m->loop, fd, MD_LOOP_READ, on_io, m);
    if (!m->watch) {
        close(fd);
        m->fd = -1;
        conn_ended(m, "io", "cannot watch the socket");
        return;
    }
    md_loop_watch_keepalive(m->loop, m->watch, false);
    md_mqttc_connect c = {
        .client_id = m->client_id,
        .clean = m->clean_session,
        .keepalive = m->keepalive,
        .username = m->username,
        .password = m->password,
        .will_topic = m->will_topic,
        .will_payload = m->will_payload,
        .will_len = m->will_len,
        .will_qos = m->will_qos,
        .will_retain = m->will_retain,
    };
    if (md_log_enabled(MD_LOG_TRACE))
        md_log(MD_LOG_TRACE,
               "mqtt %s: sending CONNECT (client id %s, %s, keepalive %d s%s%s%s)",
               m->name, m->client_id, m->clean_session ? "clean session" : "kept session",
               m->keepalive, m->username ? ", user " : "", m->username ? m->username : "",
               m->password ? ", password ***" : "");
    if (md_mqttc_put_connect(&m->out, &c) < 0) {
        out_of_memory(m);
        return;
    }
    m->last_in = m->last_out = md_loop_now(m->loop);
    flush(m);
}

static void begin_attempt(md_mqttp *m)
{
    m->attempts++;
    m->state = ST_CONNECTING;
    m->connect_timer =
        timer(m, md_loop_now(m->loop) + m->connect_timeout_ms, on_connect_timeout);
    md_conn_config cc = {.host = m->host,
                         .port = m->port,
                         .socktype = SOCK_STREAM,
                         .timeout_ms = m->connect_timeout_ms};
    m->attempt = md_conn_start(m->loop, &cc, on_connected, m);
    if (!m->attempt)
        conn_ended(m, "connect", "cannot start connecting: %s", strerror(errno));
}

/* }===== */

/* {===== public API (see mqtt.h) ===== */

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

static void free_strings(md_mqttp *m)
{
    free(m->host);
    free(m->name);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m->will_topic);
    free(m->will_payload);
}

md_mqttp *md_mqttp_new(md_loop *loop, const md_mqtt_config *cfg,
                       const md_mqtt_handlers *h, void *ud, char *err, size_t errlen,
                       const char **code)
{
    *code = "invalid";
    if (!cfg->clean_session && !cfg->client_id) {
        snprintf(err, errlen, "a persistent session (clean = false) needs a client id");
        return NULL;
    }
    if (cfg->will_topic && md_mqtt_check_topic(cfg->will_topic, false) < 0) {
        snprintf(err, errlen, "invalid last will: the topic '%s' cannot be published to",
                 cfg->will_topic);
        return NULL;
    }
    md_mqttp *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->h = *h;
    m->ud = ud;
    m->fd = m->net_fd = -1;
    m->seed = (unsigned)(uintptr_t)m ^ (unsigned)md_loop_now(loop);
    bool ok = true;
    char name[300], id[40];
    snprintf(name, sizeof name, "%s:%d", cfg->host, cfg->port);
    snprintf(id, sizeof id, "moondog-%08x",
             (unsigned)rand_r(&m->seed) ^ (unsigned)getpid());
    m->host = dup_or_null(cfg->host, &ok);
    m->name = dup_or_null(cfg->name ? cfg->name : name, &ok);
    m->client_id = dup_or_null(cfg->client_id ? cfg->client_id : id, &ok);
    m->username = dup_or_null(cfg->username, &ok);
    m->password = cfg->username ? dup_or_null(cfg->password, &ok) : NULL;
    m->will_topic = dup_or_null(cfg->will_topic, &ok);
    if (cfg->will_topic && cfg->will_len > 0) {
        m->will_payload = malloc((size_t)cfg->will_len);
        if (m->will_payload)
            memcpy(m->will_payload, cfg->will_payload, (size_t)cfg->will_len);
        else
            ok = false;
        m->will_len = (size_t)cfg->will_len;
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory");
        free_strings(m);
        free(m);
        return NULL;
    }
    m->will_qos = cfg->will_qos;
    m->will_retain = cfg->will_retain;
    m->clean_session = cfg->clean_session;
    m->port = cfg->port;
    m->keepalive = cfg->keepalive;
    m->max_inflight = cfg->max_inflight;
    m->connect_timeout_ms = cfg->connect_timeout_ms;
    m->backoff_min_ms = m->backoff_ms = cfg->backoff_min_ms;
    m->backoff_max_ms = cfg->backoff_max_ms;
    m->q.max_queued = cfg->max_queued;
    m->q.max_queued_bytes = cfg->max_queued_bytes;
    md_loop_hold_local(loop); /* the client lives on the loop */
    /* The first attempt starts from the loop, so that no handler runs
     * before the caller has the client. */
    m->state = ST_WAITING;
    m->backoff_timer = md_loop_timer(loop, md_loop_now(loop), on_backoff, m);
    return m;
}

static uint16_t next_mid(md_mqttp *m)
{
    m->last_mid = (uint16_t)(m->last_mid % 65535 + 1);
    return m->last_mid;
}

int md_mqttp_publish(md_mqttp *m, const char *topic, const void *payload, size_t len,
                     int qos, bool retain, void *tag, int *mid)
{
    if (len > MD_MQTTC_MAX_REMAINING)
        return -MD_MQTT_ETOOLARGE;
    if (md_mqtt_check_topic(topic, false) < 0)
        return -MD_MQTT_ETOPIC;
    size_t tlen = strlen(topic);
    if (len > MD_MQTTC_MAX_REMAINING - 4 - tlen)
        return -MD_MQTT_ETOOLARGE;
    size_t bytes = tlen + len;
    if (qos == 0 && !m->up) {
        m->not_sent++;
        return -MD_MQTT_ENOTCONN;
    }
    if (qos > 0 && !md_mqtt_outq_has_room(&m->q, bytes)) {
        note_drop(m, bytes);
        return -MD_MQTT_EFULL;
    }
    /* QoS 0 waits only in the output buffer, which a broker that stopped
     * reading would let grow: bounded by the queue's byte limit too */
    if (qos == 0 && m->out.len - m->out_off + bytes > m->q.max_queued_bytes) {
        m->dropped++;
        if (m->drop_burst++ == 0)
            md_log_warn(
                "mqtt %s: the broker does not read what is sent (%zu bytes wait); "
                "QoS 0 messages are refused until it does",
                m->name, m->out.len - m->out_off);
        return -MD_MQTT_EFULL;
    }
    uint64_t seq = md_mqtt_outq_issue(&m->q);
    uint16_t id = next_mid(m);
    *mid = id;
    if (qos == 0) {
        if (md_mqttc_put_publish(&m->out, topic, tlen, payload, len, 0, retain, false,
                                 0) < 0)
            return -MD_MQTT_ENOMEM;
        want_flush(m);
        m->published++;
        return 0;
    }
    omsg *o = malloc(sizeof *o + tlen + 1 + len);
    if (!o)
        return -MD_MQTT_ENOMEM;
    *o = (omsg){
        .mid = id, .qos = (uint8_t)qos, .retain = retain, .tlen = tlen, .len = len};
    memcpy(o->data, topic, tlen + 1);
    if (len)
        memcpy(o->data + tlen + 1, payload, len);
    if (md_mqtt_outq_add(&m->q, id, bytes, tag, seq) < 0) {
        free(o);
        return -MD_MQTT_ENOMEM;
    }
    if (m->tail)
        m->tail->next = o;
    else
        m->head = o;
    m->tail = o;
    if (!m->unsent)
        m->unsent = o;
    m->published++;
    pump(m);
    return 0;
}

void md_mqttp_forget(md_mqttp *m, void *tag)
{
    md_mqtt_outq_forget(&m->q, tag);
}

int md_mqttp_subscribe(md_mqttp *m, const char *filter, int qos, int *mid)
{
    if (md_mqtt_check_topic(filter, true))
        return -MD_MQTT_ETOPIC;
    if (!m->up)
        return -MD_MQTT_ENOTCONN;
    md_mqtt_outq_issue(&m->q);
    *mid = next_mid(m);
    if (md_mqttc_put_subscribe(&m->out, (uint16_t)*mid, filter, qos) < 0)
        return -MD_MQTT_ENOMEM;
    want_flush(m);
    return 0;
}

int md_mqttp_unsubscribe(md_mqttp *m, const char *filter)
{
    if (md_mqtt_check_topic(filter, true))
        return -MD_MQTT_ETOPIC;
    if (!m->up)
        return -MD_MQTT_ENOTCONN;
    md_mqtt_outq_issue(&m->q);
    if (md_mqttc_put_unsubscribe(&m->out, next_mid(m), filter) < 0)
        return -MD_MQTT_ENOMEM;
    want_flush(m);
    return 0;
}

bool md_mqttp_connected(const md_mqttp *m)
{
    return m->up;
}

void md_mqttp_get_stats(const md_mqttp *m, md_mqtt_stats *out)
{
    static const char *const names[] = {"connecting", "connected", "waiting", "closed"};
    *out = (md_mqtt_stats){
        .state = names[m->state],
        .connected = m->up,
        .connects = m->connects,
        .attempts = m->attempts,
        .disconnects = m->disconnects,
        .published = m->published,
        .delivered = m->delivered,
        .dropped = m->dropped,
        .not_sent = m->not_sent,
        .received = m->received,
        .queued = m->q.queued,
        .queued_bytes = m->q.queued_bytes,
        .last_code = m->last_code,
        .last_error = m->last_code ? m->last_error : NULL,
    };
}

void md_mqttp_close(md_mqttp *m, bool graceful)
{
    if (!m)
        return;
    m->state = ST_CLOSED; /* no handler runs from here on */
    cancel_timer(m, &m->backoff_timer);
    if (m->up && graceful && m->fd >= 0 &&
        md_mqttc_put_empty(&m->out, MD_MQTTC_DISCONNECT) == 0) {
        /* Whatever is buffered, then DISCONNECT, in one send unless the
         * socket is full; unread bytes are read first, so that close()
         * sends FIN and not RST (which would make the broker publish the
         * last will). */
        char buf[4096];
        for (int i = 0; i < 16 && recv(m->fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++)
            ;
        flush(m);
        shutdown(m->fd, SHUT_WR);
    }
    if (m->q.queued) /* never silently */
        md_log_warn("mqtt %s: closed with %d QoS 1/2 message(s) the broker has not "
                    "acknowledged; they are lost",
                    m->name, m->q.queued);
    drop_socket(m);
    if (m->net_fd >= 0)
        md_loop_unwatch_close(m->loop, &m->net_watch, &m->net_fd);
    for (omsg *o = m->head, *next; o; o = next) {
        next = o->next;
        free(o);
    }
    md_loop_release_local(m->loop);
    md_mqtt_outq_free(&m->q);
    md_mqttc_buf_free(&m->out);
    md_mqttc_dec_free(&m->dec);
    free(m->rx2);
    free_strings(m);
    free(m);
}

/* }===== */
