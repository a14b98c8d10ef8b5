/*
 * mbus.c - Modbus client buses (see mbus.h for threads and ownership).
 *
 * Why a worker thread per bus: libmodbus is blocking, and a bus must run
 * one transaction at a time anyway (an RS-485 line, or a TCP inverter that
 * accepts one request at a time). A slow or dead device so delays only its
 * own bus, and different buses run in parallel.
 *
 * Transports. Serial rtu goes through libmodbus (function codes 1-6, 15,
 * 16, 17, 22, 23), which owns the port setup and the line timing. Everything
 * on a socket (tcp, udp, rtu+tcp, rtu+udp) and FC 43 everywhere run through
 * this file's own PDU-level transaction (own_transact), using the framing
 * rules of mbcodec.c. libmodbus 3.1.6 has no UDP backend, cannot frame RTU
 * over a socket and misframes FC 43; and its TCP client fails the request
 * after a timeout when the late answer to the earlier one arrives (it cannot
 * tell a transaction id mismatch from a malformed frame), where own_transact
 * skips answers to other transactions and keeps those errors apart.
 *
 * Timeouts. With no configured timeout, the response timeout adapts to the
 * device like TCP's retransmission timer (RFC 6298): smoothed round trip
 * plus four deviations, kept between 1 s and 10 s, 3 s before the first
 * answer. libmodbus's fixed 0.5 s is too short for many inverters.
 *
 * Connections are opened on the first request. After a failed connect the
 * bus waits 0.5 s, 1 s, 2 s ... up to 30 s before trying again; requests in
 * between fail at once with the last connect error instead of hanging.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mbus.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "mbcodec.h"

#define INITIAL_TIMEOUT_MS 3000
#define MIN_TIMEOUT_MS 1000
#define MAX_TIMEOUT_MS 10000
#define MAX_BACKOFF_MS 30000

typedef struct unit_stats {
    bool used;
    md_mbus_stats s;
} unit_stats;

struct md_mbus {
    md_loop *loop;
    md_mbus_config cfg;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t lock; /* guards everything below up to "worker only" */
    pthread_cond_t wake;
    md_mbus_req *hi_head, *hi_tail; /* writes */
    md_mbus_req *lo_head, *lo_tail; /* reads */
    bool closing;
    md_mbus_stats stats;
    unit_stats *units; /* 256, allocated with the bus */
    int timeout_ms;    /* current response timeout */

    /* worker only */
    modbus_t *ctx; /* tcp, rtu */
    int fd;        /* udp, rtu+tcp, rtu+udp; -1 when closed */
    bool connected;
    int64_t next_connect_ms;
    int backoff_ms;
    int last_connect_errno;
    uint16_t tid;
    double srtt, rttvar; /* adaptive timeout state, ms; srtt 0: no sample yet */
    int64_t last_end_ms;

    md_completion exited; /* posted by the worker as it exits (async close) */
};

/* {===== time and errors ===== */

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

static const struct {
    const char *name, *code;
} exceptions[] = {
    [1] = {"illegal function", "illegal_function"},
    [2] = {"illegal data address", "illegal_data_address"},
    [3] = {"illegal data value", "illegal_data_value"},
    [4] = {"server device failure", "server_device_failure"},
    [5] = {"acknowledge", "acknowledge"},
    [6] = {"server device busy", "server_device_busy"},
    [7] = {"negative acknowledge", "negative_acknowledge"},
    [8] = {"memory parity error", "memory_parity_error"},
    [10] = {"gateway path unavailable", "gateway_path_unavailable"},
    [11] = {"gateway target device failed to respond", "gateway_target_failed"},
};

const char *md_mbus_exception_name(int code)
{
    if (code > 0 && code < (int)(sizeof exceptions / sizeof *exceptions) &&
        exceptions[code].name)
        return exceptions[code].name;
    return "unknown exception";
}

const char *md_mbus_exception_code(int code)
{
    if (code > 0 && code < (int)(sizeof exceptions / sizeof *exceptions) &&
        exceptions[code].code)
        return exceptions[code].code;
    return "exception";
}

