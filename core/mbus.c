/*
 * mbus.c - Modbus client buses: the API. It picks the transport's table of
 * operations (mbus_impl.h) and calls it; what the transports share (the
 * framing, queue, adaptive timeout, statistics and backoff) lies below
 * them in mbus_base.c. See mbus.h for the contract.
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
 * Serial (rtu): mbus_serial.c, one worker thread per bus that owns the
 * line, set up by serial.c (the same code as the Modbus server's). A
 * blocking caller keeps the line timing simple (the answer is read under
 * poll until its length is in), and a serial line at 9600-115200 baud
 * spends milliseconds per transaction on the wire, so the hand-off costs
 * nothing that matters there. A slow or dead device so delays only its
 * own bus. Serial buses went through libmodbus until the port set-up was
 * written once for client and server (issue 16): libmodbus could only set
 * up the port itself.
 *
 * Framing. Every transport uses mbus_base.c's PDU-level framing on top of
 * mbcodec.c: libmodbus 3.1.6 has no UDP backend, cannot frame RTU over a
 * socket and misframes FC 43; and its TCP client fails the request after a
 * timeout when the late answer to the earlier one arrives (it cannot tell a
 * transaction id mismatch from a malformed frame), where ours skips answers
 * to other transactions and keeps those errors apart.
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
#include <stdlib.h>
#include <time.h>

#include "mbus_impl.h"

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
    b->ops = rtu ? &mbus_serial_ops : &mbus_net_ops;
    b->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : MBUS_INITIAL_TIMEOUT_MS;
    if (!b->cfg.backoff_ms)
        b->cfg.backoff_ms = MBUS_FIRST_BACKOFF_MS;
    if (!b->cfg.backoff_max_ms)
        b->cfg.backoff_max_ms = MBUS_MAX_BACKOFF_MS;
    if (b->cfg.backoff_max_ms < b->cfg.backoff_ms)
        b->cfg.backoff_max_ms = b->cfg.backoff_ms;
    pthread_mutex_init(&b->lock, NULL);
    int rc = b->ops->open(b);
    if (rc < 0) {
        mbus_free(b);
        errno = -rc;
        return NULL;
    }
    return b;
}

void md_mbus_submit(md_mbus *b, md_mbus_req *r)
{
    b->ops->submit(b, r);
}

void md_mbus_close(md_mbus *b, bool wait)
{
    b->ops->close(b, wait);
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
