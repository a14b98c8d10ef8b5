/*
 * test_sscodec.c - cmocka driver for core/sscodec.c, the SunSpec point codec.
 *
 * What is checked: the type table (names, registers, sizes); decoding of
 * every type at its edge values and at its not-implemented value; that
 * encode refuses each type's n/i value and the first value beyond each end
 * of its range, and that every accepted value decodes back to itself;
 * sentinels; text types (strings, IPv4/IPv6, EUI-48) both ways; scaling and
 * reverse scaling with rounding; layouts: checks, scale factors from a
 * constant or from a sunssf point of the same block, unusable scale factors,
 * and points beyond the end of a short block, with the block at the very
 * end of a heap buffer so that ASan or valgrind sees any read past it.
 *
 * Build and run (links core/sscodec.c and core/mbcodec.c):
 *   cc -std=c11 -D_GNU_SOURCE -Icore tests/c/test_sscodec.c core/sscodec.c \
 *      core/mbcodec.c $(pkg-config --cflags --libs cmocka) -lm -o /tmp/t && /tmp/t
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sscodec.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* {===== helpers ===== */

static struct md_ss_value decode(int type, unsigned size, const uint8_t *p)
{
    struct md_ss_value v;
    md_ss_decode(type, size, p, &v);
    return v;
}

static void assert_int_value(const struct md_ss_value *v, int64_t want)
{
    assert_int_equal(v->kind, MD_SS_V_INT);
    assert_true(v->v.i == want);
}

/* Encode v as an integer type and decode it back to the same value. */
static void round_trip_int(int type, int64_t v)
{
    uint8_t buf[8] = {0};
    assert_int_equal(md_ss_encode_int(type, 0, v, buf), 0);
    struct md_ss_value got = decode(type, md_ss_type_regs(type), buf);
    assert_int_value(&got, v);
}

/* }===== */

static void type_table(void **state)
{
    (void)state;
    for (int t = 0; t < MD_SS_TYPE_COUNT; t++) {
        const char *name = md_ss_type_name(t);
        assert_non_null(name);
        assert_int_equal(md_ss_type_from_name(name), t);
    }
    assert_int_equal(md_ss_type_from_name("int17"), MD_SS_ETYPE);
    assert_int_equal(md_ss_type_from_name("INT16"), MD_SS_ETYPE); /* exact names */
    assert_null(md_ss_type_name(MD_SS_TYPE_COUNT));
    assert_null(md_ss_type_name(-1));
    assert_int_equal(md_ss_type_regs(MD_SS_INT16), 1);
    assert_int_equal(md_ss_type_regs(MD_SS_ACC32), 2);
    assert_int_equal(md_ss_type_regs(MD_SS_EUI48), 4);
    assert_int_equal(md_ss_type_regs(MD_SS_IPV6ADDR), 8);
    assert_int_equal(md_ss_type_regs(MD_SS_STRING), 0);
    assert_int_equal(md_ss_check_size(MD_SS_UINT32, 2), 0);
    assert_int_equal(md_ss_check_size(MD_SS_UINT32, 1), MD_SS_ESIZE);
    assert_int_equal(md_ss_check_size(MD_SS_STRING, 0), MD_SS_ESIZE);
    assert_int_equal(md_ss_check_size(MD_SS_STRING, 32767), 0);
    assert_int_equal(md_ss_check_size(MD_SS_STRING, 32768), MD_SS_ESIZE);
    assert_int_equal(md_ss_check_size(99, 1), MD_SS_ETYPE);
    assert_string_equal(md_strerror(MD_SS_ERANGE), "value out of range for its type");
    assert_string_equal(md_err_token(MD_SS_ERANGE), "range");
}

