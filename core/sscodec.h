/*
 * sscodec.h - the SunSpec point codec: SunSpec point types to and from
 * Modbus register bytes, "not implemented" values, scale factors, and the
 * decoding of a whole register block through a compiled layout.
 *
 * SunSpec devices describe their data as models of typed points (see
 * devices/sunspec/). Every multi-register value is big-endian, high word
 * first; each type reserves one raw value meaning "not implemented"
 * (0x8000 for int16, 0xFFFF for uint16, 0 for accumulators, NaN for floats,
 * ...; table in sscodec.c). A point with a scale factor carries raw
 * integers: value = raw * 10^sf, where sf is a constant of the definition or
 * the value of a `sunssf` point of the same model (-10..10; 0x8000 means
 * not implemented, and so does the scaled point's value then).
 *
 * Design: pure functions over caller-owned bytes (register data exactly as
 * a Modbus read returns it, two bytes per register). Nothing allocates or
 * keeps state, so a test or a fuzzer links this file (and mbcodec.c for
 * its byte helpers) alone. A layout is an array of md_ss_point the caller
 * owns; md_ss_decode_point() decodes one of its points from a block that
 * may be shorter than the layout (a short read): points outside the bytes
 * given are reported, never read.
 *
 * Errors: functions return 0 (or a status) on success and a negative
 * MD_SS_E* code on failure (aliases of err.h's codes; md_strerror()).
 */
#ifndef MD_SSCODEC_H
#define MD_SSCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The SunSpec point types (names as in the SunSpec model definitions). */
enum md_ss_type {
    MD_SS_INT16,
    MD_SS_UINT16,
    MD_SS_COUNT,
    MD_SS_ACC16,
    MD_SS_ENUM16,
    MD_SS_BITFIELD16,
    MD_SS_SUNSSF,
    MD_SS_PAD,
    MD_SS_RAW16,
    MD_SS_INT32,
    MD_SS_UINT32,
    MD_SS_ACC32,
    MD_SS_ENUM32,
    MD_SS_BITFIELD32,
    MD_SS_IPADDR,
    MD_SS_FLOAT32,
    MD_SS_INT64,
    MD_SS_UINT64,
    MD_SS_ACC64,
    MD_SS_BITFIELD64,
    MD_SS_FLOAT64,
    MD_SS_EUI48,
    MD_SS_IPV6ADDR,
    MD_SS_STRING,
    MD_SS_TYPE_COUNT
};

enum {
    MD_SS_SF_MIN = -10, /* valid scale factors */
    MD_SS_SF_MAX = 10,
    MD_SS_SF_NONE = 0x8000, /* the sunssf "not implemented" raw value */
    MD_SS_TEXT_MAX = 46,    /* text of an ipaddr, eui48 or ipv6addr, with NUL */
};

enum md_ss_error {
    MD_SS_ETYPE = -MD_ETYPE,     /* unknown type, or wrong type for the call */
    MD_SS_ESIZE = -MD_ESIZE,     /* size does not suit the type */
    MD_SS_ERANGE = -MD_ERANGE,   /* value out of range, or the n/i value */
    MD_SS_ESYNTAX = -MD_ESYNTAX, /* text that is no address of the type */
    MD_SS_ESF = -MD_ESF,         /* scale factor outside -10..10 */
};

/* Type from its name ("int16", "acc32", ...; exact, lowercase), or
 * MD_SS_ETYPE. The name of a type, or NULL when out of range. */
int md_ss_type_from_name(const char *name);
const char *md_ss_type_name(int type);
/* Registers of a value of the type: 1, 2, 4 or 8; 0 for strings (the
 * definition gives their size) and for unknown types. */
unsigned md_ss_type_regs(int type);
/* 0 when size registers suit the type (strings: 1..32767), else MD_SS_ESIZE
 * (MD_SS_ETYPE for an unknown type). */
int md_ss_check_size(int type, unsigned size);

/* {===== one value ===== */

enum md_ss_kind {
    MD_SS_V_NONE,  /* not implemented */
    MD_SS_V_INT,   /* v.i */
    MD_SS_V_UINT,  /* v.u: a uint64 value above INT64_MAX */
    MD_SS_V_FLOAT, /* v.f */
    MD_SS_V_TEXT,  /* text, len: strings point into the decoded bytes,
                    * addresses into buf */
};

struct md_ss_value {
    enum md_ss_kind kind;
    union {
        int64_t i;
        uint64_t u;
        double f;
    } v;
    const char *text;
    size_t len;
    char buf[MD_SS_TEXT_MAX];
};

/*
 * Decode a point of the type and size (registers, checked by the caller)
 * from 2 * size bytes at p. Integers come as MD_SS_V_INT (uint64 values
 * above INT64_MAX as MD_SS_V_UINT); float32/float64 as MD_SS_V_FLOAT;
 * string as text up to its first NUL without trailing spaces; ipaddr as
 * "a.b.c.d", eui48 as "aa:bb:cc:dd:ee:ff", ipv6addr as RFC 5952 text.
 * The type's not-implemented value gives MD_SS_V_NONE. raw16 and pad are
 * always implemented.
 */
