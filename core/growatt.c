/*
 * growatt.c - the Growatt datalogger protocol: CRC, scramble, builders and
 * the streaming parser. growatt.h states the wire format and the parser's
 * rules; this file adds only the why of a few choices.
 *
 * The parser copies input into the caller's buffer and parses it in place
 * (the rctcodec parser unescapes byte by byte; Growatt frames carry their
 * length up front, so a frame is found by looking at its header and waiting
 * for that many bytes). After a bad candidate it drops one byte and looks
 * again from there: the bytes of the bad candidate are still in the buffer,
 * so nothing that followed is lost.
 */
#include <string.h>

#include "growatt.h"
#include "mbcodec.h"

_Static_assert(MD_GW_HEADER == 8, "the header is 8 bytes");
_Static_assert(MD_GW_MAX_FRAME <= 0xFFFF + 8, "a frame fits the length field");

static const uint8_t key[7] = {'G', 'r', 'o', 'w', 'a', 't', 't'};

const char *md_gw_type_name(int type)
{
    switch (type) {
    case MD_GW_ANNOUNCE: return "announce";
    case MD_GW_DATA: return "data";
    case MD_GW_READ_HOLDING: return "read_holding";
    case MD_GW_WRITE_HOLDING: return "write_holding";
    case MD_GW_WRITE_MULTIPLE: return "write_multiple";
    case MD_GW_PING: return "ping";
    case MD_GW_CONFIG_SET: return "config_set";
    case MD_GW_CONFIG_GET: return "config_get";
    case MD_GW_METER: return "meter";
    case MD_GW_METER2: return "meter2";
    case MD_GW_RECORD29: return "record29";
    case MD_GW_BUFFERED: return "buffered";
    default: return NULL;
    }
}

bool md_gw_protocol_valid(int protocol)
{
    return protocol == 2 || protocol == 5 || protocol == 6;
}

static bool has_crc(int protocol)
{
    return protocol != 2;
}

/* CRC-16/Modbus, the same as Modbus RTU's: mbcodec.c's table-driven one
 * (a bit at a time it was ~5 us of the ~9 us a 600-byte TL-X record took
 * to parse). */
uint16_t md_gw_crc(const uint8_t *p, size_t n)
{
    return md_mb_crc16(p, n);
}

/* The key twice (and one byte): the 8 key bytes from any key index k are
 * keys2[k..k+7]. */
static const uint8_t keys2[15] = {'G', 'r', 'o', 'w', 'a', 't', 't', 'G',
                                  'r', 'o', 'w', 'a', 't', 't', 'G'};

/* Eight bytes at a time (a record's ~600 bytes took ~4,700 instructions a
 * byte at a time): the key index of the next 8 bytes is k + 8 = k + 1
 * (mod 7). */
void md_gw_scramble(uint8_t *p, size_t n, size_t key_off)
{
    size_t k = key_off % sizeof key;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, kw;
        memcpy(&w, p + i, 8);
        memcpy(&kw, keys2 + k, 8);
        w ^= kw;
        memcpy(p + i, &w, 8);
        if (++k == sizeof key)
            k = 0;
    }
    for (; i < n; i++) {
        p[i] ^= key[k];
        if (++k == sizeof key)
            k = 0;
    }
}

/* {===== building ===== */

int md_gw_build(uint8_t *out, size_t cap, uint16_t seq, int protocol, uint8_t unit,
                uint8_t type, const uint8_t *body, size_t len)
{
    if (!md_gw_protocol_valid(protocol))
        return MD_GW_EPROTOCOL;
    if (len > MD_GW_MAX_LENGTH - 2)
        return MD_GW_ELENGTH;
    size_t total = MD_GW_HEADER + len + (has_crc(protocol) ? 2 : 0);
    if (cap < total)
        return MD_GW_ESPACE;
    md_gw_put_u16(out, seq);
    md_gw_put_u16(out + 2, (uint16_t)protocol);
    md_gw_put_u16(out + 4, (uint16_t)(len + 2));
    out[6] = unit;
    out[7] = type;
    if (len > 0)
        memmove(out + MD_GW_HEADER, body, len);
    if (has_crc(protocol)) {
        md_gw_scramble(out + MD_GW_HEADER, len, 0);
        md_gw_put_u16(out + MD_GW_HEADER + len, md_gw_crc(out, MD_GW_HEADER + len));
    }
    return (int)total;
}

