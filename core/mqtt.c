/*
 * mqtt.c - an MQTT client on libmosquitto in non-threaded mode, driven by
 * moondog's event loop (no mosquitto_loop_start thread), and the choice of
 * client: a connection without TLS and with MQTT 3.1.1 goes to moondog's
 * own client (mqtt_plain.c, which says why it exists), unless
 * MOONDOG_MQTT_LIB=mosquitto; then md_mqtt only forwards to it (plain).
 *
 * Loading. libmosquitto pulls in OpenSSL: linked into the binary it cost
 * every moondog process about 2 MB of RSS (2.7 MB -> 4.7 MB idle, measured
 * with LD_PRELOAD) although most scripts never speak MQTT. So it is opened
 * with dlopen on first use and called through a table of function pointers
 * typed from <mosquitto.h> itself; it stays loaded until exit.
 *
 * Connection. One socket per client, watched by the loop: READ always,
 * WRITE only while mosquitto_want_write() says libmosquitto has bytes to
 * send (with TLS this also covers OpenSSL wanting to write). After every
 * library call sync_io() re-reads the socket and the write interest. A
 * timer calls mosquitto_loop_misc() (PINGREQ, keepalive check) every
 * keepalive/4 s while a socket is open. While connecting, every event also
 * calls mosquitto_loop_read(), which is where libmosquitto continues a TLS
 * handshake. libmosquitto never reconnects by itself here: when a
 * connection ends (or an attempt fails, or the connect timer fires) a
 * backoff timer starts the next attempt, forever, with the delay doubling
 * from backoff_min to backoff_max (with jitter, so that many engines do not
 * reconnect in step) and starting again from backoff_min after a
 * connection that lasted 10 s; losing such a connection retries at once,
 * and so does a network event (rtnetlink) during the backoff.
 *
 * Writes. libmosquitto writes every packet with its own write() at once,
 * and the socket has TCP_NODELAY so that a lone message (a command's
 * result) never waits 40 ms for a delayed ACK. A burst of publishes would
 * then send one TCP segment each, which costs the sender and the broker
 * a packet of kernel work per message (measured: half the rate of
 * mosquitto_pub, which leaves Nagle on). So a write (a publish, or what a
 * socket event makes libmosquitto send) that follows another within the
 * same millisecond corks the socket (TCP_CORK), and a timer due at once
 * uncorks it on the next loop iteration, before the loop sleeps: a burst
 * leaves in full segments after its first message, and a lone message
 * leaves without delay and without a setsockopt() pair or a timer (the
 * Growatt proxy publishes one message per record).
 *
 * DNS. mosquitto_connect_async() resolves its host with a blocking
 * getaddrinfo(). A literal address never blocks and is passed as is. A host
 * name is resolved off the loop thread by conn.c (md_resolve_start), and
 * libmosquitto gets the literal address.
 * One exception: TLS with certificate checking needs the name itself
 * (libmosquitto checks the certificate against it and sends it as SNI), so
 * there libmosquitto resolves the name, blocking the loop for one lookup
 * per connection attempt (normally /etc/hosts or a local resolver).
 *
 * Queue bound. libmosquitto keeps QoS 1/2 messages in an unbounded list
 * until they are acknowledged, and keeps them across reconnects (a publish
 * while disconnected returns MOSQ_ERR_NO_CONN but stays queued). This
 * module counts them in a ring of (mid, bytes, tag) in publish order, which
 * acknowledgements normally follow, and refuses a publish that would pass
 * max_queued messages or max_queued_bytes: counted as dropped, logged, and
 * reported to the caller (the ring: md_mqtt_outq in mqtt_queue.c). libmosquitto's message
 * ids are 16 bits and a new message silently replaces a queued one with the same id, so a
 * publish is also refused when 65000 ids were handed out since the oldest queued one. QoS
 * 0 messages are never queued: while disconnected they are refused (counted as not_sent).
 *
 * Threads: the loop thread only (conn.c runs the DNS lookups). Ownership:
 * the client owns its strings, ring and timers; a lookup in flight belongs
 * to conn.c, and the client cancels it when the attempt ends or it closes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mqtt.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mosquitto.h>

#include "conn.h"
#include "log.h"
#include "mqtt_plain.h"

#define MQTT_MAX_PAYLOAD 268435455u
#define STABLE_MS 10000 /* a connection this long resets the backoff */

/* {===== libmosquitto, loaded on first use ===== */

