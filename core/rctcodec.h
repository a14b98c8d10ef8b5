/*
 * rctcodec.h - the RCT Power serial protocol: frames (escaping, CRC,
 * every command), a streaming frame parser, and the payload encodings of
 * every data type.
 *
 * RCT Power inverters and batteries speak this protocol over TCP (port
 * 8899) or a serial line. A frame on the wire:
 *
 *     '+'  command  length  [address]  object id  payload  CRC
 *     2B   1 byte   1 or 2  4 bytes    4 bytes    n bytes  2 bytes
 *
 * - length counts address + object id + payload (unescaped bytes). It is 2
 *   bytes, big-endian, for the long commands (LONG_WRITE, LONG_RESPONSE and
 *   their plant forms), else 1 byte. The address is there only in plant
 *   frames (command | 0x40), which a plant leader relays to the member with
 *   that address.
 * - CRC: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no
 *   final XOR) over command .. last payload byte, unescaped; when that is an
 *   odd number of bytes, one 0x00 is appended for the computation only.
 *   Sent high byte first.
 * - Escaping: after the CRC is computed, every byte after the start byte
 *   (CRC included) that is 0x2B '+' or 0x2D '-' is sent preceded by 0x2D.
 * - EXTENSION is not a normal frame: exactly '+', 0x3C and one byte (the
 *   vendor app sends 2B 3C E1 before its first frame). No length, no CRC.
 * - All multi-byte fields and values are big-endian, except inside the
 *   battery module structures (see the type table below).
 *
 * The parser (md_rct_parse) is strict: an escape before a byte that needs
 * none, or an unescaped '+' inside a frame, is a bad escape. On any error
 * it rescans the dropped frame's bytes from the first 0x2B after its start
 * byte (escaped or not), so a good frame that began inside a bad one (a
 * frame cut short, a stray escape byte, "AT+\r" keep-alives) is still found.
 *
 * Nothing here knows Lua or sockets, and nothing allocates: buffers belong
 * to the caller, so a test, a fuzzer or a bench can link this file alone.
 * Every function is thread-safe (the parser state is the caller's).
 */
#ifndef MD_RCTCODEC_H
#define MD_RCTCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* {===== limits, commands, types, errors ===== */

enum {
    MD_RCT_START = 0x2B,        /* '+' */
    MD_RCT_ESCAPE = 0x2D,       /* '-' */
    MD_RCT_MAX_LENGTH = 0xFFFF, /* of the 2-byte length field */
    /* Longest frame without escapes: start, command, 2-byte length,
     * address + id + payload, CRC. */
    MD_RCT_MAX_FRAME = 1 + 1 + 2 + MD_RCT_MAX_LENGTH + 2,
    /* Longest frame on the wire: every byte after the start escaped. A
     * parser buffer of this size takes every frame the protocol allows. */
    MD_RCT_MAX_WIRE = 1 + 2 * (MD_RCT_MAX_FRAME - 1),
    /* Payload of a 1-byte length frame: 255 - object id. */
    MD_RCT_MAX_SHORT_PAYLOAD = 255 - 4,
};

enum md_rct_command {
    MD_RCT_READ = 0x01,
    MD_RCT_WRITE = 0x02,
    MD_RCT_LONG_WRITE = 0x03,
    MD_RCT_RESPONSE = 0x05,
    MD_RCT_LONG_RESPONSE = 0x06,
    MD_RCT_READ_PERIODICALLY = 0x08,
    MD_RCT_EXTENSION = 0x3C,
    MD_RCT_PLANT = 0x40, /* flag: the frame carries a 4-byte address */
};

