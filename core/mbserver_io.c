/*
 * mbserver_io.c - Modbus servers on the event loop: a TCP or RTU-over-TCP
 * listener with many connections, a UDP or RTU-over-UDP socket, or a serial
 * line (a real port or a pty). See mbserver.h for the API and mbserver.c
 * for why moondog does not use libmodbus's server functions.
 *
 * Design. Every fd is non-blocking and watched by md_loop; nothing here
 * ever waits. A stream connection collects bytes in its input buffer and
 * takes whole ADUs off the front (md_mbsrv_frame), so a slow client only
 * ever costs its own buffer. Output that the socket does not take at once
 * is queued behind a write watch; a client that lets more than OUT_CAP
 * pile up is dropped. A malformed MBAP header closes that connection (the
 * stream cannot be resynchronised); RTU garbage is dropped one byte at a
 * time, and a partial RTU frame that sees no new byte for GAP_MS is stale
 * and dropped too (RTU's own delimiter is silence).
 *
 * Idle peers. Connections are a shared resource that one host could hold
 * forever (issue 17: 1024 idle sockets, or 6 bytes of an MBAP header on
 * each, locked every real client out). Each TCP connection has one timer:
 * it closes a connection that sent nothing for idle_ms, or that left a
 * frame unfinished for frame_ms. When max_clients are open, a new
 * connection closes the one that has been quiet the longest (one waiting
 * for a hook is never chosen) instead of being refused.
 *
 * Hooks. With hook_reads / hook_writes set, a request that reads / writes
 * goes to a FIFO instead of being answered at once, and notify() wakes
 * whoever serves hooks (the Lua side). md_mbsrv_next() moves the oldest to
 * the in-flight list, md_mbsrv_reply() answers it. Until then its
 * connection processes nothing else, which keeps the answers of one
 * connection in request order; other connections go on.
 *
 * Units. RTU framing: unit 0 is a broadcast (writes go to every map, no
 * answer), frames for units without a map are ignored (another device on
 * the bus). MBAP framing: a unit without a map gets exception 0x0B (what a
 * gateway answers for a silent device); the shared map of a server without
 * a unit list answers every id there (TCP clients use 0, 1 or 255 for "the
 * device itself") and ids 1..247 on RTU.
 *
 * Threads: loop thread only. Ownership: the server owns its maps,
 * connections and queued requests. A request whose connection closed keeps
 * going (its write still applies) but is answered to nobody.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mbserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "serial.h"
#include "stream.h"

enum {
    IN_CAP = 4096,        /* input buffer of a connection (15+ whole ADUs) */
    OUT_CAP = 64 * 1024,  /* queued output past which a slow reader is dropped */
    GAP_MS = 100,         /* an RTU frame part with no new byte this long is stale */
    MAX_CLIENTS = 1024,   /* default max_clients */
    IDLE_MS = 60000,      /* default idle_ms */
    FRAME_MS = 5000,      /* default frame_ms */
    MAX_QUEUED = 4096,    /* requests waiting for hooks; beyond: exception 6 */
    RETRY_MS = 1000,      /* reopen a serial line that went away */
    ACCEPT_PAUSE_MS = 100 /* out of fds: stop accepting for a moment */
};

typedef struct conn conn;
typedef struct qreq qreq;

/* Where a response goes: a connection or a datagram peer. */
typedef struct target {
    conn *c; /* NULL for datagrams */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    uint16_t tid;
    uint8_t unit;
    bool broadcast;
} target;

/* A request waiting for a hook; owned by the server (queue or in flight). */
struct qreq {
    md_mbsrv_req r; /* the part the hook side sees */
    qreq *prev, *next;
    target to; /* to.c is cleared when the connection closes */
};