const char *md_mbus_strerror(int status)
{
    switch (-status) {
    case 0: return "success";
    case MD_MBUS_ETIMEOUT: return "no response from the device in time";
    case MD_MBUS_EEXCEPTION: return "the device answered with a Modbus exception";
    case MD_MBUS_ECRC: return "response with a bad CRC";
    case MD_MBUS_EBADTID: return "only responses to other transactions arrived";
    case MD_MBUS_EBADUNIT: return "response from another unit id";
    case MD_MBUS_EMALFORMED: return "short or malformed response";
    case MD_MBUS_ECONNLOST: return "connection lost";
    case MD_MBUS_ECONNECT: return "cannot connect";
    case MD_MBUS_ECLOSED: return "the bus was closed";
    case MD_MBUS_EQUEUED: return "waited too long for the bus";
    default: return "unknown error";
    }
}

const char *md_mbus_errcode(int status)
{
    switch (-status) {
    case 0: return "ok";
    case MD_MBUS_ETIMEOUT: return "timeout";
    case MD_MBUS_EEXCEPTION: return "exception";
    case MD_MBUS_ECRC: return "crc";
    case MD_MBUS_EBADTID: return "wrong_transaction";
    case MD_MBUS_EBADUNIT: return "wrong_unit";
    case MD_MBUS_EMALFORMED: return "malformed";
    case MD_MBUS_ECONNLOST: return "connection_lost";
    case MD_MBUS_ECONNECT: return "connect";
    case MD_MBUS_ECLOSED: return "closed";
    case MD_MBUS_EQUEUED: return "timeout";
    default: return "error";
    }
}

/* }===== */

/* {===== own framing: udp, rtu+tcp, rtu+udp and FC 43 ===== */

static bool is_datagram(const md_mbus *b)
{
    return b->cfg.transport == MD_MBUS_UDP || b->cfg.transport == MD_MBUS_RTU_UDP;
}

static bool is_rtu_framing(const md_mbus *b)
{
    md_mbus_transport t = b->cfg.transport;
    return t == MD_MBUS_RTU || t == MD_MBUS_RTU_TCP || t == MD_MBUS_RTU_UDP;
}

/* Build the request ADU around pdu. Returns its length. */
static size_t build_adu(md_mbus *b, uint8_t unit, const uint8_t *pdu, size_t pdu_len,
                        uint8_t *adu)
{
    if (is_rtu_framing(b)) {
        adu[0] = unit;
        memcpy(adu + 1, pdu, pdu_len);
        uint16_t crc = md_mb_crc16(adu, pdu_len + 1);
        adu[pdu_len + 1] = (uint8_t)(crc & 0xff); /* CRC goes low byte first */
        adu[pdu_len + 2] = (uint8_t)(crc >> 8);
        return pdu_len + 3;
    }
    md_mb_mbap_encode(adu, ++b->tid, (uint16_t)pdu_len, unit);
    memcpy(adu + 7, pdu, pdu_len);
    return pdu_len + 7;
}

/* The fd is a socket, or (FC 43 on rtu) libmodbus's serial line, where
 * recv and send fail with ENOTSOCK. */
static bool on_serial(const md_mbus *b)
{
    return b->ctx != NULL;
}

static ssize_t io_read(const md_mbus *b, int fd, uint8_t *p, size_t n)
{
    return on_serial(b) ? read(fd, p, n) : recv(fd, p, n, 0);
}

/* Discard whatever arrived late for earlier transactions. */
static void drain_input(const md_mbus *b, int fd)
{
    uint8_t junk[512];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 64 && poll(&p, 1, 0) > 0 && (p.revents & POLLIN); i++)
        if (io_read(b, fd, junk, sizeof junk) <= 0)
            break;
}

