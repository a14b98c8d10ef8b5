/*
 * mbus_serial.c - serial rtu buses: one worker thread per bus that owns
 * the line (see mbus.c for why serial lines keep a thread).
 *
 * Threads. The worker owns the line's fd from open to close. It takes
 * requests from the bus queue under b->lock (woken by a condvar), runs them
 * one at a time with blocking reads and writes (poll under the response
 * timeout), and hands each back to the loop thread through md_loop_post().
 * It never calls Lua or strerror. The loop thread only queues, reads
 * statistics and closes.
 *
 * The line is opened and set up by serial.c, the same code the Modbus
 * server uses: locked for this bus alone (a second master fails with EBUSY
 * before it touches a line in use), raw 8-bit with the URL's settings, the
 * kernel's RS-485 mode when asked, input that waited flushed. Requests and
 * answers use mbus_base.c's RTU framing, as socket buses with rtu framing
 * do; an answer is complete when its length (from the function code and
 * byte count) has arrived, so no inter-byte timer is needed.
 *
 * Ownership. A queued or running request belongs to the bus until its
 * completion is posted; the loop thread then owns it again. The bus is
 * freed on the loop thread once the worker has exited (md_mbus_close).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mbcodec.h"
#include "mbus_impl.h"
#include "serial.h"

/* Owned by the bus. */
typedef struct mbus_serial {
    pthread_t thread;
    pthread_cond_t wake; /* with b->lock: a request was queued, or closing */

    /* worker only */
    int fd; /* the open line (serial.c), or -1 */
    int64_t last_end_ms;

    md_completion exited; /* posted by the worker as it exits (async close) */
} mbus_serial;

/* {===== time ===== */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* }===== */

/* {===== framing on the tty ===== */

/* Discard whatever arrived late for earlier transactions. */
static void drain_input(int fd)
{
    uint8_t junk[512];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 64 && poll(&p, 1, 0) > 0 && (p.revents & POLLIN); i++)
        if (read(fd, junk, sizeof junk) <= 0)
            break;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err == EAGAIN) { /* the line's buffer is full: wait for room */
                struct pollfd pw = {.fd = fd, .events = POLLOUT};
                if (poll(&pw, 1, 1000) > 0)
                    continue;
            }
            return -err;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Wait until fd is readable or the deadline passes: 1, 0 (timeout), -errno. */
static int wait_readable(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc < 0 ? -errno : rc;
    }
}

/* One transaction: send the ADU for r, read until a complete response or
 * the deadline, and keep its data in r. */
static int transact(md_mbus *b, int fd, md_mbus_req *r, int timeout_ms)
{
    uint8_t pdu[MD_MB_MAX_PDU], adu[MD_MB_MAX_TCP], buf[600];
    size_t pdu_len = mbus_build_pdu(r, pdu), have = 0;
    if (pdu_len == 0)
        return -MD_MBUS_EMALFORMED;
    size_t n = mbus_build_adu(b, r->unit, pdu, pdu_len, adu);
    /* Stale input is met, not dropped, as libmodbus did: a stray frame then
     * fails this request (crc, wrong_unit) and settle() clears the line.
     * FC 43 always went through this bus's own framing, which drops it. */
    if (r->fc == 43)
        drain_input(fd);
    int rc = write_all(fd, adu, n);
    if (rc < 0) {
        r->sys_errno = -rc;
        return -MD_MBUS_ECONNLOST;
    }
    int64_t deadline = mono_ms() + timeout_ms;
    bool other_tid = false;
    for (;;) {
        rc = wait_readable(fd, deadline);
        if (rc == 0)
            return other_tid ? -MD_MBUS_EBADTID : -MD_MBUS_ETIMEOUT;
        if (rc < 0) {
            r->sys_errno = -rc;
            return -MD_MBUS_ECONNLOST;
        }
        ssize_t got = read(fd, buf + have, sizeof buf - have);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            r->sys_errno = got < 0 ? errno : ECONNRESET;
            return -MD_MBUS_ECONNLOST;
        }
        have += (size_t)got;
        for (;;) { /* one read may hold several frames */
            int len = mbus_adu_len(b, buf, have);
            if (len < 0)
                return -MD_MBUS_EMALFORMED;
            if (len == 0 || (size_t)len > have)
                break;
            const uint8_t *resp;
            size_t resp_len;
            rc = mbus_check_adu(b, r, buf, (size_t)len, &resp, &resp_len, &other_tid);
            if (rc == 0)
                return mbus_take_response(r, resp, resp_len);
            if (rc < 0)
                return rc;
            memmove(buf, buf + len, have - (size_t)len);
            have -= (size_t)len;
        }
        if (have == sizeof buf)
            return -MD_MBUS_EMALFORMED;
    }
}

/* }===== */

/* {===== the line ===== */

static void disconnect(md_mbus *b)
{
    mbus_serial *s = b->serial;
    md_serial_close(s->fd);
    s->fd = -1;
}

/* Open the line if needed; honours the backoff after failures. */
static int ensure_connected(md_mbus *b, md_mbus_req *r)
{
    mbus_serial *s = b->serial;
    if (s->fd >= 0)
        return 0;
    if (mbus_backing_off(b, r, mono_ms()) < 0)
        return -MD_MBUS_ECONNECT;
    int fd = md_serial_open(&b->cfg.link);
    if (fd < 0) {
        mbus_connect_failed(b, -fd, mono_ms());
        r->sys_errno = -fd;
        return -MD_MBUS_ECONNECT;
    }
    s->fd = fd;
    mbus_connected(b);
    return 0;
}