int md_gw_build_ack(uint8_t *out, size_t cap, uint16_t seq, int protocol, uint8_t unit,
                    uint8_t type)
{
    static const uint8_t zero = 0;
    return md_gw_build(out, cap, seq, protocol, unit, type, &zero, 1);
}

int md_gw_command_body(uint8_t *body, size_t cap, int protocol, const char *serial,
                       size_t serial_len, const uint8_t *args, size_t nargs)
{
    if (serial_len > MD_GW_SERIAL)
        return MD_GW_ERANGE;
    size_t pad = protocol == 6 ? MD_GW_PAD6 : 0;
    size_t n = MD_GW_SERIAL + pad + nargs;
    if (cap < n)
        return MD_GW_ESPACE;
    memset(body, 0, MD_GW_SERIAL + pad);
    if (serial_len > 0)
        memcpy(body, serial, serial_len);
    if (nargs > 0)
        memcpy(body + MD_GW_SERIAL + pad, args, nargs);
    return (int)n;
}

/* Body = serial [+ pad] + args, then the frame. */
static int command(uint8_t *out, size_t cap, uint16_t seq, int protocol, uint8_t unit,
                   uint8_t type, const char *serial, size_t serial_len,
                   const uint8_t *args, size_t nargs)
{
    uint8_t body[MD_GW_MAX_LENGTH];
    if (!md_gw_protocol_valid(protocol))
        return MD_GW_EPROTOCOL;
    int n = md_gw_command_body(body, sizeof body - 2, protocol, serial, serial_len, args,
                               nargs);
    if (n < 0)
        return n == MD_GW_ESPACE ? MD_GW_ELENGTH : n;
    return md_gw_build(out, cap, seq, protocol, unit, type, body, (size_t)n);
}

int md_gw_build_ping(uint8_t *out, size_t cap, uint16_t seq, int protocol, uint8_t unit,
                     const char *serial, size_t serial_len)
{
    return command(out, cap, seq, protocol, unit, MD_GW_PING, serial, serial_len, NULL,
                   0);
}

static int range_command(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                         uint8_t unit, uint8_t type, const char *serial,
                         size_t serial_len, uint16_t first, uint16_t last)
{
    uint8_t args[4];
    if (first > last)
        return MD_GW_ERANGE;
    md_gw_put_u16(args, first);
    md_gw_put_u16(args + 2, last);
    return command(out, cap, seq, protocol, unit, type, serial, serial_len, args,
                   sizeof args);
}

int md_gw_build_read_holding(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                             uint8_t unit, const char *serial, size_t serial_len,
                             uint16_t first, uint16_t last)
{
    if (last - first >= MD_GW_MAX_REGS)
        return MD_GW_ERANGE;
    return range_command(out, cap, seq, protocol, unit, MD_GW_READ_HOLDING, serial,
                         serial_len, first, last);
}

int md_gw_build_config_get(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                           uint8_t unit, const char *serial, size_t serial_len,
                           uint16_t first, uint16_t last)
{
    return range_command(out, cap, seq, protocol, unit, MD_GW_CONFIG_GET, serial,
                         serial_len, first, last);
}

int md_gw_build_write_holding(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                              uint8_t unit, const char *serial, size_t serial_len,
                              uint16_t reg, uint16_t value)
{
    uint8_t args[4];
    md_gw_put_u16(args, reg);
    md_gw_put_u16(args + 2, value);
    return command(out, cap, seq, protocol, unit, MD_GW_WRITE_HOLDING, serial, serial_len,
                   args, sizeof args);
}

int md_gw_build_write_multiple(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                               uint8_t unit, const char *serial, size_t serial_len,
                               uint16_t first, const uint16_t *values, size_t n)
{
    uint8_t args[4 + 2 * MD_GW_MAX_REGS];
    if (n == 0 || n > MD_GW_MAX_REGS || (size_t)first + n - 1 > 0xFFFF)
        return MD_GW_ERANGE;
    md_gw_put_u16(args, first);
    md_gw_put_u16(args + 2, (uint16_t)(first + n - 1));
    for (size_t i = 0; i < n; i++)
        md_gw_put_u16(args + 4 + 2 * i, values[i]);
    return command(out, cap, seq, protocol, unit, MD_GW_WRITE_MULTIPLE, serial,
                   serial_len, args, 4 + 2 * n);
}