static int send_all(const md_mbus *b, int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = on_serial(b) ? write(fd, p, n) : send(fd, p, n, MSG_NOSIGNAL);
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

/* Length of the complete ADU at buf if known: >0 length, 0 need more,
 * <0 malformed. */
static int adu_len(const md_mbus *b, const uint8_t *buf, size_t have)
{
    if (is_rtu_framing(b)) {
        int n = md_mb_rtu_response_len(buf, have);
        return n;
    }
    if (have < 7)
        return 0;
    unsigned len = md_mb_get_u16(buf + 4);
    if (md_mb_get_u16(buf + 2) != 0 || len < 2 || len > 254)
        return -1;
    return (int)(6 + len);
}

/* Check one complete ADU against the request; on success copy the PDU out. */
static int check_adu(md_mbus *b, md_mbus_req *r, const uint8_t *adu, size_t n,
                     uint8_t *pdu, size_t *pdu_len, bool *other_tid)
{
    const uint8_t *p;
    size_t plen;
    uint8_t unit;
    if (is_rtu_framing(b)) {
        if (n < 4)
            return -MD_MBUS_EMALFORMED;
        uint16_t crc = md_mb_crc16(adu, n - 2);
        if (adu[n - 2] != (crc & 0xff) || adu[n - 1] != (crc >> 8))
            return -MD_MBUS_ECRC;
        unit = adu[0];
        p = adu + 1;
        plen = n - 3;
    } else {
        if (md_mb_get_u16(adu) != b->tid) {
            *other_tid = true;
            return 1; /* not ours: keep waiting */
        }
        unit = adu[6];
        p = adu + 7;
        plen = n - 7;
    }
    if (unit != r->unit)
        return -MD_MBUS_EBADUNIT;
    if (plen < 2 || (p[0] & 0x7f) != r->fc)
        return -MD_MBUS_EMALFORMED;
    if (p[0] & 0x80) {
        r->exception = p[1];
        return -MD_MBUS_EEXCEPTION;
    }
    int want = md_mb_pdu_response_len(p, plen);
    if (want <= 0 || (size_t)want != plen)
        return -MD_MBUS_EMALFORMED;
    memcpy(pdu, p, plen);
    *pdu_len = plen;
    return 0;
}

/*
 * One transaction on fd with this file's framing: send the ADU for pdu,
 * read until a complete matching response or the deadline. Responses to
 * other transactions (late answers to requests that timed out) are skipped.
 */
static int own_transact(md_mbus *b, int fd, md_mbus_req *r, const uint8_t *pdu,
                        size_t pdu_len, uint8_t *resp, size_t *resp_len, int timeout_ms)
{
    uint8_t adu[264], buf[600];
    size_t n = build_adu(b, r->unit, pdu, pdu_len, adu), have = 0;
    drain_input(b, fd);
    int rc = send_all(b, fd, adu, n);
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
        ssize_t got = io_read(b, fd, buf + have, sizeof buf - have);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            r->sys_errno = got < 0 ? errno : ECONNRESET;
            return -MD_MBUS_ECONNLOST;
        }
        have = is_datagram(b) ? (size_t)got : have + (size_t)got;
        for (;;) { /* one stream read may hold several frames */
            int len = adu_len(b, buf, have);
            if (len < 0 || (is_datagram(b) && len != (int)have))
                return -MD_MBUS_EMALFORMED;
            if (len == 0 || (size_t)len > have)
                break;
            rc = check_adu(b, r, buf, (size_t)len, resp, resp_len, &other_tid);
            if (rc <= 0)
                return rc;
            memmove(buf, buf + len, have - (size_t)len);
            have -= (size_t)len;
        }
        if (is_datagram(b))
            have = 0;
        else if (have == sizeof buf)
            return -MD_MBUS_EMALFORMED;
    }
}

