/*
 * mbus_net.c - Modbus client buses on a socket (tcp, udp, rtu+tcp,
 * rtu+udp), run on the loop thread with no worker (see mbus.c for why).
 *
 * Design. The socket is non-blocking and has one watch for its whole life:
 * READ interest always (no epoll_ctl per request), WRITE interest only
 * while a connect is in progress or a send did not go out whole. The queue
 * (writes ahead of reads) is the bus's plain lists. pump() starts the next
 * request whenever the bus is free: check its queue deadline, wait out the
 * configured delay with a timer, connect if needed, then send the ADU.
 * Bytes that arrive go into the bus's receive buffer and are framed with
 * mbus.c's helpers; answers to other transactions are skipped. The first
 * complete answer, an error, the response timer or a lost connection ends
 * the transaction (finish()): statistics, then the request's completion is
 * called right here on the loop thread, then pump() again. A request can
 * so complete inside md_mbus_submit() (e.g. during a connect backoff).
 *
 * Timers. The response deadline is a lazy timer: a new transaction whose
 * deadline is not earlier than the pending timer's keeps that timer, which
 * re-arms itself for the true deadline when it fires early. Back-to-back
 * transactions so cost no timer allocation each; an idle bus keeps at most
 * one timer until it fires once. Timers and the watch do not keep the loop
 * alive by themselves: the submitter holds the loop for each request
 * (mbus_lua.c does), and an idle open bus must not stop a script's exit.
 *
 * Stale input. While idle, whatever arrives is read and dropped, and a
 * peer that hangs up is noticed at once (the next request reconnects).
 * After a transaction that ended in an error or left bytes behind, the
 * socket is drained before the next send, so a late answer to a timed-out
 * request cannot pass for the next one's (RTU framing has no transaction
 * id). A clean transaction costs no extra syscall for this.
 *
 * Connecting. getaddrinfo() resolves the host on the loop thread: a literal
 * IPv4/IPv6 address (the usual case for devices) is parsed without any
 * lookup and never blocks; a host name costs one blocking DNS lookup per
 * connect attempt, which is accepted (attempts are rare, and back off after
 * failures). Each address is then tried with a non-blocking connect under
 * the connect timeout. On failure the current request fails with ECONNECT
 * and the backoff of mbus.c applies.
 *
 * Threads: loop thread only; no lock. Ownership: a request belongs to the
 * bus from md_mbus_submit() until its completion is called. The bus, its
 * socket, watch and timers are freed by md_mbus_close(), which completes
 * the request in flight and every queued one with ECLOSED first.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mbcodec.h"
#include "mbus_impl.h"

enum {
    IN_CAP = 600,   /* receive buffer: two whole ADUs and some */
    DRAIN_MAX = 64, /* reads of stale input before a send, at most */
};

/* Owned by the bus. */
typedef struct mbus_net {
    int fd;          /* -1: no connection */
    md_watch *watch; /* on fd */
    int events;      /* the watch's interest */

    bool connecting;
    struct addrinfo *addrs, *next_addr; /* while connecting */
    int connect_err;                    /* the last address's error */
    md_timer *connect_timer;

    md_mbus_req *cur; /* in flight, or waiting for its connect */
    bool pumping;     /* pump() runs: nested calls return at once */
    bool sent;        /* cur went (or is going) out: t0 is valid */
    bool other_tid;   /* an answer to another transaction was skipped */
    bool dirty;       /* stale input may be waiting: drain before sending */
    double t0;        /* when cur was sent, ms */

    uint8_t out[MD_MB_MAX_TCP];
    size_t out_len, out_off; /* out[out_off..out_len) is still to send */
    uint8_t in[IN_CAP];
    size_t in_len;

    int64_t due;     /* response deadline; 0: none */
    md_timer *timer; /* response timer, due at timer_due <= due */
    int64_t timer_due;
    md_timer *delay_timer; /* waits out cfg.delay_ms between transactions */
    int64_t last_end_ms;
} mbus_net;

static void pump(md_mbus *b);
static void on_io(md_loop *loop, md_watch *w, int fd, int events, void *ud);

/* Latency is a measurement, kept apart from md_loop_now()'s scheduling
 * clock: it needs better than millisecond resolution. */
