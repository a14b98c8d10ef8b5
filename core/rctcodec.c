/*
 * rctcodec.c - the RCT Power protocol codec: see rctcodec.h for the frame
 * layout, the escaping and CRC rules and the payload encodings.
 *
 * Written here rather than taken from a library: no Debian package speaks
 * this protocol, and the one public implementation (python-rctclient,
 * GPL-3.0) is neither C nor under a licence moondog can ship.
 *
 * Parser design. The parser keeps the raw bytes (escapes included) of the
 * frame being received in the caller's buffer, and updates the CRC and the
 * header fields as each unescaped byte arrives, so finishing a frame costs
 * a compare and one pass that removes the escapes in place. Keeping the raw
 * bytes is what makes resynchronisation lossless: when a frame turns out
 * bad, its bytes after the start byte are rescanned (from the first 0x2B,
 * escaped or not) before any new input. The rescan reads and writes the
 * same buffer: a byte is always stored at or before the place it was read
 * from, so nothing is overwritten before it is read. Each rescan starts at
 * least one byte later than the frame it replaces, so it ends.
 *
 * Bytes a frame did not take are never consumed: an unescaped start byte
 * inside a frame, or a byte that does not fit the buffer, stays in the
 * input and is looked at again as the possible start of the next frame.
 *
 * Threads and ownership: no state besides the caller's parser struct, no
 * allocation; buffers belong to the caller.
 */
#include "rctcodec.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <strings.h>

_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24,
               "float must be IEEE 754 binary32");
_Static_assert(MD_RCT_T_COUNT == 16, "update the type tables");
_Static_assert(MD_RCT_MAX_WIRE == 131081, "wire maximum: start + 2 x 65540");

/* {===== names and errors ===== */

static const struct {
    uint8_t command;
    const char *name;
} commands[] = {
    {MD_RCT_READ, "read"},
    {MD_RCT_WRITE, "write"},
    {MD_RCT_LONG_WRITE, "long_write"},
    {MD_RCT_RESPONSE, "response"},
    {MD_RCT_LONG_RESPONSE, "long_response"},
    {MD_RCT_READ_PERIODICALLY, "read_periodically"},
    {MD_RCT_PLANT | MD_RCT_READ, "plant_read"},
    {MD_RCT_PLANT | MD_RCT_WRITE, "plant_write"},
    {MD_RCT_PLANT | MD_RCT_LONG_WRITE, "plant_long_write"},
    {MD_RCT_PLANT | MD_RCT_RESPONSE, "plant_response"},
    {MD_RCT_PLANT | MD_RCT_LONG_RESPONSE, "plant_long_response"},
    {MD_RCT_PLANT | MD_RCT_READ_PERIODICALLY, "plant_read_periodically"},
    {MD_RCT_EXTENSION, "extension"},
};

/* Bit c set: c is a command (all are below 0x49). */
static const uint64_t valid_commands = 1ull << 0x01 | 1ull << 0x02 | 1ull << 0x03 |
                                       1ull << 0x05 | 1ull << 0x06 | 1ull << 0x08 |
                                       1ull << 0x3C;

bool md_rct_command_valid(int command)
{
    if (command < 0 || command > 0x7F)
        return false;
    if (command == MD_RCT_EXTENSION)
        return true;
    int base = command & ~MD_RCT_PLANT;
    return base < 0x3C && (valid_commands >> base & 1);
}

bool md_rct_command_long(int command)
{
    int base = command & ~MD_RCT_PLANT;
    return md_rct_command_valid(command) && command != MD_RCT_EXTENSION &&
           (base == MD_RCT_LONG_WRITE || base == MD_RCT_LONG_RESPONSE);
}

const char *md_rct_command_name(int command)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].command == command)
            return commands[i].name;
    return NULL;
}

int md_rct_command_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcasecmp(commands[i].name, name) == 0)
            return commands[i].command;
    return -1;
}

