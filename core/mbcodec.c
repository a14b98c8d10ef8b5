/*
 * mbcodec.c - the Modbus codec: see mbcodec.h for the API and the exact
 * meaning of word and byte orders.
 *
 * Framing. RTU has no length field, so the end of a frame follows from the
 * function code: a fixed length, or a byte count at a known offset, or for
 * FC 43/14 responses a walk over the object list. One rule table per
 * direction works on the PDU (function code onwards); the RTU functions add
 * the address byte in front and the CRC behind, and TCP/UDP transports use
 * the PDU functions to check a PDU against its MBAP length. The rules never
 * read beyond `have`, which the fuzzer checks with ASan.
 *
 * Typed values. A value of 1, 2 or 4 registers is first gathered into a
 * uint64 in natural (big-endian, ABCD) significance by load(); encoding is
 * the exact inverse, store(). Signed and float views are made from that
 * integer with arithmetic and memcpy, never with pointer casts, so the code
 * is the same on any host byte order.
 *
 * Threads and ownership: no state, no allocation; buffers belong to the
 * caller.
 */
#include "mbcodec.h"

#include <stdbool.h>

#include <float.h>
#include <math.h>
#include <string.h>

_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24,
               "float32 must be IEEE 754 binary32");
_Static_assert(sizeof(double) == 8 && DBL_MANT_DIG == 53,
               "float64 must be IEEE 754 binary64");
_Static_assert(MD_MB_MAX_RTU == 1 + MD_MB_MAX_PDU + 2, "RTU frame = address + PDU + CRC");
_Static_assert(MD_MB_MAX_TCP == MD_MB_MBAP_LEN + MD_MB_MAX_PDU, "TCP ADU = MBAP + PDU");
_Static_assert(MD_MB_T_COUNT == 9 && MD_MB_ORDER_COUNT == 4, "update the name tables");

/* {===== exceptions ===== */

/* Each exception: the text people read and the token Lua code tests. */
static const struct {
    const char *text, *token;
} exceptions[] = {
    [MD_MB_EX_ILLEGAL_FUNCTION] = {"illegal function", "illegal_function"},
    [MD_MB_EX_ILLEGAL_DATA_ADDRESS] = {"illegal data address", "illegal_data_address"},
    [MD_MB_EX_ILLEGAL_DATA_VALUE] = {"illegal data value", "illegal_data_value"},
    [MD_MB_EX_SERVER_DEVICE_FAILURE] = {"server device failure", "server_device_failure"},
    [MD_MB_EX_ACKNOWLEDGE] = {"acknowledge", "acknowledge"},
    [MD_MB_EX_SERVER_DEVICE_BUSY] = {"server device busy", "server_device_busy"},
    [MD_MB_EX_NEGATIVE_ACKNOWLEDGE] = {"negative acknowledge", "negative_acknowledge"},
    [MD_MB_EX_MEMORY_PARITY_ERROR] = {"memory parity error", "memory_parity_error"},
    [MD_MB_EX_GATEWAY_PATH_UNAVAILABLE] = {"gateway path unavailable",
                                           "gateway_path_unavailable"},
    [MD_MB_EX_GATEWAY_TARGET_FAILED] = {"gateway target device failed to respond",
                                        "gateway_target_failed"},
};

static bool known_exception(int code)
{
    return code > 0 && code < (int)(sizeof exceptions / sizeof *exceptions) &&
           exceptions[code].token;
}

const char *md_mb_exception_name(int code)
{
    return known_exception(code) ? exceptions[code].token : NULL;
}

const char *md_mb_exception_text(int code)
{
    return known_exception(code) ? exceptions[code].text : NULL;
}

/* }===== */

/* {===== byte and bit helpers ===== */

void md_mb_get_regs(const uint8_t *in, size_t n, uint16_t *regs)
{
    for (size_t i = 0; i < n; i++)
        regs[i] = md_mb_get_u16(in + 2 * i);
}

