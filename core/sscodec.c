/*
 * sscodec.c - the SunSpec point codec (see sscodec.h).
 *
 * Each type is a row of one table: name, registers, signedness, the
 * not-implemented raw value and the accepted range. Integers of every width
 * are read as one uint64 of their big-endian bytes, so the sentinel test is
 * one comparison for all of them; signed types are sign-extended after it.
 *
 * Not-implemented values (SunSpec's "unimplemented" convention):
 *   int16 0x8000, int32 0x80000000, int64 0x8000000000000000, sunssf 0x8000;
 *   uint16/count/enum16/bitfield16 0xFFFF, uint32/enum32/bitfield32
 *   0xFFFFFFFF, uint64/bitfield64 all ones; acc16/acc32/acc64 and ipaddr 0;
 *   float32/float64 NaN; eui48 FF:FF:FF:FF:FF:FF in its last 6 bytes;
 *   ipv6addr all zero; string a first byte NUL. pad and raw16 have none.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mbcodec.h"
#include "sscodec.h"

_Static_assert(sizeof(struct md_ss_point) == 12, "layout entries stay small");

/* {===== the type table ===== */

enum kind { K_INT, K_FLOAT, K_TEXT };

struct type_info {
    const char *name;
    uint8_t regs; /* 0: the definition gives the size (strings) */
    uint8_t kind; /* enum kind */
    uint8_t is_signed;
    uint8_t has_none; /* an integer n/i value exists */
    uint64_t none;    /* integer n/i value, as the raw unsigned bits */
    int64_t min;      /* accepted range, n/i value excluded */
    uint64_t max;
};

#define U16 UINT64_C(0xFFFF)
#define U32 UINT64_C(0xFFFFFFFF)

static const struct type_info types[MD_SS_TYPE_COUNT] = {
    [MD_SS_INT16] = {"int16", 1, K_INT, 1, 1, 0x8000, -32767, 32767},
    [MD_SS_UINT16] = {"uint16", 1, K_INT, 0, 1, U16, 0, U16 - 1},
    [MD_SS_COUNT] = {"count", 1, K_INT, 0, 1, U16, 0, U16 - 1},
    [MD_SS_ACC16] = {"acc16", 1, K_INT, 0, 1, 0, 1, U16},
    [MD_SS_ENUM16] = {"enum16", 1, K_INT, 0, 1, U16, 0, U16 - 1},
    [MD_SS_BITFIELD16] = {"bitfield16", 1, K_INT, 0, 1, U16, 0, U16 - 1},
    [MD_SS_SUNSSF] = {"sunssf", 1, K_INT, 1, 1, 0x8000, MD_SS_SF_MIN, MD_SS_SF_MAX},
    [MD_SS_PAD] = {"pad", 1, K_INT, 0, 0, 0, 0, U16},
    [MD_SS_RAW16] = {"raw16", 1, K_INT, 0, 0, 0, 0, U16},
    [MD_SS_INT32] = {"int32", 2, K_INT, 1, 1, 0x80000000, -INT32_MAX, INT32_MAX},
    [MD_SS_UINT32] = {"uint32", 2, K_INT, 0, 1, U32, 0, U32 - 1},
    [MD_SS_ACC32] = {"acc32", 2, K_INT, 0, 1, 0, 1, U32},
    [MD_SS_ENUM32] = {"enum32", 2, K_INT, 0, 1, U32, 0, U32 - 1},
    [MD_SS_BITFIELD32] = {"bitfield32", 2, K_INT, 0, 1, U32, 0, U32 - 1},
    [MD_SS_IPADDR] = {"ipaddr", 2, K_TEXT, 0, 0, 0, 0, 0},
    [MD_SS_FLOAT32] = {"float32", 2, K_FLOAT, 0, 0, 0, 0, 0},
    [MD_SS_INT64] = {"int64", 4, K_INT, 1, 1, UINT64_C(1) << 63, -INT64_MAX, INT64_MAX},
    [MD_SS_UINT64] = {"uint64", 4, K_INT, 0, 1, UINT64_MAX, 0, UINT64_MAX - 1},
    [MD_SS_ACC64] = {"acc64", 4, K_INT, 0, 1, 0, 1, UINT64_MAX},
    [MD_SS_BITFIELD64] = {"bitfield64", 4, K_INT, 0, 1, UINT64_MAX, 0, UINT64_MAX - 1},
    [MD_SS_FLOAT64] = {"float64", 4, K_FLOAT, 0, 0, 0, 0, 0},
    [MD_SS_EUI48] = {"eui48", 4, K_TEXT, 0, 0, 0, 0, 0},
    [MD_SS_IPV6ADDR] = {"ipv6addr", 8, K_TEXT, 0, 0, 0, 0, 0},
    [MD_SS_STRING] = {"string", 0, K_TEXT, 0, 0, 0, 0, 0},
};

