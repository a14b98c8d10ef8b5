/*
 * growatt.h - the Growatt datalogger protocol (ShineWiFi / ShineLAN, TCP
 * port 5279): frame header, the "Growatt" XOR scramble, the CRC, builders
 * for the records a server or a proxy sends, and a streaming frame parser.
 *
 * A frame on the wire:
 *
 *     off  size  field
 *     0    2     sequence (big-endian); a reply reuses the request's
 *     2    2     protocol: 0x0002 plain, 0x0005 / 0x0006 scrambled + CRC
 *     4    2     length: bytes from offset 6 up to the CRC (unit .. body)
 *     6    1     unit (0x01 the datalogger; else an inverter address)
 *     7    1     record type (0x03 announce, 0x04 live data, 0x50 buffered
 *                data, 0x16 ping, 0x18/0x19 datalogger config set/get,
 *                0x05/0x06/0x10 inverter holding register read/write)
 *     8    n     body; for protocols 5 and 6 XORed with "Growatt" repeated,
 *                key index 0 at offset 8
 *     end  2     protocol 5/6 only: CRC-16/MODBUS over bytes 0 .. end-1 as
 *                sent (scrambled), high byte first (Modbus RTU sends the low
 *                byte first; this protocol does not)
 *
 * Command bodies start with the 10-byte datalogger serial; protocol 6 puts
 * 20 zero bytes after it. An ACK is the record's header with a one-byte
 * body 0x00.
 *
 * The parser keeps the bytes of the frame it is looking at, so after a bad
 * frame it goes back to the byte after that frame's start and looks again:
 * a good frame that starts inside garbage or inside a cut frame is found,
 * never lost. It reports one error when it loses step (a frame with a bad
 * CRC, an impossible length or an unknown protocol where a frame should
 * start) and then skips silently, counting the bytes as noise, until a frame
 * checks out. While skipping, a protocol-2 candidate (no CRC to prove it)
 * must also carry a record type of the table above and be followed by the
 * header of another frame, so that noise is not taken for a frame (such a
 * frame is handed out when the next frame's first 4 bytes arrive; a frame
 * too long for the buffer to hold those 4 bytes as well is taken as it is).
 *
 * Nothing here knows Lua or sockets, and nothing allocates: buffers belong
 * to the caller, so a test or a fuzzer can link this file alone. Every
 * function is thread-safe (parser state is the caller's).
 */
#ifndef MD_GROWATT_H
#define MD_GROWATT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum {
    MD_GW_HEADER = 8,        /* sequence .. record type */
    MD_GW_SERIAL = 10,       /* datalogger serial in command bodies */
    MD_GW_PAD6 = 20,         /* zero bytes after the serial in protocol 6 */
    MD_GW_MAX_LENGTH = 4096, /* largest length field taken (records seen: 537) */
    MD_GW_MAX_FRAME = 6 + MD_GW_MAX_LENGTH + 2,
    MD_GW_MAX_REGS = 125, /* registers in one 0x10 write */
};

/* Record types the protocol defines (byte 7). */
enum md_gw_type {
    MD_GW_ANNOUNCE = 0x03,
    MD_GW_DATA = 0x04,
    MD_GW_READ_HOLDING = 0x05,
    MD_GW_WRITE_HOLDING = 0x06,
    MD_GW_WRITE_MULTIPLE = 0x10,
    MD_GW_PING = 0x16,
    MD_GW_CONFIG_SET = 0x18,
    MD_GW_CONFIG_GET = 0x19,
    MD_GW_METER = 0x1b,
    MD_GW_METER2 = 0x20,
    MD_GW_RECORD29 = 0x29,
    MD_GW_BUFFERED = 0x50,
};

/* Error codes (negative): aliases of err.h's codes, so md_strerror() and
 * md_err_token() ("crc", "length", "protocol", "space", "range") apply. */
enum md_gw_error {
    MD_GW_ECRC = -MD_ECRC,        /* CRC mismatch */
    MD_GW_ELENGTH = -MD_ELENGTH,  /* length field impossible or too long */
    MD_GW_EPROTOCOL = -MD_EPROTO, /* protocol id other than 2, 5, 6 */
    MD_GW_ESPACE = -MD_ESPACE,    /* output buffer too small */
    MD_GW_ERANGE = -MD_ERANGE,    /* an argument out of range */
};

/* "announce", "data", "buffered", "ping", ... for a record type; NULL when
 * the protocol defines no such type. */
const char *md_gw_type_name(int type);
/* True for protocols 2, 5 and 6. */
bool md_gw_protocol_valid(int protocol);

static inline uint16_t md_gw_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void md_gw_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* CRC-16/MODBUS (reflected 0xA001, init 0xFFFF) of p[0..n). */
uint16_t md_gw_crc(const uint8_t *p, size_t n);

/*
 * XOR p[0..n) with "Growatt", key index (key_off + i) % 7 for byte i. For a
 * frame, p = frame + 8 and key_off = 0. Its own inverse.
 */
void md_gw_scramble(uint8_t *p, size_t n, size_t key_off);

/* {===== building ===== */