/* Every integer type: n/i value, both ends of the range, one past each. */
static void integer_edges(void **state)
{
    (void)state;
    static const struct {
        int type;
        uint64_t none; /* raw bits of the n/i value */
        int has_none;
    } cases[] = {
        {MD_SS_INT16, 0x8000, 1},
        {MD_SS_UINT16, 0xFFFF, 1},
        {MD_SS_COUNT, 0xFFFF, 1},
        {MD_SS_ACC16, 0, 1},
        {MD_SS_ENUM16, 0xFFFF, 1},
        {MD_SS_BITFIELD16, 0xFFFF, 1},
        {MD_SS_SUNSSF, 0x8000, 1},
        {MD_SS_PAD, 0, 0},
        {MD_SS_RAW16, 0, 0},
        {MD_SS_INT32, 0x80000000, 1},
        {MD_SS_UINT32, 0xFFFFFFFF, 1},
        {MD_SS_ACC32, 0, 1},
        {MD_SS_ENUM32, 0xFFFFFFFF, 1},
        {MD_SS_BITFIELD32, 0xFFFFFFFF, 1},
        {MD_SS_INT64, UINT64_C(1) << 63, 1},
        {MD_SS_UINT64, UINT64_MAX, 1},
        {MD_SS_ACC64, 0, 1},
        {MD_SS_BITFIELD64, UINT64_MAX, 1},
    };
    for (size_t i = 0; i < N(cases); i++) {
        int t = cases[i].type;
        unsigned regs = md_ss_type_regs(t);
        uint8_t buf[8];
        int64_t min;
        uint64_t max;
        assert_int_equal(md_ss_int_range(t, &min, &max), 0);
        /* the n/i value decodes as a hole, and encode refuses it */
        memset(buf, 0, sizeof buf);
        for (unsigned b = 0; b < 2 * regs; b++)
            buf[b] = (uint8_t)(cases[i].none >> (8 * (2 * regs - 1 - b)));
        struct md_ss_value v = decode(t, regs, buf);
        if (cases[i].has_none) {
            assert_int_equal(v.kind, MD_SS_V_NONE);
            char text[32];
            assert_int_equal(md_ss_none_text(t, text, sizeof text), 0);
        } else {
            assert_int_not_equal(v.kind, MD_SS_V_NONE);
        }
        /* both ends of the range round-trip */
        round_trip_int(t, min);
        if (max <= INT64_MAX) {
            round_trip_int(t, (int64_t)max);
            if (max < INT64_MAX)
                assert_int_equal(md_ss_encode_int(t, 0, (int64_t)max + 1, buf),
                                 MD_SS_ERANGE);
        } else {
            assert_int_equal(md_ss_encode_uint(t, 0, max, buf), 0);
            v = decode(t, regs, buf);
            assert_int_equal(v.kind, MD_SS_V_UINT);
            assert_true(v.v.u == max);
            if (max < UINT64_MAX)
                assert_int_equal(md_ss_encode_uint(t, 0, max + 1, buf), MD_SS_ERANGE);
        }
        if (min > INT64_MIN)
            assert_int_equal(md_ss_encode_int(t, 0, min - 1, buf), MD_SS_ERANGE);
    }
}

