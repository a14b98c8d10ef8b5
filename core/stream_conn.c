/*
 * stream_conn.c - the connection state machine of moondog.stream; see
 * stream_conn.h. No Lua: stream_lua.c turns the callbacks into finished
 * waits, and tests/c/test_stream_conn.c drives this file alone.
 *
 * Design. Everything runs on the loop thread with a non-blocking socket. A
 * read first tries recv() at once and waits only when nothing is there (a
 * read without a timeout skips that try after a short read: see
 * md_stream_conn_read_lazy); a
 * write sends at once and queues only what the kernel did not take, which
 * then goes out in order, so writes from several tasks never interleave.
 * The watch's interest follows what waits: WRITE while output is queued, READ while a
 * reader waits (and lazily after, see the header). Bytes that arrive for a reader that
 * then went away stay kept for the next read.
 *
 * Connecting is not done here: conn.c resolves and connects off the loop's
 * critical path, and the owner hands the connected socket to
 * md_stream_conn_adopt, as a listener does with an accepted one.
 *
 * Ownership: the connection owns its socket, its watch and both buffers;
 * md_stream_conn_close frees them all and calls nothing back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "stream_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct md_stream_conn {
    md_loop *loop;
    const md_stream_conn_fns *fns;
    void *ud;
    int fd; /* -1: not connected (yet), or closed */
    md_watch *watch;
    int events;
    bool keepalive; /* waits keep the loop alive */
    bool writers;   /* the owner has writers waiting */
    bool reading;   /* a read waits for input */
    bool drained;   /* the last recv took less than asked: the socket was empty */

    /* reading */
    size_t rmax;
    uint8_t *rbuf; /* rcap bytes; rlen of them received and not taken */
    size_t rcap, rlen;
    int lost; /* 0; -1 the peer closed; else errno of the failure */

    /* writing */
    uint8_t *out; /* out[out_off..out_len) still to send */
    size_t out_off, out_len, out_cap;
    uint64_t sent, queued; /* bytes handed to the kernel / accepted by write */
};

static void on_io(md_loop *loop, md_watch *w, int fd, int events, void *ud);

/* {===== plumbing ===== */

/* Interest and liveness follow what waits: see stream_conn.h. */
static void update_watch(md_stream_conn *c, bool keep_read)
{
    if (!c->watch)
        return;
    int ev = 0;
    if (c->reading || (keep_read && (c->events & MD_LOOP_READ)))
        ev |= MD_LOOP_READ;
    if (c->out_off < c->out_len)
        ev |= MD_LOOP_WRITE;
    if (ev != c->events && md_loop_watch_set(c->loop, c->watch, ev) == 0)
        c->events = ev;
    bool waiting = c->reading || c->writers;
    md_loop_watch_keepalive(c->loop, c->watch, c->keepalive && waiting);
}

/* Start watching c->fd. 0 or -errno. */
static int watch_fd(md_stream_conn *c, int events)
{
    c->watch = md_loop_watch(c->loop, c->fd, events, on_io, c);
    if (!c->watch)
        return -errno;
    c->events = events;
    md_loop_watch_keepalive(c->loop, c->watch, false);
    return 0;
}

static void drop_fd(md_stream_conn *c)
{
    md_loop_unwatch_close(c->loop, &c->watch, &c->fd);
    c->events = 0;
}

/* The connection broke (err) or the peer closed it (-1): fail what waits. */
static void set_lost(md_stream_conn *c, int err)
{
    if (!c->lost)
        c->lost = err;
    c->out_off = c->out_len = 0;
    bool was_reading = c->reading;
    c->reading = false;
    update_watch(c, false);
    c->fns->progress(c->ud);
    if (was_reading)
        c->fns->input(c->ud);
}

/* Send queued output. */
static void flush(md_stream_conn *c)
{
    uint64_t before = c->sent;
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                set_lost(c, errno);
            break;
        }
        c->out_off += (size_t)n;
        c->sent += (uint64_t)n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    update_watch(c, true);
    if (c->sent != before && !c->lost)
        c->fns->progress(c->ud);
}