/* Payload encodings. Names as in the registry ("FLOAT", "UINT8", ...).
 *
 * | type                      | bytes    | encoding                                     |
 * | BOOL                      | 1        | 0 false, anything else true                  |
 * | UINT8 INT8 ENUM           | 1        | ENUM is a uint8 (symbols in the registry)    |
 * | UINT16 INT16              | 2        | big-endian                                   |
 * | UINT32 INT32              | 4        | big-endian                                   |
 * | FLOAT                     | 4        | IEEE 754 binary32, big-endian                |
 * | STRING                    | any      | bytes up to the first NUL                    |
 * | TIMESERIES                | 4 + 8n   | u32 query time; n x (u32 time, float value)  |
 * | EVENT_TABLE               | 4 + 20n  | u32 query time; n x 5 u32 (type, time, 3
 * words) | | BATTERY_MODULE_STATUS     | 96       | 24 x (u8 temp C, u16 mV
 * LITTLE-endian, u8 status) | | BATTERY_MODULE_STATISTICS | 48       | 4 x (u32 cell, u32
 * time, float), LITTLE-endian:   | |                           |          | u_min, u_max,
 * t_min, t_max                   | | BATTERY_MODULE_RESISTANCE | 96       | 24 x (u16
 * big-endian 1/256 mOhm, 2 zero bytes) | UNKNOWN is a registry type whose encoding nobody
 * knows: raw bytes only. */
enum md_rct_type {
    MD_RCT_T_BOOL,
    MD_RCT_T_UINT8,
    MD_RCT_T_INT8,
    MD_RCT_T_UINT16,
    MD_RCT_T_INT16,
    MD_RCT_T_UINT32,
    MD_RCT_T_INT32,
    MD_RCT_T_ENUM,
    MD_RCT_T_FLOAT,
    MD_RCT_T_STRING,
    MD_RCT_T_TIMESERIES,
    MD_RCT_T_EVENT_TABLE,
    MD_RCT_T_BATTERY_MODULE_STATUS,
    MD_RCT_T_BATTERY_MODULE_STATISTICS,
    MD_RCT_T_BATTERY_MODULE_RESISTANCE,
    MD_RCT_T_UNKNOWN,
    MD_RCT_T_COUNT
};

enum {
    MD_RCT_CELLS = 24,       /* records in the battery module status and resistance */
    MD_RCT_STAT_RECORDS = 4, /* u_min, u_max, t_min, t_max */
    MD_RCT_SERIES_HEAD = 4,  /* query time in front of a time series or event table */
    MD_RCT_SERIES_ENTRY = 8, /* time, value */
    MD_RCT_EVENT_ENTRY = 20, /* 5 words */
    MD_RCT_MODULE_STATUS_SIZE = 96,
    MD_RCT_MODULE_STATISTICS_SIZE = 48,
    MD_RCT_MODULE_RESISTANCE_SIZE = 96,
};

/* Error codes (negative): aliases of err.h's codes, so md_strerror() and
 * md_err_token() ("crc", "length", "escape", "command", "size", "range",
 * "type", "space") apply. */
enum md_rct_error {
    MD_RCT_ECRC = -MD_ECRC,         /* CRC mismatch */
    MD_RCT_ELENGTH = -MD_ELENGTH,   /* impossible length field, or too long */
    MD_RCT_EESCAPE = -MD_EESCAPE,   /* escape before an ordinary byte, or an
                                       unescaped start byte inside a frame */
    MD_RCT_ECOMMAND = -MD_ECOMMAND, /* not a command of the protocol */
    MD_RCT_ESIZE = -MD_ESIZE,       /* payload size does not fit the type */
    MD_RCT_ERANGE = -MD_ERANGE,     /* value out of range for the type */
    MD_RCT_ETYPE = -MD_ETYPE,       /* unknown type, or not for this call */
    MD_RCT_ESPACE = -MD_ESPACE,     /* output buffer too small */
};

/* True for every command of the table above, plant forms and EXTENSION
 * included; false for 0x04, 0x07 and everything else. */