/* The request PDU for r (any function code). Returns its length. */
static size_t build_pdu(const md_mbus_req *r, uint8_t *pdu)
{
    size_t n = 0;
    pdu[n++] = r->fc;
    switch (r->fc) {
    case 1:
    case 2:
    case 3:
    case 4:
        md_mb_put_u16(pdu + n, r->addr);
        md_mb_put_u16(pdu + n + 2, r->count);
        return n + 4;
    case 5:
        md_mb_put_u16(pdu + n, r->addr);
        md_mb_put_u16(pdu + n + 2, r->wbits[0] ? 0xff00 : 0x0000);
        return n + 4;
    case 6:
        md_mb_put_u16(pdu + n, r->addr);
        md_mb_put_u16(pdu + n + 2, r->wregs[0]);
        return n + 4;
    case 15: {
        md_mb_put_u16(pdu + n, r->addr);
        md_mb_put_u16(pdu + n + 2, r->count);
        size_t bytes = (r->count + 7u) / 8u;
        pdu[n + 4] = (uint8_t)bytes;
        memset(pdu + n + 5, 0, bytes);
        for (unsigned i = 0; i < r->count; i++)
            if (r->wbits[i])
                pdu[n + 5 + i / 8] |= (uint8_t)(1u << (i % 8));
        return n + 5 + bytes;
    }
    case 16:
        md_mb_put_u16(pdu + n, r->addr);
        md_mb_put_u16(pdu + n + 2, r->count);
        pdu[n + 4] = (uint8_t)(r->count * 2);
        for (unsigned i = 0; i < r->count; i++)
            md_mb_put_u16(pdu + n + 5 + 2 * i, r->wregs[i]);
        return n + 5 + 2u * r->count;
    case 17: return n;
    case 22:
        md_mb_put_u16(pdu + n, r->addr);
        md_mb_put_u16(pdu + n + 2, r->wregs[0]);
        md_mb_put_u16(pdu + n + 4, r->wregs[1]);
        return n + 6;
    case 23:
        md_mb_put_u16(pdu + n, r->addr);
        md_mb_put_u16(pdu + n + 2, r->count);
        md_mb_put_u16(pdu + n + 4, r->waddr);
        md_mb_put_u16(pdu + n + 6, r->wcount);
        pdu[n + 8] = (uint8_t)(r->wcount * 2);
        for (unsigned i = 0; i < r->wcount; i++)
            md_mb_put_u16(pdu + n + 9 + 2 * i, r->wregs[i]);
        return n + 9 + 2u * r->wcount;
    case 43:
        pdu[n++] = 14; /* MEI type: read device identification */
        pdu[n++] = r->mei_code;
        pdu[n++] = r->object_id;
        return n;
    default: return 0;
    }
}

/* Keep what the caller wants from a response PDU: the data after the
 * byte count for reads, everything after the function code otherwise. */
static int take_response(md_mbus_req *r, const uint8_t *pdu, size_t len)
{
    const uint8_t *p = pdu + 1;
    size_t n = len - 1;
    if (r->fc <= 4 || r->fc == 23 || r->fc == 17) {
        if (n < 1 || p[0] != n - 1)
            return -MD_MBUS_EMALFORMED;
        size_t want = r->fc == 17                ? n - 1
                      : r->fc == 1 || r->fc == 2 ? (r->count + 7u) / 8u
                                                 : 2u * r->count;
        if (n - 1 != want)
            return -MD_MBUS_EMALFORMED;
        p++, n--;
    }
    memcpy(r->data, p, n);
    r->data_len = n;
    return 0;
}

/* }===== */

/* {===== transports ===== */

static int resolve_and_connect(md_mbus *b, int socktype)
{
    char port[16];
    snprintf(port, sizeof port, "%d", b->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = socktype};
    struct addrinfo *res;
    int grc = getaddrinfo(b->cfg.host, port, &hints, &res);
    if (grc != 0)
        return grc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    int err = EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int timeout = b->cfg.connect_timeout_ms ? b->cfg.connect_timeout_ms : 3000;
            rc = poll(&p, 1, timeout);
            if (rc == 0) {
                errno = ETIMEDOUT;
                rc = -1;
            } else if (rc > 0) {
                int soerr = 0;
                socklen_t len = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                errno = soerr;
                rc = soerr ? -1 : 0;
            }
        }
        if (rc == 0) {
            /* Back to blocking: the worker waits with poll() itself. */
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            freeaddrinfo(res);
            return fd;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return -err;
}