static const struct {
    const char *name;
    size_t size;
} types[MD_RCT_T_COUNT] = {
    [MD_RCT_T_BOOL] = {"BOOL", 1},
    [MD_RCT_T_UINT8] = {"UINT8", 1},
    [MD_RCT_T_INT8] = {"INT8", 1},
    [MD_RCT_T_UINT16] = {"UINT16", 2},
    [MD_RCT_T_INT16] = {"INT16", 2},
    [MD_RCT_T_UINT32] = {"UINT32", 4},
    [MD_RCT_T_INT32] = {"INT32", 4},
    [MD_RCT_T_ENUM] = {"ENUM", 1},
    [MD_RCT_T_FLOAT] = {"FLOAT", 4},
    [MD_RCT_T_STRING] = {"STRING", 0},
    [MD_RCT_T_TIMESERIES] = {"TIMESERIES", 0},
    [MD_RCT_T_EVENT_TABLE] = {"EVENT_TABLE", 0},
    [MD_RCT_T_BATTERY_MODULE_STATUS] = {"BATTERY_MODULE_STATUS",
                                        MD_RCT_MODULE_STATUS_SIZE},
    [MD_RCT_T_BATTERY_MODULE_STATISTICS] = {"BATTERY_MODULE_STATISTICS",
                                            MD_RCT_MODULE_STATISTICS_SIZE},
    [MD_RCT_T_BATTERY_MODULE_RESISTANCE] = {"BATTERY_MODULE_RESISTANCE",
                                            MD_RCT_MODULE_RESISTANCE_SIZE},
    [MD_RCT_T_UNKNOWN] = {"UNKNOWN", 0},
};

const char *md_rct_type_name(int type)
{
    return type >= 0 && type < MD_RCT_T_COUNT ? types[type].name : NULL;
}

int md_rct_type_from_name(const char *name)
{
    for (int t = 0; t < MD_RCT_T_COUNT; t++)
        if (strcasecmp(types[t].name, name) == 0)
            return t;
    return -1;
}

size_t md_rct_type_size(int type)
{
    return type >= 0 && type < MD_RCT_T_COUNT ? types[type].size : 0;
}

/* }===== */

/* {===== CRC ===== */

/* CRC-16/CCITT-FALSE, one table step per byte (MSB first, poly 0x1021). */
static const uint16_t crc_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7, 0x8108, 0x9129,
    0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF, 0x1231, 0x0210, 0x3273, 0x2252,
    0x52B5, 0x4294, 0x72F7, 0x62D6, 0x9339, 0x8318, 0xB37B, 0xA35A, 0xD3BD, 0xC39C,
    0xF3FF, 0xE3DE, 0x2462, 0x3443, 0x0420, 0x1401, 0x64E6, 0x74C7, 0x44A4, 0x5485,
    0xA56A, 0xB54B, 0x8528, 0x9509, 0xE5EE, 0xF5CF, 0xC5AC, 0xD58D, 0x3653, 0x2672,
    0x1611, 0x0630, 0x76D7, 0x66F6, 0x5695, 0x46B4, 0xB75B, 0xA77A, 0x9719, 0x8738,
    0xF7DF, 0xE7FE, 0xD79D, 0xC7BC, 0x48C4, 0x58E5, 0x6886, 0x78A7, 0x0840, 0x1861,
    0x2802, 0x3823, 0xC9CC, 0xD9ED, 0xE98E, 0xF9AF, 0x8948, 0x9969, 0xA90A, 0xB92B,
    0x5AF5, 0x4AD4, 0x7AB7, 0x6A96, 0x1A71, 0x0A50, 0x3A33, 0x2A12, 0xDBFD, 0xCBDC,
    0xFBBF, 0xEB9E, 0x9B79, 0x8B58, 0xBB3B, 0xAB1A, 0x6CA6, 0x7C87, 0x4CE4, 0x5CC5,
    0x2C22, 0x3C03, 0x0C60, 0x1C41, 0xEDAE, 0xFD8F, 0xCDEC, 0xDDCD, 0xAD2A, 0xBD0B,
    0x8D68, 0x9D49, 0x7E97, 0x6EB6, 0x5ED5, 0x4EF4, 0x3E13, 0x2E32, 0x1E51, 0x0E70,
    0xFF9F, 0xEFBE, 0xDFDD, 0xCFFC, 0xBF1B, 0xAF3A, 0x9F59, 0x8F78, 0x9188, 0x81A9,
    0xB1CA, 0xA1EB, 0xD10C, 0xC12D, 0xF14E, 0xE16F, 0x1080, 0x00A1, 0x30C2, 0x20E3,
    0x5004, 0x4025, 0x7046, 0x6067, 0x83B9, 0x9398, 0xA3FB, 0xB3DA, 0xC33D, 0xD31C,
    0xE37F, 0xF35E, 0x02B1, 0x1290, 0x22F3, 0x32D2, 0x4235, 0x5214, 0x6277, 0x7256,
    0xB5EA, 0xA5CB, 0x95A8, 0x8589, 0xF56E, 0xE54F, 0xD52C, 0xC50D, 0x34E2, 0x24C3,
    0x14A0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405, 0xA7DB, 0xB7FA, 0x8799, 0x97B8,
    0xE75F, 0xF77E, 0xC71D, 0xD73C, 0x26D3, 0x36F2, 0x0691, 0x16B0, 0x6657, 0x7676,
    0x4615, 0x5634, 0xD94C, 0xC96D, 0xF90E, 0xE92F, 0x99C8, 0x89E9, 0xB98A, 0xA9AB,
    0x5844, 0x4865, 0x7806, 0x6827, 0x18C0, 0x08E1, 0x3882, 0x28A3, 0xCB7D, 0xDB5C,
    0xEB3F, 0xFB1E, 0x8BF9, 0x9BD8, 0xABBB, 0xBB9A, 0x4A75, 0x5A54, 0x6A37, 0x7A16,
    0x0AF1, 0x1AD0, 0x2AB3, 0x3A92, 0xFD2E, 0xED0F, 0xDD6C, 0xCD4D, 0xBDAA, 0xAD8B,
    0x9DE8, 0x8DC9, 0x7C26, 0x6C07, 0x5C64, 0x4C45, 0x3CA2, 0x2C83, 0x1CE0, 0x0CC1,
    0xEF1F, 0xFF3E, 0xCF5D, 0xDF7C, 0xAF9B, 0xBFBA, 0x8FD9, 0x9FF8, 0x6E17, 0x7E36,
    0x4E55, 0x5E74, 0x2E93, 0x3EB2, 0x0ED1, 0x1EF0,
};