static void integer_values(void **state)
{
    (void)state;
    const uint8_t m1[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE};
    struct md_ss_value v = decode(MD_SS_INT16, 1, m1);
    assert_int_value(&v, -1);
    v = decode(MD_SS_INT32, 2, m1);
    assert_int_value(&v, -1);
    v = decode(MD_SS_INT64, 4, m1);
    assert_int_value(&v, -2);
    v = decode(MD_SS_UINT32, 2, m1 + 4);
    assert_int_value(&v, 0xFFFFFFFE); /* no sign */
    v = decode(MD_SS_SUNSSF, 1, (const uint8_t[]){0xFF, 0xFE});
    assert_int_value(&v, -2);
    v = decode(MD_SS_ACC32, 2, (const uint8_t[]){0x00, 0x12, 0xD6, 0x87});
    assert_int_value(&v, 1234567);
    v = decode(MD_SS_PAD, 1, (const uint8_t[]){0x80, 0x00});
    assert_int_value(&v, 0x8000); /* pad has no n/i value */
    uint8_t out[8];
    assert_int_equal(md_ss_encode_int(MD_SS_INT32, 2, -2, out), 0);
    assert_memory_equal(out, ((const uint8_t[]){0xFF, 0xFF, 0xFF, 0xFE}), 4);
    /* signed types take no uint; the wrong function is a type error */
    assert_int_equal(md_ss_encode_uint(MD_SS_INT16, 1, 1, out), MD_SS_ETYPE);
    assert_int_equal(md_ss_encode_int(MD_SS_FLOAT32, 2, 1, out), MD_SS_ETYPE);
    assert_int_equal(md_ss_encode_uint(MD_SS_ACC64, 4, 0, out), MD_SS_ERANGE);
    /* out is untouched on failure */
    memset(out, 0xAA, sizeof out);
    assert_int_equal(md_ss_encode_int(MD_SS_UINT16, 1, 65535, out), MD_SS_ERANGE);
    assert_int_equal(out[0], 0xAA);
}

static void floats(void **state)
{
    (void)state;
    struct md_ss_value v =
        decode(MD_SS_FLOAT32, 2, (const uint8_t[]){0x3F, 0x59, 0x0F, 0x86});
    assert_int_equal(v.kind, MD_SS_V_FLOAT);
    assert_true(v.v.f == 0.8478931188583374);
    v = decode(MD_SS_FLOAT32, 2, (const uint8_t[]){0x7F, 0xC0, 0, 0});
    assert_int_equal(v.kind, MD_SS_V_NONE);
    v = decode(MD_SS_FLOAT32, 2, (const uint8_t[]){0xFF, 0x80, 0, 1}); /* another NaN */
    assert_int_equal(v.kind, MD_SS_V_NONE);
    v = decode(MD_SS_FLOAT32, 2, (const uint8_t[]){0xFF, 0x80, 0, 0});
    assert_int_equal(v.kind, MD_SS_V_FLOAT);
    assert_true(isinf(v.v.f) && v.v.f < 0);
    v = decode(MD_SS_FLOAT64, 4, (const uint8_t[]){0x40, 0x0E, 0, 0, 0, 0, 0, 0});
    assert_true(v.v.f == 3.75);
    v = decode(MD_SS_FLOAT64, 4, (const uint8_t[]){0x7F, 0xF8, 0, 0, 0, 0, 0, 0});
    assert_int_equal(v.kind, MD_SS_V_NONE);

    uint8_t out[8];
    assert_int_equal(md_ss_encode_float(MD_SS_FLOAT32, 2, 0.5, out), 0);
    assert_memory_equal(out, ((const uint8_t[]){0x3F, 0x00, 0x00, 0x00}), 4);
    assert_int_equal(md_ss_encode_float(MD_SS_FLOAT32, 2, NAN, out), MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_float(MD_SS_FLOAT32, 2, 1e39, out), MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_float(MD_SS_FLOAT32, 2, INFINITY, out), 0);
    assert_int_equal(md_ss_encode_float(MD_SS_FLOAT64, 4, NAN, out), MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_float(MD_SS_FLOAT64, 4, -0.0, out), 0);
    v = decode(MD_SS_FLOAT64, 4, out);
    assert_true(v.v.f == 0 && signbit(v.v.f));
    assert_int_equal(md_ss_encode_float(MD_SS_UINT16, 1, 1.0, out), MD_SS_ETYPE);
    assert_int_equal(md_ss_encode_float(MD_SS_UINT16, 1, NAN, out), MD_SS_ETYPE);
}