#define MOSQ_FUNCS(X)                                                                    \
    X(lib_init)                                                                          \
    X(new)                                                                               \
    X(destroy)                                                                           \
    X(will_set)                                                                          \
    X(username_pw_set)                                                                   \
    X(connect_async)                                                                     \
    X(disconnect)                                                                        \
    X(publish)                                                                           \
    X(subscribe)                                                                         \
    X(unsubscribe)                                                                       \
    X(loop_read)                                                                         \
    X(loop_write)                                                                        \
    X(loop_misc)                                                                         \
    X(socket)                                                                            \
    X(want_write)                                                                        \
    X(int_option)                                                                        \
    X(tls_set)                                                                           \
    X(tls_opts_set)                                                                      \
    X(tls_insecure_set)                                                                  \
    X(connect_with_flags_callback_set)                                                   \
    X(disconnect_callback_set)                                                           \
    X(publish_callback_set)                                                              \
    X(message_callback_set)                                                              \
    X(subscribe_callback_set)                                                            \
    X(log_callback_set)                                                                  \
    X(strerror)                                                                          \
    X(connack_string)                                                                    \
    X(reason_string)

static struct {
#define X(f) __typeof__(mosquitto_##f) *f;
    MOSQ_FUNCS(X)
#undef X
} mq;
static bool mq_loaded;
static char mq_error[200];

/* MOONDOG_MQTT_LIB=mosquitto: libmosquitto for every connection, the way
 * back should the plain client misbehave somewhere; plain: the plain client
 * wherever it can serve (the default). */
static bool force_mosquitto(void)
{
    const char *v = getenv("MOONDOG_MQTT_LIB");
    return v && strcmp(v, "mosquitto") == 0;
}

static int load_library(char *err, size_t errlen);

int md_mqtt_library(char *err, size_t errlen)
{
    /* The plain client needs no library; libmosquitto is loaded when a
     * connection needs TLS or MQTT 5. */
    return force_mosquitto() ? load_library(err, errlen) : 0;
}

static int load_library(char *err, size_t errlen)
{
    if (mq_loaded)
        return 0;
    if (mq_error[0]) {
        snprintf(err, errlen, "%s", mq_error);
        return -1;
    }
    void *lib = dlopen("libmosquitto.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(mq_error, sizeof mq_error,
                 "MQTT needs libmosquitto, which is not installed (Debian package "
                 "libmosquitto1): %s",
                 dlerror());
        snprintf(err, errlen, "%s", mq_error);
        return -1;
    }