static inline uint16_t crc_step(uint16_t crc, uint8_t b)
{
    return (uint16_t)(crc << 8 ^ crc_table[(crc >> 8 ^ b) & 0xFF]);
}

uint16_t md_rct_crc(const uint8_t *body, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++)
        crc = crc_step(crc, body[i]);
    if (n & 1)
        crc = crc_step(crc, 0); /* the pad byte; never sent */
    return crc;
}

/* }===== */

/* {===== building ===== */

size_t md_rct_build_max(size_t len)
{
    return 1 + 2 * (1 + 2 + 4 + 4 + len + 2);
}

/* Output position while building; on overflow it stops writing and
 * remembers, so the build returns ESPACE once at the end. */
typedef struct writer {
    uint8_t *p;
    size_t o, cap;
    uint16_t crc;
    bool full;
} writer;

static inline void emit(writer *w, uint8_t b)
{
    bool esc = b == MD_RCT_START || b == MD_RCT_ESCAPE;
    if (w->o + 1 + esc > w->cap) {
        w->full = true;
        return;
    }
    if (esc)
        w->p[w->o++] = MD_RCT_ESCAPE;
    w->p[w->o++] = b;
}

/* A byte the CRC covers. */
static inline void emit_c(writer *w, uint8_t b)
{
    w->crc = crc_step(w->crc, b);
    emit(w, b);
}

static void emit_u32(writer *w, uint32_t v)
{
    emit_c(w, (uint8_t)(v >> 24));
    emit_c(w, (uint8_t)(v >> 16));
    emit_c(w, (uint8_t)(v >> 8));
    emit_c(w, (uint8_t)v);
}

