/*
 * mbus.h - a Modbus client bus: one connection (a serial line, or one TCP
 * or UDP socket) shared by every unit id on it, running one transaction at
 * a time from a queue where writes go ahead of reads. The event loop never
 * waits on a device.
 *
 * Threads. Every function here is called on the loop thread. A socket bus
 * (tcp, udp, rtu+tcp, rtu+udp) runs on the loop thread itself: a
 * non-blocking socket watched by the loop, and each request's completion
 * is called directly on the loop thread, possibly before md_mbus_submit()
 * returns (a request that fails at once). A serial bus (rtu) has a worker
 * thread that owns its line (serial.c) from open to close and hands each
 * finished request back through md_loop_post(). Neither touches Lua. See
 * mbus.c for why there are two designs.
 *
 * Liveness. A bus does not keep the loop alive by itself (an idle open bus
 * must not stop a program's exit): whoever submits a request holds the loop
 * (md_loop_hold) until its completion runs.
 *
 * Ownership. A request is owned by its submitter until md_mbus_submit(),
 * by the bus until its completion is called, then by the loop thread again,
 * which frees it. A completion must not close the bus. The bus itself is
 * freed by md_mbus_close() (socket) or once its worker has exited (serial).
 */
#ifndef MD_MBUS_H
#define MD_MBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "loop.h"
#include "mblink.h"

typedef struct md_mbus md_mbus;

typedef enum {
    MD_MBUS_TCP,
    MD_MBUS_UDP,
    MD_MBUS_RTU,
    MD_MBUS_RTU_TCP, /* RTU frames with CRC over a TCP socket (serial gateways) */
    MD_MBUS_RTU_UDP,
} md_mbus_transport;

typedef struct md_mbus_config {
    md_mbus_transport transport;
    md_mb_link link;
    int timeout_ms;         /* response timeout; 0: adaptive (see mbus.c) */
    int delay_ms;           /* quiet time between transactions */
    int connect_timeout_ms; /* 0: 3000 */
    int backoff_ms;         /* first wait after a failed connect; 0: 500 */
    int backoff_max_ms;     /* the wait doubles up to this; 0: 5000 (>= backoff_ms) */
} md_mbus_config;

/* Errors, as negative numbers in md_mbus_req.status: aliases of err.h's
 * codes (md_strerror, md_err_token). */
enum {
    MD_MBUS_ETIMEOUT = MD_ETIMEOUT,     /* no (complete) response in time */
    MD_MBUS_EEXCEPTION = MD_EEXCEPTION, /* the device answered with an exception:
                                           see .exception */
    MD_MBUS_ECRC = MD_ECRC,             /* RTU frame with a bad CRC */
    MD_MBUS_EBADTID = MD_EBADTID,       /* only responses to other transactions arrived */
    MD_MBUS_EBADUNIT = MD_EBADUNIT,     /* response from another unit id */
    MD_MBUS_EMALFORMED = MD_EMALFORMED, /* short, truncated or inconsistent response */
    MD_MBUS_ECONNLOST = MD_ECONNLOST, /* the connection dropped during the transaction */
    MD_MBUS_ECONNECT = MD_ECONNECT,   /* could not connect or open (see .sys_errno) */
    MD_MBUS_ECLOSED = MD_ECLOSED,     /* the bus was closed */
    MD_MBUS_EQUEUED = MD_EQUEUED,     /* waited longer than its deadline for the bus */
};

enum {
    MD_MBUS_MAX_REGS = 125,
    MD_MBUS_MAX_BITS = 2000,
    MD_MBUS_MAX_WRITE_REGS = 123,
    MD_MBUS_MAX_RW_WRITE_REGS = 121,
    MD_MBUS_MAX_WRITE_BITS = 1968,
};

typedef struct md_mbus_req md_mbus_req;

struct md_mbus_req {
    md_completion done; /* fn/ud set by the submitter; run when finished */