#define X(f)                                                                             \
    if (!(*(void **)&mq.f = dlsym(lib, "mosquitto_" #f))) {                              \
        snprintf(mq_error, sizeof mq_error,                                              \
                 "libmosquitto.so.1 lacks mosquitto_" #f                                 \
                 ": version 2.0 or later needed");                                       \
        snprintf(err, errlen, "%s", mq_error);                                           \
        return -1;                                                                       \
    }
    MOSQ_FUNCS(X)
#undef X
    mq.lib_init();
    mq_loaded = true;
    return 0;
}

/* }===== */

typedef enum { ST_CONNECTING, ST_CONNECTED, ST_WAITING, ST_CLOSED } conn_state;

struct md_mqtt {
    md_mqttp *plain; /* the plain client serves this one (mqtt_plain.c); rest unused */
    md_loop *loop;
    struct mosquitto *mosq;
    md_mqtt_handlers h;
    void *ud;

    /* config; strings owned */
    char *host, *name;
    int port, keepalive, max_queued, max_inflight, connect_timeout_ms;
    int backoff_min_ms, backoff_max_ms;
    size_t max_queued_bytes;
    bool host_is_literal, resolve_name; /* resolve_name: pass the address, not the name */

    conn_state state;
    bool conn; /* a socket exists for the current attempt or connection */
    bool up;   /* CONNACK accepted on it */
    int fd, events;
    md_watch *watch;
    md_timer *misc_timer, *connect_timer, *backoff_timer;
    md_timer *uncork_timer; /* set while the socket is corked */
    bool corked;            /* TCP_CORK is on (a second write within a ms) */
    int64_t write_ms;       /* md_loop_now() of the last write that went out alone */
    int net_fd;             /* rtnetlink socket for network events, or -1 */
    md_watch *net_watch;
    bool log_hooked; /* cb_log is installed */
    int backoff_ms;
    int64_t up_since;
    unsigned seed;
    md_resolve *res; /* lookup in flight (conn.c) */

    md_mqtt_outq out; /* outgoing QoS 1/2 messages not yet acknowledged */
    uint64_t drop_burst;

    uint64_t connects, attempts, disconnects, published, delivered, dropped, not_sent,
        received;
    const char *refusal_code; /* CONNACK refused: a token, until conn_ended */
    char refusal_text[100];
    char last_error[300];
    const char *last_code;
    char last_log[200]; /* libmosquitto's last error or warning (OpenSSL's reasons) */
};

static void sync_io(md_mqtt *m);
static void hook_log(md_mqtt *m, bool on);
static void on_io(md_loop *loop, md_watch *w, int fd, int events, void *ud);
static void begin_attempt(md_mqtt *m);
static void conn_ended(md_mqtt *m, const char *code, const char *message);

static void set_error(md_mqtt *m, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(md_mqtt *m, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->last_error, sizeof m->last_error, fmt, ap);
    va_end(ap);
    m->last_code = code;
}

/* {===== outgoing queue accounting ===== */

void md_mqtt_forget(md_mqtt *m, void *tag)
{
    if (m->plain) {
        md_mqttp_forget(m->plain, tag);
        return;
    }
    md_mqtt_outq_forget(&m->out, tag);
}

static void note_drop(md_mqtt *m, size_t bytes)
{
    m->dropped++;
    if (m->drop_burst++ == 0)
        md_log_warn("mqtt %s: the outgoing queue is full: a QoS 1/2 message of %zu bytes "
                    "does not fit beside %d messages, %zu bytes (limits %d messages, %zu "
                    "bytes); such messages are refused until it drains",
                    m->name, bytes, m->out.queued, m->out.queued_bytes, m->out.max_queued,
                    m->out.max_queued_bytes);
}

static void note_drain(md_mqtt *m)
{
    if (m->drop_burst && m->out.queued <= m->out.max_queued / 2) {
        md_log_warn("mqtt %s: the outgoing queue has room again; %llu message(s) were "
                    "refused while it was full",
                    m->name, (unsigned long long)m->drop_burst);
        m->drop_burst = 0;
    }
}

/* }===== */

/* {===== libmosquitto callbacks (inside mosquitto_loop_* calls) ===== */

static void cb_connect(struct mosquitto *mosq, void *ud, int rc, int flags)
{
    (void)mosq;
    md_mqtt *m = ud;
    if (m->state == ST_CLOSED)
        return;
    if (rc != 0) {
        /* libmosquitto closes the socket next; conn_ended reports this. */
        const char *code = (rc == 4 || rc == 134)   ? "bad_credentials"
                           : (rc == 5 || rc == 135) ? "not_authorized"
                                                    : "refused_by_broker";
        m->refusal_code = code;
        snprintf(m->refusal_text, sizeof m->refusal_text, "%s",
                 rc >= 128 ? mq.reason_string(rc) : mq.connack_string(rc));
        return;
    }
    m->up = true;
    m->state = ST_CONNECTED;
    m->connects++;
    m->up_since = md_loop_now(m->loop);
    if (m->connect_timer) {
        md_loop_timer_cancel(m->loop, m->connect_timer);
        m->connect_timer = NULL;
    }
    md_log_info("mqtt %s: connected%s", m->name,
                m->connects > 1 ? " again; queued messages follow" : "");
    if (m->h.state)
        m->h.state(m->ud, MD_MQTT_CONNECTED, flags & 1, NULL, NULL);
}

static void cb_disconnect(struct mosquitto *mosq, void *ud, int rc)
{
    (void)mosq;
    md_mqtt *m = ud;
    char msg[300];
    const char *code = "connection_lost";
    if (m->refusal_code)
        rc = MOSQ_ERR_CONN_REFUSED;
    switch (rc) {
    case MOSQ_ERR_SUCCESS: snprintf(msg, sizeof msg, "disconnected"); break;
    case MOSQ_ERR_CONN_REFUSED:
        code = m->refusal_code ? m->refusal_code : "refused_by_broker";
        snprintf(msg, sizeof msg, "the broker refused the connection: %s",
                 m->refusal_code ? m->refusal_text : mq.strerror(rc));
        break;
    case MOSQ_ERR_CONN_LOST:
        snprintf(msg, sizeof msg, "the broker closed the connection");
        break;
    case MOSQ_ERR_KEEPALIVE:
        snprintf(msg, sizeof msg, "no answer from the broker within the keepalive time");
        break;
    case MOSQ_ERR_TLS:
    case MOSQ_ERR_TLS_HANDSHAKE:
        code = "tls";
        snprintf(msg, sizeof msg, "TLS failed: %s",
                 m->last_log[0] ? m->last_log : mq.strerror(rc));
        break;
    case MOSQ_ERR_ERRNO:
        if (errno == ECONNREFUSED) {
            code = "refused";
            snprintf(msg, sizeof msg, "nothing accepts connections there (%s)",
                     strerror(errno));
        } else {
            snprintf(msg, sizeof msg, "%s", strerror(errno));
        }
        break;
    case MOSQ_ERR_PROTOCOL:
    case MOSQ_ERR_MALFORMED_PACKET:
        code = "protocol";
        snprintf(msg, sizeof msg, "the broker broke the MQTT protocol: %s",
                 mq.strerror(rc));
        break;
    default:
        snprintf(msg, sizeof msg, "the connection was closed (%s)", mq.strerror(rc));
        break;
    }
    conn_ended(m, code, msg);
}

static void cb_publish(struct mosquitto *mosq, void *ud, int mid)
{
    (void)mosq;
    md_mqtt *m = ud;
    bool found;
    void *tag = md_mqtt_outq_done(&m->out, mid, &found);
    if (!found) /* QoS 0 written out */
        return;
    m->delivered++;
    note_drain(m);
    if (tag && m->h.delivered)
        m->h.delivered(m->ud, tag);
    if (m->out.queued == 0 && m->h.drained)
        m->h.drained(m->ud);
}

static void cb_message(struct mosquitto *mosq, void *ud,
                       const struct mosquitto_message *msg)
{
    (void)mosq;
    md_mqtt *m = ud;
    m->received++;
    if (m->h.message)
        m->h.message(m->ud, msg->topic, msg->payload, msg->payloadlen, msg->qos,
                     msg->retain);
}

static void cb_subscribe(struct mosquitto *mosq, void *ud, int mid, int count,
                         const int *granted)
{
    (void)mosq;
    md_mqtt *m = ud;
    if (m->h.subscribed)
        m->h.subscribed(m->ud, mid, count > 0 ? granted[0] : 128);
}

static void cb_log(struct mosquitto *mosq, void *ud, int level, const char *text)
{
    (void)mosq;
    md_mqtt *m = ud;
    if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
        snprintf(m->last_log, sizeof m->last_log, "%s", text);
    if (md_log_enabled(MD_LOG_TRACE))
        md_log(MD_LOG_TRACE, "mqtt %s: libmosquitto: %s", m->name, text);
}

/* }===== */

/* {===== connection life cycle ===== */

static void cancel_timer(md_mqtt *m, md_timer **t)
{
    if (*t) {
        md_loop_timer_cancel(m->loop, *t);
        *t = NULL;
    }
}

static void unwatch(md_mqtt *m)
{
    if (m->watch)
        md_loop_unwatch(m->loop, m->watch);
    m->watch = NULL;
    m->fd = -1;
    m->events = 0;
}

static void on_backoff(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqtt *m = ud;
    m->backoff_timer = NULL;
    begin_attempt(m);
}

/* The next attempt: at once after losing a connection that was stable
 * (the broker restarted or the network came back: issue 17 measured 25 and
 * 96 s lost to backoff), else after the backoff delay. */
/* A fresh network event (a link coming up, an address or a route added:
 * a cable plugged in, Wi-Fi or a VPN back) while the backoff runs starts
 * the next attempt at once (issue 17). Linux rtnetlink; the socket lives
 * as long as the client once a backoff has begun, and events that arrive
 * at other times are read and ignored. */
bool md_mqtt_net_fresh(int fd)
{
    char buf[8192];
    bool fresh = false;
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
        size_t off = 0;
        while ((size_t)n - off >= sizeof(struct nlmsghdr)) {
            struct nlmsghdr h;
            memcpy(&h, buf + off, sizeof h);
            if (h.nlmsg_len < sizeof h || h.nlmsg_len > (size_t)n - off)
                break;
            if (h.nlmsg_type == RTM_NEWLINK || h.nlmsg_type == RTM_NEWADDR ||
                h.nlmsg_type == RTM_NEWROUTE)
                fresh = true;
            off += NLMSG_ALIGN(h.nlmsg_len);
        }
    }
    return fresh;
}