void md_mb_put_regs(const uint16_t *regs, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++)
        md_mb_put_u16(out + 2 * i, regs[i]);
}

void md_mb_pack_bits(const uint8_t *bits, size_t n, uint8_t *out)
{
    memset(out, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if (bits[i])
            out[i / 8] |= (uint8_t)(1u << (i % 8));
}

void md_mb_unpack_bits(const uint8_t *in, size_t n, uint8_t *bits)
{
    for (size_t i = 0; i < n; i++)
        bits[i] = (uint8_t)(in[i / 8] >> (i % 8) & 1);
}

uint64_t md_mb_bits(uint64_t value, unsigned first_bit, unsigned nbits)
{
    /* Shifts by 64 or more are undefined in C, hence the guards. */
    if (first_bit >= 64 || nbits == 0)
        return 0;
    value >>= first_bit;
    if (nbits >= 64)
        return value;
    return value & ((UINT64_C(1) << nbits) - 1);
}

/* }===== */

/* {===== CRC and MBAP ===== */

/* CRC-16/MODBUS, one entry per byte value: the state after shifting that
 * byte through the reflected polynomial 0xA001 eight times. */
static const uint16_t crc_table[256] = {
    0x0000, 0xC0C1, 0xC181, 0x0140, 0xC301, 0x03C0, 0x0280, 0xC241, 0xC601, 0x06C0,
    0x0780, 0xC741, 0x0500, 0xC5C1, 0xC481, 0x0440, 0xCC01, 0x0CC0, 0x0D80, 0xCD41,
    0x0F00, 0xCFC1, 0xCE81, 0x0E40, 0x0A00, 0xCAC1, 0xCB81, 0x0B40, 0xC901, 0x09C0,
    0x0880, 0xC841, 0xD801, 0x18C0, 0x1980, 0xD941, 0x1B00, 0xDBC1, 0xDA81, 0x1A40,
    0x1E00, 0xDEC1, 0xDF81, 0x1F40, 0xDD01, 0x1DC0, 0x1C80, 0xDC41, 0x1400, 0xD4C1,
    0xD581, 0x1540, 0xD701, 0x17C0, 0x1680, 0xD641, 0xD201, 0x12C0, 0x1380, 0xD341,
    0x1100, 0xD1C1, 0xD081, 0x1040, 0xF001, 0x30C0, 0x3180, 0xF141, 0x3300, 0xF3C1,
    0xF281, 0x3240, 0x3600, 0xF6C1, 0xF781, 0x3740, 0xF501, 0x35C0, 0x3480, 0xF441,
    0x3C00, 0xFCC1, 0xFD81, 0x3D40, 0xFF01, 0x3FC0, 0x3E80, 0xFE41, 0xFA01, 0x3AC0,
    0x3B80, 0xFB41, 0x3900, 0xF9C1, 0xF881, 0x3840, 0x2800, 0xE8C1, 0xE981, 0x2940,
    0xEB01, 0x2BC0, 0x2A80, 0xEA41, 0xEE01, 0x2EC0, 0x2F80, 0xEF41, 0x2D00, 0xEDC1,
    0xEC81, 0x2C40, 0xE401, 0x24C0, 0x2580, 0xE541, 0x2700, 0xE7C1, 0xE681, 0x2640,
    0x2200, 0xE2C1, 0xE381, 0x2340, 0xE101, 0x21C0, 0x2080, 0xE041, 0xA001, 0x60C0,
    0x6180, 0xA141, 0x6300, 0xA3C1, 0xA281, 0x6240, 0x6600, 0xA6C1, 0xA781, 0x6740,
    0xA501, 0x65C0, 0x6480, 0xA441, 0x6C00, 0xACC1, 0xAD81, 0x6D40, 0xAF01, 0x6FC0,
    0x6E80, 0xAE41, 0xAA01, 0x6AC0, 0x6B80, 0xAB41, 0x6900, 0xA9C1, 0xA881, 0x6840,
    0x7800, 0xB8C1, 0xB981, 0x7940, 0xBB01, 0x7BC0, 0x7A80, 0xBA41, 0xBE01, 0x7EC0,
    0x7F80, 0xBF41, 0x7D00, 0xBDC1, 0xBC81, 0x7C40, 0xB401, 0x74C0, 0x7580, 0xB541,
    0x7700, 0xB7C1, 0xB681, 0x7640, 0x7200, 0xB2C1, 0xB381, 0x7340, 0xB101, 0x71C0,
    0x7080, 0xB041, 0x5000, 0x90C1, 0x9181, 0x5140, 0x9301, 0x53C0, 0x5280, 0x9241,
    0x9601, 0x56C0, 0x5780, 0x9741, 0x5500, 0x95C1, 0x9481, 0x5440, 0x9C01, 0x5CC0,
    0x5D80, 0x9D41, 0x5F00, 0x9FC1, 0x9E81, 0x5E40, 0x5A00, 0x9AC1, 0x9B81, 0x5B40,
    0x9901, 0x59C0, 0x5880, 0x9841, 0x8801, 0x48C0, 0x4980, 0x8941, 0x4B00, 0x8BC1,
    0x8A81, 0x4A40, 0x4E00, 0x8EC1, 0x8F81, 0x4F40, 0x8D01, 0x4DC0, 0x4C80, 0x8C41,
    0x4400, 0x84C1, 0x8581, 0x4540, 0x8701, 0x47C0, 0x4680, 0x8641, 0x8201, 0x42C0,
    0x4380, 0x8341, 0x4100, 0x81C1, 0x8081, 0x4040,
};

uint16_t md_mb_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++)
        crc = (uint16_t)(crc >> 8 ^ crc_table[(crc ^ p[i]) & 0xFF]);
    return crc;
}