static double mono_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* {===== socket ===== */

static int set_events(md_mbus *b, int events)
{
    mbus_net *n = b->net;
    if (n->events == events)
        return 0;
    int rc = md_loop_watch_set(b->loop, n->watch, events);
    if (rc == 0)
        n->events = events;
    return rc;
}

/* Forget the socket and everything tied to it. */
static void disconnect(md_mbus *b)
{
    mbus_net *n = b->net;
    if (n->watch) {
        md_loop_unwatch(b->loop, n->watch);
        n->watch = NULL;
    }
    if (n->fd >= 0) {
        close(n->fd);
        n->fd = -1;
    }
    if (n->connect_timer) {
        md_loop_timer_cancel(b->loop, n->connect_timer);
        n->connect_timer = NULL;
    }
    if (n->addrs) {
        freeaddrinfo(n->addrs);
        n->addrs = n->next_addr = NULL;
    }
    n->connecting = false;
    n->events = 0;
    n->in_len = n->out_len = n->out_off = 0;
    n->dirty = false;
}

/* Send what is left of out. 0 all sent, 1 the rest waits for WRITE
 * readiness, -errno. */
static int flush(md_mbus *b)
{
    mbus_net *n = b->net;
    while (n->out_off < n->out_len) {
        ssize_t w =
            send(n->fd, n->out + n->out_off, n->out_len - n->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                int rc = set_events(b, MD_LOOP_READ | MD_LOOP_WRITE);
                return rc < 0 ? rc : 1;
            }
            return -err;
        }
        n->out_off += (size_t)w;
    }
    return set_events(b, MD_LOOP_READ);
}

/* Read and drop input that waits: late answers to earlier transactions.
 * Returns 0, or -1 when the connection turned out closed or broken. */
static int drain(md_mbus *b)
{
    mbus_net *n = b->net;
    bool dgram = mbus_is_datagram(b);
    uint8_t junk[512];
    n->dirty = false;
    for (int i = 0; i < DRAIN_MAX; i++) {
        ssize_t got = recv(n->fd, junk, sizeof junk, MSG_DONTWAIT);
        if (got > 0 || (got == 0 && dgram))
            continue;
        if (got == 0)
            return -1; /* the peer closed the stream */
        int err = errno;
        if (err == EINTR)
            continue;
        return err == EAGAIN || err == EWOULDBLOCK ? 0 : -1;
    }
    return 0;
}

/* }===== */

/* {===== transactions ===== */

/* Hand r back: statistics, then its completion (which may free r). */
static void complete(md_mbus *b, md_mbus_req *r, int status)
{
    r->status = status;
    mbus_record(b, r);
    r->done.fn(b->loop, r->done.ud);
}

/* End the current transaction with rc and start the next one. */
static void finish(md_mbus *b, int rc)
{
    mbus_net *n = b->net;
    md_mbus_req *r = n->cur;
    n->cur = NULL;
    n->due = 0;
    if (n->sent) {
        n->sent = false;
        r->latency_ms = mono_ms_f() - n->t0;
        if ((rc == 0 || rc == -MD_MBUS_EEXCEPTION) && !mbus_is_broadcast(b, r))
            mbus_adapt_timeout(b, r->latency_ms);
    }
    if (n->fd >= 0 && !n->connecting) {
        bool stream = !mbus_is_datagram(b);
        bool unsent = n->out_off < n->out_len;
        /* A stream that lost a frame boundary or its peer must be reopened.
         * So must one whose answer timed out half-received: its tail would
         * arrive in the next transaction and read as a broken header
         * (issue 17). A whole late MBAP answer is skipped by its tid; RTU
         * framing has none, and a late answer would pass for the next
         * request's, so an RTU stream is reopened after any timeout. */
        bool timed_out = rc == -MD_MBUS_ETIMEOUT || rc == -MD_MBUS_EBADTID;
        bool cut = timed_out && (n->in_len > 0 || mbus_is_rtu_framing(b));
        if (rc == -MD_MBUS_ECONNLOST ||
            (stream && (rc == -MD_MBUS_EMALFORMED || unsent || cut))) {
            disconnect(b);
        } else {
            if (n->in_len > 0 || (rc != 0 && rc != -MD_MBUS_EEXCEPTION))
                n->dirty = true; /* late or extra frames may follow */
            n->in_len = 0;
            if (unsent) { /* a datagram that never went out */
                n->out_off = n->out_len = 0;
                if (set_events(b, MD_LOOP_READ) < 0)
                    disconnect(b);
            }
        }
    }
    if (b->cfg.delay_ms > 0)
        n->last_end_ms = md_loop_now(b->loop);
    complete(b, r, rc);
    pump(b);
}