int md_mqtt_net_open(md_loop *loop, md_watch_fn fn, void *ud, md_watch **w)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -1; /* no netlink (a sandbox): the backoff alone applies */
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
                             .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR |
                                          RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
                                          RTMGRP_IPV6_ROUTE};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        !(*w = md_loop_watch(loop, fd, MD_LOOP_READ, fn, ud))) {
        close(fd);
        return -1;
    }
    md_loop_watch_keepalive(loop, *w, false);
    return fd;
}

static void on_netlink(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)events;
    md_mqtt *m = ud;
    if (md_mqtt_net_fresh(fd) && m->state == ST_WAITING && m->backoff_timer) {
        md_log_info("mqtt %s: the network changed; connecting now", m->name);
        cancel_timer(m, &m->backoff_timer);
        begin_attempt(m);
    }
}

static void watch_network(md_mqtt *m)
{
    if (m->net_fd < 0)
        m->net_fd = md_mqtt_net_open(m->loop, on_netlink, m, &m->net_watch);
}

static void unwatch_network(md_mqtt *m)
{
    if (m->net_fd < 0)
        return;
    md_loop_unwatch_close(m->loop, &m->net_watch, &m->net_fd);
}

static void schedule_attempt(md_mqtt *m, bool at_once)
{
    int delay = m->backoff_ms;
    /* jitter: 75..100 % of the delay */
    delay -= (int)((long long)delay * (rand_r(&m->seed) % 256) / 1024);
    if (at_once)
        delay = 0;
    else
        m->backoff_ms =
            m->backoff_ms * 2 > m->backoff_max_ms ? m->backoff_max_ms : m->backoff_ms * 2;
    m->state = ST_WAITING;
    m->backoff_timer =
        md_loop_timer(m->loop, md_loop_now(m->loop) + delay, on_backoff, m);
    if (m->backoff_timer)
        md_loop_timer_keepalive(m->loop, m->backoff_timer, false);
    if (delay > 0)
        watch_network(m);
    md_log_debug("mqtt %s: next connection attempt in %d ms", m->name, delay);
}

