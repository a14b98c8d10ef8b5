/*
 * mbus.c - Modbus client buses: the API, the request queue, statistics,
 * the adaptive timeout and the framing shared by the transports (see
 * mbus.h for the contract, mbus_impl.h for what the files share).
 *
 * A bus runs one transaction at a time, because the device behind it can
 * only take one (an RS-485 line, or a TCP inverter that serves a single
 * request at a time). Requests wait in a queue where writes go ahead of
 * reads. Two designs run that queue, one per kind of transport:
 *
 * Sockets (tcp, udp, rtu+tcp, rtu+udp): mbus_net.c, on the loop thread.
 * The socket is non-blocking and watched by the loop; a transaction is a
 * send, then reads as the fd turns readable, framed with the helpers below,
 * and the request completes by a direct call on the loop thread. No thread,
 * no lock, and one send, one epoll_wait and one recv per transaction.
 * Sockets used to go through a worker thread like serial lines do; on
 * loopback that design reached only 0.70-0.79x the requests/s of a plain
 * libmodbus client in C at 1.7-2.1x its CPU per request
 * (tests/bench/modbus.sh): each transaction crossed threads twice (a mutex
 * and condvar wake to the worker, md_loop_post and an eventfd write and
 * read back to the loop), four context switches where the C client has
 * one, which cost more than the transaction itself. On the loop thread the
 * same reads run at 0.95-1.09x the C client's requests/s and 0.93-1.15x
 * its CPU: one context switch and three syscalls per transaction.
 *
 * Serial (rtu): mbus_serial.c, one worker thread per bus that owns a
 * libmodbus context. libmodbus owns the port setup and the line timing
 * (inter-frame silence, RS-485 direction), which only a blocking caller
 * gets right; a serial line at 9600-115200 baud spends milliseconds per
 * transaction on the wire, so the hand-off costs nothing that matters
 * there. A slow or dead device so delays only its own bus.
 *
 * Framing. Everything except libmodbus's serial function codes uses this
 * file's PDU-level framing on top of mbcodec.c: libmodbus 3.1.6 has no UDP
 * backend, cannot frame RTU over a socket and misframes FC 43; and its TCP
 * client fails the request after a timeout when the late answer to the
 * earlier one arrives (it cannot tell a transaction id mismatch from a
 * malformed frame), where ours skips answers to other transactions and
 * keeps those errors apart.
 *
 * Timeouts. With no configured timeout, the response timeout adapts to the
 * device like TCP's retransmission timer (RFC 6298): smoothed round trip
 * plus four deviations, kept between 1 s and 10 s, 3 s before the first
 * answer. libmodbus's fixed 0.5 s is too short for many inverters.
 *
 * Connections are opened on the first request. After a failed connect the
 * bus waits before trying again: backoff (0.5 s), then twice as long each
 * time up to backoff_max (5 s), both per bus (URL parameters). Requests in
 * between fail at once, saying when the next attempt is due and what the
 * last one got, instead of hanging. The ceiling was 30 s; a controller then
 * stayed blind for up to 30 s after its meter came back, while a connect
 * attempt costs one SYN (or one open() of a tty) every few seconds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mbus.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mbcodec.h"
#include "mbus_impl.h"

/* {===== framing ===== */

bool mbus_is_datagram(const md_mbus *b)
{
    return b->cfg.transport == MD_MBUS_UDP || b->cfg.transport == MD_MBUS_RTU_UDP;
}

bool mbus_is_rtu_framing(const md_mbus *b)
{
    md_mbus_transport t = b->cfg.transport;
    return t == MD_MBUS_RTU || t == MD_MBUS_RTU_TCP || t == MD_MBUS_RTU_UDP;
}

bool mbus_is_broadcast(const md_mbus *b, const md_mbus_req *r)
{
    return r->unit == 0 && mbus_is_rtu_framing(b);
}