static const struct type_info *info(int type)
{
    return type >= 0 && type < MD_SS_TYPE_COUNT ? &types[type] : NULL;
}

int md_ss_type_from_name(const char *name)
{
    for (int t = 0; t < MD_SS_TYPE_COUNT; t++) {
        if (strcmp(name, types[t].name) == 0)
            return t;
    }
    return MD_SS_ETYPE;
}

const char *md_ss_type_name(int type)
{
    const struct type_info *ti = info(type);
    return ti ? ti->name : NULL;
}

unsigned md_ss_type_regs(int type)
{
    const struct type_info *ti = info(type);
    return ti ? ti->regs : 0;
}

int md_ss_check_size(int type, unsigned size)
{
    const struct type_info *ti = info(type);
    if (!ti)
        return MD_SS_ETYPE;
    if (ti->regs == 0)
        return size >= 1 && size <= 32767 ? 0 : MD_SS_ESIZE;
    return size == ti->regs ? 0 : MD_SS_ESIZE;
}

int md_ss_int_range(int type, int64_t *min, uint64_t *max)
{
    const struct type_info *ti = info(type);
    if (!ti || ti->kind != K_INT)
        return MD_SS_ETYPE;
    *min = ti->min;
    *max = ti->max;
    return 0;
}

/* }===== */

/* {===== raw bytes ===== */

/* The first nbytes (up to 8) big-endian bytes at p as one integer. */
static uint64_t get_be(const uint8_t *p, unsigned nbytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < nbytes; i += 2)
        v = v << 16 | md_mb_get_u16(p + i);
    return v;
}

static void put_be(uint8_t *p, unsigned nbytes, uint64_t v)
{
    for (unsigned i = nbytes; i > 0; i -= 2) {
        md_mb_put_u16(p + i - 2, (uint16_t)v);
        v >>= 16;
    }
}

/* Sign-extend the low bits of v. */
static int64_t sign_extend(uint64_t v, unsigned bits)
{
    if (bits == 64)
        return (int64_t)v;
    uint64_t sign = UINT64_C(1) << (bits - 1);
    return (int64_t)((v ^ sign) - sign);
}

/* }===== */

int md_ss_none_text(int type, char *buf, size_t size)
{
    const struct type_info *ti = info(type);
    if (!ti || ti->kind != K_INT || !ti->has_none)
        return MD_SS_ETYPE;
    if (ti->is_signed)
        snprintf(buf, size, "%" PRId64, sign_extend(ti->none, 16u * ti->regs));
    else
        snprintf(buf, size, "%" PRIu64, ti->none);
    return 0;
}

/* {===== decoding ===== */