/* recv for the waiting reader. */
static void take_input(md_stream_conn *c)
{
    ssize_t n;
    do
        n = recv(c->fd, c->rbuf, c->rmax, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return; /* spurious: keep waiting */
    if (n <= 0) {
        set_lost(c, n == 0 ? -1 : errno);
        return;
    }
    c->rlen = (size_t)n;
    c->drained = (size_t)n < c->rmax;
    c->reading = false;
    update_watch(c, true);
    c->fns->input(c->ud);
}

/* }===== */

/* {===== the socket ===== */

int md_stream_conn_adopt(md_stream_conn *c, int fd)
{
    if (c->fd >= 0 || fd < 0) {
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    c->fd = fd;
    int rc = watch_fd(c, 0);
    if (rc < 0)
        drop_fd(c);
    return rc;
}

static void on_io(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)fd;
    md_stream_conn *c = ud;
    if (events & MD_LOOP_WRITE)
        flush(c);
    if (!(events & MD_LOOP_READ) || c->fd < 0)
        return;
    if (c->reading)
        take_input(c);
    else {
        c->drained = false;
        update_watch(c, false); /* input with no reader: stop watching until one comes */
    }
}

/* }===== */

/* {===== reading and writing ===== */

static int read_now(md_stream_conn *c, size_t max, bool lazy)
{
    if (c->rlen > 0)
        return (int)(c->rlen < max ? c->rlen : max);
    if (c->lost || c->fd < 0)
        return MD_STREAM_LOST;
    if (c->rcap < max) {
        uint8_t *b = realloc(c->rbuf, max);
        if (!b)
            return -ENOMEM;
        c->rbuf = b;
        c->rcap = max;
    }
    if (!(lazy && c->drained)) {
        ssize_t n;
        do
            n = recv(c->fd, c->rbuf, max, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            c->rlen = (size_t)n;
            c->drained = (size_t)n < max;
            return (int)n;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            set_lost(c, n == 0 ? -1 : errno);
            return MD_STREAM_LOST;
        }
    }
    c->drained = false;
    c->rmax = max;
    c->reading = true;
    update_watch(c, true);
    return 0;
}

int md_stream_conn_read(md_stream_conn *c, size_t max)
{
    return read_now(c, max, false);
}

int md_stream_conn_read_lazy(md_stream_conn *c, size_t max)
{
    return read_now(c, max, true);
}

void md_stream_conn_cancel_read(md_stream_conn *c)
{
    c->reading = false;
    update_watch(c, true);
}

size_t md_stream_conn_kept(const md_stream_conn *c)
{
    return c->rlen;
}

size_t md_stream_conn_take(md_stream_conn *c, void *out, size_t max)
{
    size_t n = c->rlen < max ? c->rlen : max;
    if (out)
        memcpy(out, c->rbuf, n);
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
    return n;
}

/* Append to the output queue. 0 or -ENOMEM. */
static int enqueue(md_stream_conn *c, const uint8_t *s, size_t len)
{
    if (c->out_off > 0 && c->out_len + len > c->out_cap) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        uint8_t *b = realloc(c->out, cap);
        if (!b)
            return -ENOMEM;
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, s, len);
    c->out_len += len;
    return 0;
}

int md_stream_conn_write(md_stream_conn *c, const void *data, size_t len, uint64_t *end)
{
    const uint8_t *s = data;
    if (c->lost || c->fd < 0)
        return MD_STREAM_LOST;
    /* Refuse before anything goes out, so a write is taken whole or not at all. */
    if (c->out_off < c->out_len && c->out_len - c->out_off + len > MD_STREAM_OUT_MAX)
        return -EBUSY;
    size_t off = 0;
    if (c->out_off == c->out_len) { /* nothing queued: straight to the kernel */
        ssize_t n;
        do
            n = send(c->fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            set_lost(c, errno);
            return MD_STREAM_LOST;
        }
        off = n > 0 ? (size_t)n : 0;
        c->sent += off;
        c->queued += off;
        if (off == len)
            return 0;
    }
    if (enqueue(c, s + off, len - off) < 0)
        return -ENOMEM;
    c->queued += len - off;
    *end = c->queued;
    update_watch(c, true);
    return 1;
}

uint64_t md_stream_conn_sent(const md_stream_conn *c)
{
    return c->sent;
}

size_t md_stream_conn_pending(const md_stream_conn *c)
{
    return c->out_len - c->out_off;
}

void md_stream_conn_set_writers(md_stream_conn *c, bool waiting)
{
    c->writers = waiting;
    update_watch(c, true);
}

void md_stream_conn_keepalive(md_stream_conn *c, bool on)
{
    c->keepalive = on;
    update_watch(c, true);
}

/* }===== */

/* {===== life cycle ===== */

md_stream_conn *md_stream_conn_new(md_loop *loop, const md_stream_conn_fns *fns, void *ud)
{
    md_stream_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->fns = fns;
    c->ud = ud;
    c->fd = -1;
    c->keepalive = true;
    return c;
}

void md_stream_conn_close(md_stream_conn *c)
{
    if (!c)
        return;
    drop_fd(c);
    free(c->rbuf);
    free(c->out);
    free(c);
}

int md_stream_conn_lost(const md_stream_conn *c)
{
    return c->lost;
}

bool md_stream_conn_open(const md_stream_conn *c)
{
    return c->fd >= 0;
}

int md_stream_conn_fd(const md_stream_conn *c)
{
    return c->fd;
}

/* }===== */
