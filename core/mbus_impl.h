/*
 * mbus_impl.h - what the files of the Modbus client share; not a public
 * header (see mbus.h for the API, mbus.c for the design). Layers, top to
 * bottom; each calls only the one below it:
 *
 *   mbus.c         the API: picks the transport and calls its operations
 *   mbus_net.c     socket transports on the loop thread (tcp, udp, rtu+tcp,
 *                  rtu+udp): non-blocking, no thread; connects via conn.c
 *   mbus_serial.c  serial rtu on a worker thread; the line from serial.c
 *   mbus_base.c    what both directions use: ADU build and check, the
 *                  request queue, the adaptive timeout, statistics, backoff
 *
 * Locking. Only a serial bus has a second thread; its fields marked
 * "shared" below are guarded by b->lock. A socket bus lives on the loop
 * thread alone and never takes the lock: mbus_lock()/mbus_unlock() do
 * nothing for it.
 */
#ifndef MD_MBUS_IMPL_H
#define MD_MBUS_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mbus.h"

#define MBUS_INITIAL_TIMEOUT_MS 3000
#define MBUS_MIN_TIMEOUT_MS 1000
#define MBUS_MAX_TIMEOUT_MS 10000
#define MBUS_FIRST_BACKOFF_MS 500
#define MBUS_MAX_BACKOFF_MS 5000
#define MBUS_CONNECT_TIMEOUT_MS 3000

typedef struct mbus_unit_stats {
    bool used;
    md_mbus_stats s;
} mbus_unit_stats;

/* Requests waiting for the bus: writes (priority) ahead of reads. */
typedef struct mbus_queue {
    md_mbus_req *hi_head, *hi_tail;
    md_mbus_req *lo_head, *lo_tail;
} mbus_queue;

struct mbus_net;
struct mbus_serial;

/* A transport's operations, as libmodbus has one backend table per
 * transport. mbus.c calls them; they complete each request through its
 * md_completion and never call back into mbus.c. */
typedef struct mbus_ops {
    /* Set up the transport of a freshly allocated bus (it connects lazily,
     * on the first request). 0 or -errno. */
    int (*open)(md_mbus *b);
    /* Queue r; see md_mbus_submit for when its completion runs. */
    void (*submit)(md_mbus *b, md_mbus_req *r);
    /* Close and free the bus (see md_mbus_close). */
    void (*close)(md_mbus *b, bool wait);
} mbus_ops;

extern const mbus_ops mbus_net_ops;    /* mbus_net.c */
extern const mbus_ops mbus_serial_ops; /* mbus_serial.c */

/* Owned by whoever opened it (mbus_lua.c) until md_mbus_close(); then by
 * the loop thread, which frees it (at once for a socket bus, after the
 * worker exited for a serial one). */
struct md_mbus {
    md_loop *loop;
    md_mbus_config cfg;
    const mbus_ops *ops;
    bool on_loop;         /* socket transport run by mbus_net.c; else serial */
    pthread_mutex_t lock; /* serial buses only (see above) */

    /* shared */
    mbus_queue queue;
    bool closing;
    md_mbus_stats stats;
    mbus_unit_stats *units; /* 256, allocated with the bus */
    int timeout_ms;         /* current response timeout */

    /* transport side: the loop thread (socket) or the worker (serial) */
    uint16_t tid;
    double srtt, rttvar; /* adaptive timeout state, ms; srtt 0: no sample yet */
    int64_t next_connect_ms;
    int backoff_ms;
    int last_connect_errno;
    /* next_connect_ms is also read by the loop thread (stats): both it and
     * these counters are written under the lock */
    uint64_t connects, connect_failures;

    struct mbus_net *net;       /* socket buses */
    struct mbus_serial *serial; /* serial buses */
};

static inline void mbus_lock(md_mbus *b)
{
    if (!b->on_loop)
        pthread_mutex_lock(&b->lock);
}

static inline void mbus_unlock(md_mbus *b)
{
    if (!b->on_loop)
        pthread_mutex_unlock(&b->lock);
}

/* {===== mbus_base.c: below the transports ===== */

bool mbus_is_datagram(const md_mbus *b);
bool mbus_is_rtu_framing(const md_mbus *b);
/* Unit 0 on an RTU line is a broadcast: every device acts, none answers. */
bool mbus_is_broadcast(const md_mbus *b, const md_mbus_req *r);

/* Queue r at the tail of its priority; take the next request (or NULL). */
void mbus_queue_push(mbus_queue *q, md_mbus_req *r);
md_mbus_req *mbus_queue_pop(mbus_queue *q);
/* Empty the queue: the requests, in order, writes first, linked by next. */
md_mbus_req *mbus_queue_take_all(mbus_queue *q);

/* The request PDU for r (any function code); 0 for an unknown one. */
size_t mbus_build_pdu(const md_mbus_req *r, uint8_t *pdu);
/* The request ADU around pdu (MBAP with the next transaction id, or RTU
 * address + CRC). Returns its length, at most MD_MB_MAX_TCP. */
size_t mbus_build_adu(md_mbus *b, uint8_t unit, const uint8_t *pdu, size_t pdu_len,
                      uint8_t *adu);
/* Length of the complete response ADU at buf if known: > 0 the length,
 * 0 more bytes needed, < 0 malformed. */
int mbus_adu_len(const md_mbus *b, const uint8_t *buf, size_t have);
/*
 * Check one complete response ADU of n bytes against r. Returns 0 with
 * pdu and pdu_len set to its PDU inside adu, 1 for an answer to another
 * transaction (sets *other_tid: keep waiting), or -MD_MBUS_ECRC, -EBADUNIT,
 * -EMALFORMED, -EEXCEPTION (r->exception set).
 */
int mbus_check_adu(const md_mbus *b, md_mbus_req *r, const uint8_t *adu, size_t n,
                   const uint8_t **pdu, size_t *pdu_len, bool *other_tid);
/* Keep what the caller wants from a response PDU in r->data. Returns 0 or
 * -MD_MBUS_EMALFORMED. */
int mbus_take_response(md_mbus_req *r, const uint8_t *pdu, size_t len);

/* RFC 6298-style smoothing of an observed round trip (ms) into the
 * adaptive timeout. */
void mbus_adapt_timeout(md_mbus *b, double rtt_ms);
/* The response timeout for r: its own, or the bus's. */
int mbus_request_timeout(md_mbus *b, const md_mbus_req *r);
/* Count a finished request in the bus's and its unit's statistics. */
void mbus_record(md_mbus *b, const md_mbus_req *r);
/* A connect failed with err at now_ms: back off cfg.backoff_ms (0.5 s),
 * then twice as long each time up to cfg.backoff_max_ms (5 s). */
void mbus_connect_failed(md_mbus *b, int err, int64_t now_ms);
/* A connect succeeded: the next failure starts the backoff over. */
void mbus_connected(md_mbus *b);
/* Fail r at once while the bus backs off (now_ms < next_connect_ms), with
 * the last attempt's error: returns -MD_MBUS_ECONNECT, or 0 when it is
 * time to try again. now_ms is on the clock the transport backs off by. */
int mbus_backing_off(md_mbus *b, md_mbus_req *r, int64_t now_ms);
/* Free what md_mbus_open allocated (the transport's close calls it last). */
void mbus_free(md_mbus *b);

/* }===== */

#endif