/* A TCP connection, or the serial line (serial = true). Owned by the server. */
struct conn {
    md_mbsrv *srv;
    conn *prev, *next; /* the server's list of connections */
    int fd;
    md_watch *watch;
    bool serial;
    bool eof;      /* the peer finished sending: close once answered */
    qreq *waiting; /* the request this connection waits on, or NULL */
    md_timer *gap_timer;
    md_timer *idle_timer; /* TCP: idle or unfinished-frame timeout */
    int64_t idle_due;     /* when idle_timer fires */
    int64_t last_rx;
    int64_t partial_since; /* when the unfinished input started; 0: none */
    size_t in_len, out_len, out_cap;
    uint8_t *out;
    char peer[64]; /* "host:port" of a TCP client, for the hooks' counters */
    uint8_t in[IN_CAP];
};

/* Owned by whoever opened it (the Lua userdata); freed by md_mbsrv_free. */
struct md_mbsrv {
    md_loop *loop;
    md_mbsrv_config cfg;
    int framing;
    int fd; /* listening or datagram socket; -1 for serial and when closed */
    md_watch *watch;
    md_timer *retry_timer; /* serial reopen, or accept pause */
    int port;
    md_mbsrv_map *any;        /* one map for every unit id, or NULL */
    md_mbsrv_map *units[256]; /* per unit id otherwise */
    conn *conns;              /* TCP connections */
    conn *line;               /* the serial line while open */
    qreq *queue_head, *queue_tail, *inflight;
    int nqueued; /* queued + in flight */
    uint64_t next_id;
    md_mbsrv_notify_fn notify;
    void *notify_ud;
    md_mbsrv_stats stats;
    bool closed;
};

static void conn_process(conn *c);

/* {===== connections ===== */

static bool is_stream(const md_mbsrv *s)
{
    return s->cfg.transport == MD_MBSRV_TCP || s->cfg.transport == MD_MBSRV_RTU_TCP;
}

/* Read and write interest: input while there is room and the peer sends,
 * output while some is queued. */
static void conn_update(conn *c)
{
    int ev = 0;
    if (!c->eof && (c->in_len < IN_CAP || c->serial))
        ev |= MD_LOOP_READ;
    if (c->out_len > 0)
        ev |= MD_LOOP_WRITE;
    md_loop_watch_set(c->srv->loop, c->watch, ev);
}

static void on_retry(md_loop *loop, md_timer *t, void *ud);

static void arm_retry(md_mbsrv *s, int ms)
{
    if (!s->retry_timer && !s->closed)
        s->retry_timer = md_loop_timer(s->loop, md_loop_now(s->loop) + ms, on_retry, s);
}

/* Close and free c. A request it waits on is answered to nobody. The
 * serial line is reopened later: a simulator outlives an unplugged port. */
static void conn_close(conn *c)
{
    md_mbsrv *s = c->srv;
    if (c->waiting)
        c->waiting->to.c = NULL;
    if (c->gap_timer)
        md_loop_timer_cancel(s->loop, c->gap_timer);
    if (c->idle_timer)
        md_loop_timer_cancel(s->loop, c->idle_timer);
    md_loop_unwatch(s->loop, c->watch);
    if (c->serial)
        md_serial_close(c->fd); /* also gives TIOCEXCL back */
    else
        close(c->fd);
    if (c->serial) {
        s->line = NULL;
        arm_retry(s, RETRY_MS);
    } else {
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        s->stats.clients--;
    }
    free(c->out);
    free(c);
}

/* The line or connection failed; also used for "drop this client". */
static void conn_fail(conn *c, const char *why, int err)
{
    md_mbsrv *s = c->srv;
    if (c->serial)
        md_log_warn("modbus server %s: %s: %s; reopening", s->cfg.link.device, why,
                    err ? strerror(err) : "hung up");
    else
        md_log_debug("modbus server: closing a connection: %s%s%s", why, err ? ": " : "",
                     err ? strerror(err) : "");
    conn_close(c);
}

static conn *conn_new(md_mbsrv *s, int fd, bool serial)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    c->fd = fd;
    c->serial = serial;
    c->last_rx = md_loop_now(s->loop);
    return c;
}