static void strings(void **state)
{
    (void)state;
    const uint8_t s1[] = "SunSpec\0\0\0xyz\0\0\0";
    struct md_ss_value v = decode(MD_SS_STRING, 8, s1);
    assert_int_equal(v.kind, MD_SS_V_TEXT);
    assert_int_equal(v.len, 7);
    assert_memory_equal(v.text, "SunSpec", 7);
    assert_ptr_equal(v.text, s1); /* no copy */
    v = decode(MD_SS_STRING, 2, (const uint8_t *)"ab  ");
    assert_int_equal(v.len, 2);
    v = decode(MD_SS_STRING, 2, (const uint8_t *)"abcd"); /* no NUL at all */
    assert_int_equal(v.len, 4);
    v = decode(MD_SS_STRING, 2, (const uint8_t *)"\0bcd");
    assert_int_equal(v.kind, MD_SS_V_NONE);
    v = decode(MD_SS_STRING, 1, (const uint8_t *)"  ");
    assert_int_equal(v.kind, MD_SS_V_TEXT); /* blank but implemented */
    assert_int_equal(v.len, 0);

    uint8_t out[8];
    memset(out, 0xAA, sizeof out);
    assert_int_equal(md_ss_encode_text(MD_SS_STRING, 4, "SN-1", 4, out), 0);
    assert_memory_equal(out, "SN-1\0\0\0\0", 8);
    assert_int_equal(md_ss_encode_text(MD_SS_STRING, 2, "abcd", 4, out), 0);
    assert_int_equal(md_ss_encode_text(MD_SS_STRING, 2, "abcde", 5, out), MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_text(MD_SS_STRING, 2, "", 0, out), MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_text(MD_SS_STRING, 2, "\0a", 2, out), MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_text(MD_SS_UINT16, 1, "1", 1, out), MD_SS_ETYPE);
}

static void addresses(void **state)
{
    (void)state;
    struct md_ss_value v = decode(MD_SS_IPADDR, 2, (const uint8_t[]){192, 168, 1, 20});
    assert_int_equal(v.kind, MD_SS_V_TEXT);
    assert_string_equal(v.text, "192.168.1.20");
    v = decode(MD_SS_IPADDR, 2, (const uint8_t[]){0, 0, 0, 0});
    assert_int_equal(v.kind, MD_SS_V_NONE);
    v = decode(MD_SS_EUI48, 4,
               (const uint8_t[]){0, 0, 0x00, 0x1B, 0x63, 0xAA, 0xBB, 0xCC});
    assert_string_equal(v.text, "00:1b:63:aa:bb:cc");
    v = decode(MD_SS_EUI48, 4,
               (const uint8_t[]){0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});
    assert_int_equal(v.kind, MD_SS_V_NONE);
    const uint8_t v6[16] = {0x20, 0x01, 0x0D, 0xB8, [15] = 1};
    v = decode(MD_SS_IPV6ADDR, 8, v6);
    assert_string_equal(v.text, "2001:db8::1");
    assert_int_equal(v.len, 11);
    v = decode(MD_SS_IPV6ADDR, 8, (const uint8_t[16]){0});
    assert_int_equal(v.kind, MD_SS_V_NONE);

    uint8_t out[16];
    assert_int_equal(md_ss_encode_text(MD_SS_IPADDR, 2, "10.0.0.1", 8, out), 0);
    assert_memory_equal(out, ((const uint8_t[]){10, 0, 0, 1}), 4);
    assert_int_equal(md_ss_encode_text(MD_SS_IPADDR, 2, "0.0.0.0", 7, out), MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_text(MD_SS_IPADDR, 2, "10.0.0.1x", 9, out),
                     MD_SS_ESYNTAX);
    assert_int_equal(md_ss_encode_text(MD_SS_IPADDR, 2, "10.0.0.1", 4, out),
                     MD_SS_ESYNTAX);
    assert_int_equal(md_ss_encode_text(MD_SS_EUI48, 4, "00-1B-63-aa-bb-cc", 17, out), 0);
    assert_memory_equal(out,
                        ((const uint8_t[]){0, 0, 0x00, 0x1B, 0x63, 0xAA, 0xBB, 0xCC}), 8);
    assert_int_equal(md_ss_encode_text(MD_SS_EUI48, 4, "ff:ff:ff:ff:ff:ff", 17, out),
                     MD_SS_ERANGE);
    assert_int_equal(md_ss_encode_text(MD_SS_EUI48, 4, "00:1b:63:aa:bb:cg", 17, out),
                     MD_SS_ESYNTAX);
    assert_int_equal(md_ss_encode_text(MD_SS_EUI48, 4, "00:1b:63:aa:bb", 14, out),
                     MD_SS_ESYNTAX);
    assert_int_equal(md_ss_encode_text(MD_SS_IPV6ADDR, 8, "2001:db8::1", 11, out), 0);
    assert_memory_equal(out, v6, 16);
    assert_int_equal(md_ss_encode_text(MD_SS_IPV6ADDR, 8, "::", 2, out), MD_SS_ERANGE);
    char longtext[64];
    memset(longtext, '1', sizeof longtext);
    assert_int_equal(md_ss_encode_text(MD_SS_IPV6ADDR, 8, longtext, sizeof longtext, out),
                     MD_SS_ESYNTAX);
}