int md_mb_rtu_check_crc(const uint8_t *frame, size_t len)
{
    if (len < 4) /* address, function code, CRC */
        return MD_MB_ESHORT;
    uint16_t want = (uint16_t)(frame[len - 2] | frame[len - 1] << 8);
    return md_mb_crc16(frame, len - 2) == want ? 0 : MD_MB_ECRC;
}

size_t md_mb_rtu_put_crc(uint8_t *frame, size_t len)
{
    uint16_t crc = md_mb_crc16(frame, len);
    frame[len] = (uint8_t)crc; /* low byte first, unlike every other field */
    frame[len + 1] = (uint8_t)(crc >> 8);
    return len + 2;
}

int md_mb_mbap_encode(uint8_t out[7], uint16_t tid, uint16_t pdu_len, uint8_t unit)
{
    if (pdu_len < 1 || pdu_len > MD_MB_MAX_PDU)
        return MD_MB_ELENGTH;
    md_mb_put_u16(out, tid);
    md_mb_put_u16(out + 2, 0);
    md_mb_put_u16(out + 4, (uint16_t)(pdu_len + 1)); /* the unit id counts */
    out[6] = unit;
    return 0;
}

int md_mb_mbap_decode(const uint8_t in[7], struct md_mb_mbap *out)
{
    if (md_mb_get_u16(in + 2) != 0)
        return MD_MB_EPROTO;
    uint16_t len = md_mb_get_u16(in + 4);
    if (len < 2 || len > MD_MB_MAX_PDU + 1)
        return MD_MB_ELENGTH;
    out->tid = md_mb_get_u16(in);
    out->pdu_len = (uint16_t)(len - 1);
    out->unit = in[6];
    return 0;
}

/* }===== */

/* {===== frame lengths ===== */

/* A length that is known: checked against the PDU maximum. */
static int known(size_t len)
{
    return len > MD_MB_MAX_PDU ? MD_MB_ETOOLONG : (int)len;
}

/*
 * Requests with data (FC 15, 16, 23): the quantity sits in the two bytes
 * before the byte count at pdu[bc_at], and the byte count must be what the
 * quantity needs, else the frame cannot be trusted to end where it says.
 */