/* Queue or write bytes. Returns 0, or -1 when c was closed (do not touch
 * it any more). */
static int conn_send(conn *c, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (c->out_len == 0 && done < n) {
        ssize_t w = c->serial ? write(c->fd, p + done, n - done)
                              : send(c->fd, p + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w < 0) {
            conn_fail(c, "write failed", errno);
            return -1;
        }
        done += (size_t)w;
    }
    size_t rest = n - done;
    if (rest == 0)
        return 0;
    if (c->out_len + rest > OUT_CAP) {
        c->srv->stats.dropped++;
        if (!c->serial) {
            conn_fail(c, "the client does not read its responses", 0);
            return -1;
        }
        c->out_len = 0; /* nobody drains the line: forget what is queued */
        tcflush(c->fd, TCOFLUSH);
    }
    if (c->out_len + rest > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + rest)
            cap *= 2;
        uint8_t *o = realloc(c->out, cap);
        if (!o) {
            conn_fail(c, "out of memory", ENOMEM);
            return -1;
        }
        c->out = o;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p + done, rest);
    c->out_len += rest;
    conn_update(c);
    return 0;
}

/* Write queued output. Returns 0, or -1 when c was closed. */
static int conn_flush(conn *c)
{
    while (c->out_len > 0) {
        ssize_t w = c->serial ? write(c->fd, c->out, c->out_len)
                              : send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w < 0) {
            conn_fail(c, "write failed", errno);
            return -1;
        }
        memmove(c->out, c->out + w, c->out_len - (size_t)w);
        c->out_len -= (size_t)w;
    }
    conn_update(c);
    return 0;
}

static void consume(conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* }===== */

/* {===== answering ===== */

static md_mbsrv_map *first_map(md_mbsrv *s)
{
    if (s->any)
        return s->any;
    for (int u = 1; u < 256; u++)
        if (s->units[u])
            return s->units[u];
    return NULL;
}

/* Send a response PDU to its target. Returns -1 when the connection closed. */
static int send_pdu(md_mbsrv *s, const target *t, const uint8_t *pdu, size_t len)
{
    uint8_t adu[MD_MB_MAX_TCP];
    size_t n = md_mbsrv_wrap(s->framing, t->tid, t->unit, pdu, len, adu);
    if (t->c)
        return conn_send(t->c, adu, n);
    if (t->peer_len > 0 && s->fd >= 0) /* a datagram; if it is lost, the client retries */
        sendto(s->fd, adu, n, MSG_NOSIGNAL, (const struct sockaddr *)&t->peer,
               t->peer_len);
    return 0;
}

static int send_exception(md_mbsrv *s, const target *t, uint8_t fc, int code)
{
    uint8_t resp[2];
    size_t len;
    md_mbsrv_exception(fc, code, resp, &len);
    s->stats.exceptions++;
    return send_pdu(s, t, resp, len);
}

/* Apply a request (unless exception is set) and answer it. A broadcast
 * goes to every map and is never answered. Returns -1 when the connection
 * closed. */
static int finish(md_mbsrv *s, const target *t, md_mbsrv_map *map, const md_mbsrv_op *op,
                  const uint8_t *pdu, int exception)
{
    uint8_t resp[MD_MB_MAX_PDU];
    size_t len = 0;
    if (t->broadcast) {
        if (exception)
            return 0;
        if (s->any)
            md_mbsrv_execute(s->any, op, pdu, resp, &len);
        for (int u = 1; u < 256; u++)
            if (s->units[u])
                md_mbsrv_execute(s->units[u], op, pdu, resp, &len);
        return 0;
    }
    int rc = exception ? exception : md_mbsrv_execute(map, op, pdu, resp, &len);
    if (rc > 0)
        return send_exception(s, t, op->fc, rc);
    return send_pdu(s, t, resp, len);
}