size_t mbus_build_adu(md_mbus *b, uint8_t unit, const uint8_t *pdu, size_t pdu_len,
                      uint8_t *adu)
{
    if (mbus_is_rtu_framing(b)) {
        adu[0] = unit;
        memcpy(adu + 1, pdu, pdu_len);
        return md_mb_rtu_put_crc(adu, pdu_len + 1); /* CRC goes low byte first */
    }
    md_mb_mbap_encode(adu, ++b->tid, (uint16_t)pdu_len, unit);
    memcpy(adu + MD_MB_MBAP_LEN, pdu, pdu_len);
    return pdu_len + MD_MB_MBAP_LEN;
}

int mbus_adu_len(const md_mbus *b, const uint8_t *buf, size_t have)
{
    if (mbus_is_rtu_framing(b))
        return md_mb_rtu_response_len(buf, have);
    if (have < MD_MB_MBAP_LEN)
        return 0;
    unsigned len = md_mb_get_u16(buf + 4);
    if (md_mb_get_u16(buf + 2) != 0 || len < 2 || len > 254)
        return -1;
    return (int)(6 + len);
}

int mbus_check_adu(const md_mbus *b, md_mbus_req *r, const uint8_t *adu, size_t n,
                   const uint8_t **pdu, size_t *pdu_len, bool *other_tid)
{
    const uint8_t *p;
    size_t plen;
    uint8_t unit;
    if (mbus_is_rtu_framing(b)) {
        if (n < 4)
            return -MD_MBUS_EMALFORMED;
        if (md_mb_rtu_check_crc(adu, n) < 0)
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
        p = adu + MD_MB_MBAP_LEN;
        plen = n - MD_MB_MBAP_LEN;
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
    *pdu = p;
    *pdu_len = plen;
    return 0;
}

size_t mbus_build_pdu(const md_mbus_req *r, uint8_t *pdu)
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
        pdu[n++] = MD_MB_MEI_DEVICE_ID;
        pdu[n++] = r->mei_code;
        pdu[n++] = r->object_id;
        return n;
    default: return 0;
    }
}

int mbus_take_response(md_mbus_req *r, const uint8_t *pdu, size_t len)
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

/* {===== queue, timeouts, statistics ===== */

void mbus_queue_push(mbus_queue *q, md_mbus_req *r)
{
    md_mbus_req **head = r->priority ? &q->hi_head : &q->lo_head;
    md_mbus_req **tail = r->priority ? &q->hi_tail : &q->lo_tail;
    r->next = NULL;
    if (*tail)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
}

md_mbus_req *mbus_queue_pop(mbus_queue *q)
{
    md_mbus_req **head = q->hi_head ? &q->hi_head : &q->lo_head;
    md_mbus_req **tail = q->hi_head ? &q->hi_tail : &q->lo_tail;
    md_mbus_req *r = *head;
    if (r) {
        *head = r->next;
        if (!*head)
            *tail = NULL;
        r->next = NULL;
    }
    return r;
}

md_mbus_req *mbus_queue_take_all(mbus_queue *q)
{
    md_mbus_req *all = q->hi_head;
    if (q->hi_tail)
        q->hi_tail->next = q->lo_head;
    else
        all = q->lo_head;
    *q = (mbus_queue){0};
    return all;
}

int mbus_request_timeout(md_mbus *b, const md_mbus_req *r)
{
    if (r->timeout_ms > 0)
        return r->timeout_ms;
    mbus_lock(b);
    int t = b->timeout_ms;
    mbus_unlock(b);
    return t;
}