int md_rct_build(uint8_t *dst, size_t cap, int command, uint32_t address, uint32_t oid,
                 const uint8_t *payload, size_t len)
{
    if (!md_rct_command_valid(command))
        return MD_RCT_ECOMMAND;
    if (cap < 1)
        return MD_RCT_ESPACE;
    writer w = {.p = dst, .o = 1, .cap = cap, .crc = 0xFFFF};
    dst[0] = MD_RCT_START;
    if (command == MD_RCT_EXTENSION) {
        if (len != 1)
            return MD_RCT_ELENGTH;
        emit(&w, MD_RCT_EXTENSION);
        emit(&w, payload[0]);
        return w.full ? MD_RCT_ESPACE : (int)w.o;
    }
    bool plant = command & MD_RCT_PLANT, is_long = md_rct_command_long(command);
    int base = command & ~MD_RCT_PLANT;
    size_t length = (plant ? 8u : 4u) + len;
    if ((base == MD_RCT_READ || base == MD_RCT_READ_PERIODICALLY) && len > 0)
        return MD_RCT_ELENGTH;
    if (length > (is_long ? 0xFFFFu : 0xFFu))
        return MD_RCT_ELENGTH;
    emit_c(&w, (uint8_t)command);
    if (is_long)
        emit_c(&w, (uint8_t)(length >> 8));
    emit_c(&w, (uint8_t)length);
    if (plant)
        emit_u32(&w, address);
    emit_u32(&w, oid);
    for (size_t i = 0; i < len; i++)
        emit_c(&w, payload[i]);
    if ((1 + (is_long ? 2u : 1u) + length) & 1)
        w.crc = crc_step(w.crc, 0);
    uint16_t crc = w.crc;
    emit(&w, (uint8_t)(crc >> 8));
    emit(&w, (uint8_t)crc);
    return w.full ? MD_RCT_ESPACE : (int)w.o;
}

/* }===== */

/* {===== parsing ===== */

void md_rct_parser_init(md_rct_parser *p, uint8_t *buf, size_t cap)
{
    memset(p, 0, sizeof *p);
    p->buf = buf;
    p->cap = cap;
}

void md_rct_parser_reset(md_rct_parser *p)
{
    p->raw = p->replay = p->replay_end = 0;
    p->in_frame = p->escaped = false;
}

size_t md_rct_parser_pending(const md_rct_parser *p)
{
    return (p->in_frame ? p->raw : 0) + (p->replay_end - p->replay);
}

static void begin_frame(md_rct_parser *p)
{
    p->buf[0] = MD_RCT_START;
    p->raw = 1;
    p->body = p->need = 0;
    p->hdr_len = 0;
    p->crc = 0xFFFF;
    p->crc_rx = 0;
    p->in_frame = true;
    p->escaped = false;
}

/* The length field is complete: check it and work out the frame size. */
static int take_length(md_rct_parser *p, size_t lsize)
{
    uint8_t command = p->hdr[0];
    uint32_t length = lsize == 2 ? (uint32_t)p->hdr[1] << 8 | p->hdr[2] : p->hdr[1];
    uint32_t min = command & MD_RCT_PLANT ? 8 : 4;
    int base = command & ~MD_RCT_PLANT;
    bool is_read = base == MD_RCT_READ || base == MD_RCT_READ_PERIODICALLY;
    p->need = 1 + lsize + length + 2;
    /* The shortest wire form must fit the buffer, or the frame never can. */
    if (length < min || (is_read && length != min) || 1 + p->need > p->cap) {
        p->err_length = length;
        return MD_RCT_ELENGTH;
    }
    return 0;
}

/* One unescaped byte after the start byte. */
static int take(md_rct_parser *p, uint8_t d)
{
    size_t i = p->body++;
    if (i == 0) {
        if (!md_rct_command_valid(d)) {
            p->err_byte = d;
            return MD_RCT_ECOMMAND;
        }
        p->hdr[0] = d;
        if (d == MD_RCT_EXTENSION) {
            p->need = 2; /* the command and one byte; no CRC */
            return 0;
        }
        p->hdr_len = (uint8_t)(1 + (md_rct_command_long(d) ? 2 : 1) +
                               (d & MD_RCT_PLANT ? 4 : 0) + 4);
        p->crc = crc_step(p->crc, d);
        return 0;
    }
    if (p->hdr[0] == MD_RCT_EXTENSION)
        return 0;
    if (i < p->hdr_len)
        p->hdr[i] = d;
    if (p->need == 0) { /* still in the length field */
        p->crc = crc_step(p->crc, d);
        size_t lsize = md_rct_command_long(p->hdr[0]) ? 2 : 1;
        return i == lsize ? take_length(p, lsize) : 0;
    }
    if (i >= p->need - 2)
        p->crc_rx = (uint16_t)(p->crc_rx << 8 | d);
    else
        p->crc = crc_step(p->crc, d);
    return 0;
}