static int counted_request(const uint8_t *pdu, size_t have, size_t bc_at, int coils)
{
    if (have <= bc_at)
        return 0;
    unsigned qty = md_mb_get_u16(pdu + bc_at - 2);
    unsigned bc = pdu[bc_at];
    unsigned want = coils ? (qty + 7) / 8 : 2 * qty;
    if (bc != want)
        return MD_MB_ECOUNT;
    return known(bc_at + 1 + bc);
}

int md_mb_pdu_request_len(const uint8_t *pdu, size_t have)
{
    if (have < 1)
        return 0;
    switch (pdu[0]) {
    case MD_MB_FC_READ_COILS:
    case MD_MB_FC_READ_DISCRETE_INPUTS:
    case MD_MB_FC_READ_HOLDING_REGISTERS:
    case MD_MB_FC_READ_INPUT_REGISTERS:
    case MD_MB_FC_WRITE_SINGLE_COIL:
    case MD_MB_FC_WRITE_SINGLE_REGISTER: return 5; /* FC, address, quantity or value */
    case MD_MB_FC_WRITE_MULTIPLE_COILS: return counted_request(pdu, have, 5, 1);
    case MD_MB_FC_WRITE_MULTIPLE_REGISTERS: return counted_request(pdu, have, 5, 0);
    case MD_MB_FC_REPORT_SERVER_ID: return 1;
    case MD_MB_FC_MASK_WRITE_REGISTER: return 7; /* FC, address, AND mask, OR mask */
    case MD_MB_FC_READ_WRITE_REGISTERS:
        /* FC, read address, read qty, write address, write qty, byte count */
        return counted_request(pdu, have, 9, 0);
    case MD_MB_FC_ENCAPSULATED:
        if (have < 2)
            return 0;
        /* MEI type, read device id code, object id */
        return pdu[1] == MD_MB_MEI_DEVICE_ID ? 4 : MD_MB_EMEI;
    default: return MD_MB_EFUNC;
    }
}

/* Responses FC, byte count, data with the byte count in [min, max]. */
static int counted_response(const uint8_t *pdu, size_t have, unsigned min, unsigned max,
                            int even)
{
    if (have < 2)
        return 0;
    unsigned bc = pdu[1];
    if (bc < min || bc > max || (even && bc % 2))
        return MD_MB_ECOUNT;
    return known(2 + bc);
}

/*
 * FC 43/14: FC, MEI type, read code, conformity level, more follows, next
 * object id, object count, then count x (object id, length, bytes). Each
 * object header must arrive before the next one can be found. A list that
 * runs past 253 bytes is an error as soon as that is certain, so a garbage
 * stream is rejected without waiting for bytes that will never come.
 */
static int device_id_response(const uint8_t *pdu, size_t have)
{
    if (have < 2)
        return 0;
    if (pdu[1] != MD_MB_MEI_DEVICE_ID)
        return MD_MB_EMEI;
    if (have < 7)
        return 0;
    unsigned count = pdu[6];
    size_t pos = 7;
    for (unsigned i = 0; i < count; i++) {
        if (pos + 2 > MD_MB_MAX_PDU)
            return MD_MB_ETOOLONG;
        if (have < pos + 2)
            return 0;
        pos += 2 + (size_t)pdu[pos + 1];
        if (pos > MD_MB_MAX_PDU)
            return MD_MB_ETOOLONG;
    }
    return (int)pos;
}

