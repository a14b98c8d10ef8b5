/*
 * mbserver.h - the Modbus server: register maps, request processing, and
 * servers on TCP, UDP, a serial line, RTU over TCP and RTU over UDP.
 *
 * Two layers, so that a fuzzer or a unit test can use the first alone:
 *
 *  - mbserver.c (pure): a register map of four sparse tables (coils,
 *    discrete inputs, holding and input registers) plus the device
 *    identification strings and the FC 17 server id of one unit, and the
 *    processing of one request PDU against a map (md_mbsrv_process), split
 *    into parse / execute so that a Lua hook can sit in between. Also the
 *    request framing of a byte stream (MBAP and RTU). No I/O, no loop, no
 *    Lua; nothing here keeps global state.
 *  - mbserver_io.c: md_mbsrv, a server bound to one transport and driven by
 *    the md_loop on the loop thread with non-blocking fds. It owns the maps
 *    of its units, its connections and the requests that wait for a hook.
 *
 * Threads: the map functions are plain data structure code (the caller
 * serialises). Everything in mbserver_io.c runs on the loop thread.
 *
 * Errors: functions return 0 or -errno (-ENOMEM, -EINVAL ...), except where
 * stated. Modbus exception codes are positive (1..255), see mbcodec.h.
 */
#ifndef MD_MBSERVER_H
#define MD_MBSERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "loop.h"
#include "mbcodec.h"
#include "mblink.h"

struct addrinfo;

/* {===== register maps ===== */

typedef struct md_mbsrv_map md_mbsrv_map;

/* The four tables of a map, in the order of their read function codes. */
enum md_mbsrv_kind {
    MD_MBSRV_COIL,     /* FC 1, 5, 15 */
    MD_MBSRV_DISCRETE, /* FC 2 (read only from Modbus) */
    MD_MBSRV_HOLDING,  /* FC 3, 6, 16, 22, 23 */
    MD_MBSRV_INPUT,    /* FC 4 (read only from Modbus) */
    MD_MBSRV_KINDS
};

enum {
    MD_MBSRV_NO_KIND = -1,
    MD_MBSRV_MAX_OBJECT = 244, /* longest device id object that fits a PDU */
    MD_MBSRV_MAX_SERVER_ID = MD_MB_MAX_PDU - 2, /* FC 17 payload incl. run byte */
};

/*
 * A new empty map. strict: only addresses that were ever set with
 * md_mbsrv_map_set exist, every other one answers exception 2 (illegal data
 * address); otherwise every address exists and reads as 0 until written.
 * Returns NULL when out of memory.
 */
md_mbsrv_map *md_mbsrv_map_new(bool strict);
void md_mbsrv_map_free(md_mbsrv_map *map);
bool md_mbsrv_map_strict(const md_mbsrv_map *map);

/* Lowercase name of a kind ("coil", "discrete", "holding", "input") and
 * back; md_mbsrv_kind_from_name returns MD_MBSRV_NO_KIND for others. */
const char *md_mbsrv_kind_name(int kind);
int md_mbsrv_kind_from_name(const char *name);

/*
 * Store n values from addr on (bits: 0 or 1, other values count as 1) and,
 * in a strict map, make those addresses exist. Storage comes in pages of
 * 256 addresses, allocated on first write. Returns 0, -EINVAL (bad kind,
 * addr + n > 65536) or -ENOMEM (nothing was changed then).
 */
int md_mbsrv_map_set(md_mbsrv_map *map, int kind, unsigned addr, const uint16_t *values,
                     size_t n);
/* Copy n values from addr on; addresses never written read as 0. Returns 0
 * or -EINVAL. */
int md_mbsrv_map_get(const md_mbsrv_map *map, int kind, unsigned addr, uint16_t *out,
                     size_t n);
/* True when every address of the range exists (always, unless strict). */
bool md_mbsrv_map_exists(const md_mbsrv_map *map, int kind, unsigned addr, size_t n);

/*
 * Device identification object id (0 VendorName, 1 ProductCode,
 * 2 MajorMinorRevision, 3 VendorUrl, 4 ProductName, 5 ModelName,
 * 6 UserApplicationName, 0x80..0xFF extended) as len bytes of text; NULL
 * removes it. Objects 0..2 always exist (empty until set). Returns 0,
 * -EINVAL (len > MD_MBSRV_MAX_OBJECT) or -ENOMEM.
 */
int md_mbsrv_map_set_object(md_mbsrv_map *map, unsigned id, const char *text, size_t len);
/* The FC 17 payload after the byte count: server id and run indicator
 * byte. Returns 0 or -EINVAL (len 0 or > MD_MBSRV_MAX_SERVER_ID). */
int md_mbsrv_map_set_server_id(md_mbsrv_map *map, const uint8_t *bytes, size_t len);

/* }===== */

/* {===== request processing ===== */

/* md_mbsrv_parse / md_mbsrv_process: the PDU cannot be answered at all
 * (empty, function code 0 or >= 0x80, i.e. not a request). */
#define MD_MBSRV_NOREPLY (-1)