static bool needs_hook(const md_mbsrv *s, const md_mbsrv_op *op)
{
    return (s->cfg.hook_reads && op->rkind != MD_MBSRV_NO_KIND) ||
           (s->cfg.hook_writes && op->wkind != MD_MBSRV_NO_KIND);
}

/* "127.0.0.1:50312" or "[::1]:50312": who a hook's request came from. */
static void peer_text(const struct sockaddr_storage *sa, char *out, size_t size)
{
    char host[48] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, size, "%s:%d", host, port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, size, "[%s]:%d", host, port);
    } else {
        snprintf(out, size, "?");
    }
}

/* Put a request in the hook queue; its connection waits for the answer. */
static int queue_hook(md_mbsrv *s, const target *t, md_mbsrv_map *map,
                      const md_mbsrv_op *op, const md_mbsrv_adu *a)
{
    qreq *q = s->nqueued < MAX_QUEUED ? calloc(1, sizeof *q) : NULL;
    if (!q)
        return t->broadcast ? 0
                            : send_exception(s, t, op->fc, MD_MB_EX_SERVER_DEVICE_BUSY);
    q->r.id = ++s->next_id;
    q->r.unit = t->broadcast ? 0 : t->unit;
    q->r.op = *op;
    memcpy(q->r.pdu, a->pdu, a->pdu_len);
    q->r.pdu_len = a->pdu_len;
    q->r.map = map;
    if (t->peer_len > 0)
        peer_text(&t->peer, q->r.client, sizeof q->r.client);
    else
        snprintf(q->r.client, sizeof q->r.client, "%s",
                 t->c && !t->c->serial ? t->c->peer : "serial");
    q->to = *t;
    if (s->queue_tail)
        s->queue_tail->next = q;
    else
        s->queue_head = q;
    q->prev = s->queue_tail;
    s->queue_tail = q;
    s->nqueued++;
    if (t->c)
        t->c->waiting = q;
    if (s->notify)
        s->notify(s, s->notify_ud);
    return 0;
}

/*
 * One whole request ADU from connection c, or a datagram (c NULL, peer
 * set). Returns -1 when c was closed.
 */
static int handle_adu(md_mbsrv *s, conn *c, const struct sockaddr_storage *peer,
                      socklen_t peer_len, const uint8_t *adu, size_t n)
{
    md_mbsrv_adu a;
    md_mbsrv_unwrap(s->framing, adu, n, &a);
    bool rtu = s->framing == MD_MBSRV_RTU_FRAMING;
    target t = {.c = c, .tid = a.tid, .unit = a.unit, .broadcast = rtu && a.unit == 0};
    if (peer) {
        memcpy(&t.peer, peer, peer_len);
        t.peer_len = peer_len;
    }
    md_mbsrv_map *map = t.broadcast ? first_map(s) : md_mbsrv_unit_map(s, a.unit);
    if (rtu && s->any && a.unit > 247)
        map = NULL; /* reserved RTU addresses */
    if (!map) {
        if (rtu || a.pdu_len < 1 || a.pdu[0] == 0 || a.pdu[0] & MD_MB_FC_EXCEPTION)
            return 0; /* another device's frame */
        return send_exception(s, &t, a.pdu[0], MD_MB_EX_GATEWAY_TARGET_FAILED);
    }
    md_mbsrv_op op;
    int rc = md_mbsrv_parse(a.pdu, a.pdu_len, &op);
    if (rc == MD_MBSRV_NOREPLY) {
        s->stats.bad_frames++;
        return 0;
    }
    s->stats.requests++;
    if (t.broadcast && (rc != 0 || op.wkind == MD_MBSRV_NO_KIND))
        return 0; /* only writes make sense as a broadcast */
    if (rc == 0 && !t.broadcast)
        rc = md_mbsrv_check_write(map, &op); /* never ask a hook about a bad write */
    if (rc > 0)
        return send_exception(s, &t, op.fc, rc);
    if (needs_hook(s, &op))
        return queue_hook(s, &t, map, &op, &a);
    return finish(s, &t, map, &op, a.pdu, 0);
}