/*
 * Run src[0..n) through the state machine until a frame is complete (1),
 * an error (< 0) or the end (0); *k: bytes of src taken.
 */
static int scan(md_rct_parser *p, const uint8_t *src, size_t n, size_t *k)
{
    size_t i = 0;
    while (i < n) {
        if (!p->in_frame) {
            const uint8_t *s = memchr(src + i, MD_RCT_START, n - i);
            size_t skip = s ? (size_t)(s - (src + i)) : n - i;
            p->noise += skip;
            i += skip;
            if (!s)
                break;
            i++;
            begin_frame(p);
            continue;
        }
        uint8_t c = src[i];
        if (c == MD_RCT_START && !p->escaped) {
            p->err_byte = c; /* not taken: it may start the next frame */
            *k = i;
            return MD_RCT_EESCAPE;
        }
        if (p->raw == p->cap) {
            p->err_length = (uint32_t)p->need;
            *k = i;
            return MD_RCT_ELENGTH;
        }
        p->buf[p->raw++] = c;
        i++;
        if (p->escaped) {
            p->escaped = false;
            if (c != MD_RCT_START && c != MD_RCT_ESCAPE) {
                p->err_byte = c;
                *k = i;
                return MD_RCT_EESCAPE;
            }
        } else if (c == MD_RCT_ESCAPE) {
            p->escaped = true;
            continue;
        }
        int rc = take(p, c);
        if (rc < 0 || (p->need && p->body == p->need)) {
            *k = i;
            return rc < 0 ? rc : 1;
        }
    }
    *k = i;
    return 0;
}

/* The frame in buf is complete: check the CRC, drop the escapes, fill f. */
static int finish_frame(md_rct_parser *p, md_rct_frame *f)
{
    uint8_t command = p->hdr[0];
    if (command != MD_RCT_EXTENSION) {
        uint16_t crc = p->crc;
        if ((p->need - 2) & 1)
            crc = crc_step(crc, 0);
        if (crc != p->crc_rx) {
            p->err_crc_rx = p->crc_rx;
            p->err_crc_calc = crc;
            return MD_RCT_ECRC;
        }
    }
    uint8_t *b = p->buf;
    size_t w = 1;
    for (size_t r = 1; r < p->raw; r++) {
        if (b[r] == MD_RCT_ESCAPE)
            r++; /* validated while scanning: an escape is always followed */
        b[w++] = b[r];
    }
    p->in_frame = false;
    p->raw = 0;
    *f = (md_rct_frame){.command = command};
    if (command == MD_RCT_EXTENSION) {
        f->payload = b + 2;
        f->payload_len = 1;
        return 1;
    }
    size_t off = md_rct_command_long(command) ? 3 : 2;
    if (command & MD_RCT_PLANT) {
        f->address = md_rct_get_u32(p->hdr + off);
        off += 4;
    }
    f->oid = md_rct_get_u32(p->hdr + off);
    off += 4;
    f->payload = b + 1 + off;
    f->payload_len = p->need - 2 - off;
    return 1;
}

/*
 * A frame was dropped: queue its bytes from the first 0x2B after its start
 * byte, followed by whatever was still queued, for a rescan.
 */
static void rescan_later(md_rct_parser *p)
{
    uint8_t *b = p->buf;
    size_t from = p->raw;
    if (p->in_frame && p->raw > 1) {
        const uint8_t *s = memchr(b + 1, MD_RCT_START, p->raw - 1);
        if (s)
            from = (size_t)(s - b);
    }
    size_t tail = p->in_frame ? p->raw - from : 0;
    size_t rest = p->replay_end - p->replay;
    /* Both moves go towards the front, and tail ends before the queued rest
     * begins (raw <= replay), so neither clobbers what the other reads. */
    memmove(b, b + from, tail);
    memmove(b + tail, b + p->replay, rest);
    p->replay = 0;
    p->replay_end = tail + rest;
    p->raw = 0;
    p->in_frame = p->escaped = false;
}