void md_ss_decode(int type, unsigned size, const uint8_t *p, struct md_ss_value *out);

/*
 * Encode into 2 * size bytes at out. Integers: md_ss_encode_int takes
 * every integer type (int*, uint*, count, acc*, enum*, bitfield*, sunssf,
 * pad, raw16), md_ss_encode_uint those without a sign (for uint64 values
 * above INT64_MAX); floats: md_ss_encode_float takes float32 and float64
 * (NaN is the n/i value; float32 rejects finite values beyond its range);
 * text: md_ss_encode_text takes string (at most 2 * size bytes, NUL
 * padded), ipaddr, eui48 ("aa:bb:cc:dd:ee:ff" or with '-') and ipv6addr.
 * A value equal to the type's not-implemented value is out of range: use
 * md_ss_sentinel() to write "not implemented" on purpose.
 * Returns 0, MD_SS_ETYPE (wrong function for the type), MD_SS_ERANGE or
 * MD_SS_ESYNTAX (text that is no address of the type). out is untouched
 * on failure.
 */
int md_ss_encode_int(int type, unsigned size, int64_t v, uint8_t *out);
int md_ss_encode_uint(int type, unsigned size, uint64_t v, uint8_t *out);
int md_ss_encode_float(int type, unsigned size, double v, uint8_t *out);
int md_ss_encode_text(int type, unsigned size, const char *s, size_t len, uint8_t *out);

/* The not-implemented value of the type in 2 * size bytes at out (strings:
 * all NUL; pad and raw16, which have none: 0x8000 and 0xFFFF). */
void md_ss_sentinel(int type, unsigned size, uint8_t *out);

/* The range an integer type accepts (its n/i value excluded), for messages
 * and checks: *min..*max. Returns MD_SS_ETYPE for other types. */
int md_ss_int_range(int type, int64_t *min, uint64_t *max);
/* The n/i value of an integer type as a decimal number ("65535", "-32768",
 * "0") in buf. Returns 0, or MD_SS_ETYPE for types without one. */
int md_ss_none_text(int type, char *buf, size_t size);

/* }===== */

/* {===== scale factors ===== */

/* raw * 10^sf, sf in -10..10 (computed as a division for sf < 0, so 2401
 * with sf -1 is the double nearest 240.1). */
double md_ss_scale(double raw, int sf);
/* value / 10^sf, rounded to the nearest integer, halves away from zero;
 * the raw value to encode for a scaled point. Returns 0 or MD_SS_ERANGE
 * (NaN, or a result beyond +-2^64). */
int md_ss_unscale(double value, int sf, double *raw);

/* }===== */

/* {===== layouts: a block of points ===== */

enum md_ss_sf_mode {
    MD_SS_SF_NO,    /* not scaled */
    MD_SS_SF_CONST, /* sf holds the scale factor */
    MD_SS_SF_POINT, /* sf holds the index of the sunssf point in the layout */
};

struct md_ss_point {
    uint8_t type;    /* enum md_ss_type */
    uint8_t sf_mode; /* enum md_ss_sf_mode */
    uint16_t size;   /* registers */
    int32_t sf;      /* see sf_mode */
    uint32_t offset; /* registers from the start of the block */
};

/* What md_ss_decode_point found. */
enum md_ss_status {
    MD_SS_VALUE,    /* out holds the (scaled) value */
    MD_SS_NOT_IMPL, /* the device does not implement the point */
    MD_SS_OUTSIDE,  /* the point is not inside the bytes given */
    MD_SS_BAD_SF,   /* implemented, but its scale factor is n/i, out of
                     * -10..10, or outside the bytes given */
};

/*
 * Check a layout: every type known, sizes suit the types, constant scale
 * factors within -10..10, a point's sf index names a sunssf point of the
 * layout. Returns 0, or the first problem (MD_SS_ETYPE, MD_SS_ESIZE,
 * MD_SS_ESF) with *bad set to its index.
 */
int md_ss_check_layout(const struct md_ss_point *pts, size_t npts, size_t *bad);

/*
 * Decode point i of a checked layout from the block bytes `regs`, nregs
 * registers that start at register `first` of the block. A scaled value
 * comes as MD_SS_V_FLOAT (as MD_SS_V_INT/UINT when the scale factor is 0);
 * a scale factor comes from the same bytes. Never reads outside
 * regs[0 .. 2 * nregs).
 */
enum md_ss_status md_ss_decode_point(const struct md_ss_point *pts, size_t i,
                                     const uint8_t *regs, size_t first, size_t nregs,
                                     struct md_ss_value *out);

/* }===== */

#endif