/* }===== */

/* {===== stream input ===== */

/* Close a connection whose peer finished sending once nothing is left to
 * answer or write. Returns -1 when it closed. */
static int conn_check_eof(conn *c)
{
    if (!c->eof || c->waiting || c->out_len > 0)
        return 0;
    conn_close(c);
    return -1;
}

static void on_gap(md_loop *loop, md_timer *t, void *ud);
static void on_idle(md_loop *loop, md_timer *t, void *ud);

/* When c times out: frame_ms after an unfinished frame started, else
 * idle_ms after its last byte. */
static int64_t idle_deadline(const conn *c)
{
    const md_mbsrv *s = c->srv;
    if (c->in_len > 0 && c->partial_since)
        return c->partial_since + s->cfg.frame_ms;
    return c->last_rx + s->cfg.idle_ms;
}

/* (Re)arm the TCP connection's timer for its current deadline. */
static void arm_idle(conn *c)
{
    md_mbsrv *s = c->srv;
    if (c->serial)
        return;
    if (c->in_len == 0)
        c->partial_since = 0;
    else if (!c->partial_since)
        c->partial_since = c->last_rx;
    int64_t due = idle_deadline(c);
    if (c->idle_timer && c->idle_due <= due)
        return; /* fires earlier and re-checks */
    if (c->idle_timer)
        md_loop_timer_cancel(s->loop, c->idle_timer);
    c->idle_timer = md_loop_timer(s->loop, due, on_idle, c);
    c->idle_due = due;
    if (c->idle_timer)
        md_loop_timer_keepalive(s->loop, c->idle_timer, false);
}

static void on_idle(md_loop *loop, md_timer *t, void *ud)
{
    (void)t;
    conn *c = ud;
    c->idle_timer = NULL; /* the loop frees it */
    if (c->waiting || c->out_len > 0 || md_loop_now(loop) < idle_deadline(c)) {
        if (c->waiting || c->out_len > 0)
            c->last_rx = md_loop_now(loop); /* busy on our side: not idle */
        arm_idle(c);
        return;
    }
    c->srv->stats.dropped++;
    conn_fail(c, c->in_len > 0 ? "frame left unfinished" : "idle", 0);
}

/* The connection quiet the longest that is not waiting for a hook. */
static conn *oldest_idle(md_mbsrv *s)
{
    conn *best = NULL;
    for (conn *c = s->conns; c; c = c->next)
        if (!c->waiting && (!best || c->last_rx < best->last_rx))
            best = c;
    return best;
}

static void arm_gap(conn *c)
{
    md_mbsrv *s = c->srv;
    if (s->framing == MD_MBSRV_RTU_FRAMING && c->in_len > 0 && !c->waiting &&
        !c->gap_timer) {
        c->gap_timer = md_loop_timer(s->loop, c->last_rx + GAP_MS, on_gap, c);
        if (c->gap_timer)
            md_loop_timer_keepalive(s->loop, c->gap_timer, false);
    }
}

/* Answer every whole request at the front of the input, in order, until one
 * waits for a hook. c may be closed on return. */
static void conn_process(conn *c)
{
    md_mbsrv *s = c->srv;
    bool garbage = false;
    while (!c->waiting && c->in_len > 0) {
        int n = md_mbsrv_frame(s->framing, c->in, c->in_len);
        if (n == 0)
            break;
        if (n == MD_MBSRV_EBADMBAP) {
            s->stats.bad_frames++;
            s->stats.dropped++;
            conn_fail(c, "malformed MBAP header", 0);
            return;
        }
        if (n < 0) { /* RTU: resynchronise one byte further */
            consume(c, 1);
            garbage = true;
            continue;
        }
        /* The handler may close c: work on a copy of the frame. */
        uint8_t adu[MD_MB_MAX_TCP];
        memcpy(adu, c->in, (size_t)n);
        consume(c, (size_t)n);
        if (handle_adu(s, c, NULL, 0, adu, (size_t)n) < 0)
            return;
    }
    if (garbage)
        s->stats.bad_frames++;
    if (c->eof && !c->waiting)
        c->in_len = 0; /* a partial frame at the end will never complete */
    if (conn_check_eof(c) < 0)
        return;
    arm_gap(c);
    arm_idle(c);
    conn_update(c);
}