static void sentinels(void **state)
{
    (void)state;
    for (int t = 0; t < MD_SS_TYPE_COUNT; t++) {
        unsigned size = md_ss_type_regs(t) ? md_ss_type_regs(t) : 5;
        uint8_t buf[16];
        md_ss_sentinel(t, size, buf);
        struct md_ss_value v = decode(t, size, buf);
        if (t == MD_SS_PAD || t == MD_SS_RAW16)
            assert_int_equal(v.kind, MD_SS_V_INT);
        else
            assert_int_equal(v.kind, MD_SS_V_NONE);
    }
    uint8_t buf[8];
    md_ss_sentinel(MD_SS_FLOAT32, 2, buf);
    assert_memory_equal(buf, ((const uint8_t[]){0x7F, 0xC0, 0, 0}), 4);
    md_ss_sentinel(MD_SS_INT64, 4, buf);
    assert_memory_equal(buf, ((const uint8_t[]){0x80, 0, 0, 0, 0, 0, 0, 0}), 8);
    md_ss_sentinel(MD_SS_PAD, 1, buf);
    assert_memory_equal(buf, ((const uint8_t[]){0x80, 0}), 2);
    char text[32];
    assert_int_equal(md_ss_none_text(MD_SS_INT16, text, sizeof text), 0);
    assert_string_equal(text, "-32768");
    assert_int_equal(md_ss_none_text(MD_SS_UINT64, text, sizeof text), 0);
    assert_string_equal(text, "18446744073709551615");
    assert_int_equal(md_ss_none_text(MD_SS_PAD, text, sizeof text), MD_SS_ETYPE);
    assert_int_equal(md_ss_none_text(MD_SS_FLOAT32, text, sizeof text), MD_SS_ETYPE);
}

static void scaling(void **state)
{
    (void)state;
    assert_true(md_ss_scale(2401, -1) == 240.1);
    assert_true(md_ss_scale(30011, -2) == 300.11);
    assert_true(md_ss_scale(995, -3) == 0.995);
    assert_true(md_ss_scale(7, 3) == 7000);
    assert_true(md_ss_scale(1, -10) == 1e-10);
    double raw;
    assert_int_equal(md_ss_unscale(240.1, -1, &raw), 0);
    assert_true(raw == 2401);
    assert_int_equal(md_ss_unscale(-0.05, -1, &raw), 0);
    assert_true(raw == -1); /* half away from zero */
    assert_int_equal(md_ss_unscale(0.04, -1, &raw), 0);
    assert_true(raw == 0);
    assert_int_equal(md_ss_unscale(7049, 2, &raw), 0);
    assert_true(raw == 70);
    assert_int_equal(md_ss_unscale(NAN, 0, &raw), MD_SS_ERANGE);
    assert_int_equal(md_ss_unscale(1e30, 0, &raw), MD_SS_ERANGE);
    assert_int_equal(md_ss_unscale(INFINITY, 0, &raw), MD_SS_ERANGE);
}