static void decode_text(int type, unsigned size, const uint8_t *p,
                        struct md_ss_value *out)
{
    static const uint8_t all_ff[6] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    static const uint8_t zero[16] = {0};
    out->kind = MD_SS_V_TEXT;
    out->text = out->buf;
    switch (type) {
    case MD_SS_STRING: {
        size_t n = 2 * (size_t)size;
        const uint8_t *nul = memchr(p, 0, n);
        size_t len = nul ? (size_t)(nul - p) : n;
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (p[0] == 0)
            out->kind = MD_SS_V_NONE;
        out->text = (const char *)p;
        out->len = len;
        return;
    }
    case MD_SS_IPADDR:
        if (memcmp(p, zero, 4) == 0)
            out->kind = MD_SS_V_NONE;
        out->len = (size_t)snprintf(out->buf, sizeof out->buf, "%u.%u.%u.%u", p[0], p[1],
                                    p[2], p[3]);
        return;
    case MD_SS_EUI48:
        if (memcmp(p + 2, all_ff, 6) == 0)
            out->kind = MD_SS_V_NONE;
        out->len =
            (size_t)snprintf(out->buf, sizeof out->buf, "%02x:%02x:%02x:%02x:%02x:%02x",
                             p[2], p[3], p[4], p[5], p[6], p[7]);
        return;
    default: /* MD_SS_IPV6ADDR */
        if (memcmp(p, zero, 16) == 0)
            out->kind = MD_SS_V_NONE;
        inet_ntop(AF_INET6, p, out->buf, sizeof out->buf);
        out->len = strlen(out->buf);
        return;
    }
}

void md_ss_decode(int type, unsigned size, const uint8_t *p, struct md_ss_value *out)
{
    const struct type_info *ti = info(type);
    assert(ti != NULL); /* a type the caller checked */
    out->text = NULL;
    out->len = 0;
    if (ti->kind == K_TEXT) {
        decode_text(type, size, p, out);
        return;
    }
    unsigned nbytes = 2u * ti->regs;
    uint64_t raw = get_be(p, nbytes);
    if (ti->kind == K_FLOAT) {
        if (type == MD_SS_FLOAT32) {
            uint32_t bits = (uint32_t)raw;
            float f;
            memcpy(&f, &bits, sizeof f);
            out->v.f = f;
        } else {
            memcpy(&out->v.f, &raw, sizeof out->v.f);
        }
        out->kind = isnan(out->v.f) ? MD_SS_V_NONE : MD_SS_V_FLOAT;
        return;
    }
    if (ti->has_none && raw == ti->none) {
        out->kind = MD_SS_V_NONE;
        return;
    }
    if (ti->is_signed) {
        out->kind = MD_SS_V_INT;
        out->v.i = sign_extend(raw, 8 * nbytes);
    } else if (raw > INT64_MAX) {
        out->kind = MD_SS_V_UINT;
        out->v.u = raw;
    } else {
        out->kind = MD_SS_V_INT;
        out->v.i = (int64_t)raw;
    }
}

/* }===== */

/* {===== encoding ===== */

int md_ss_encode_int(int type, unsigned size, int64_t v, uint8_t *out)
{
    const struct type_info *ti = info(type);
    if (!ti || ti->kind != K_INT)
        return MD_SS_ETYPE;
    if (v < ti->min || (v > 0 && (uint64_t)v > ti->max))
        return MD_SS_ERANGE;
    (void)size;
    put_be(out, 2u * ti->regs, (uint64_t)v);
    return 0;
}

int md_ss_encode_uint(int type, unsigned size, uint64_t v, uint8_t *out)
{
    const struct type_info *ti = info(type);
    if (!ti || ti->kind != K_INT || ti->is_signed)
        return MD_SS_ETYPE;
    if (v > ti->max || (ti->min > 0 && v < (uint64_t)ti->min))
        return MD_SS_ERANGE;
    (void)size;
    put_be(out, 2u * ti->regs, v);
    return 0;
}