    /* request */
    uint8_t unit;
    uint8_t fc;      /* 1-6, 15, 16, 17, 22, 23, 43 */
    uint16_t addr;   /* read address, or write address for 5, 6, 15, 16, 22 */
    uint16_t count;  /* read count (1-4, 23), write count (15, 16) */
    uint16_t waddr;  /* FC 23: write address */
    uint16_t wcount; /* FC 23: write count */
    uint16_t wregs[MD_MBUS_MAX_WRITE_REGS]; /* FC 6: [0]; 16, 23; 22: and, or */
    uint8_t wbits[MD_MBUS_MAX_WRITE_BITS];  /* FC 5: [0]; 15: one byte per bit */
    uint8_t mei_code;                       /* FC 43/14: read device id code 1-4 */
    uint8_t object_id;                      /* FC 43/14: first object */
    int timeout_ms;                         /* 0: the bus's (adaptive) timeout */
    bool priority;                          /* writes go ahead of queued reads */
    int64_t deadline_ms; /* md_loop_now() ms; 0: none. Checked when dequeued */

    /* result */
    int status;        /* 0, or -MD_MBUS_E* */
    int exception;     /* Modbus exception code when status is -MD_MBUS_EEXCEPTION */
    int sys_errno;     /* errno behind ECONNECT / ECONNLOST, when known */
    int retry_in_ms;   /* ECONNECT while the bus backs off (no attempt made):
                        * ms to its next attempt; sys_errno is the last one's */
    uint8_t data[256]; /* response data: register bytes (big-endian) or packed
                        * bits for reads, the PDU after the function code for
                        * FC 17 and 43 */
    size_t data_len;
    double latency_ms;

    /* bookkeeping, owned by whoever owns the request */
    md_mbus_req *next;
    bool abandoned; /* the waiting task went away: just free on completion */
    void *owner;
};

typedef struct md_mbus_stats {
    uint64_t requests, ok;
    uint64_t timeouts, exceptions, crc_errors, bad_frames, conn_errors, other_errors;
    double latency_sum_ms, latency_max_ms; /* over successful transactions */
} md_mbus_stats;

/* Validate cfg, set the bus up (a serial bus starts its worker) and return
 * it, connected lazily on the first request. Returns NULL with errno set
 * (EINVAL for a bad config). */
md_mbus *md_mbus_open(md_loop *loop, const md_mbus_config *cfg);

/* Queue a request; its completion runs on the loop thread when it finishes
 * (also when the bus is closed first): called directly for a socket bus,
 * maybe inside this call, posted for a serial one. Never blocks on the
 * device. */
void md_mbus_submit(md_mbus *bus, md_mbus_req *req);

/*
 * Close the bus: queued requests complete with -MD_MBUS_ECLOSED.
 * A socket bus also completes its request in flight with -MD_MBUS_ECLOSED,
 * runs every completion and frees itself before returning, whatever wait.
 * A serial bus's worker finishes its current transaction and exits. With
 * wait false that bus is freed later on the loop thread; with wait true
 * (engine shutdown, when the loop no longer runs) this joins the worker,
 * runs the completions it posted and frees the bus now.
 */
void md_mbus_close(md_mbus *bus, bool wait);

/* Copy statistics: unit < 0 for the whole bus. Returns false if the unit
 * never saw a request. */
bool md_mbus_get_stats(md_mbus *bus, int unit, md_mbus_stats *out);
/* The response timeout the bus uses now (configured or adaptive), in ms. */
int md_mbus_current_timeout(md_mbus *bus);

/* The bus's connection attempts: how many succeeded and failed, and while
 * it backs off after a failure, the time to its next attempt. */
typedef struct md_mbus_connect_stats {
    uint64_t connects, connect_failures;
    int reconnect_in_ms; /* -1: not backing off */
} md_mbus_connect_stats;
void md_mbus_get_connect_stats(md_mbus *bus, md_mbus_connect_stats *out);

#endif