/* The current attempt or connection is over (idempotent). */
static void conn_ended(md_mqtt *m, const char *code, const char *message)
{
    if (m->state != ST_CONNECTING && m->state != ST_CONNECTED)
        return;
    bool was_up = m->up;
    bool same = m->last_code && strcmp(m->last_code, code) == 0 &&
                strcmp(m->last_error, message) == 0;
    if (m->res) { /* the lookup may go on; its answer is dropped */
        md_resolve_cancel(m->res);
        m->res = NULL;
    }
    m->conn = m->up = false;
    unwatch(m);
    cancel_timer(m, &m->misc_timer);
    cancel_timer(m, &m->connect_timer);
    cancel_timer(m, &m->uncork_timer);
    m->corked = false;
    m->refusal_code = NULL;
    if (!same)
        set_error(m, code, "%s", message);
    bool stable = was_up && md_loop_now(m->loop) - m->up_since >= STABLE_MS;
    if (was_up) {
        m->disconnects++;
        if (stable)
            m->backoff_ms = m->backoff_min_ms;
        md_log_warn("mqtt %s: connection lost: %s; reconnecting (%d message(s) queued)",
                    m->name, message, m->out.queued);
    } else {
        md_log(same ? MD_LOG_DEBUG : MD_LOG_WARN,
               "mqtt %s: connection attempt failed: %s", m->name, message);
    }
    schedule_attempt(m, stable);
    if (m->h.state)
        m->h.state(m->ud, was_up ? MD_MQTT_DISCONNECTED : MD_MQTT_ATTEMPT_FAILED, false,
                   code, message);
}

static void set_cork(md_mqtt *m, int on)
{
    int fd = mq.socket(m->mosq);
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

static void on_uncork(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqtt *m = ud;
    m->uncork_timer = NULL;
    if (m->conn && m->corked)
        set_cork(m, 0);
    m->corked = false;
}

/* Cork until the loop comes round (see the top of the file), from the
 * second write within a millisecond: the first goes out at once, and a
 * lone message (one publish per record) costs neither a setsockopt() pair
 * nor a timer (whose loop turn is one more epoll_wait). */
static void cork(md_mqtt *m)
{
    if (!m->up || m->corked)
        return;
    int64_t now = md_loop_now(m->loop);
    if (now != m->write_ms) {
        m->write_ms = now;
        return;
    }
    m->uncork_timer = md_loop_timer(m->loop, now, on_uncork, m);
    if (m->uncork_timer) {
        md_loop_timer_keepalive(m->loop, m->uncork_timer, false);
        set_cork(m, 1);
        m->corked = true;
    }
}

static void on_misc(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqtt *m = ud;
    m->misc_timer = NULL;
    if (!m->conn)
        return;
    mq.loop_misc(m->mosq); /* a keepalive timeout calls cb_disconnect */
    sync_io(m);
}

static void arm_misc(md_mqtt *m)
{
    if (m->misc_timer || !m->conn)
        return;
    int period = m->keepalive * 1000 / 4;
    m->misc_timer = md_loop_timer(
        m->loop, md_loop_now(m->loop) + (period < 1000 ? 1000 : period), on_misc, m);
    if (m->misc_timer)
        md_loop_timer_keepalive(m->loop, m->misc_timer, false);
}

/* Bring the fd watch and the misc timer in line with libmosquitto's state. */
static void sync_io(md_mqtt *m)
{
    if (m->up && m->log_hooked && !md_log_enabled(MD_LOG_TRACE))
        hook_log(m, false);
    if (m->conn && mq.socket(m->mosq) < 0) /* closed without a callback: TLS setup */
        conn_ended(m, "tls", m->last_log[0] ? m->last_log : "TLS handshake failed");
    int fd = m->conn ? mq.socket(m->mosq) : -1;
    int events =
        fd >= 0 ? MD_LOOP_READ | (mq.want_write(m->mosq) ? MD_LOOP_WRITE : 0) : 0;
    if (fd != m->fd) {
        unwatch(m);
        if (fd < 0)
            return;
        m->watch = md_loop_watch(m->loop, fd, events, on_io, m);
        if (!m->watch) {
            conn_ended(m, "io", "cannot watch the socket");
            return;
        }
        md_loop_watch_keepalive(m->loop, m->watch, false);
        m->fd = fd;
        m->events = events;
    } else if (fd >= 0 && events != m->events) {
        md_loop_watch_set(m->loop, m->watch, events);
        m->events = events;
    }
    arm_misc(m);
}

static void on_io(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)fd;
    md_mqtt *m = ud;
    /* What libmosquitto writes from here (acknowledgements, queued
     * messages an acknowledgement lets go, a backlog) leaves in full
     * segments too. */
    cork(m);
    /* While connecting, reading is also what moves a TLS handshake on. */
    if ((events & MD_LOOP_READ) || !m->up)
        mq.loop_read(m->mosq, 1);
    if (m->conn && (events & MD_LOOP_WRITE))
        mq.loop_write(m->mosq, 1);
    sync_io(m);
}