/*
 * A parsed request: what it reads and what it writes. A request has a read
 * part (FC 1-4, 23), a write part (FC 5, 6, 15, 16, 22, 23), or neither
 * (FC 17, 43). The written values stay in the request PDU; see
 * md_mbsrv_write_values.
 */
typedef struct md_mbsrv_op {
    uint8_t fc;
    int rkind;       /* MD_MBSRV_NO_KIND when nothing is read */
    uint16_t raddr;  /* first address read */
    uint16_t rcount; /* addresses read */
    int wkind;       /* MD_MBSRV_NO_KIND when nothing is written */
    uint16_t waddr;
    uint16_t wcount;
    uint8_t mei_code, object_id; /* FC 43/14 */
} md_mbsrv_op;

/*
 * Check a request PDU (len bytes from the function code on) and describe it
 * in *op. Returns 0, an exception code (1 illegal function, 2 address range
 * past 65535, 3 bad quantity, value, byte count or length) or
 * MD_MBSRV_NOREPLY. Does not look at a map: strict address checks belong to
 * md_mbsrv_check / md_mbsrv_execute.
 */
int md_mbsrv_parse(const uint8_t *pdu, size_t len, md_mbsrv_op *op);

/* Exception 2 if op writes addresses that do not exist in map (strict maps),
 * else 0. Lets a server refuse a write before asking a hook about it. */
int md_mbsrv_check_write(const md_mbsrv_map *map, const md_mbsrv_op *op);

/*
 * The values op would write, op->wcount of them, into out (room for 1968):
 * registers as they are, bits as 0/1. FC 22 gives the register value the
 * mask write would produce from map's current value. Returns the count.
 */
size_t md_mbsrv_write_values(const md_mbsrv_map *map, const md_mbsrv_op *op,
                             const uint8_t *pdu, uint16_t *out);

/*
 * Apply a parsed request to map and build the response PDU in resp (room for
 * MD_MB_MAX_PDU bytes). Writes happen before reads (FC 23). Returns 0 with
 * the normal response, or an exception code (2: an address does not exist;
 * 4: out of memory while storing) with nothing written; the caller builds
 * the exception response (md_mbsrv_exception).
 */
int md_mbsrv_execute(md_mbsrv_map *map, const md_mbsrv_op *op, const uint8_t *pdu,
                     uint8_t *resp, size_t *resp_len);

/* The exception response to function code fc: two bytes. */
void md_mbsrv_exception(uint8_t fc, int code, uint8_t *resp, size_t *resp_len);

/*
 * Everything at once: parse, execute and build the response PDU (normal or
 * exception) for the request PDU req of len bytes. Returns 0 (normal
 * response), the exception code of the exception response in resp, or
 * MD_MBSRV_NOREPLY (resp untouched). This is the function the fuzzer calls.
 */
int md_mbsrv_process(md_mbsrv_map *map, const uint8_t *req, size_t len, uint8_t *resp,
                     size_t *resp_len);

/* }===== */

/* {===== framing ===== */

enum md_mbsrv_framing { MD_MBSRV_MBAP, MD_MBSRV_RTU_FRAMING };

/* md_mbsrv_frame on an MBAP stream: the header is wrong (protocol id not
 * 0, or length outside 2..254); the stream cannot be resynchronised. */
#define MD_MBSRV_EBADMBAP (-MD_EBADMBAP)

/*
 * Find the request ADU at the start of a received byte stream of have
 * bytes. Returns its length (> 0) when a whole ADU is there, 0 when more
 * bytes are needed, and otherwise:
 *  - RTU: -1: the first byte cannot start a frame (bad byte count, bad
 *    CRC, unknown function code): drop it and look again. A frame with a
 *    function code the length rules do not know is taken only when the
 *    whole buffer is one CRC-valid frame (clients write a frame at once),
 *    so that it can get exception 1. Unlike the codec's rules, such an
 *    answer can change when more bytes arrive.
 *  - MBAP: MD_MBSRV_EBADMBAP.
 * RTU frames for every unit id are delimited; filtering is the caller's.
 */
int md_mbsrv_frame(int framing, const uint8_t *buf, size_t have);

/* The fields of one whole ADU (as delimited by md_mbsrv_frame). */
typedef struct md_mbsrv_adu {
    uint16_t tid; /* MBAP only */
    uint8_t unit;
    const uint8_t *pdu;
    size_t pdu_len;
} md_mbsrv_adu;

void md_mbsrv_unwrap(int framing, const uint8_t *adu, size_t len, md_mbsrv_adu *out);
/* The response ADU for pdu into out (room for MD_MB_MAX_TCP); returns its
 * length. */
size_t md_mbsrv_wrap(int framing, uint16_t tid, uint8_t unit, const uint8_t *pdu,
                     size_t pdu_len, uint8_t *out);

/* }===== */

/* {===== servers (mbserver_io.c) ===== */

typedef struct md_mbsrv md_mbsrv;