int md_ss_encode_float(int type, unsigned size, double v, uint8_t *out)
{
    (void)size;
    if (isnan(v))
        return info(type) && info(type)->kind == K_FLOAT ? MD_SS_ERANGE : MD_SS_ETYPE;
    if (type == MD_SS_FLOAT32) {
        /* Converting a finite double beyond the float range is undefined. */
        if (isfinite(v) && fabs(v) > FLT_MAX)
            return MD_SS_ERANGE;
        float f = (float)v;
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        put_be(out, 4, bits);
        return 0;
    }
    if (type == MD_SS_FLOAT64) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        put_be(out, 8, bits);
        return 0;
    }
    return MD_SS_ETYPE;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "aa:bb:cc:dd:ee:ff" (or with '-') into mac[6]; 0 or MD_SS_ESYNTAX. */
static int parse_mac(const char *s, size_t len, uint8_t mac[6])
{
    if (len != 17)
        return MD_SS_ESYNTAX;
    for (int i = 0; i < 6; i++) {
        const char *q = s + 3 * i;
        int hi = hex_digit(q[0]), lo = hex_digit(q[1]);
        if (hi < 0 || lo < 0 || (i < 5 && q[2] != ':' && q[2] != '-'))
            return MD_SS_ESYNTAX;
        mac[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* An address in text form; s need not be NUL-terminated. */
static int parse_inet(int af, const char *s, size_t len, uint8_t *addr)
{
    char text[MD_SS_TEXT_MAX];
    if (len >= sizeof text || memchr(s, 0, len))
        return MD_SS_ESYNTAX;
    memcpy(text, s, len);
    text[len] = '\0';
    return inet_pton(af, text, addr) == 1 ? 0 : MD_SS_ESYNTAX;
}

int md_ss_encode_text(int type, unsigned size, const char *s, size_t len, uint8_t *out)
{
    uint8_t buf[16] = {0};
    int rc;
    switch (type) {
    case MD_SS_STRING:
        if (len > 2 * (size_t)size || len == 0 || s[0] == '\0')
            return MD_SS_ERANGE;
        memset(out, 0, 2 * (size_t)size);
        memcpy(out, s, len);
        return 0;
    case MD_SS_IPADDR:
        if ((rc = parse_inet(AF_INET, s, len, buf)) < 0)
            return rc;
        if (get_be(buf, 4) == 0)
            return MD_SS_ERANGE;
        memcpy(out, buf, 4);
        return 0;
    case MD_SS_EUI48:
        if ((rc = parse_mac(s, len, buf + 2)) < 0)
            return rc;
        if (get_be(buf + 2, 6) == UINT64_C(0xFFFFFFFFFFFF))
            return MD_SS_ERANGE;
        memcpy(out, buf, 8);
        return 0;
    case MD_SS_IPV6ADDR: {
        static const uint8_t zero[16] = {0};
        if ((rc = parse_inet(AF_INET6, s, len, buf)) < 0)
            return rc;
        if (memcmp(buf, zero, 16) == 0)
            return MD_SS_ERANGE;
        memcpy(out, buf, 16);
        return 0;
    }
    default: return MD_SS_ETYPE;
    }
}

void md_ss_sentinel(int type, unsigned size, uint8_t *out)
{
    const struct type_info *ti = info(type);
    switch (type) {
    case MD_SS_STRING: memset(out, 0, 2 * (size_t)size); return;
    case MD_SS_IPADDR: memset(out, 0, 4); return;
    case MD_SS_IPV6ADDR: memset(out, 0, 16); return;
    case MD_SS_EUI48: memset(out, 0xFF, 8); return;
    case MD_SS_FLOAT32: put_be(out, 4, 0x7FC00000); return;
    case MD_SS_FLOAT64: put_be(out, 8, UINT64_C(0x7FF8000000000000)); return;
    case MD_SS_PAD: put_be(out, 2, 0x8000); return;
    case MD_SS_RAW16: put_be(out, 2, 0xFFFF); return;
    default: put_be(out, 2u * ti->regs, ti->none); return;
    }
}

/* }===== */

/* {===== scale factors ===== */

static const double powers_of_ten[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5,
                                       1e6, 1e7, 1e8, 1e9, 1e10};

double md_ss_scale(double raw, int sf)
{
    /* Dividing by an exact power of ten rounds once; multiplying by 0.1 would
     * round twice (2401 * 0.1 = 240.10000000000002). */
    return sf < 0 ? raw / powers_of_ten[-sf] : raw * powers_of_ten[sf];
}

int md_ss_unscale(double value, int sf, double *raw)
{
    double x = sf < 0 ? value * powers_of_ten[-sf] : value / powers_of_ten[sf];
    x = round(x);
    if (isnan(x) || fabs(x) >= 18446744073709551616.0 /* 2^64 */)
        return MD_SS_ERANGE;
    *raw = x;
    return 0;
}

/* }===== */

/* {===== layouts ===== */

int md_ss_check_layout(const struct md_ss_point *pts, size_t npts, size_t *bad)
{
    for (size_t i = 0; i < npts; i++) {
        const struct md_ss_point *p = &pts[i];
        int rc = md_ss_check_size(p->type, p->size);
        if (rc == 0 && p->sf_mode == MD_SS_SF_CONST &&
            (p->sf < MD_SS_SF_MIN || p->sf > MD_SS_SF_MAX))
            rc = MD_SS_ESF;
        if (rc == 0 && p->sf_mode == MD_SS_SF_POINT &&
            (p->sf < 0 || (size_t)p->sf >= npts || pts[p->sf].type != MD_SS_SUNSSF))
            rc = MD_SS_ESF;
        if (rc == 0 && p->sf_mode > MD_SS_SF_POINT)
            rc = MD_SS_ESF;
        if (rc == 0 && p->sf_mode != MD_SS_SF_NO && info(p->type)->kind == K_TEXT)
            rc = MD_SS_ETYPE;
        if (rc < 0) {
            *bad = i;
            return rc;
        }
    }
    return 0;
}

/* The bytes of point p inside the block bytes, or NULL when they are not
 * all there. */
static const uint8_t *locate(const struct md_ss_point *p, const uint8_t *regs,
                             size_t first, size_t nregs)
{
    if (p->offset < first || p->offset - first > nregs ||
        p->size > nregs - (p->offset - first))
        return NULL;
    return regs + 2 * (p->offset - first);
}

/* The scale factor of point p, or MD_SS_ESF when it is unusable. */
static int scale_factor(const struct md_ss_point *pts, const struct md_ss_point *p,
                        const uint8_t *regs, size_t first, size_t nregs)
{
    if (p->sf_mode == MD_SS_SF_CONST)
        return p->sf;
    const uint8_t *at = locate(&pts[p->sf], regs, first, nregs);
    if (!at)
        return MD_SS_ESF;
    int sf = (int16_t)md_mb_get_u16(at);
    return sf >= MD_SS_SF_MIN && sf <= MD_SS_SF_MAX ? sf : MD_SS_ESF;
}

enum md_ss_status md_ss_decode_point(const struct md_ss_point *pts, size_t i,
                                     const uint8_t *regs, size_t first, size_t nregs,
                                     struct md_ss_value *out)
{
    const struct md_ss_point *p = &pts[i];
    const uint8_t *at = locate(p, regs, first, nregs);
    if (!at)
        return MD_SS_OUTSIDE;
    md_ss_decode(p->type, p->size, at, out);
    if (out->kind == MD_SS_V_NONE)
        return MD_SS_NOT_IMPL;
    if (p->sf_mode == MD_SS_SF_NO)
        return MD_SS_VALUE;
    int sf = scale_factor(pts, p, regs, first, nregs);
    if (sf == MD_SS_ESF)
        return MD_SS_BAD_SF;
    if (sf == 0)
        return MD_SS_VALUE;
    double raw = out->kind == MD_SS_V_INT    ? (double)out->v.i
                 : out->kind == MD_SS_V_UINT ? (double)out->v.u
                                             : out->v.f;
    out->kind = MD_SS_V_FLOAT;
    out->v.f = md_ss_scale(raw, sf);
    return MD_SS_VALUE;
}

/* }===== */