int md_rct_parse(md_rct_parser *p, const uint8_t *in, size_t len, size_t *used,
                 md_rct_frame *f)
{
    size_t u = 0;
    for (;;) {
        bool queued = p->replay < p->replay_end;
        const uint8_t *src = queued ? p->buf + p->replay : in + u;
        size_t n = queued ? p->replay_end - p->replay : len - u;
        if (n == 0) {
            *used = u;
            return 0;
        }
        size_t k;
        int rc = scan(p, src, n, &k);
        if (queued) {
            p->replay += k;
            if (p->replay == p->replay_end)
                p->replay = p->replay_end = 0;
        } else {
            u += k;
        }
        if (rc == 1)
            rc = finish_frame(p, f);
        if (rc < 0)
            rescan_later(p);
        if (rc != 0) {
            *used = u;
            return rc;
        }
    }
}

/* }===== */

/* {===== values ===== */

static bool is_int_type(int type)
{
    switch (type) {
    case MD_RCT_T_BOOL:
    case MD_RCT_T_UINT8:
    case MD_RCT_T_INT8:
    case MD_RCT_T_ENUM:
    case MD_RCT_T_UINT16:
    case MD_RCT_T_INT16:
    case MD_RCT_T_UINT32:
    case MD_RCT_T_INT32: return true;
    default: return false;
    }
}

int md_rct_decode_int(int type, const uint8_t *p, size_t n, int64_t *out)
{
    if (!is_int_type(type))
        return MD_RCT_ETYPE;
    if (n != types[type].size)
        return MD_RCT_ESIZE;
    switch (type) {
    case MD_RCT_T_BOOL: *out = p[0] != 0; break;
    case MD_RCT_T_INT8: *out = p[0] >= 0x80 ? (int64_t)p[0] - 0x100 : p[0]; break;
    case MD_RCT_T_UINT16: *out = (int64_t)p[0] << 8 | p[1]; break;
    case MD_RCT_T_INT16: {
        int64_t v = (int64_t)p[0] << 8 | p[1];
        *out = v >= 0x8000 ? v - 0x10000 : v;
        break;
    }
    case MD_RCT_T_UINT32: *out = md_rct_get_u32(p); break;
    case MD_RCT_T_INT32: {
        int64_t v = md_rct_get_u32(p);
        *out = v >= 0x80000000 ? v - 0x100000000 : v;
        break;
    }
    default: *out = p[0]; break; /* UINT8, ENUM */
    }
    return 0;
}

int md_rct_encode_int(int type, int64_t v, uint8_t *out)
{
    int64_t lo = 0, hi;
    switch (type) {
    case MD_RCT_T_BOOL: hi = 1; break;
    case MD_RCT_T_UINT8:
    case MD_RCT_T_ENUM: hi = 0xFF; break;
    case MD_RCT_T_INT8: lo = -0x80, hi = 0x7F; break;
    case MD_RCT_T_UINT16: hi = 0xFFFF; break;
    case MD_RCT_T_INT16: lo = -0x8000, hi = 0x7FFF; break;
    case MD_RCT_T_UINT32: hi = 0xFFFFFFFF; break;
    case MD_RCT_T_INT32: lo = -0x80000000ll, hi = 0x7FFFFFFF; break;
    default: return MD_RCT_ETYPE;
    }
    if (v < lo || v > hi)
        return MD_RCT_ERANGE;
    uint32_t u = (uint32_t)(v & 0xFFFFFFFF); /* two's complement of negatives */
    size_t n = types[type].size;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(u >> 8 * (n - 1 - i));
    return (int)n;
}