/* After a frame that was not the answer (bad CRC, another unit: a stray
 * frame, a second master), the answer may still be on its way: wait until
 * the line has been quiet for 20 ms (at most 10 rounds), then drop what
 * came, so that the next request reads its own answer. */
static void settle(int fd)
{
    uint8_t junk[256];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 10 && poll(&p, 1, 20) > 0 && (p.revents & POLLIN); i++)
        if (read(p.fd, junk, sizeof junk) <= 0)
            break;
    tcflush(fd, TCIFLUSH);
}

/* Nobody answers a broadcast: send it and be done. */
static int send_broadcast(md_mbus *b, int fd, md_mbus_req *r)
{
    uint8_t pdu[MD_MB_MAX_PDU], adu[MD_MB_MAX_TCP];
    size_t pdu_len = mbus_build_pdu(r, pdu);
    if (pdu_len == 0)
        return -MD_MBUS_EMALFORMED;
    int rc = write_all(fd, adu, mbus_build_adu(b, 0, pdu, pdu_len, adu));
    if (rc < 0) {
        r->sys_errno = -rc;
        return -MD_MBUS_ECONNLOST;
    }
    return 0;
}

static int execute(md_mbus *b, md_mbus_req *r, int timeout_ms)
{
    int fd = b->serial->fd;
    if (mbus_is_broadcast(b, r))
        return send_broadcast(b, fd, r);
    int rc = transact(b, fd, r, timeout_ms);
    if (rc == -MD_MBUS_ETIMEOUT || rc == -MD_MBUS_EMALFORMED)
        tcflush(fd, TCIFLUSH); /* a late answer would confuse the next request */
    else if (rc == -MD_MBUS_ECRC || rc == -MD_MBUS_EBADUNIT)
        settle(fd);
    return rc;
}

static void run_request(md_mbus *b, md_mbus_req *r)
{
    mbus_serial *s = b->serial;
    r->status = 0;
    r->data_len = 0;
    if (r->deadline_ms && mono_ms() > r->deadline_ms) {
        r->status = -MD_MBUS_EQUEUED;
        return;
    }
    if (b->cfg.delay_ms > 0)
        sleep_ms(s->last_end_ms + b->cfg.delay_ms - mono_ms());
    int rc = ensure_connected(b, r);
    if (rc == 0) {
        double t0 = mono_ms_f();
        rc = execute(b, r, mbus_request_timeout(b, r));
        r->latency_ms = mono_ms_f() - t0;
        if (rc == 0 || rc == -MD_MBUS_EEXCEPTION)
            mbus_adapt_timeout(b, r->latency_ms);
        if (rc == -MD_MBUS_ECONNLOST)
            disconnect(b);
    }
    s->last_end_ms = mono_ms();
    r->status = rc;
}

/* }===== */

/* {===== worker and API ===== */

static void *worker(void *arg)
{
    md_mbus *b = arg;
    mbus_serial *s = b->serial;
    /* Signals belong to the loop thread. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        pthread_mutex_lock(&b->lock);
        while (!b->closing && !b->queue.hi_head && !b->queue.lo_head)
            pthread_cond_wait(&s->wake, &b->lock);
        md_mbus_req *r = b->closing ? NULL : mbus_queue_pop(&b->queue);
        pthread_mutex_unlock(&b->lock);
        if (!r)
            break;
        run_request(b, r);
        mbus_record(b, r);
        md_loop_post(b->loop, &r->done);
    }
    disconnect(b);
    if (s->exited.fn)
        md_loop_post(b->loop, &s->exited);
    return NULL;
}

static int serial_open(md_mbus *b)
{
    mbus_serial *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->fd = -1;
    b->serial = s;
    pthread_cond_init(&s->wake, NULL);
    int rc = pthread_create(&s->thread, NULL, worker, b);
    if (rc != 0) {
        pthread_cond_destroy(&s->wake);
        free(s);
        b->serial = NULL;
        return -rc;
    }
    return 0;
}

static void serial_submit(md_mbus *b, md_mbus_req *r)
{
    pthread_mutex_lock(&b->lock);
    if (b->closing) {
        pthread_mutex_unlock(&b->lock);
        r->status = -MD_MBUS_ECLOSED;
        md_loop_post(b->loop, &r->done);
        return;
    }
    mbus_queue_push(&b->queue, r);
    pthread_cond_signal(&b->serial->wake);
    pthread_mutex_unlock(&b->lock);
}

static void serial_free(md_mbus *b)
{
    pthread_cond_destroy(&b->serial->wake);
    free(b->serial);
    mbus_free(b);
}

static void on_worker_exit(md_loop *loop, void *ud)
{
    md_mbus *b = ud;
    pthread_join(b->serial->thread, NULL); /* it has already returned, or is about to */
    md_loop_release(loop);
    serial_free(b);
}

static void serial_close(md_mbus *b, bool wait)
{
    mbus_serial *s = b->serial;
    pthread_mutex_lock(&b->lock);
    b->closing = true;
    md_mbus_req *queued = mbus_queue_take_all(&b->queue);
    if (!wait) {
        s->exited = (md_completion){.fn = on_worker_exit, .ud = b};
        md_loop_hold(b->loop); /* until the worker is joined */
    }
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&b->lock);
    for (md_mbus_req *r = queued, *next; r; r = next) {
        next = r->next;
        r->status = -MD_MBUS_ECLOSED;
        md_loop_post(b->loop, &r->done);
    }
    if (wait) {
        pthread_join(s->thread, NULL);
        md_loop_run_posted(b->loop); /* hand back the requests it finished */
        serial_free(b);
    }
}

const mbus_ops mbus_serial_ops = {
    .open = serial_open, .submit = serial_submit, .close = serial_close};

/* }===== */