/* {===== layouts ===== */

/* Copy n bytes to the end of a heap buffer of exactly n bytes. */
static uint8_t *at_heap_end(const uint8_t *bytes, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, bytes, n);
    return p;
}

static void layout_checks(void **state)
{
    (void)state;
    size_t bad = 99;
    struct md_ss_point ok[] = {
        {.type = MD_SS_UINT16,
         .size = 1,
         .offset = 0,
         .sf_mode = MD_SS_SF_POINT,
         .sf = 1},
        {.type = MD_SS_SUNSSF, .size = 1, .offset = 1},
        {.type = MD_SS_STRING, .size = 8, .offset = 2},
        {.type = MD_SS_FLOAT32,
         .size = 2,
         .offset = 10,
         .sf_mode = MD_SS_SF_CONST,
         .sf = -10},
    };
    assert_int_equal(md_ss_check_layout(ok, N(ok), &bad), 0);
    struct md_ss_point p = ok[0];
    p.sf = 0; /* itself: not a sunssf */
    assert_int_equal(md_ss_check_layout(&p, 1, &bad), MD_SS_ESF);
    assert_int_equal(bad, 0);
    p.sf = 5; /* beyond the layout */
    assert_int_equal(md_ss_check_layout(&p, 1, &bad), MD_SS_ESF);
    p = ok[3];
    p.sf = 11;
    assert_int_equal(md_ss_check_layout(&p, 1, &bad), MD_SS_ESF);
    p = ok[2];
    p.sf_mode = MD_SS_SF_CONST;
    assert_int_equal(md_ss_check_layout(&p, 1, &bad), MD_SS_ETYPE);
    p = ok[1];
    p.size = 2;
    assert_int_equal(md_ss_check_layout(&p, 1, &bad), MD_SS_ESIZE);
    p.type = MD_SS_TYPE_COUNT;
    assert_int_equal(md_ss_check_layout(&p, 1, &bad), MD_SS_ETYPE);
    p = ok[1];
    p.sf_mode = 7;
    assert_int_equal(md_ss_check_layout(&p, 1, &bad), MD_SS_ESF);
}