int md_mb_pdu_response_len(const uint8_t *pdu, size_t have)
{
    if (have < 1)
        return 0;
    uint8_t fc = pdu[0];
    if (fc & MD_MB_FC_EXCEPTION)
        return fc == MD_MB_FC_EXCEPTION ? MD_MB_EFUNC : 2; /* FC | 0x80, code */
    switch (fc) {
    case MD_MB_FC_READ_COILS:
    case MD_MB_FC_READ_DISCRETE_INPUTS:
        return counted_response(pdu, have, 1, MD_MB_MAX_READ_BITS / 8, 0);
    case MD_MB_FC_READ_HOLDING_REGISTERS:
    case MD_MB_FC_READ_INPUT_REGISTERS:
    case MD_MB_FC_READ_WRITE_REGISTERS:
        return counted_response(pdu, have, 2, 2 * MD_MB_MAX_READ_REGS, 1);
    case MD_MB_FC_WRITE_SINGLE_COIL:
    case MD_MB_FC_WRITE_SINGLE_REGISTER:
    case MD_MB_FC_WRITE_MULTIPLE_COILS:
    case MD_MB_FC_WRITE_MULTIPLE_REGISTERS:
        return 5; /* echo of address and value or quantity */
    case MD_MB_FC_REPORT_SERVER_ID:
        /* server id (device specific) and a run indicator byte */
        return counted_response(pdu, have, 1, MD_MB_MAX_PDU - 2, 0);
    case MD_MB_FC_MASK_WRITE_REGISTER: return 7;
    case MD_MB_FC_ENCAPSULATED: return device_id_response(pdu, have);
    default: return MD_MB_EFUNC;
    }
}

/* An RTU frame is address + PDU + CRC: the PDU rule one byte in, plus 3. */
static int rtu_len(int pdu_len)
{
    return pdu_len > 0 ? pdu_len + 3 : pdu_len;
}

int md_mb_rtu_request_len(const uint8_t *buf, size_t have)
{
    return have < 2 ? 0 : rtu_len(md_mb_pdu_request_len(buf + 1, have - 1));
}

int md_mb_rtu_response_len(const uint8_t *buf, size_t have)
{
    return have < 2 ? 0 : rtu_len(md_mb_pdu_response_len(buf + 1, have - 1));
}

/* }===== */

/* {===== names ===== */

static const char *const type_names[MD_MB_T_COUNT] = {
    "int16",  "uint16",  "int32",   "uint32", "int64",
    "uint64", "float32", "float64", "string",
};

static const char *const order_names[MD_MB_ORDER_COUNT] = {"ABCD", "CDAB", "BADC",
                                                           "DCBA"};

/* ASCII-only case folding: names must not depend on the C locale. */
static int same_name(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca += 'a' - 'A';
        if (cb >= 'A' && cb <= 'Z')
            cb += 'a' - 'A';
        if (ca != cb)
            return 0;
        if (!ca)
            return 1;
    }
}

static int find_name(const char *const *names, int n, const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < n; i++)
        if (same_name(names[i], name))
            return i;
    return -1;
}

int md_mb_type_from_name(const char *name)
{
    int t = find_name(type_names, MD_MB_T_COUNT, name);
    return t < 0 ? MD_MB_ETYPE : t;
}

int md_mb_order_from_name(const char *name)
{
    int o = find_name(order_names, MD_MB_ORDER_COUNT, name);
    return o < 0 ? MD_MB_EORDER : o;
}

const char *md_mb_type_name(int type)
{
    return type >= 0 && type < MD_MB_T_COUNT ? type_names[type] : NULL;
}

const char *md_mb_order_name(int order)
{
    return order >= 0 && order < MD_MB_ORDER_COUNT ? order_names[order] : NULL;
}

unsigned md_mb_type_regs(enum md_mb_type type)
{
    switch (type) {
    case MD_MB_T_INT16:
    case MD_MB_T_UINT16: return 1;
    case MD_MB_T_INT32:
    case MD_MB_T_UINT32:
    case MD_MB_T_FLOAT32: return 2;
    case MD_MB_T_INT64:
    case MD_MB_T_UINT64:
    case MD_MB_T_FLOAT64: return 4;
    default: return 0;
    }
}

/* }===== */

/* {===== typed values ===== */

static int order_ok(enum md_mb_order order)
{
    return (unsigned)order < MD_MB_ORDER_COUNT;
}

static int words_reversed(enum md_mb_order order)
{
    return order == MD_MB_CDAB || order == MD_MB_DCBA;
}