/* A partial RTU frame saw no new byte for GAP_MS: nothing more is coming
 * for it. Drop bytes until a whole frame starts the buffer or it is empty. */
static void on_gap(md_loop *loop, md_timer *t, void *ud)
{
    (void)t;
    conn *c = ud;
    c->gap_timer = NULL; /* the loop frees it */
    if (c->waiting || c->in_len == 0)
        return;
    if (md_loop_now(loop) - c->last_rx < GAP_MS) {
        arm_gap(c);
        return;
    }
    c->srv->stats.bad_frames++;
    do
        consume(c, 1);
    while (c->in_len > 0 && md_mbsrv_frame(c->srv->framing, c->in, c->in_len) <= 0);
    conn_process(c);
}

static void on_conn_event(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)w;
    conn *c = ud;
    if ((events & MD_LOOP_WRITE) && (conn_flush(c) < 0 || conn_check_eof(c) < 0))
        return;
    if (!(events & MD_LOOP_READ) || c->eof)
        return;
    uint8_t scratch[256];
    bool full = c->in_len == IN_CAP; /* only the serial line reads when full */
    ssize_t r = full ? read(fd, scratch, sizeof scratch)
                     : read(fd, c->in + c->in_len, IN_CAP - c->in_len);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r < 0 || (r == 0 && c->serial)) {
        conn_fail(c, "read failed", r < 0 ? errno : 0);
        return;
    }
    if (r == 0) {
        c->eof = true; /* answer what came, then close */
    } else if (full) {
        c->srv->stats.bad_frames++; /* a busy line misses frames, like a device */
        return;
    } else {
        c->in_len += (size_t)r;
        c->last_rx = md_loop_now(loop);
    }
    conn_process(c);
}

/* }===== */

/* {===== listeners and sockets ===== */

static void on_accept(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)events;
    md_mbsrv *s = ud;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int cfd = accept4(fd, (struct sockaddr *)&peer, &peer_len,
                          SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                md_log_warn("modbus server: cannot accept: %s", strerror(errno));
                md_loop_watch_set(loop, w, 0); /* on_retry resumes */
                arm_retry(s, ACCEPT_PAUSE_MS);
            }
            return; /* EAGAIN: all taken; others (ECONNABORTED): next time */
        }
        if (s->stats.clients >= s->cfg.max_clients) {
            conn *victim = oldest_idle(s);
            if (victim) {
                s->stats.dropped++;
                conn_fail(victim, "the longest idle of a full server", 0);
            }
        }
        conn *c = s->stats.clients < s->cfg.max_clients ? conn_new(s, cfd, false) : NULL;
        if (c)
            c->watch = md_loop_watch(loop, cfd, MD_LOOP_READ, on_conn_event, c);
        if (!c || !c->watch) {
            free(c);
            close(cfd);
            s->stats.dropped++;
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        peer_text(&peer, c->peer, sizeof c->peer);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->stats.clients++;
        s->stats.accepted++;
        arm_idle(c);
    }
}

static void on_datagram(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)events;
    md_mbsrv *s = ud;
    for (int i = 0; i < 64; i++) {      /* then let others run */
        uint8_t buf[MD_MB_MAX_TCP + 1]; /* one more: an oversized datagram shows */
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return;
        int len = md_mbsrv_frame(s->framing, buf, (size_t)n);
        if (len <= 0 || len != n) {
            s->stats.bad_frames++; /* one ADU per datagram, exactly */
            continue;
        }
        handle_adu(s, NULL, &peer, peer_len, buf, (size_t)n);
    }
}

