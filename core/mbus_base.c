/*
 * mbus_base.c - what both directions of a Modbus client transaction use,
 * below the transports: building and checking ADUs (MBAP or RTU framing on
 * top of mbcodec.c), the request queue, the adaptive response timeout, the
 * statistics and the connect backoff. mbus.c (the API) calls a transport
 * through its table of operations (mbus_impl.h); the transports
 * (mbus_net.c, mbus_serial.c) call down into this file and never back up
 * into mbus.c, so a request goes down the layers once and comes back once
 * (its completion, which belongs to the submitter).
 *
 * Threads: called by the loop thread (socket buses) or a serial bus's
 * worker; what the loop thread also reads (statistics, the timeout) is
 * written under mbus_lock().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

/* {===== the bus's memory ===== */

void mbus_free(md_mbus *b)
{
    pthread_mutex_destroy(&b->lock);
    free(b->units);
    free(b);
}

/* }===== */
