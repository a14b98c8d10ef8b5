/*
 * fuzz_sscodec.c - libFuzzer target for core/sscodec.c, the SunSpec point
 * codec.
 *
 * The input is read as: one byte for the number of points (1..16), one for
 * the register at which the block bytes start (0..7), four bytes per point
 * (type, string size, offset 0..63, scale-factor mode and value), eight
 * bytes of a value to encode, and the rest as the register block. The
 * block is copied to the very end of a heap buffer of its own size, so
 * ASan reports the first byte read past it. Besides crashes and sanitizer
 * reports, the target aborts when a contract breaks:
 *   - a layout that md_ss_check_layout accepts has known types, sizes that
 *     suit them, and scale-factor indexes that name sunssf points;
 *   - a point is MD_SS_OUTSIDE exactly when its registers are not all in
 *     the block; a point inside is never reported outside;
 *   - MD_SS_NOT_IMPL exactly when the bytes are the type's not-implemented
 *     value (for integers, addresses: the sentinel bytes themselves; floats:
 *     a NaN; strings: a first NUL; eui48: FF in its last six bytes);
 *   - MD_SS_BAD_SF only for a point scaled by a sunssf point that is outside
 *     the block, not implemented or outside -10..10;
 *   - an unscaled value encodes back to the same bytes (strings: to the
 *     same text), and a scaled one unscales back to its raw integer;
 *   - encode accepts a value exactly when it lies in the type's range, and
 *     what it accepts decodes back to itself.
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_sscodec.c core/sscodec.c -lm -o /tmp/fuzz_sscodec
 *   /tmp/fuzz_sscodec tests/fuzz/corpus/sscodec
 *
 * Seeds (tests/fuzz/corpus/sscodec/): layouts over the registers of the
 * reference inverter's models 103 and 160 (scaled values, SFs, strings,
 * acc32, bitfield32, repeating module), every type in turn, and short
 * blocks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sscodec.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_POINTS = 16, HEADER = 2, POINT_BYTES = 4, VALUE_BYTES = 8 };

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* {===== one point ===== */