static int bytes_swapped(enum md_mb_order order)
{
    return order == MD_MB_BADC || order == MD_MB_DCBA;
}

static uint16_t swap16(uint16_t w)
{
    return (uint16_t)(w << 8 | w >> 8);
}

/* Value word i (0 = most significant of nw) sits in register at(i). */
static size_t at(enum md_mb_order order, size_t i, size_t nw)
{
    return words_reversed(order) ? nw - 1 - i : i;
}

static uint64_t load(const uint16_t *regs, unsigned nw, enum md_mb_order order)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < nw; i++) {
        uint16_t w = regs[at(order, i, nw)];
        v = v << 16 | (bytes_swapped(order) ? swap16(w) : w);
    }
    return v;
}

static void store(uint64_t v, uint16_t *regs, unsigned nw, enum md_mb_order order)
{
    /* least significant word first, so that v shifts down as we go */
    for (unsigned k = 0; k < nw; k++, v >>= 16) {
        uint16_t w = (uint16_t)v;
        regs[at(order, nw - 1 - k, nw)] = bytes_swapped(order) ? swap16(w) : w;
    }
}

/* Checks shared by every typed call; sets *nw to the register count. */
static int check(enum md_mb_type type, enum md_mb_order order, size_t nregs, unsigned *nw)
{
    if (!order_ok(order))
        return MD_MB_EORDER;
    *nw = md_mb_type_regs(type);
    if (*nw == 0)
        return MD_MB_ETYPE;
    return nregs < *nw ? MD_MB_EREGS : 0;
}

static int is_signed(enum md_mb_type type)
{
    return type == MD_MB_T_INT16 || type == MD_MB_T_INT32 || type == MD_MB_T_INT64;
}

static int is_float(enum md_mb_type type)
{
    return type == MD_MB_T_FLOAT32 || type == MD_MB_T_FLOAT64;
}

/* Two's complement of a bits-wide pattern, without implementation-defined
 * conversions of out-of-range unsigned values to signed. */
static int64_t sign_extend(uint64_t v, unsigned bits)
{
    if (!(v & UINT64_C(1) << (bits - 1)))
        return (int64_t)v;
    uint64_t mask = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
    uint64_t magnitude = (~v & mask) + 1; /* 1 .. 2^(bits-1) */
    return -(int64_t)(magnitude - 1) - 1;
}

/* The largest value an integer type holds, and the smallest (signed only). */
static uint64_t type_max(enum md_mb_type type)
{
    unsigned bits = 16 * md_mb_type_regs(type);
    uint64_t all = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
    return is_signed(type) ? all >> 1 : all;
}

static int64_t type_min(enum md_mb_type type)
{
    return is_signed(type) ? -(int64_t)(type_max(type)) - 1 : 0;
}

int md_mb_decode_int(const uint16_t *regs, size_t nregs, enum md_mb_type type,
                     enum md_mb_order order, int64_t *out)
{
    unsigned nw;
    int rc = check(type, order, nregs, &nw);
    if (rc < 0)
        return rc;
    if (is_float(type))
        return MD_MB_ETYPE;
    uint64_t v = load(regs, nw, order);
    if (is_signed(type)) {
        *out = sign_extend(v, 16 * nw);
        return 0;
    }
    if (v > INT64_MAX)
        return MD_MB_ERANGE;
    *out = (int64_t)v;
    return 0;
}

int md_mb_decode_uint(const uint16_t *regs, size_t nregs, enum md_mb_type type,
                      enum md_mb_order order, uint64_t *out)
{
    unsigned nw;
    int rc = check(type, order, nregs, &nw);
    if (rc < 0)
        return rc;
    if (is_float(type))
        return MD_MB_ETYPE;
    uint64_t v = load(regs, nw, order);
    if (is_signed(type) && sign_extend(v, 16 * nw) < 0)
        return MD_MB_ERANGE;
    *out = v;
    return 0;
}