static void on_deadline(md_loop *loop, md_timer *t, void *ud);

/* Time the response from now on; see "Timers" above. 0 or -ENOMEM. */
static int arm_deadline(md_mbus *b, int64_t due)
{
    mbus_net *n = b->net;
    n->due = due;
    if (n->timer && n->timer_due <= due)
        return 0;
    if (n->timer)
        md_loop_timer_cancel(b->loop, n->timer);
    n->timer = md_loop_timer(b->loop, due, on_deadline, b);
    if (!n->timer)
        return -ENOMEM;
    n->timer_due = due;
    md_loop_timer_keepalive(b->loop, n->timer, false);
    return 0;
}

static void on_deadline(md_loop *loop, md_timer *t, void *ud)
{
    (void)t;
    md_mbus *b = ud;
    mbus_net *n = b->net;
    n->timer = NULL;
    if (!n->cur || n->due == 0)
        return; /* idle: the timer outlived its transaction */
    if (md_loop_now(loop) < n->due && arm_deadline(b, n->due) == 0)
        return;
    finish(b, n->other_tid ? -MD_MBUS_EBADTID : -MD_MBUS_ETIMEOUT);
}

/* Send the ADU of the current request on the open connection; the
 * response is timed from now. */
static void send_request(md_mbus *b, int64_t now)
{
    mbus_net *n = b->net;
    md_mbus_req *r = n->cur;
    uint8_t pdu[MD_MB_MAX_PDU];
    size_t pdu_len = mbus_build_pdu(r, pdu);
    if (pdu_len == 0) {
        finish(b, -MD_MBUS_EMALFORMED);
        return;
    }
    n->out_len = mbus_build_adu(b, r->unit, pdu, pdu_len, n->out);
    n->out_off = 0;
    n->in_len = 0;
    n->other_tid = false;
    n->sent = true;
    n->t0 = mono_ms_f();
    int rc = flush(b);
    if (rc < 0) {
        r->sys_errno = -rc;
        finish(b, -MD_MBUS_ECONNLOST);
        return;
    }
    if (rc == 0 && mbus_is_broadcast(b, r)) {
        finish(b, 0); /* nobody answers a broadcast */
        return;
    }
    if (arm_deadline(b, now + mbus_request_timeout(b, r)) < 0) {
        r->sys_errno = ENOMEM;
        finish(b, -MD_MBUS_ECONNLOST);
    }
}

/* Frame what arrived for the current request; finish it when complete. */
static void take_input(md_mbus *b)
{
    mbus_net *n = b->net;
    md_mbus_req *r = n->cur;
    bool dgram = mbus_is_datagram(b);
    size_t off = 0;
    for (;;) { /* one stream read may hold several frames */
        size_t have = n->in_len - off;
        int len = mbus_adu_len(b, n->in + off, have);
        if (len < 0 || (dgram && (size_t)len != have)) {
            finish(b, -MD_MBUS_EMALFORMED);
            return;
        }
        if (len == 0 || (size_t)len > have)
            break;
        const uint8_t *pdu;
        size_t pdu_len;
        int rc =
            mbus_check_adu(b, r, n->in + off, (size_t)len, &pdu, &pdu_len, &n->other_tid);
        if (rc == 0)
            rc = mbus_take_response(r, pdu, pdu_len);
        off += (size_t)len;
        if (rc <= 0) {
            n->in_len -= off; /* what is left is not ours */
            finish(b, rc);
            return;
        }
    }
    if (dgram) {
        n->in_len = 0;
        return;
    }
    if (off > 0) {
        memmove(n->in, n->in + off, n->in_len - off);
        n->in_len -= off;
    }
    if (n->in_len == sizeof n->in)
        finish(b, -MD_MBUS_EMALFORMED);
}

/* The socket is readable: input for the current request, stale input to
 * drop, or the peer hanging up. One read per readiness event: the watch is
 * level-triggered, so anything left brings us back. */