/* Is `at` (2 * p->size bytes) the not-implemented value of the point's type? */
static int is_none(const struct md_ss_point *p, const uint8_t *at)
{
    uint8_t s[16];
    switch (p->type) {
    case MD_SS_FLOAT32: {
        uint32_t bits = (uint32_t)get_be(at, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        return isnan(f);
    }
    case MD_SS_FLOAT64: {
        uint64_t bits = get_be(at, 8);
        double d;
        memcpy(&d, &bits, sizeof d);
        return isnan(d);
    }
    case MD_SS_STRING: return at[0] == 0;
    case MD_SS_EUI48: return get_be(at + 2, 6) == UINT64_C(0xFFFFFFFFFFFF);
    case MD_SS_PAD:
    case MD_SS_RAW16: return 0;
    default:
        md_ss_sentinel(p->type, p->size, s);
        return memcmp(s, at, 2 * (size_t)p->size) == 0;
    }
}

/* An unscaled value encodes back to its bytes (strings: to its text). */
static void check_round_trip(const struct md_ss_point *p, const uint8_t *at,
                             const struct md_ss_value *v)
{
    static uint8_t out[2 * 32767];
    size_t n = 2 * (size_t)p->size;
    int rc;
    switch (v->kind) {
    case MD_SS_V_INT: rc = md_ss_encode_int(p->type, p->size, v->v.i, out); break;
    case MD_SS_V_UINT: rc = md_ss_encode_uint(p->type, p->size, v->v.u, out); break;
    case MD_SS_V_FLOAT: rc = md_ss_encode_float(p->type, p->size, v->v.f, out); break;
    default: rc = md_ss_encode_text(p->type, p->size, v->text, v->len, out); break;
    }
    if (p->type == MD_SS_STRING && v->len == 0) {
        CHECK(rc == MD_SS_ERANGE); /* a blank string: "" means not implemented */
        return;
    }
    CHECK(rc == 0);
    if (p->type == MD_SS_STRING) {
        struct md_ss_value back;
        md_ss_decode(p->type, p->size, out, &back);
        CHECK(back.kind == MD_SS_V_TEXT && back.len == v->len);
        CHECK(memcmp(back.text, v->text, v->len) == 0);
    } else if (p->type == MD_SS_EUI48) {
        CHECK(memcmp(out + 2, at + 2, 6) == 0); /* the first two bytes are not read */
    } else {
        CHECK(memcmp(out, at, n) == 0);
    }
}

/* The scale factor point i uses, as the block holds it; 99 when unusable. */
static int usable_sf(const struct md_ss_point *pts, size_t i, const uint8_t *regs,
                     size_t first, size_t nregs)
{
    const struct md_ss_point *p = &pts[i];
    if (p->sf_mode == MD_SS_SF_CONST)
        return p->sf;
    const struct md_ss_point *q = &pts[p->sf];
    if (q->offset < first || q->offset + 1 > first + nregs)
        return 99;
    int sf = (int16_t)get_be(regs + 2 * (q->offset - first), 2);
    return sf >= -10 && sf <= 10 ? sf : 99;
}

static void check_point(const struct md_ss_point *pts, size_t i, const uint8_t *regs,
                        size_t first, size_t nregs)
{
    const struct md_ss_point *p = &pts[i];
    struct md_ss_value v;
    enum md_ss_status st = md_ss_decode_point(pts, i, regs, first, nregs, &v);
    int inside = p->offset >= first && p->offset + p->size <= first + nregs;
    CHECK((st == MD_SS_OUTSIDE) == !inside);
    if (!inside)
        return;
    const uint8_t *at = regs + 2 * (p->offset - first);
    CHECK((st == MD_SS_NOT_IMPL) == is_none(p, at));
    if (st == MD_SS_NOT_IMPL)
        return;
    int sf = p->sf_mode == MD_SS_SF_NO ? 0 : usable_sf(pts, i, regs, first, nregs);
    CHECK((st == MD_SS_BAD_SF) == (sf == 99));
    if (st == MD_SS_BAD_SF)
        return;
    CHECK(st == MD_SS_VALUE);
    if (sf == 0) {
        /* a sunssf outside -10..10 decodes as itself, but encode refuses it */
        if (!(p->type == MD_SS_SUNSSF && (v.v.i < -10 || v.v.i > 10)))
            check_round_trip(p, at, &v);
        return;
    }
    /* scaled: unscaling gives the raw value back */
    struct md_ss_value raw;
    md_ss_decode(p->type, p->size, at, &raw);
    CHECK(v.kind == MD_SS_V_FLOAT);
    if (raw.kind == MD_SS_V_INT && raw.v.i > -(INT64_C(1) << 40) &&
        raw.v.i < INT64_C(1) << 40) {
        double back;
        CHECK(md_ss_unscale(v.v.f, sf, &back) == 0);
        CHECK(back == (double)raw.v.i);
    }
}

/* }===== */

/* {===== encode alone ===== */

static void check_encode(const uint8_t value[VALUE_BYTES])
{
    uint64_t u = get_be(value, VALUE_BYTES);
    int64_t i = (int64_t)u;
    uint8_t out[16];
    for (int t = 0; t < MD_SS_TYPE_COUNT; t++) {
        int64_t min;
        uint64_t max;
        unsigned regs = md_ss_type_regs(t);
        if (md_ss_int_range(t, &min, &max) == 0) {
            int in = i >= min && (i <= 0 || (uint64_t)i <= max);
            CHECK((md_ss_encode_int(t, regs, i, out) == 0) == in);
            struct md_ss_value v;
            if (in) {
                md_ss_decode(t, regs, out, &v);
                CHECK(v.kind == MD_SS_V_INT && v.v.i == i);
            }
            if (md_ss_encode_uint(t, regs, u, out) == 0) {
                md_ss_decode(t, regs, out, &v);
                CHECK(v.kind != MD_SS_V_NONE);
                CHECK(v.kind == MD_SS_V_UINT ? v.v.u == u : (uint64_t)v.v.i == u);
            }
        } else if (t == MD_SS_FLOAT64 || t == MD_SS_FLOAT32) {
            double d;
            memcpy(&d, &u, sizeof d);
            int rc = md_ss_encode_float(t, regs, d, out);
            CHECK((rc == 0) == !isnan(d) || t == MD_SS_FLOAT32);
            if (rc == 0) {
                struct md_ss_value v;
                md_ss_decode(t, regs, out, &v);
                CHECK(v.kind == MD_SS_V_FLOAT);
                CHECK(t == MD_SS_FLOAT32 ? v.v.f == (double)(float)d : v.v.f == d);
            }
        } else {
            /* text types: the value bytes as text, up to 8 bytes */
            size_t size = t == MD_SS_STRING ? 4 : regs;
            if (md_ss_encode_text(t, (unsigned)size, (const char *)value, VALUE_BYTES,
                                  out) == 0) {
                struct md_ss_value v;
                md_ss_decode(t, (unsigned)size, out, &v);
                CHECK(v.kind == MD_SS_V_TEXT);
            }
        }
    }
}

/* }===== */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    size_t npts = (size_t)(data[0] % MAX_POINTS) + 1;
    size_t first = data[1] % 8;
    size_t head = HEADER + npts * POINT_BYTES + VALUE_BYTES;
    if (size < head)
        return 0;
    struct md_ss_point pts[MAX_POINTS];
    for (size_t i = 0; i < npts; i++) {
        const uint8_t *d = data + HEADER + i * POINT_BYTES;
        int type = d[0] % (MD_SS_TYPE_COUNT + 1); /* one past: an unknown type */
        unsigned regs = md_ss_type_regs(type);
        pts[i] = (struct md_ss_point){
            .type = (uint8_t)type,
            .size = (uint16_t)(regs ? regs : (unsigned)(d[1] % 9)), /* 0: a bad size */
            .offset = d[2] % 64u,
            .sf_mode = (uint8_t)(d[3] % 4), /* 3: a bad mode */
        };
        /* constants -12..11 and indexes 0..17: some out of bounds on purpose */
        if (pts[i].sf_mode == MD_SS_SF_CONST)
            pts[i].sf = (int32_t)(d[3] / 4 % 24) - 12;
        else
            pts[i].sf = (int32_t)(d[3] / 4 % 18);
    }
    check_encode(data + HEADER + npts * POINT_BYTES);

    size_t bad;
    if (md_ss_check_layout(pts, npts, &bad) < 0) {
        CHECK(bad < npts);
        return 0;
    }
    for (size_t i = 0; i < npts; i++) {
        CHECK(md_ss_check_size(pts[i].type, pts[i].size) == 0);
        if (pts[i].sf_mode == MD_SS_SF_POINT)
            CHECK((size_t)pts[i].sf < npts && pts[i].type != MD_SS_STRING &&
                  pts[pts[i].sf].type == MD_SS_SUNSSF);
        if (pts[i].sf_mode == MD_SS_SF_CONST)
            CHECK(pts[i].sf >= -10 && pts[i].sf <= 10);
    }
    size_t nbytes = (size - head) & ~(size_t)1;
    uint8_t *block = malloc(nbytes ? nbytes : 1);
    if (!block)
        return 0;
    memcpy(block, data + head, nbytes);
    for (size_t i = 0; i < npts; i++)
        check_point(pts, i, block, first, nbytes / 2);
    free(block);
    return 0;
}