bool md_rct_command_valid(int command);
/* True for commands with a 2-byte length (0x03, 0x06, 0x43, 0x46). */
bool md_rct_command_long(int command);
/* "read", "plant_long_response", "extension", ...; NULL if not valid. */
const char *md_rct_command_name(int command);
/* The command of a name above, or -1. */
int md_rct_command_from_name(const char *name);

/* "FLOAT", ... for a type; NULL out of range. */
const char *md_rct_type_name(int type);
/* The type of a name, case-insensitive, or -1. */
int md_rct_type_from_name(const char *name);
/* Bytes a value of the type takes; 0 for the variable-size types (STRING,
 * TIMESERIES, EVENT_TABLE, UNKNOWN). */
size_t md_rct_type_size(int type);

/* }===== */

/* {===== byte helpers ===== */

static inline uint32_t md_rct_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void md_rct_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* }===== */

/* {===== frames ===== */

/*
 * The CRC of body (command .. last payload byte, unescaped), with the pad
 * byte for odd lengths.
 */
uint16_t md_rct_crc(const uint8_t *body, size_t n);

/*
 * Bytes a frame with a payload of len bytes takes on the wire at most
 * (everything escaped): enough room for md_rct_build.
 */
size_t md_rct_build_max(size_t len);

/*
 * Build a frame into out (cap bytes): start byte, command, length, address
 * (plant commands only; ignored otherwise), object id, payload, CRC, all
 * escaped. For EXTENSION the payload is the one byte after 0x3C and oid is
 * ignored. Returns the length on the wire, or MD_RCT_ECOMMAND (not a
 * command), MD_RCT_ELENGTH (a payload on a read, more than 251 bytes on a
 * short command or 65531 on a long one (4 less for plant commands), not exactly 1 byte on
 * EXTENSION), MD_RCT_ESPACE (out too small: nothing useful was written).
 */
int md_rct_build(uint8_t *out, size_t cap, int command, uint32_t address, uint32_t oid,
                 const uint8_t *payload, size_t len);

/* A frame the parser found. */
typedef struct md_rct_frame {
    uint8_t command;        /* as sent, plant flag included */
    uint32_t address;       /* plant frames; 0 otherwise */
    uint32_t oid;           /* 0 for EXTENSION */
    const uint8_t *payload; /* unescaped, in the parser's buffer: valid until the
                               next md_rct_parse call */
    size_t payload_len;
} md_rct_frame;

/*
 * Streaming parser state; the fields are private. Bytes go in as they
 * arrive, in chunks of any size; frames come out whole.
 */
typedef struct md_rct_parser {
    uint8_t *buf;              /* caller-owned: the current frame's raw bytes */
    size_t cap;                /* size of buf; longer frames give ELENGTH */
    size_t raw;                /* raw bytes of the current frame in buf */
    size_t replay, replay_end; /* buf[replay..replay_end): to rescan after an error */
    size_t body;               /* unescaped bytes after the start byte so far */
    size_t need;               /* unescaped bytes after the start byte in all */
    uint8_t hdr[11];           /* command, length, address, id (unescaped) */
    uint8_t hdr_len;           /* bytes of hdr the command uses */
    bool in_frame, escaped;
    uint16_t crc, crc_rx;
    uint64_t noise; /* bytes dropped while looking for a start */
    /* Details of the last error, for messages. */
    uint16_t err_crc_rx, err_crc_calc; /* MD_RCT_ECRC */
    uint8_t err_byte;                  /* MD_RCT_ECOMMAND, MD_RCT_EESCAPE */
    uint32_t err_length;               /* MD_RCT_ELENGTH */
} md_rct_parser;

/* Start with an empty state; buf (cap bytes, at least 16) stays the
 * caller's and must outlive the parser. MD_RCT_MAX_WIRE takes any frame. */
void md_rct_parser_init(md_rct_parser *p, uint8_t *buf, size_t cap);
/* Forget a partial frame and anything waiting to be rescanned (after a
 * reconnect, say). The noise counter stays. */