typedef enum {
    MD_MBSRV_TCP,
    MD_MBSRV_UDP,
    MD_MBSRV_RTU, /* serial device or pty */
    MD_MBSRV_RTU_TCP,
    MD_MBSRV_RTU_UDP,
} md_mbsrv_transport;

typedef struct md_mbsrv_config {
    md_mbsrv_transport transport;
    md_mb_link link; /* a server binds to link.host ("" or "*": every interface);
                      * port 0: any free port */
    bool hook_reads, hook_writes; /* send such requests through the hook queue */
    /* Stream transports; 0 takes the default. A connection that sends nothing
     * for idle_ms (default 60 s), or leaves a frame unfinished for frame_ms
     * (default 5 s), is closed. At max_clients connections (default 1024)
     * a new one closes the connection idle the longest. */
    int idle_ms, frame_ms, max_clients;
    /* Network transports: the addresses to bind, already resolved (not
     * owned, used only by md_mbsrv_open); NULL resolves link.host there,
     * which blocks for a host name (conn.h md_conn_resolve_now). */
    const struct addrinfo *addrs;
} md_mbsrv_config;

/* Errors of md_mbsrv_open besides -errno: aliases of err.h's codes. */
enum {
    MD_MBSRV_ERESOLVE = MD_EDNS, /* the host name does not resolve */
    MD_MBSRV_EBAUD = MD_EBAUD,   /* a baud rate termios cannot set */
};

typedef struct md_mbsrv_stats {
    uint64_t requests;   /* requests addressed to a served unit (incl. broadcast) */
    uint64_t exceptions; /* exception responses sent */
    uint64_t bad_frames; /* garbage, CRC errors, malformed MBAP or datagrams */
    uint64_t accepted;   /* connections accepted so far */
    uint64_t dropped;    /* connections the server closed (malformed, slow reader,
                          * idle, unfinished frame, evicted when full) */
    int clients;         /* connections open now */
} md_mbsrv_stats;

/*
 * A request that waits for a hook. The server owns it from md_mbsrv_next()
 * until md_mbsrv_reply() with its id (a finished or closed server forgets
 * it; a late reply is then ignored). Read-only for the hook side.
 */
typedef struct md_mbsrv_req {
    uint64_t id;
    uint8_t unit;    /* 0: RTU broadcast (the write goes to every unit) */
    char client[64]; /* who asked: "127.0.0.1:50312", "[::1]:50312", "serial" */
    md_mbsrv_op op;
    uint8_t pdu[MD_MB_MAX_PDU];
    size_t pdu_len;
    md_mbsrv_map *map; /* the unit's map; for a broadcast the first one */
} md_mbsrv_req;

/* Called on the loop thread when a request was queued for a hook, and once
 * when the server closes. It may only queue work and wake tasks. */
typedef void (*md_mbsrv_notify_fn)(md_mbsrv *srv, void *ud);

/*
 * Create a server with its maps: units (nunits ids 1..255) each get their
 * own map; with nunits 0 one map answers every unit id. Then bind and watch
 * the transport. Returns 0 and *out, or -errno / -MD_MBSRV_E*; on failure
 * nothing is left behind. The watches keep the loop alive until close.
 */
int md_mbsrv_open(md_loop *loop, const md_mbsrv_config *cfg, const uint8_t *units,
                  int nunits, bool strict, md_mbsrv **out);
/* Stop serving: close every connection and fd, forget queued requests,
 * call notify once. Idempotent. The maps stay readable until free. */
void md_mbsrv_close(md_mbsrv *srv);
/* Close if needed and free everything, maps included. */
void md_mbsrv_free(md_mbsrv *srv);
bool md_mbsrv_closed(const md_mbsrv *srv);

void md_mbsrv_set_notify(md_mbsrv *srv, md_mbsrv_notify_fn fn, void *ud);

/* The map of a unit; unit < 0 or any id on a server with one shared map
 * gives that map. NULL for an id the server does not serve. */
md_mbsrv_map *md_mbsrv_unit_map(md_mbsrv *srv, int unit);
/* True when the server has one map for every unit id. */
bool md_mbsrv_any_unit(const md_mbsrv *srv);
/* The served unit ids, ascending, into units (room for 255); returns the
 * count (0 for the shared map). */
int md_mbsrv_units(const md_mbsrv *srv, uint8_t *units);

/* The bound port (network transports), 0 otherwise. */
int md_mbsrv_port(const md_mbsrv *srv);
void md_mbsrv_get_stats(const md_mbsrv *srv, md_mbsrv_stats *out);

/* True when a request waits in the hook queue. */
bool md_mbsrv_has_queued(const md_mbsrv *srv);
/* The oldest request queued for a hook, now in flight, or NULL. */
const md_mbsrv_req *md_mbsrv_next(md_mbsrv *srv);
/*
 * Finish the in-flight request id: exception 0 applies it and sends the
 * normal response, 1..255 sends that exception instead (nothing applied).
 * The connection then goes on with its next request. Returns false if no
 * such request is in flight (its server closed, or it was answered).
 */
bool md_mbsrv_reply(md_mbsrv *srv, uint64_t id, int exception);

/* }===== */

#endif