static void on_connect_timeout(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mqtt *m = ud;
    m->connect_timer = NULL;
    if (m->up)
        return;
    if (m->conn) {
        /* libmosquitto keeps the fd until the next attempt replaces it:
         * make it inert now. */
        int fd = mq.socket(m->mosq);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
    }
    char msg[120];
    snprintf(msg, sizeof msg, "no answer within %g s", m->connect_timeout_ms / 1000.0);
    conn_ended(m, md_err_token(-MD_ECONNTIMEOUT), msg);
}

static void connect_to(md_mqtt *m, const char *target)
{
    errno = 0;
    int rc = mq.connect_async(m->mosq, target, m->port, m->keepalive);
    int err = errno;
    if (rc == MOSQ_ERR_SUCCESS) {
        m->conn = true;
        sync_io(m);
        return;
    }
    char msg[300];
    const char *code =
        md_err_token(rc == MOSQ_ERR_ERRNO ? md_err_connect(err) : -MD_ECONNECT);
    if (rc == MOSQ_ERR_ERRNO && (err == ECONNREFUSED)) {
        snprintf(msg, sizeof msg, "nothing accepts connections at %s:%d", target,
                 m->port);
    } else if (rc == MOSQ_ERR_ERRNO && (err == EHOSTUNREACH || err == ENETUNREACH)) {
        snprintf(msg, sizeof msg, "%s is unreachable: %s", target, strerror(err));
    } else if (rc == MOSQ_ERR_EAI) {
        code = md_err_token(-MD_EDNS);
        snprintf(msg, sizeof msg, "cannot resolve the host name %s", target);
    } else if (rc == MOSQ_ERR_TLS) {
        code = "tls";
        snprintf(msg, sizeof msg, "TLS setup failed: %s",
                 m->last_log[0] ? m->last_log : mq.strerror(rc));
    } else {
        snprintf(msg, sizeof msg, "%s",
                 rc == MOSQ_ERR_ERRNO ? strerror(err) : mq.strerror(rc));
    }
    conn_ended(m, code, msg);
}

static void on_resolved(md_loop *loop, struct addrinfo *res, int err, void *ud)
{
    (void)loop;
    md_mqtt *m = ud;
    m->res = NULL;
    if (err < 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "cannot resolve the host name %s: %s", m->host,
                 md_strerror(err));
        conn_ended(m, "dns", msg);
        return;
    }
    char addr[INET6_ADDRSTRLEN];
    const void *a = res->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, a, addr, sizeof addr);
    freeaddrinfo(res);
    connect_to(m, addr);
}

/* The name is looked up off the loop thread by conn.c. */
static void start_resolve(md_mqtt *m)
{
    m->res =
        md_resolve_start(m->loop, m->host, m->port, SOCK_STREAM, false, on_resolved, m);
    if (!m->res)
        conn_ended(m, "dns", "cannot start a thread to resolve the host name");
}

/* libmosquitto formats a debug line for every packet once a log callback
 * is set (vsnprintf per message: a third of the CPU a publish costs), so
 * cb_log listens only while connecting, when its lines explain failures
 * (OpenSSL's reasons), or always at log level trace. */
static void hook_log(md_mqtt *m, bool on)
{
    if (on != m->log_hooked) {
        mq.log_callback_set(m->mosq, on ? cb_log : NULL);
        m->log_hooked = on;
    }
}

static void begin_attempt(md_mqtt *m)
{
    hook_log(m, true);
    m->attempts++;
    m->state = ST_CONNECTING;
    m->last_log[0] = '\0';
    m->connect_timer = md_loop_timer(
        m->loop, md_loop_now(m->loop) + m->connect_timeout_ms, on_connect_timeout, m);
    if (m->connect_timer)
        md_loop_timer_keepalive(m->loop, m->connect_timer, false);
    if (m->resolve_name)
        start_resolve(m);
    else
        connect_to(m, m->host);
}

/* }===== */

/* {===== public API ===== */