static float float_of_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint32_t bits_of_float(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

int md_rct_decode_float(const uint8_t *p, size_t n, float *out)
{
    if (n != 4)
        return MD_RCT_ESIZE;
    *out = float_of_bits(md_rct_get_u32(p));
    return 0;
}

int md_rct_encode_float(double v, uint8_t *out)
{
    if (isfinite(v) && fabs(v) > FLT_MAX)
        return MD_RCT_ERANGE;
    md_rct_put_u32(out, bits_of_float((float)v));
    return 4;
}

size_t md_rct_string_len(const uint8_t *p, size_t n)
{
    const uint8_t *nul = memchr(p, 0, n);
    return nul ? (size_t)(nul - p) : n;
}

int md_rct_series_count(size_t n)
{
    if (n < MD_RCT_SERIES_HEAD || (n - MD_RCT_SERIES_HEAD) % MD_RCT_SERIES_ENTRY)
        return MD_RCT_ESIZE;
    return (int)((n - MD_RCT_SERIES_HEAD) / MD_RCT_SERIES_ENTRY);
}

void md_rct_series_get(const uint8_t *p, size_t i, uint32_t *time, float *value)
{
    const uint8_t *e = p + MD_RCT_SERIES_HEAD + i * MD_RCT_SERIES_ENTRY;
    *time = md_rct_get_u32(e);
    *value = float_of_bits(md_rct_get_u32(e + 4));
}

void md_rct_series_put(uint8_t *p, size_t i, uint32_t time, float value)
{
    uint8_t *e = p + MD_RCT_SERIES_HEAD + i * MD_RCT_SERIES_ENTRY;
    md_rct_put_u32(e, time);
    md_rct_put_u32(e + 4, bits_of_float(value));
}

int md_rct_events_count(size_t n)
{
    if (n < MD_RCT_SERIES_HEAD || (n - MD_RCT_SERIES_HEAD) % MD_RCT_EVENT_ENTRY)
        return MD_RCT_ESIZE;
    return (int)((n - MD_RCT_SERIES_HEAD) / MD_RCT_EVENT_ENTRY);
}

void md_rct_event_get(const uint8_t *p, size_t i, uint32_t words[5])
{
    const uint8_t *e = p + MD_RCT_SERIES_HEAD + i * MD_RCT_EVENT_ENTRY;
    for (int w = 0; w < 5; w++)
        words[w] = md_rct_get_u32(e + 4 * w);
}

void md_rct_event_put(uint8_t *p, size_t i, const uint32_t words[5])
{
    uint8_t *e = p + MD_RCT_SERIES_HEAD + i * MD_RCT_EVENT_ENTRY;
    for (int w = 0; w < 5; w++)
        md_rct_put_u32(e + 4 * w, words[w]);
}

/* The battery module structures are little-endian, unlike everything else. */
static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void md_rct_cell_get(const uint8_t *p, size_t i, md_rct_cell *c)
{
    const uint8_t *e = p + 4 * i;
    c->temp = e[0];
    c->mv = (uint16_t)(e[1] | e[2] << 8);
    c->status = e[3];
}

void md_rct_cell_put(uint8_t *p, size_t i, const md_rct_cell *c)
{
    uint8_t *e = p + 4 * i;
    e[0] = c->temp;
    e[1] = (uint8_t)c->mv;
    e[2] = (uint8_t)(c->mv >> 8);
    e[3] = c->status;
}

void md_rct_stat_get(const uint8_t *p, size_t i, md_rct_stat *s)
{
    const uint8_t *e = p + 12 * i;
    s->cell = get_u32le(e);
    s->time = get_u32le(e + 4);
    s->value = float_of_bits(get_u32le(e + 8));
}

void md_rct_stat_put(uint8_t *p, size_t i, const md_rct_stat *s)
{
    uint8_t *e = p + 12 * i;
    put_u32le(e, s->cell);
    put_u32le(e + 4, s->time);
    put_u32le(e + 8, bits_of_float(s->value));
}

uint16_t md_rct_resistance_get(const uint8_t *p, size_t i)
{
    const uint8_t *e = p + 4 * i;
    return (uint16_t)(e[0] << 8 | e[1]);
}

void md_rct_resistance_put(uint8_t *p, size_t i, uint16_t raw)
{
    uint8_t *e = p + 4 * i;
    e[0] = (uint8_t)(raw >> 8);
    e[1] = (uint8_t)raw;
    e[2] = e[3] = 0;
}

/* }===== */