int md_mb_decode_float(const uint16_t *regs, size_t nregs, enum md_mb_type type,
                       enum md_mb_order order, double *out)
{
    unsigned nw;
    int rc = check(type, order, nregs, &nw);
    if (rc < 0)
        return rc;
    uint64_t v = load(regs, nw, order);
    if (type == MD_MB_T_FLOAT32) {
        uint32_t bits = (uint32_t)v;
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
    } else if (type == MD_MB_T_FLOAT64) {
        memcpy(out, &v, sizeof *out);
    } else {
        return MD_MB_ETYPE;
    }
    return 0;
}

int md_mb_encode_int(int64_t v, enum md_mb_type type, enum md_mb_order order,
                     uint16_t *regs, size_t nregs)
{
    if (v >= 0)
        return md_mb_encode_uint((uint64_t)v, type, order, regs, nregs);
    unsigned nw;
    int rc = check(type, order, nregs, &nw);
    if (rc < 0)
        return rc;
    if (is_float(type))
        return MD_MB_ETYPE;
    if (v < type_min(type))
        return MD_MB_ERANGE;
    /* Conversion of a negative value to uint64 is defined: modulo 2^64. The
     * low 16 * nw bits are then the two's complement pattern. */
    store((uint64_t)v, regs, nw, order);
    return 0;
}

int md_mb_encode_uint(uint64_t v, enum md_mb_type type, enum md_mb_order order,
                      uint16_t *regs, size_t nregs)
{
    unsigned nw;
    int rc = check(type, order, nregs, &nw);
    if (rc < 0)
        return rc;
    if (is_float(type))
        return MD_MB_ETYPE;
    if (v > type_max(type))
        return MD_MB_ERANGE;
    store(v, regs, nw, order);
    return 0;
}

int md_mb_encode_float(double v, enum md_mb_type type, enum md_mb_order order,
                       uint16_t *regs, size_t nregs)
{
    unsigned nw;
    int rc = check(type, order, nregs, &nw);
    if (rc < 0)
        return rc;
    if (type == MD_MB_T_FLOAT32) {
        /* Converting a finite double beyond the float range is undefined. */
        if (isfinite(v) && fabs(v) > FLT_MAX)
            return MD_MB_ERANGE;
        float f = (float)v;
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        store(bits, regs, nw, order);
    } else if (type == MD_MB_T_FLOAT64) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        store(bits, regs, nw, order);
    } else {
        return MD_MB_ETYPE;
    }
    return 0;
}

/* }===== */

/* {===== strings ===== */

int md_mb_decode_string(const uint16_t *regs, size_t nregs, enum md_mb_order order,
                        char *out, size_t outsize)
{
    if (!order_ok(order))
        return MD_MB_EORDER;
    if (outsize == 0 || nregs > (outsize - 1) / 2 || nregs > INT32_MAX / 2)
        return MD_MB_ESPACE;
    size_t len = 0;
    for (size_t i = 0; i < nregs; i++) {
        uint16_t w = bytes_swapped(order) ? swap16(regs[i]) : regs[i];
        out[len++] = (char)(w >> 8);
        out[len++] = (char)(w & 0xFF);
    }
    size_t end = 0;
    while (end < len && out[end] != '\0')
        end++;
    while (end > 0 && out[end - 1] == ' ')
        end--;
    out[end] = '\0';
    return (int)end;
}

int md_mb_encode_string(const char *s, size_t len, enum md_mb_order order, uint16_t *regs,
                        size_t nregs)
{
    if (!order_ok(order))
        return MD_MB_EORDER;
    if (len / 2 + len % 2 > nregs)
        return MD_MB_ERANGE;
    for (size_t i = 0; i < nregs; i++) {
        uint8_t hi = 2 * i < len ? (uint8_t)s[2 * i] : 0;
        uint8_t lo = 2 * i + 1 < len ? (uint8_t)s[2 * i + 1] : 0;
        uint16_t w = (uint16_t)(hi << 8 | lo);
        regs[i] = bytes_swapped(order) ? swap16(w) : w;
    }
    return 0;
}

/* }===== */