/* Bind a socket of socktype to host:port; listen for streams. */
static int open_socket(md_mbsrv *s, int socktype)
{
    /* conn.c's resolver: "" and "*" bind every address, a literal address
     * needs no lookup, a host name is looked up once, here. */
    if (s->cfg.addrs) /* resolved by the caller */
        return md_stream_bind(s->cfg.addrs, socktype, 64);
    struct addrinfo *res;
    int rc =
        md_conn_resolve_now(s->cfg.link.host, s->cfg.link.port, socktype, true, &res);
    if (rc < 0)
        return rc == -MD_CONN_EDNS ? -MD_MBSRV_ERESOLVE : rc;
    int fd = md_stream_bind(res, socktype, 64);
    freeaddrinfo(res);
    return fd;
}

static int open_network(md_mbsrv *s)
{
    bool stream = is_stream(s);
    int fd = open_socket(s, stream ? SOCK_STREAM : SOCK_DGRAM);
    if (fd < 0)
        return fd;
    s->fd = fd;
    s->port = md_stream_local_port(fd);
    s->watch =
        md_loop_watch(s->loop, fd, MD_LOOP_READ, stream ? on_accept : on_datagram, s);
    return s->watch ? 0 : -errno;
}

/* }===== */

/* {===== serial line ===== */

/* The line is set up by serial.c, as for client buses (locked first, so
 * a line another program uses is refused before its settings change). */
static int open_serial(md_mbsrv *s)
{
    if (!md_serial_baud_ok(s->cfg.link.baud))
        return -MD_MBSRV_EBAUD;
    int fd = md_serial_open(&s->cfg.link);
    if (fd < 0)
        return fd;
    conn *c = conn_new(s, fd, true);
    if (c)
        c->watch = md_loop_watch(s->loop, fd, MD_LOOP_READ, on_conn_event, c);
    if (!c || !c->watch) {
        free(c);
        md_serial_close(fd);
        return -ENOMEM;
    }
    s->line = c;
    return 0;
}

/* Reopen the serial line, or resume accepting after running out of fds. */
static void on_retry(md_loop *loop, md_timer *t, void *ud)
{
    (void)t;
    md_mbsrv *s = ud;
    s->retry_timer = NULL; /* the loop frees it */
    if (s->cfg.transport != MD_MBSRV_RTU) {
        md_loop_watch_set(loop, s->watch, MD_LOOP_READ);
        return;
    }
    if (open_serial(s) == 0)
        md_log_info("modbus server %s: serial line open again", s->cfg.link.device);
    else
        arm_retry(s, RETRY_MS);
}

/* }===== */

/* {===== life cycle ===== */