static void on_readable(md_mbus *b)
{
    mbus_net *n = b->net;
    bool dgram = mbus_is_datagram(b);
    md_mbus_req *r = n->cur;
    if (!r) {
        uint8_t junk[512];
        ssize_t got = recv(n->fd, junk, sizeof junk, 0);
        int err = got < 0 ? errno : 0;
        if ((got == 0 && !dgram) ||
            (got < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR))
            disconnect(b); /* the next request reconnects */
        return;
    }
    if (dgram)
        n->in_len = 0;
    ssize_t got = recv(n->fd, n->in + n->in_len, sizeof n->in - n->in_len, 0);
    if (got < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
            return;
        r->sys_errno = err;
        finish(b, -MD_MBUS_ECONNLOST);
        return;
    }
    if (got == 0) {
        if (dgram)
            return; /* an empty datagram: nothing to frame */
        r->sys_errno = ECONNRESET;
        finish(b, -MD_MBUS_ECONNLOST);
        return;
    }
    n->in_len += (size_t)got;
    take_input(b);
}

/* }===== */

/* {===== connecting ===== */

static void connect_failed(md_mbus *b, int err)
{
    disconnect(b);
    mbus_connect_failed(b, err, md_loop_now(b->loop));
    b->net->cur->sys_errno = err;
    finish(b, -MD_MBUS_ECONNECT);
}

static void connected(md_mbus *b)
{
    mbus_net *n = b->net;
    if (n->connect_timer) {
        md_loop_timer_cancel(b->loop, n->connect_timer);
        n->connect_timer = NULL;
    }
    freeaddrinfo(n->addrs);
    n->addrs = n->next_addr = NULL;
    n->connecting = false;
    int rc = set_events(b, MD_LOOP_READ);
    if (rc < 0) {
        connect_failed(b, -rc);
        return;
    }
    mbus_connected(b);
    send_request(b, md_loop_now(b->loop));
}

/* Drop the socket of a failed attempt, keep the address list. */
static void drop_attempt(md_mbus *b)
{
    mbus_net *n = b->net;
    if (n->connect_timer) {
        md_loop_timer_cancel(b->loop, n->connect_timer);
        n->connect_timer = NULL;
    }
    md_loop_unwatch(b->loop, n->watch);
    n->watch = NULL;
    close(n->fd);
    n->fd = -1;
    n->events = 0;
}

static void on_connect_timeout(md_loop *loop, md_timer *t, void *ud);

/* Try the remaining addresses until one connects or is in progress. */
static void try_next_addr(md_mbus *b)
{
    mbus_net *n = b->net;
    bool stream = !mbus_is_datagram(b);
    while (n->next_addr) {
        struct addrinfo *ai = n->next_addr;
        n->next_addr = ai->ai_next;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            n->connect_err = errno;
            continue;
        }
        if (stream) { /* one small request at a time: never wait for more */
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        int err = rc < 0 ? errno : 0;
        if (rc < 0 && err != EINPROGRESS) {
            n->connect_err = err;
            close(fd);
            continue;
        }
        int events = rc == 0 ? MD_LOOP_READ : MD_LOOP_WRITE;
        n->watch = md_loop_watch(b->loop, fd, events, on_io, b);
        if (!n->watch) {
            n->connect_err = errno;
            close(fd);
            continue;
        }
        md_loop_watch_keepalive(b->loop, n->watch, false);
        n->fd = fd;
        n->events = events;
        if (rc == 0) {
            connected(b);
            return;
        }
        int ms = b->cfg.connect_timeout_ms ? b->cfg.connect_timeout_ms
                                           : MBUS_CONNECT_TIMEOUT_MS;
        n->connect_timer =
            md_loop_timer(b->loop, md_loop_now(b->loop) + ms, on_connect_timeout, b);
        if (!n->connect_timer) {
            n->connect_err = ENOMEM;
            drop_attempt(b);
            continue;
        }
        md_loop_timer_keepalive(b->loop, n->connect_timer, false);
        return;
    }
    connect_failed(b, n->connect_err);
}

static void on_connect_timeout(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mbus *b = ud;
    mbus_net *n = b->net;
    n->connect_timer = NULL;
    n->connect_err = ETIMEDOUT;
    drop_attempt(b);
    try_next_addr(b);
}

/* The connecting socket is ready: connected, or failed. */
static void connect_ready(md_mbus *b)
{
    mbus_net *n = b->net;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(n->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == 0) {
        /* Writable, or a hang-up without an error: either way the first
         * send tells, and waiting for more would spin on a hang-up. */
        connected(b);
        return;
    }
    n->connect_err = soerr;
    drop_attempt(b);
    try_next_addr(b);
}