static bool is_literal_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Options that libmosquitto must have before connecting. */
static int configure(md_mqtt *m, const md_mqtt_config *cfg, char *err, size_t errlen,
                     const char **code)
{
    struct mosquitto *q = m->mosq;
    *code = "invalid";
    mq.int_option(q, MOSQ_OPT_PROTOCOL_VERSION,
                  cfg->protocol == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mq.int_option(q, MOSQ_OPT_SEND_MAXIMUM, cfg->max_inflight);
    mq.int_option(q, MOSQ_OPT_TCP_NODELAY, 1);
    if (cfg->username && mq.username_pw_set(q, cfg->username, cfg->password)) {
        snprintf(err, errlen, "invalid username or password (they must be UTF-8)");
        return -1;
    }
    if (cfg->will_topic &&
        mq.will_set(q, cfg->will_topic, cfg->will_len, cfg->will_payload, cfg->will_qos,
                    cfg->will_retain)) {
        snprintf(err, errlen, "invalid last will: the topic '%s' cannot be published to",
                 cfg->will_topic);
        return -1;
    }
    if (cfg->tls) {
        *code = "tls";
        /* No CA given: the system's certificates (libmosquitto needs a
         * file or directory even when told to use them). */
        const char *ca_path = cfg->ca_path;
        if (!cfg->ca_file && !cfg->ca_path) {
            mq.int_option(q, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
            ca_path = "/etc/ssl/certs";
        }
        int rc =
            mq.tls_set(q, cfg->ca_file, ca_path, cfg->cert_file, cfg->key_file, NULL);
        if (rc) {
            snprintf(err, errlen,
                     "cannot set up TLS: %s (check that the CA file, certificate and key "
                     "exist and are readable)",
                     rc == MOSQ_ERR_INVAL ? "a file cannot be read" : mq.strerror(rc));
            return -1;
        }
        if (cfg->tls_insecure) {
            mq.tls_opts_set(q, 0, NULL, NULL); /* SSL_VERIFY_NONE */
            mq.tls_insecure_set(q, true);
        }
    }
    mq.connect_with_flags_callback_set(q, cb_connect);
    mq.disconnect_callback_set(q, cb_disconnect);
    mq.publish_callback_set(q, cb_publish);
    mq.message_callback_set(q, cb_message);
    mq.subscribe_callback_set(q, cb_subscribe);
    return 0;
}

md_mqtt *md_mqtt_new(md_loop *loop, const md_mqtt_config *cfg, const md_mqtt_handlers *h,
                     void *ud, char *err, size_t errlen, const char **code)
{
    *code = "invalid";
    if (!cfg->tls && cfg->protocol != 5 && !force_mosquitto()) {
        md_mqtt *m = calloc(1, sizeof *m);
        if (!m) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        m->plain = md_mqttp_new(loop, cfg, h, ud, err, errlen, code);
        if (!m->plain) {
            free(m);
            return NULL;
        }
        return m;
    }
    if (load_library(err, errlen) < 0) {
        *code = "no_library";
        return NULL;
    }
    md_mqtt *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->h = *h;
    m->ud = ud;
    m->fd = -1;
    m->net_fd = -1;
    m->write_ms = -1;
    m->host = strdup(cfg->host);
    char name[300];
    snprintf(name, sizeof name, "%s:%d", cfg->host, cfg->port);
    m->name = strdup(cfg->name ? cfg->name : name);
    m->port = cfg->port;
    m->keepalive = cfg->keepalive;
    m->out.max_queued = cfg->max_queued;
    m->out.max_queued_bytes = cfg->max_queued_bytes;
    m->max_inflight = cfg->max_inflight;
    m->connect_timeout_ms = cfg->connect_timeout_ms;
    m->backoff_min_ms = cfg->backoff_min_ms;
    m->backoff_max_ms = cfg->backoff_max_ms;
    m->backoff_ms = cfg->backoff_min_ms;
    m->seed = (unsigned)(uintptr_t)m ^ (unsigned)md_loop_now(loop);
    m->host_is_literal = is_literal_address(cfg->host);
    m->resolve_name = !m->host_is_literal && !(cfg->tls && !cfg->tls_insecure);
    if (!m->host || !m->name) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    errno = 0;
    m->mosq = mq.new(cfg->client_id, cfg->clean_session, m);
    if (!m->mosq) {
        snprintf(err, errlen,
                 errno == EINVAL
                     ? "a persistent session (clean = false) needs a client id"
                     : "cannot create the MQTT client: out of memory");
        goto fail;
    }
    if (configure(m, cfg, err, errlen, code) < 0)
        goto fail;
    md_loop_hold_local(loop); /* the client lives on the loop */
    /* The first attempt starts from the loop, so that no handler runs
     * before the caller has the client. */
    m->state = ST_WAITING;
    m->backoff_timer = md_loop_timer(loop, md_loop_now(loop), on_backoff, m);
    return m;
fail:
    if (m->mosq)
        mq.destroy(m->mosq);
    free(m->host);
    free(m->name);
    free(m);
    return NULL;
}

int md_mqtt_publish(md_mqtt *m, const char *topic, const void *payload, size_t len,
                    int qos, bool retain, void *tag, int *mid)
{
    if (m->plain)
        return md_mqttp_publish(m->plain, topic, payload, len, qos, retain, tag, mid);
    if (len > MQTT_MAX_PAYLOAD)
        return -MD_MQTT_ETOOLARGE;
    size_t bytes = strlen(topic) + len;
    if ((qos == 0 && !m->up) || (qos > 0 && !md_mqtt_outq_has_room(&m->out, bytes))) {
        /* libmosquitto is not called: check the topic here */
        if (md_mqtt_check_topic(topic, false) < 0)
            return -MD_MQTT_ETOPIC;
    }
    if (qos == 0 && !m->up) {
        m->not_sent++;
        return -MD_MQTT_ENOTCONN;
    }
    if (qos > 0 && !md_mqtt_outq_has_room(&m->out, bytes)) {
        note_drop(m, bytes);
        return -MD_MQTT_EFULL;
    }
    cork(m);
    int id = 0;
    int rc = mq.publish(m->mosq, &id, topic, (int)len, payload, qos, retain);
    uint64_t seq = md_mqtt_outq_issue(&m->out);
    *mid = id;
    if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_MALFORMED_UTF8)
        return -MD_MQTT_ETOPIC;
    if (rc == MOSQ_ERR_PAYLOAD_SIZE)
        return -MD_MQTT_ETOOLARGE;
    if (rc == MOSQ_ERR_NOMEM)
        return -MD_MQTT_ENOMEM;
    /* QoS 1/2: NO_CONN (and a failed write) still leaves it queued. */
    if (qos > 0) {
        if (md_mqtt_outq_add(&m->out, id, bytes, tag, seq) < 0)
            md_log_error("mqtt %s: out of memory while counting queued messages",
                         m->name);
    } else if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN &&
               rc != MOSQ_ERR_CONN_LOST && rc != MOSQ_ERR_ERRNO) {
        return -MD_MQTT_ELIB;
    }
    m->published++;
    if (m->conn)
        sync_io(m);
    return 0;
}