static int open_libmodbus(md_mbus *b)
{
    const md_mbus_config *c = &b->cfg;
    b->ctx = modbus_new_rtu(c->device, c->baud, c->parity, c->data_bits, c->stop_bits);
    if (!b->ctx)
        return -errno;
    int ct = c->connect_timeout_ms ? c->connect_timeout_ms : 3000;
    modbus_set_response_timeout(b->ctx, (uint32_t)(ct / 1000),
                                (uint32_t)(ct % 1000) * 1000);
    if (modbus_connect(b->ctx) < 0) {
        int err = errno;
        modbus_free(b->ctx);
        b->ctx = NULL;
        return -err;
    }
    if (c->transport == MD_MBUS_RTU && c->rs485 &&
        modbus_rtu_set_serial_mode(b->ctx, MODBUS_RTU_RS485) < 0) {
        int err = errno;
        modbus_close(b->ctx);
        modbus_free(b->ctx);
        b->ctx = NULL;
        return -err;
    }
    return 0;
}

static void disconnect(md_mbus *b)
{
    if (b->ctx) {
        modbus_close(b->ctx);
        modbus_free(b->ctx);
        b->ctx = NULL;
    }
    if (b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
    b->connected = false;
}

/* Connect if needed; honours the backoff after failures. */
static int ensure_connected(md_mbus *b, md_mbus_req *r)
{
    if (b->connected)
        return 0;
    if (mono_ms() < b->next_connect_ms) {
        r->sys_errno = b->last_connect_errno;
        return -MD_MBUS_ECONNECT;
    }
    int rc;
    switch (b->cfg.transport) {
    case MD_MBUS_RTU: rc = open_libmodbus(b); break;
    case MD_MBUS_UDP:
    case MD_MBUS_RTU_UDP: rc = b->fd = resolve_and_connect(b, SOCK_DGRAM); break;
    default: rc = b->fd = resolve_and_connect(b, SOCK_STREAM); break;
    }
    if (rc < 0) {
        b->fd = -1;
        b->last_connect_errno = -rc;
        r->sys_errno = -rc;
        b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : 500;
        if (b->backoff_ms > MAX_BACKOFF_MS)
            b->backoff_ms = MAX_BACKOFF_MS;
        b->next_connect_ms = mono_ms() + b->backoff_ms;
        return -MD_MBUS_ECONNECT;
    }
    b->connected = true;
    b->backoff_ms = 0;
    return 0;
}

/* }===== */

/* {===== transactions ===== */

static int request_timeout(md_mbus *b, const md_mbus_req *r)
{
    if (r->timeout_ms > 0)
        return r->timeout_ms;
    pthread_mutex_lock(&b->lock);
    int t = b->timeout_ms;
    pthread_mutex_unlock(&b->lock);
    return t;
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

static int libmodbus_transact(md_mbus *b, md_mbus_req *r)
{
    modbus_t *ctx = b->ctx;
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

/* Unit 0 on an RTU line is a broadcast: every device acts, none answers. */
static bool is_broadcast(const md_mbus *b, const md_mbus_req *r)
{
    return r->unit == 0 && is_rtu_framing(b);
}

static int send_broadcast(md_mbus *b, md_mbus_req *r)
{
    uint8_t pdu[256], adu[264];
    size_t pdu_len = build_pdu(r, pdu);
    if (b->ctx) { /* serial: libmodbus adds the CRC and keeps the line timing */
        adu[0] = 0;
        memcpy(adu + 1, pdu, pdu_len);
        if (modbus_send_raw_request(b->ctx, adu, (int)pdu_len + 1) < 0)
            return from_libmodbus_errno(r, errno);
        return 0;
    }
    size_t n = build_adu(b, 0, pdu, pdu_len, adu);
    int rc = send_all(b, b->fd, adu, n);
    if (rc < 0) {
        r->sys_errno = -rc;
        return -MD_MBUS_ECONNLOST;
    }
    return 0;
}

static int execute(md_mbus *b, md_mbus_req *r, int timeout_ms)
{
    if (is_broadcast(b, r))
        return send_broadcast(b, r);
    bool via_libmodbus = b->ctx && r->fc != 43;
    if (via_libmodbus) {
        uint32_t s = (uint32_t)(timeout_ms / 1000),
                 us = (uint32_t)(timeout_ms % 1000) * 1000;
        modbus_set_response_timeout(b->ctx, s, us);
        modbus_set_byte_timeout(b->ctx, s, us);
        return libmodbus_transact(b, r);
    }
    uint8_t pdu[256], resp[256];
    size_t pdu_len = build_pdu(r, pdu), resp_len = 0;
    if (pdu_len == 0)
        return -MD_MBUS_EMALFORMED;
    int fd = b->ctx ? modbus_get_socket(b->ctx) : b->fd;
    int rc = own_transact(b, fd, r, pdu, pdu_len, resp, &resp_len, timeout_ms);
    return rc < 0 ? rc : take_response(r, resp, resp_len);
}

/* RFC 6298-style smoothing of the observed round trip. */
static void adapt_timeout(md_mbus *b, double rtt)
{
    if (b->srtt == 0) {
        b->srtt = rtt;
        b->rttvar = rtt / 2;
    } else {
        b->rttvar = 0.75 * b->rttvar + 0.25 * fabs(b->srtt - rtt);
        b->srtt = 0.875 * b->srtt + 0.125 * rtt;
    }
    double t = b->srtt + 4 * b->rttvar;
    t = t < MIN_TIMEOUT_MS ? MIN_TIMEOUT_MS : t > MAX_TIMEOUT_MS ? MAX_TIMEOUT_MS : t;
    if (b->cfg.timeout_ms == 0) {
        pthread_mutex_lock(&b->lock);
        b->timeout_ms = (int)t;
        pthread_mutex_unlock(&b->lock);
    }
}

static void count(md_mbus_stats *s, const md_mbus_req *r)
{
    s->requests++;
    switch (-r->status) {
    case 0:
        s->ok++;
        s->latency_sum_ms += r->latency_ms;
        if (r->latency_ms > s->latency_max_ms)
            s->latency_max_ms = r->latency_ms;
        break;
    case MD_MBUS_ETIMEOUT:
    case MD_MBUS_EQUEUED: s->timeouts++; break;
    case MD_MBUS_EEXCEPTION: s->exceptions++; break;
    case MD_MBUS_ECRC: s->crc_errors++; break;
    case MD_MBUS_EBADTID:
    case MD_MBUS_EBADUNIT:
    case MD_MBUS_EMALFORMED: s->bad_frames++; break;
    case MD_MBUS_ECONNLOST:
    case MD_MBUS_ECONNECT: s->conn_errors++; break;
    default: s->other_errors++; break;
    }
}

static void record(md_mbus *b, const md_mbus_req *r)
{
    pthread_mutex_lock(&b->lock);
    count(&b->stats, r);
    b->units[r->unit].used = true;
    count(&b->units[r->unit].s, r);
    pthread_mutex_unlock(&b->lock);
}

static void run_request(md_mbus *b, md_mbus_req *r)
{
    r->status = 0;
    r->data_len = 0;
    if (r->deadline_ms && mono_ms() > r->deadline_ms) {
        r->status = -MD_MBUS_EQUEUED;
        return;
    }
    if (b->cfg.delay_ms > 0)
        sleep_ms(b->last_end_ms + b->cfg.delay_ms - mono_ms());
    int rc = ensure_connected(b, r);
    if (rc == 0) {
        double t0 = mono_ms_f();
        rc = execute(b, r, request_timeout(b, r));
        r->latency_ms = mono_ms_f() - t0;
        if (rc == 0 || rc == -MD_MBUS_EEXCEPTION)
            adapt_timeout(b, r->latency_ms);
        /* A stream that lost a frame boundary or its peer must be reopened. */
        bool stream =
            b->cfg.transport == MD_MBUS_TCP || b->cfg.transport == MD_MBUS_RTU_TCP;
        if (rc == -MD_MBUS_ECONNLOST || (rc == -MD_MBUS_EMALFORMED && stream))
            disconnect(b);
    }
    b->last_end_ms = mono_ms();
    r->status = rc;
}

/* }===== */

/* {===== queue and worker ===== */

static md_mbus_req *dequeue(md_mbus *b)
{
    md_mbus_req **head = b->hi_head ? &b->hi_head : &b->lo_head;
    md_mbus_req **tail = b->hi_head ? &b->hi_tail : &b->lo_tail;
    md_mbus_req *r = *head;
    if (r) {
        *head = r->next;
        if (!*head)
            *tail = NULL;
        r->next = NULL;
    }
    return r;
}

static void *worker(void *arg)
{
    md_mbus *b = arg;
    /* Signals belong to the loop thread. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        pthread_mutex_lock(&b->lock);
        while (!b->closing && !b->hi_head && !b->lo_head)
            pthread_cond_wait(&b->wake, &b->lock);
        md_mbus_req *r = b->closing ? NULL : dequeue(b);
        pthread_mutex_unlock(&b->lock);
        if (!r)
            break;
        run_request(b, r);
        record(b, r);
        md_loop_post(b->loop, &r->done);
    }
    disconnect(b);
    if (b->exited.fn)
        md_loop_post(b->loop, &b->exited);
    return NULL;
}

md_mbus *md_mbus_open(md_loop *loop, const md_mbus_config *cfg)
{
    bool rtu = cfg->transport == MD_MBUS_RTU;
    if ((rtu && !cfg->device[0]) || (!rtu && (!cfg->host[0] || cfg->port <= 0)) ||
        cfg->timeout_ms < 0 || cfg->delay_ms < 0) {
        errno = EINVAL;
        return NULL;
    }
    md_mbus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->units = calloc(256, sizeof *b->units);
    if (!b->units) {
        free(b);
        errno = ENOMEM;
        return NULL;
    }
    b->loop = loop;
    b->cfg = *cfg;
    b->fd = -1;
    b->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : INITIAL_TIMEOUT_MS;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->wake, NULL);
    int rc = pthread_create(&b->thread, NULL, worker, b);
    if (rc != 0) {
        pthread_cond_destroy(&b->wake);
        pthread_mutex_destroy(&b->lock);
        free(b->units);
        free(b);
        errno = rc;
        return NULL;
    }
    b->thread_started = true;
    return b;
}

void md_mbus_submit(md_mbus *b, md_mbus_req *r)
{
    r->next = NULL;
    pthread_mutex_lock(&b->lock);
    if (b->closing) {
        pthread_mutex_unlock(&b->lock);
        r->status = -MD_MBUS_ECLOSED;
        md_loop_post(b->loop, &r->done);
        return;
    }
    md_mbus_req **head = r->priority ? &b->hi_head : &b->lo_head;
    md_mbus_req **tail = r->priority ? &b->hi_tail : &b->lo_tail;
    if (*tail)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
}

static void bus_free(md_mbus *b)
{
    pthread_cond_destroy(&b->wake);
    pthread_mutex_destroy(&b->lock);
    free(b->units);
    free(b);
}

static void on_worker_exit(md_loop *loop, void *ud)
{
    md_mbus *b = ud;
    pthread_join(b->thread, NULL); /* it has already returned, or is about to */
    md_loop_release(loop);
    bus_free(b);
}

void md_mbus_close(md_mbus *b, bool wait)
{
    pthread_mutex_lock(&b->lock);
    b->closing = true;
    md_mbus_req *queued[2] = {b->hi_head, b->lo_head};
    b->hi_head = b->hi_tail = b->lo_head = b->lo_tail = NULL;
    if (!wait) {
        b->exited = (md_completion){.fn = on_worker_exit, .ud = b};
        md_loop_hold(b->loop); /* until the worker is joined */
    }
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
    for (int i = 0; i < 2; i++)
        for (md_mbus_req *r = queued[i], *next; r; r = next) {
            next = r->next;
            r->status = -MD_MBUS_ECLOSED;
            md_loop_post(b->loop, &r->done);
        }
    if (wait) {
        pthread_join(b->thread, NULL);
        md_loop_run_posted(b->loop); /* hand back the requests it finished */
        bus_free(b);
    }
}

bool md_mbus_get_stats(md_mbus *b, int unit, md_mbus_stats *out)
{
    pthread_mutex_lock(&b->lock);
    bool used = unit < 0 || (unit < 256 && b->units[unit].used);
    *out = unit < 0 ? b->stats : used ? b->units[unit].s : (md_mbus_stats){0};
    pthread_mutex_unlock(&b->lock);
    return used;
}

int md_mbus_current_timeout(md_mbus *b)
{
    pthread_mutex_lock(&b->lock);
    int t = b->timeout_ms;
    pthread_mutex_unlock(&b->lock);
    return t;
}

/* }===== */