/* Open the connection for the current request (it fails on error). */
static void start_connect(md_mbus *b)
{
    mbus_net *n = b->net;
    char port[16];
    snprintf(port, sizeof port, "%d", b->cfg.link.port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = mbus_is_datagram(b) ? SOCK_DGRAM : SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    /* Blocks only to look a host name up in DNS; see "Connecting" above. */
    struct addrinfo *res;
    int grc = getaddrinfo(b->cfg.link.host, port, &hints, &res);
    if (grc != 0) {
        int err = grc == EAI_SYSTEM ? errno : MD_EDNS; /* err.h: "dns" */
        connect_failed(b, err);
        return;
    }
    n->addrs = n->next_addr = res;
    n->connect_err = EHOSTUNREACH;
    n->connecting = true;
    try_next_addr(b);
}

/* }===== */

/* {===== dispatch ===== */

static void on_io(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)fd;
    md_mbus *b = ud;
    mbus_net *n = b->net;
    if (n->connecting) {
        connect_ready(b);
        return;
    }
    if ((events & MD_LOOP_WRITE) && n->out_off < n->out_len) {
        int rc = flush(b);
        md_mbus_req *r = n->cur;
        if (rc < 0 && r) {
            r->sys_errno = -rc;
            finish(b, -MD_MBUS_ECONNLOST);
            return; /* finish may have started another connection */
        }
        if (rc == 0 && r && mbus_is_broadcast(b, r)) {
            finish(b, 0);
            return;
        }
    }
    if (events & MD_LOOP_READ)
        on_readable(b);
}

static void on_delay(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_mbus *b = ud;
    b->net->delay_timer = NULL;
    pump(b);
}

/* Start queued requests while the bus is free. Requests that fail at once
 * (deadline passed, connect backoff) complete here, one after the other. */
static void pump(md_mbus *b)
{
    mbus_net *n = b->net;
    if (n->pumping)
        return;
    n->pumping = true;
    while (!n->cur && !n->delay_timer && (b->queue.hi_head || b->queue.lo_head)) {
        int64_t now = md_loop_now(b->loop);
        if (b->cfg.delay_ms > 0 && now < n->last_end_ms + b->cfg.delay_ms) {
            n->delay_timer =
                md_loop_timer(b->loop, n->last_end_ms + b->cfg.delay_ms, on_delay, b);
            if (n->delay_timer) {
                md_loop_timer_keepalive(b->loop, n->delay_timer, false);
                break;
            } /* out of memory: rather skip the delay than stall the queue */
        }
        md_mbus_req *r = mbus_queue_pop(&b->queue);
        r->status = 0;
        r->data_len = 0;
        if (r->deadline_ms && now > r->deadline_ms) {
            complete(b, r, -MD_MBUS_EQUEUED);
            continue;
        }
        n->cur = r;
        if (n->fd >= 0 && n->dirty && drain(b) < 0)
            disconnect(b);
        if (n->fd >= 0) {
            send_request(b, now);
        } else if (mbus_backing_off(b, r, now) < 0) {
            finish(b, -MD_MBUS_ECONNECT);
        } else {
            start_connect(b);
        }
    }
    n->pumping = false;
}

/* }===== */

/* {===== API ===== */

int mbus_net_open(md_mbus *b)
{
    mbus_net *n = calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->fd = -1;
    n->last_end_ms = INT64_MIN / 2; /* no delay before the first request */
    b->net = n;
    return 0;
}

void mbus_net_submit(md_mbus *b, md_mbus_req *r)
{
    mbus_queue_push(&b->queue, r);
    pump(b);
}

void mbus_net_close(md_mbus *b)
{
    mbus_net *n = b->net;
    md_loop *loop = b->loop;
    b->closing = true;
    md_mbus_req *cur = n->cur, *queued = mbus_queue_take_all(&b->queue);
    disconnect(b);
    if (n->timer)
        md_loop_timer_cancel(loop, n->timer);
    if (n->delay_timer)
        md_loop_timer_cancel(loop, n->delay_timer);
    free(n);
    mbus_free(b);
    /* The bus is gone, so no completion can reach back into it. */
    if (cur) {
        cur->next = queued;
        queued = cur;
    }
    for (md_mbus_req *r = queued, *next; r; r = next) {
        next = r->next;
        r->status = -MD_MBUS_ECLOSED;
        r->done.fn(loop, r->done.ud);
    }
}

/* }===== */