int md_mqtt_subscribe(md_mqtt *m, const char *filter, int qos, int *mid)
{
    if (m->plain)
        return md_mqttp_subscribe(m->plain, filter, qos, mid);
    if (md_mqtt_check_topic(filter, true))
        return -MD_MQTT_ETOPIC;
    if (!m->up)
        return -MD_MQTT_ENOTCONN;
    int rc = mq.subscribe(m->mosq, mid, filter, qos);
    md_mqtt_outq_issue(&m->out);
    if (rc == MOSQ_ERR_NOMEM)
        return -MD_MQTT_ENOMEM;
    if (rc == MOSQ_ERR_NO_CONN)
        return -MD_MQTT_ENOTCONN;
    if (rc)
        return -MD_MQTT_ELIB;
    if (m->conn)
        sync_io(m);
    return 0;
}

int md_mqtt_unsubscribe(md_mqtt *m, const char *filter)
{
    if (m->plain)
        return md_mqttp_unsubscribe(m->plain, filter);
    if (!m->up)
        return -MD_MQTT_ENOTCONN;
    int mid;
    int rc = mq.unsubscribe(m->mosq, &mid, filter);
    md_mqtt_outq_issue(&m->out);
    if (m->conn)
        sync_io(m);
    return rc ? -MD_MQTT_ELIB : 0;
}

bool md_mqtt_connected(const md_mqtt *m)
{
    if (m->plain)
        return md_mqttp_connected(m->plain);
    return m->up;
}

void md_mqtt_get_stats(const md_mqtt *m, md_mqtt_stats *out)
{
    if (m->plain) {
        md_mqttp_get_stats(m->plain, out);
        return;
    }
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
        .queued = m->out.queued,
        .queued_bytes = m->out.queued_bytes,
        .last_code = m->last_code,
        .last_error = m->last_code ? m->last_error : NULL,
    };
}

void md_mqtt_close(md_mqtt *m, bool graceful, bool engine_closing)
{
    if (!m)
        return;
    if (m->plain) {
        md_mqttp_close(m->plain, graceful);
        free(m);
        return;
    }
    bool was_up = m->up;
    m->state = ST_CLOSED; /* callbacks from here on only clean up */
    cancel_timer(m, &m->misc_timer);
    cancel_timer(m, &m->connect_timer);
    cancel_timer(m, &m->backoff_timer);
    cancel_timer(m, &m->uncork_timer);
    if (m->corked) { /* let the DISCONNECT below go out at once */
        set_cork(m, 0);
        m->corked = false;
    }
    (void)engine_closing; /* a lookup in flight is cancelled, never waited for */
    if (m->res) {
        md_resolve_cancel(m->res);
        m->res = NULL;
    }
    if (was_up && graceful)
        mq.disconnect(m->mosq); /* written at once unless the socket is full */
    if (m->out.queued)          /* never silently */
        md_log_warn("mqtt %s: closed with %d QoS 1/2 message(s) the broker has not "
                    "acknowledged; they are lost",
                    m->name, m->out.queued);
    unwatch(m);
    unwatch_network(m);
    mq.destroy(m->mosq);
    md_loop_release_local(m->loop);
    md_mqtt_outq_free(&m->out);
    free(m->host);
    free(m->name);
    free(m);
}

/* }===== */