void md_rct_parser_reset(md_rct_parser *p);
/* Raw bytes held: a partial frame, or input still to rescan. 0 means the
 * parser is between frames. */
size_t md_rct_parser_pending(const md_rct_parser *p);

/*
 * Feed bytes. Consumes from in[0..len) and stops at the first complete
 * frame or error; *used says how many bytes of in it took (bytes held back
 * for a rescan are consumed before in, so *used may be 0). Returns:
 *   1  a frame, in *f (its payload points into the parser's buffer);
 *   0  everything was consumed and no frame is complete yet;
 *   MD_RCT_ECRC, MD_RCT_ELENGTH, MD_RCT_EESCAPE, MD_RCT_ECOMMAND: a frame
 *      was dropped (details in the err_* fields); call again with the rest.
 * So: loop until it returns 0, advancing in by *used each time.
 */
int md_rct_parse(md_rct_parser *p, const uint8_t *in, size_t len, size_t *used,
                 md_rct_frame *f);

/* }===== */

/* {===== values ===== */

/*
 * Integer types (BOOL, UINT8, INT8, ENUM, UINT16, INT16, UINT32, INT32):
 * the payload must be exactly the type's size. BOOL gives 0 or 1.
 * MD_RCT_ETYPE for other types, MD_RCT_ESIZE for a wrong size.
 */
int md_rct_decode_int(int type, const uint8_t *p, size_t n, int64_t *out);
/* Writes the type's size of bytes to out (at least 4 bytes of room) and
 * returns it; MD_RCT_ERANGE if v does not fit (BOOL takes 0 and 1). */
int md_rct_encode_int(int type, int64_t v, uint8_t *out);

/* FLOAT, exactly 4 bytes. */
int md_rct_decode_float(const uint8_t *p, size_t n, float *out);
/* 4 bytes; MD_RCT_ERANGE for a finite v beyond the float range (NaN and
 * the infinities pass). */
int md_rct_encode_float(double v, uint8_t *out);

/* STRING: length up to the first NUL. */
size_t md_rct_string_len(const uint8_t *p, size_t n);

/* TIMESERIES: number of entries, or MD_RCT_ESIZE when n is not 4 + 8k
 * (a device cut the answer short). */
int md_rct_series_count(size_t n);
void md_rct_series_get(const uint8_t *p, size_t i, uint32_t *time, float *value);
void md_rct_series_put(uint8_t *p, size_t i, uint32_t time, float value);

/* EVENT_TABLE: number of rows, or MD_RCT_ESIZE when n is not 4 + 20k. */
int md_rct_events_count(size_t n);
void md_rct_event_get(const uint8_t *p, size_t i, uint32_t words[5]);
void md_rct_event_put(uint8_t *p, size_t i, const uint32_t words[5]);

/* BATTERY_MODULE_STATUS cell i of 24 (p holds 96 bytes). */
typedef struct md_rct_cell {
    uint8_t temp; /* degrees C */
    uint16_t mv;  /* millivolt */
    uint8_t status;
} md_rct_cell;
void md_rct_cell_get(const uint8_t *p, size_t i, md_rct_cell *c);
void md_rct_cell_put(uint8_t *p, size_t i, const md_rct_cell *c);

/* BATTERY_MODULE_STATISTICS record i of 4 (p holds 48 bytes). */
typedef struct md_rct_stat {
    uint32_t cell, time; /* time 0: never */
    float value;
} md_rct_stat;
void md_rct_stat_get(const uint8_t *p, size_t i, md_rct_stat *s);
void md_rct_stat_put(uint8_t *p, size_t i, const md_rct_stat *s);

/* BATTERY_MODULE_RESISTANCE cell i of 24 (p holds 96 bytes), in 1/256 mOhm. */
uint16_t md_rct_resistance_get(const uint8_t *p, size_t i);
void md_rct_resistance_put(uint8_t *p, size_t i, uint16_t raw);

/* }===== */

#endif