int md_gw_build_config_set(uint8_t *out, size_t cap, uint16_t seq, int protocol,
                           uint8_t unit, const char *serial, size_t serial_len,
                           uint16_t reg, const char *value, size_t value_len)
{
    uint8_t args[256];
    if (value_len > sizeof args - 4)
        return MD_GW_ERANGE;
    md_gw_put_u16(args, reg);
    md_gw_put_u16(args + 2, (uint16_t)value_len);
    if (value_len > 0)
        memcpy(args + 4, value, value_len);
    return command(out, cap, seq, protocol, unit, MD_GW_CONFIG_SET, serial, serial_len,
                   args, 4 + value_len);
}

/* }===== */

/* {===== parsing ===== */

void md_gw_parser_init(md_gw_parser *p, uint8_t *buf, size_t cap)
{
    memset(p, 0, sizeof *p);
    p->buf = buf;
    p->cap = cap;
}

void md_gw_parser_reset(md_gw_parser *p)
{
    p->start = p->end = 0;
    p->lost = false;
}

size_t md_gw_parser_pending(const md_gw_parser *p)
{
    return p->end - p->start;
}

size_t md_gw_parser_feed(md_gw_parser *p, const uint8_t *in, size_t len)
{
    if (p->start > 0) {
        memmove(p->buf, p->buf + p->start, p->end - p->start);
        p->end -= p->start;
        p->start = 0;
    }
    size_t room = p->cap - p->end;
    size_t n = len < room ? len : room;
    if (n > 0)
        memcpy(p->buf + p->end, in, n);
    p->end += n;
    return n;
}

static bool known_type(uint8_t type)
{
    return md_gw_type_name(type) != NULL;
}

/* The candidate at start is bad: report it once, then skip one byte. */
static int drop(md_gw_parser *p, int rc)
{
    bool report = !p->lost;
    p->lost = true;
    p->start++;
    p->noise++;
    return report ? rc : 1;
}

int md_gw_parse(md_gw_parser *p, md_gw_frame *f)
{
    for (;;) {
        size_t avail = p->end - p->start;
        const uint8_t *b = p->buf + p->start;
        if (avail < 4)
            return 0;
        int protocol = md_gw_get_u16(b + 2);
        if (!md_gw_protocol_valid(protocol)) {
            p->err_protocol = (uint16_t)protocol;
            int rc = drop(p, MD_GW_EPROTOCOL);
            if (rc < 0)
                return rc;
            continue;
        }
        if (avail < 6)
            return 0;
        uint16_t length = md_gw_get_u16(b + 4);
        size_t crc = has_crc(protocol) ? 2 : 0;
        size_t total = 6 + (size_t)length + crc;
        if (length < 2 || length > MD_GW_MAX_LENGTH || total > p->cap) {
            p->err_length = length;
            int rc = drop(p, MD_GW_ELENGTH);
            if (rc < 0)
                return rc;
            continue;
        }
        /* While lost, a frame without a CRC must at least name a known type. */
        if (p->lost && !crc && avail >= MD_GW_HEADER && !known_type(b[7])) {
            drop(p, 0);
            continue;
        }
        if (avail < total)
            return 0;
        /* While lost, a frame without a CRC must also be followed by the
         * start of another frame: noise with "00 02" in it is not taken
         * for one. Such a frame waits for the next one's first 4 bytes. */
        if (!crc && p->lost && total + 4 <= p->cap) {
            if (avail < total + 4)
                return 0;
            if (!md_gw_protocol_valid(md_gw_get_u16(b + total + 2))) {
                drop(p, 0);
                continue;
            }
        }
        if (crc) {
            uint16_t rx = md_gw_get_u16(b + total - 2);
            uint16_t calc = md_gw_crc(b, total - 2);
            if (rx != calc) {
                p->err_crc_rx = rx;
                p->err_crc_calc = calc;
                int rc = drop(p, MD_GW_ECRC);
                if (rc < 0)
                    return rc;
                continue;
            }
        }
        p->lost = false;
        f->seq = md_gw_get_u16(b);
        f->protocol = (uint16_t)protocol;
        f->length = length;
        f->unit = b[6];
        f->type = b[7];
        f->raw = b;
        f->raw_len = total;
        f->body = b + MD_GW_HEADER;
        f->body_len = (size_t)length - 2;
        p->start += total;
        return 1;
    }
}

/* }===== */