int md_mbsrv_open(md_loop *loop, const md_mbsrv_config *cfg, const uint8_t *units,
                  int nunits, bool strict, md_mbsrv **out)
{
    *out = NULL;
    if (nunits < 0 || nunits > 255)
        return -EINVAL;
    md_mbsrv *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->cfg = *cfg;
    if (s->cfg.idle_ms <= 0)
        s->cfg.idle_ms = IDLE_MS;
    if (s->cfg.frame_ms <= 0)
        s->cfg.frame_ms = FRAME_MS;
    if (s->cfg.max_clients <= 0)
        s->cfg.max_clients = MAX_CLIENTS;
    s->fd = -1;
    bool rtu = cfg->transport == MD_MBSRV_RTU || cfg->transport == MD_MBSRV_RTU_TCP ||
               cfg->transport == MD_MBSRV_RTU_UDP;
    s->framing = rtu ? MD_MBSRV_RTU_FRAMING : MD_MBSRV_MBAP;
    int rc = 0;
    if (nunits == 0 && !(s->any = md_mbsrv_map_new(strict)))
        rc = -ENOMEM;
    for (int i = 0; rc == 0 && i < nunits; i++) {
        if (units[i] == 0)
            rc = -EINVAL;
        else if (!s->units[units[i]] && !(s->units[units[i]] = md_mbsrv_map_new(strict)))
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = cfg->transport == MD_MBSRV_RTU ? open_serial(s) : open_network(s);
    if (rc < 0) {
        md_mbsrv_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void free_list(qreq *q)
{
    while (q) {
        qreq *next = q->next;
        free(q);
        q = next;
    }
}

void md_mbsrv_close(md_mbsrv *s)
{
    if (!s || s->closed)
        return;
    s->closed = true;
    while (s->conns)
        conn_close(s->conns);
    if (s->line)
        conn_close(s->line); /* arm_retry does nothing once closed */
    if (s->retry_timer)
        md_loop_timer_cancel(s->loop, s->retry_timer);
    s->retry_timer = NULL;
    md_loop_unwatch_close(s->loop, &s->watch, &s->fd);
    free_list(s->queue_head);
    free_list(s->inflight);
    s->queue_head = s->queue_tail = s->inflight = NULL;
    s->nqueued = 0;
    if (s->notify)
        s->notify(s, s->notify_ud);
}

void md_mbsrv_free(md_mbsrv *s)
{
    if (!s)
        return;
    md_mbsrv_close(s);
    md_mbsrv_map_free(s->any);
    for (int u = 0; u < 256; u++)
        md_mbsrv_map_free(s->units[u]);
    free(s);
}

bool md_mbsrv_closed(const md_mbsrv *s)
{
    return s->closed;
}

void md_mbsrv_set_notify(md_mbsrv *s, md_mbsrv_notify_fn fn, void *ud)
{
    s->notify = fn;
    s->notify_ud = ud;
}

md_mbsrv_map *md_mbsrv_unit_map(md_mbsrv *s, int unit)
{
    if (s->any)
        return s->any;
    return unit >= 0 && unit < 256 ? s->units[unit] : NULL;
}

bool md_mbsrv_any_unit(const md_mbsrv *s)
{
    return s->any != NULL;
}

int md_mbsrv_units(const md_mbsrv *s, uint8_t *units)
{
    int n = 0;
    for (int u = 1; u < 256; u++)
        if (s->units[u])
            units[n++] = (uint8_t)u;
    return n;
}

int md_mbsrv_port(const md_mbsrv *s)
{
    return s->port;
}

void md_mbsrv_get_stats(const md_mbsrv *s, md_mbsrv_stats *out)
{
    *out = s->stats;
}

bool md_mbsrv_has_queued(const md_mbsrv *s)
{
    return s->queue_head != NULL;
}

/* }===== */

/* {===== hooks ===== */

const md_mbsrv_req *md_mbsrv_next(md_mbsrv *s)
{
    qreq *q = s->queue_head;
    if (!q)
        return NULL;
    s->queue_head = q->next;
    if (s->queue_head)
        s->queue_head->prev = NULL;
    else
        s->queue_tail = NULL;
    q->prev = NULL;
    q->next = s->inflight;
    if (s->inflight)
        s->inflight->prev = q;
    s->inflight = q;
    return &q->r;
}

bool md_mbsrv_reply(md_mbsrv *s, uint64_t id, int exception)
{
    qreq *q = s->inflight;
    while (q && q->r.id != id)
        q = q->next;
    if (!q)
        return false;
    if (q->prev)
        q->prev->next = q->next;
    else
        s->inflight = q->next;
    if (q->next)
        q->next->prev = q->prev;
    s->nqueued--;
    conn *c = q->to.c;
    if (c)
        c->waiting = NULL;
    int rc = finish(s, &q->to, q->r.map, &q->r.op, q->r.pdu, exception);
    free(q);
    if (c && rc == 0)
        conn_process(c); /* its next request, if one is waiting */
    return true;
}

/* }===== */