void mbus_adapt_timeout(md_mbus *b, double rtt)
{
    if (b->srtt == 0) {
        b->srtt = rtt;
        b->rttvar = rtt / 2;
    } else {
        b->rttvar = 0.75 * b->rttvar + 0.25 * fabs(b->srtt - rtt);
        b->srtt = 0.875 * b->srtt + 0.125 * rtt;
    }
    double t = b->srtt + 4 * b->rttvar;
    t = t < MBUS_MIN_TIMEOUT_MS   ? MBUS_MIN_TIMEOUT_MS
        : t > MBUS_MAX_TIMEOUT_MS ? MBUS_MAX_TIMEOUT_MS
                                  : t;
    if (b->cfg.timeout_ms == 0) {
        mbus_lock(b);
        b->timeout_ms = (int)t;
        mbus_unlock(b);
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

void mbus_record(md_mbus *b, const md_mbus_req *r)
{
    mbus_lock(b);
    count(&b->stats, r);
    b->units[r->unit].used = true;
    count(&b->units[r->unit].s, r);
    mbus_unlock(b);
}

void mbus_connect_failed(md_mbus *b, int err, int64_t now_ms)
{
    int first = b->cfg.backoff_ms, max = b->cfg.backoff_max_ms;
    b->last_connect_errno = err;
    b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : first;
    if (b->backoff_ms > max)
        b->backoff_ms = max;
    mbus_lock(b);
    b->next_connect_ms = now_ms + b->backoff_ms;
    b->connect_failures++;
    mbus_unlock(b);
}

void mbus_connected(md_mbus *b)
{
    b->backoff_ms = 0;
    mbus_lock(b);
    b->connects++;
    mbus_unlock(b);
}

int mbus_backing_off(md_mbus *b, md_mbus_req *r, int64_t now_ms)
{
    if (now_ms >= b->next_connect_ms)
        return 0;
    r->sys_errno = b->last_connect_errno;
    r->retry_in_ms = (int)(b->next_connect_ms - now_ms);
    return -MD_MBUS_ECONNECT;
}

/* }===== */

/* {===== API ===== */

md_mbus *md_mbus_open(md_loop *loop, const md_mbus_config *cfg)
{
    bool rtu = cfg->transport == MD_MBUS_RTU;
    if ((rtu && !cfg->link.device[0]) ||
        (!rtu && (!cfg->link.host[0] || cfg->link.port <= 0)) || cfg->timeout_ms < 0 ||
        cfg->delay_ms < 0 || cfg->backoff_ms < 0 || cfg->backoff_max_ms < 0) {
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
    b->on_loop = !rtu;
    b->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : MBUS_INITIAL_TIMEOUT_MS;
    if (!b->cfg.backoff_ms)
        b->cfg.backoff_ms = MBUS_FIRST_BACKOFF_MS;
    if (!b->cfg.backoff_max_ms)
        b->cfg.backoff_max_ms = MBUS_MAX_BACKOFF_MS;
    if (b->cfg.backoff_max_ms < b->cfg.backoff_ms)
        b->cfg.backoff_max_ms = b->cfg.backoff_ms;
    pthread_mutex_init(&b->lock, NULL);
    int rc = b->on_loop ? mbus_net_open(b) : mbus_serial_open(b);
    if (rc < 0) {
        mbus_free(b);
        errno = -rc;
        return NULL;
    }
    return b;
}

void mbus_free(md_mbus *b)
{
    pthread_mutex_destroy(&b->lock);
    free(b->units);
    free(b);
}

void md_mbus_submit(md_mbus *b, md_mbus_req *r)
{
    if (b->on_loop)
        mbus_net_submit(b, r);
    else
        mbus_serial_submit(b, r);
}

void md_mbus_close(md_mbus *b, bool wait)
{
    if (b->on_loop)
        mbus_net_close(b);
    else
        mbus_serial_close(b, wait);
}

bool md_mbus_get_stats(md_mbus *b, int unit, md_mbus_stats *out)
{
    mbus_lock(b);
    bool used = unit < 0 || (unit < 256 && b->units[unit].used);
    *out = unit < 0 ? b->stats : used ? b->units[unit].s : (md_mbus_stats){0};
    mbus_unlock(b);
    return used;
}

int md_mbus_current_timeout(md_mbus *b)
{
    mbus_lock(b);
    int t = b->timeout_ms;
    mbus_unlock(b);
    return t;
}

/* The clock each transport backs off by: the loop's for sockets (which
 * simulated time replaces), CLOCK_MONOTONIC for a serial worker. */
static int64_t backoff_now(md_mbus *b)
{
    if (b->on_loop)
        return md_loop_now(b->loop);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void md_mbus_get_connect_stats(md_mbus *b, md_mbus_connect_stats *out)
{
    int64_t now = backoff_now(b);
    mbus_lock(b);
    out->connects = b->connects;
    out->connect_failures = b->connect_failures;
    int64_t left = b->next_connect_ms - now;
    mbus_unlock(b);
    out->reconnect_in_ms = left > 0 ? (int)left : -1;
}

/* }===== */