static void layout_decode(void **state)
{
    (void)state;
    /* W int16 @0 (sf W_SF), W_SF @1, Hz uint16 @2 (sf -2), WH acc32 @3 (sf WH_SF @5),
     * SN string[2] @6 */
    const struct md_ss_point pts[] = {
        {.type = MD_SS_INT16, .size = 1, .offset = 0, .sf_mode = MD_SS_SF_POINT, .sf = 1},
        {.type = MD_SS_SUNSSF, .size = 1, .offset = 1},
        {.type = MD_SS_UINT16,
         .size = 1,
         .offset = 2,
         .sf_mode = MD_SS_SF_CONST,
         .sf = -2},
        {.type = MD_SS_ACC32, .size = 2, .offset = 3, .sf_mode = MD_SS_SF_POINT, .sf = 4},
        {.type = MD_SS_SUNSSF, .size = 1, .offset = 5},
        {.type = MD_SS_STRING, .size = 2, .offset = 6},
    };
    size_t bad;
    assert_int_equal(md_ss_check_layout(pts, N(pts), &bad), 0);
    const uint8_t block[] = {0x0B, 0x9A, 0xFF, 0xFF, 0x17, 0x6F, 0x00, 0x12,
                             0xD6, 0x87, 0x00, 0x01, 'a',  'b',  0,    0};
    struct md_ss_value v;
    uint8_t *heap = at_heap_end(block, sizeof block);
    assert_int_equal(md_ss_decode_point(pts, 0, heap, 0, 8, &v), MD_SS_VALUE);
    assert_int_equal(v.kind, MD_SS_V_FLOAT);
    assert_true(v.v.f == 297.0);
    assert_int_equal(md_ss_decode_point(pts, 2, heap, 0, 8, &v), MD_SS_VALUE);
    assert_true(v.v.f == 59.99);
    assert_int_equal(md_ss_decode_point(pts, 3, heap, 0, 8, &v), MD_SS_VALUE);
    assert_true(v.v.f == 12345670.0);
    assert_int_equal(md_ss_decode_point(pts, 5, heap, 0, 8, &v), MD_SS_VALUE);
    assert_int_equal(v.len, 2);
    /* every shorter block: points past its end are outside, never read */
    for (size_t n = 0; n <= 8; n++) {
        uint8_t *cut = at_heap_end(block, 2 * n);
        for (size_t i = 0; i < N(pts); i++) {
            enum md_ss_status st = md_ss_decode_point(pts, i, cut, 0, n, &v);
            int by_point = pts[i].sf_mode == MD_SS_SF_POINT;
            const struct md_ss_point *sf = by_point ? &pts[pts[i].sf] : NULL;
            if (pts[i].offset + pts[i].size > n)
                assert_int_equal(st, MD_SS_OUTSIDE);
            else if (by_point && sf->offset + sf->size > n)
                assert_int_equal(st, MD_SS_BAD_SF); /* the value there, its SF not */
            else
                assert_int_equal(st, MD_SS_VALUE);
        }
        free(cut);
    }
    /* a block that starts at register 3 of the model */
    assert_int_equal(md_ss_decode_point(pts, 3, heap + 6, 3, 5, &v), MD_SS_VALUE);
    assert_int_equal(md_ss_decode_point(pts, 0, heap + 6, 3, 5, &v), MD_SS_OUTSIDE);
    assert_int_equal(md_ss_decode_point(pts, 0, heap, 100, 0, &v), MD_SS_OUTSIDE);
    free(heap);
}

static void layout_bad_sf(void **state)
{
    (void)state;
    const struct md_ss_point pts[] = {
        {.type = MD_SS_INT16, .size = 1, .offset = 0, .sf_mode = MD_SS_SF_POINT, .sf = 1},
        {.type = MD_SS_SUNSSF, .size = 1, .offset = 1},
    };
    struct md_ss_value v;
    uint8_t block[4] = {0, 5, 0x80, 0x00}; /* SF not implemented */
    assert_int_equal(md_ss_decode_point(pts, 0, block, 0, 2, &v), MD_SS_BAD_SF);
    assert_int_equal(md_ss_decode_point(pts, 1, block, 0, 2, &v), MD_SS_NOT_IMPL);
    block[2] = 0;
    block[3] = 11; /* out of -10..10 */
    assert_int_equal(md_ss_decode_point(pts, 0, block, 0, 2, &v), MD_SS_BAD_SF);
    block[2] = 0xFF;
    block[3] = 0xF6; /* -10 */
    assert_int_equal(md_ss_decode_point(pts, 0, block, 0, 2, &v), MD_SS_VALUE);
    assert_true(v.v.f == 5e-10);
    block[0] = 0x80;
    block[1] = 0; /* the value n/i: that wins over the SF */
    block[3] = 11;
    assert_int_equal(md_ss_decode_point(pts, 0, block, 0, 2, &v), MD_SS_NOT_IMPL);
    block[0] = 0;
    block[2] = 0;
    block[3] = 0; /* sf 0: the raw integer */
    assert_int_equal(md_ss_decode_point(pts, 0, block, 0, 2, &v), MD_SS_VALUE);
    assert_int_value(&v, 0);
}

/* }===== */

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(type_table),     cmocka_unit_test(integer_edges),
        cmocka_unit_test(integer_values), cmocka_unit_test(floats),
        cmocka_unit_test(strings),        cmocka_unit_test(addresses),
        cmocka_unit_test(sentinels),      cmocka_unit_test(scaling),
        cmocka_unit_test(layout_checks),  cmocka_unit_test(layout_decode),
        cmocka_unit_test(layout_bad_sf),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