/*
 * Build a frame into out (cap bytes) from a plain body: header, body
 * scrambled for protocols 5/6, CRC for 5/6. Returns the frame's length,
 * MD_GW_EPROTOCOL (protocol not 2, 5 or 6), MD_GW_ELENGTH (body longer
 * than MD_GW_MAX_LENGTH - 2) or MD_GW_ESPACE (cap too small; the bytes
 * needed are 8 + len + 2).
 */
int md_gw_build(uint8_t *out, size_t cap, uint16_t seq, int protocol, uint8_t unit,
                uint8_t type, const uint8_t *body, size_t len);

/* The server's ACK of a record: same sequence, protocol, unit and type,
 * body 0x00. Returns as md_gw_build. */
int md_gw_build_ack(uint8_t *out, size_t cap, uint16_t seq, int protocol, uint8_t unit,
                    uint8_t type);

/*
 * The header of a command body into body (cap bytes): the serial (up to 10
 * bytes, zero-padded), 20 zero bytes for protocol 6, then args. Returns
 * its length or MD_GW_ESPACE / MD_GW_ERANGE (serial longer than 10).
 */
int md_gw_command_body(uint8_t *body, size_t cap, int protocol, const char *serial,
                       size_t serial_len, const uint8_t *args, size_t nargs);

/*
 * Builders for what a server sends to a datalogger; each makes the body
 * with md_gw_command_body and the frame with md_gw_build, and returns as
 * md_gw_build (MD_GW_ERANGE for a bad serial, first > last, or more than
 * MD_GW_MAX_REGS registers). out needs MD_GW_MAX_FRAME bytes at most.
 *   ping:           the keep-alive (0x16): serial [+ pad]; a server echoes
 *                   the logger's own, so a proxy rarely builds one
 *   read_holding:   0x05, inverter holding registers first..last
 *   write_holding:  0x06, one register
 *   write_multiple: 0x10, first .. first + n - 1
 *   config_get:     0x19, datalogger registers first..last
 *   config_set:     0x18, one datalogger register, value as ASCII
 */
int md_gw_build_ping(uint8_t *out, size_t cap, uint16_t seq, int protocol, uint8_t unit,
                     const char *serial, size_t serial_len);
int md_gw_build_read_holding(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                             uint8_t unit, const char *serial, size_t serial_len,
                             uint16_t first, uint16_t last);
int md_gw_build_write_holding(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                              uint8_t unit, const char *serial, size_t serial_len,
                              uint16_t reg, uint16_t value);
int md_gw_build_write_multiple(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                               uint8_t unit, const char *serial, size_t serial_len,
                               uint16_t first, const uint16_t *values, size_t n);
int md_gw_build_config_get(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                           uint8_t unit, const char *serial, size_t serial_len,
                           uint16_t first, uint16_t last);
int md_gw_build_config_set(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                           uint8_t unit, const char *serial, size_t serial_len,
                           uint16_t reg, const char *value, size_t value_len);

/* }===== */

/* {===== parsing ===== */

/* A frame the parser found; pointers into the parser's buffer, valid until
 * the next call that feeds or parses. */
typedef struct md_gw_frame {
    uint16_t seq;
    uint16_t protocol;
    uint16_t length; /* the length field */
    uint8_t unit, type;
    const uint8_t *raw; /* the frame as on the wire, CRC included */
    size_t raw_len;
    const uint8_t *body; /* as on the wire: scrambled for 5/6 */
    size_t body_len;     /* length - 2 */
} md_gw_frame;

/* Streaming parser state; the fields are private. */
typedef struct md_gw_parser {
    uint8_t *buf;      /* caller-owned, cap bytes: bytes not parsed yet */
    size_t cap;        /* at least 16; MD_GW_MAX_FRAME takes every frame */
    size_t start, end; /* buf[start..end) waits to be parsed */
    bool lost;         /* skipping after an error, until a frame checks out */
    uint64_t noise;    /* bytes skipped while lost */
    /* Details of the last error, for messages. */
    uint16_t err_crc_rx, err_crc_calc; /* MD_GW_ECRC */
    uint16_t err_length;               /* MD_GW_ELENGTH */
    uint16_t err_protocol;             /* MD_GW_EPROTOCOL */
} md_gw_parser;

/* An empty parser over buf (cap bytes, at least 16; the caller's, and it
 * must outlive the parser). */
void md_gw_parser_init(md_gw_parser *p, uint8_t *buf, size_t cap);
/* Forget everything held (after a reconnect). The noise count stays. */
void md_gw_parser_reset(md_gw_parser *p);
/* Bytes held, not yet a frame. */
size_t md_gw_parser_pending(const md_gw_parser *p);

/*
 * Take bytes: copies as many of in[0..len) as there is room for and
 * returns that count (0 when the buffer is full: call md_gw_parse until it
 * returns 0 first, which always makes room).
 */
size_t md_gw_parser_feed(md_gw_parser *p, const uint8_t *in, size_t len);

/*
 * The next frame from what was fed. Returns:
 *   1  a frame, in *f;
 *   0  no complete frame yet (feed more);
 *   MD_GW_ECRC, MD_GW_ELENGTH, MD_GW_EPROTOCOL: the parser lost step here
 *      (details in the err_* fields); call again.
 * A frame longer than the buffer gives MD_GW_ELENGTH.
 */
int md_gw_parse(md_gw_parser *p, md_gw_frame *f);

/* }===== */

#endif
