/*
 * mbus_serial.c - serial rtu buses: one worker thread per bus that owns a
 * libmodbus context (see mbus.c for why serial lines keep a thread).
 *
 * Threads. The worker owns the modbus_t from open to close. It takes
 * requests from the bus queue under b->lock (woken by a condvar), runs them
 * one at a time with blocking libmodbus calls, and hands each back to the
 * loop thread through md_loop_post(). It never calls Lua, strerror or
 * modbus_strerror. The loop thread only queues, reads statistics and
 * closes.
 *
 * FC 43 (read device identification), which libmodbus misframes, and
 * broadcasts go over the same tty with this bus's own framing (read/write
 * on libmodbus's fd, waiting with poll).
 *
 * One master per line. Two masters on one RS-485 line corrupt each other's
 * frames, so the worker takes an exclusive flock() on the device before
 * libmodbus opens it, through an fd of its own that it keeps while the
 * line is open: modbus_connect() sets the line up (tcsetattr) at once, and
 * a second master must fail before it touches a line in use, not after.
 * Another opener (another process, or a second bus on the same device in
 * this process) so fails with EBUSY. TIOCEXCL is set as well, for programs
 * that do not use flock(); root ignores it, flock() holds for root too.
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
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "mbcodec.h"
#include "mbus_impl.h"

/* Owned by the bus. */
typedef struct mbus_serial {
    pthread_t thread;
    pthread_cond_t wake; /* with b->lock: a request was queued, or closing */

    /* worker only */
    modbus_t *ctx; /* NULL while closed */
    int lock_fd;   /* holds the flock() on the device while ctx is open; -1 */
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

/* {===== own framing on the tty: FC 43 and broadcasts ===== */

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
            if (errno == EINTR)
                continue;
            return -errno;
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

/* One transaction with mbus.c's framing: send the ADU for r, read until a
 * complete response or the deadline, and keep its data in r. */
static int own_transact(md_mbus *b, int fd, md_mbus_req *r, int timeout_ms)
{
    uint8_t pdu[MD_MB_MAX_PDU], adu[MD_MB_MAX_TCP], buf[600];
    size_t pdu_len = mbus_build_pdu(r, pdu), have = 0;
    if (pdu_len == 0)
        return -MD_MBUS_EMALFORMED;
    size_t n = mbus_build_adu(b, r->unit, pdu, pdu_len, adu);
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

/* {===== libmodbus ===== */

/* Take the line for this bus alone (see "One master per line" above):
 * the locked fd, or -EBUSY when another opener holds it, or -errno. */
static int lock_line(const char *device)
{
    int fd = open(device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == EBUSY ? -EBUSY : -errno; /* EBUSY: TIOCEXCL, not root */
    /* Only a held lock refuses the line: where locks are not supported
     * (ENOLCK, EINVAL) the line still opens, as it did before. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
        close(fd);
        return -EBUSY;
    }
    return fd;
}

static void unlock_line(mbus_serial *s)
{
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
        s->lock_fd = -1;
    }
}

static int open_libmodbus(md_mbus *b)
{
    mbus_serial *s = b->serial;
    const md_mbus_config *c = &b->cfg;
    int fd = lock_line(c->link.device);
    if (fd < 0)
        return fd;
    s->lock_fd = fd;
    s->ctx = modbus_new_rtu(c->link.device, c->link.baud, c->link.parity,
                            c->link.data_bits, c->link.stop_bits);
    if (!s->ctx) {
        int err = errno;
        unlock_line(s);
        return -err;
    }
    int ct = c->connect_timeout_ms ? c->connect_timeout_ms : MBUS_CONNECT_TIMEOUT_MS;
    modbus_set_response_timeout(s->ctx, (uint32_t)(ct / 1000),
                                (uint32_t)(ct % 1000) * 1000);
    if (modbus_connect(s->ctx) < 0) {
        int err = errno;
        modbus_free(s->ctx);
        s->ctx = NULL;
        unlock_line(s);
        return -err;
    }
    ioctl(modbus_get_socket(s->ctx), TIOCEXCL); /* best effort: not a tty, root */
    modbus_flush(s->ctx); /* what arrived before we opened answers nothing of ours */
    if (c->link.rs485 && modbus_rtu_set_serial_mode(s->ctx, MODBUS_RTU_RS485) < 0) {
        int err = errno;
        modbus_close(s->ctx);
        modbus_free(s->ctx);
        s->ctx = NULL;
        unlock_line(s);
        return -err;
    }
    return 0;
}

static void disconnect(md_mbus *b)
{
    mbus_serial *s = b->serial;
    if (s->ctx) {
        ioctl(modbus_get_socket(s->ctx), TIOCNXCL); /* the tty may outlive us (a pty) */
        modbus_close(s->ctx);
        modbus_free(s->ctx);
        s->ctx = NULL;
    }
    unlock_line(s);
}

/* Open the line if needed; honours the backoff after failures. */
static int ensure_connected(md_mbus *b, md_mbus_req *r)
{
    if (b->serial->ctx)
        return 0;
    if (mbus_backing_off(b, r, mono_ms()) < 0)
        return -MD_MBUS_ECONNECT;
    int rc = open_libmodbus(b);
    if (rc < 0) {
        mbus_connect_failed(b, -rc, mono_ms());
        r->sys_errno = -rc;
        return -MD_MBUS_ECONNECT;
    }
    mbus_connected(b);
    return 0;
}

/* After a frame that was not the answer (bad CRC, another unit: a stray
 * frame, a second master), the answer may still be on its way: wait until
 * the line has been quiet for 20 ms (at most 10 rounds), then drop what
 * came, so that the next request reads its own answer. */
static void settle(modbus_t *ctx)
{
    uint8_t junk[256];
    struct pollfd p = {.fd = modbus_get_socket(ctx), .events = POLLIN};
    for (int i = 0; i < 10 && poll(&p, 1, 20) > 0 && (p.revents & POLLIN); i++)
        if (read(p.fd, junk, sizeof junk) <= 0)
            break;
    modbus_flush(ctx);
}

/* libmodbus reports errors through errno. */
static int from_libmodbus_errno(md_mbus_req *r, int err)
{
    if (err >= MODBUS_ENOBASE + 1 && err <= MODBUS_ENOBASE + 11) {
        r->exception = err - MODBUS_ENOBASE;
        return -MD_MBUS_EEXCEPTION;
    }
    switch (err) {
    case ETIMEDOUT: return -MD_MBUS_ETIMEOUT;
    case EMBBADCRC: return -MD_MBUS_ECRC;
    case EMBBADSLAVE: return -MD_MBUS_EBADUNIT;
    case EMBBADDATA:
    case EMBMDATA:
    case EMBBADEXC:
    case EMBUNKEXC: return -MD_MBUS_EMALFORMED;
    default: r->sys_errno = err; return -MD_MBUS_ECONNLOST;
    }
}

static void pack_bits(md_mbus_req *r, const uint8_t *bits, int n)
{
    size_t bytes = ((size_t)n + 7) / 8;
    memset(r->data, 0, bytes);
    for (int i = 0; i < n; i++)
        if (bits[i])
            r->data[i / 8] |= (uint8_t)(1u << (i % 8));
    r->data_len = bytes;
}

static void pack_regs(md_mbus_req *r, const uint16_t *regs, int n)
{
    for (int i = 0; i < n; i++)
        md_mb_put_u16(r->data + 2 * i, regs[i]);
    r->data_len = 2u * (size_t)n;
}

static int libmodbus_transact(modbus_t *ctx, md_mbus_req *r)
{
    uint16_t regs[MD_MBUS_MAX_REGS];
    uint8_t bits[MD_MBUS_MAX_BITS];
    int rc;
    modbus_set_slave(ctx, r->unit);
    switch (r->fc) {
    case 1: rc = modbus_read_bits(ctx, r->addr, r->count, bits); break;
    case 2: rc = modbus_read_input_bits(ctx, r->addr, r->count, bits); break;
    case 3: rc = modbus_read_registers(ctx, r->addr, r->count, regs); break;
    case 4: rc = modbus_read_input_registers(ctx, r->addr, r->count, regs); break;
    case 5: rc = modbus_write_bit(ctx, r->addr, r->wbits[0]); break;
    case 6: rc = modbus_write_register(ctx, r->addr, r->wregs[0]); break;
    case 15: rc = modbus_write_bits(ctx, r->addr, r->count, r->wbits); break;
    case 16: rc = modbus_write_registers(ctx, r->addr, r->count, r->wregs); break;
    case 22:
        rc = modbus_mask_write_register(ctx, r->addr, r->wregs[0], r->wregs[1]);
        break;
    case 23:
        rc = modbus_write_and_read_registers(ctx, r->waddr, r->wcount, r->wregs, r->addr,
                                             r->count, regs);
        break;
    case 17: rc = modbus_report_slave_id(ctx, (int)sizeof r->data, r->data); break;
    default: return -MD_MBUS_EMALFORMED;
    }
    if (rc < 0) {
        int err = errno;
        rc = from_libmodbus_errno(r, err);
        if (rc == -MD_MBUS_ETIMEOUT || rc == -MD_MBUS_EMALFORMED)
            modbus_flush(ctx); /* a late answer would confuse the next request */
        else if (rc == -MD_MBUS_ECRC || rc == -MD_MBUS_EBADUNIT)
            settle(ctx);
        return rc;
    }
    switch (r->fc) {
    case 1:
    case 2: pack_bits(r, bits, rc); break;
    case 3:
    case 4:
    case 23: pack_regs(r, regs, rc); break;
    case 17: r->data_len = (size_t)rc; break;
    default: r->data_len = 0; break;
    }
    return 0;
}

/* libmodbus adds the CRC and keeps the line timing. */
static int send_broadcast(modbus_t *ctx, md_mbus_req *r)
{
    uint8_t adu[MD_MB_MAX_RTU];
    size_t pdu_len = mbus_build_pdu(r, adu + 1);
    adu[0] = 0;
    if (modbus_send_raw_request(ctx, adu, (int)pdu_len + 1) < 0)
        return from_libmodbus_errno(r, errno);
    return 0;
}

static int execute(md_mbus *b, md_mbus_req *r, int timeout_ms)
{
    modbus_t *ctx = b->serial->ctx;
    if (mbus_is_broadcast(b, r))
        return send_broadcast(ctx, r);
    if (r->fc == 43)
        return own_transact(b, modbus_get_socket(ctx), r, timeout_ms);
    uint32_t s = (uint32_t)(timeout_ms / 1000), us = (uint32_t)(timeout_ms % 1000) * 1000;
    modbus_set_response_timeout(ctx, s, us);
    modbus_set_byte_timeout(ctx, s, us);
    return libmodbus_transact(ctx, r);
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
    s->lock_fd = -1;
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
