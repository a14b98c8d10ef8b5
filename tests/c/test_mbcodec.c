/*
 * test_mbcodec.c - cmocka driver for core/mbcodec.c, the Modbus codec.
 *
 * What is checked: the CRC against published frames and against a bitwise
 * reference computed here; MBAP encode/decode and its limits; the length
 * rule of every supported function code in both directions, for every
 * prefix of a frame (0 until the header is in, then always the same
 * length) and for impossible frames; exception responses; FC 43/14
 * responses with several objects; typed values for every type x order,
 * incl. extreme values (INT64_MIN, UINT64_MAX, -0.0, inf, NaN, denormals),
 * against the vectors written in mbcodec.h; strings; bit fields and coil
 * packing; names and error texts.
 *
 * Design: the codec is pure, so tests need no fixtures; each builds its
 * frames on the stack. Frames are written out byte by byte as they travel,
 * so a failure can be compared with a capture by eye. Floats are compared
 * by bit pattern, which also covers -0.0 and NaN.
 *
 * Build and run (link with core/mbcodec.c only):
 *   cc -std=c11 -D_GNU_SOURCE -Icore tests/c/test_mbcodec.c core/mbcodec.c \
 *      $(pkg-config --cflags --libs cmocka) -o /tmp/t && /tmp/t
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mbcodec.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef int (*len_fn)(const uint8_t *, size_t);

/* {===== helpers ===== */

/* The CRC the slow way, straight from the definition, to check the table. */
static uint16_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)(crc >> 1 ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

/*
 * fn must return 0 for every prefix shorter than `need` bytes and `want`
 * for every prefix from `need` bytes up to the whole frame of n bytes.
 */
static void check_prefixes(len_fn fn, const uint8_t *frame, size_t n, size_t need,
                           int want)
{
    for (size_t have = 0; have <= n; have++) {
        int got = fn(frame, have);
        if (have < need)
            assert_int_equal(got, 0);
        else
            assert_int_equal(got, want);
    }
}

/* A complete RTU frame: the length rule gives exactly n and the CRC holds. */
static void check_rtu(len_fn fn, const uint8_t *frame, size_t n, size_t need)
{
    check_prefixes(fn, frame, n, need, (int)n);
    assert_int_equal(md_mb_rtu_check_crc(frame, n), 0);
}

static uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static uint32_t bits_of_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* }===== */

/* {===== CRC and MBAP ===== */

static void crc_known_frames(void **state)
{
    (void)state;
    /* Read 10 holding registers from unit 1: CRC 0xCDC5, sent C5 CD. */
    uint8_t req[8] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A};
    assert_int_equal(md_mb_crc16(req, 6), 0xCDC5);
    assert_int_equal(md_mb_rtu_put_crc(req, 6), 8);
    static const uint8_t wire[8] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
    assert_memory_equal(req, wire, 8);

    /* The example of the Modbus serial line spec: 11 03 00 6B 00 03 76 87. */
    static const uint8_t spec[] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03};
    assert_int_equal(md_mb_crc16(spec, sizeof spec), 0x8776);

    /* 01 03 00 00 00 01 84 0A, the usual one-register probe. */
    static const uint8_t one[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x01};
    assert_int_equal(md_mb_crc16(one, sizeof one), 0x0A84);

    /* The CRC catalogue's check value for CRC-16/MODBUS. */
    assert_int_equal(md_mb_crc16((const uint8_t *)"123456789", 9), 0x4B37);
    assert_int_equal(md_mb_crc16(NULL, 0), 0xFFFF);
}

static void crc_table_matches_bitwise(void **state)
{
    (void)state;
    uint8_t buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t n = 0; n <= sizeof buf; n += 7)
        assert_int_equal(md_mb_crc16(buf, n), crc_bitwise(buf, n));
    for (unsigned b = 0; b < 256; b++) {
        uint8_t one = (uint8_t)b;
        assert_int_equal(md_mb_crc16(&one, 1), crc_bitwise(&one, 1));
    }
}

static void crc_check_frame(void **state)
{
    (void)state;
    uint8_t f[8] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
    assert_int_equal(md_mb_rtu_check_crc(f, 8), 0);
    for (size_t i = 0; i < 8; i++) {
        f[i] ^= 0x10;
        assert_int_equal(md_mb_rtu_check_crc(f, 8), MD_MB_ECRC);
        f[i] ^= 0x10;
    }
    /* CRC bytes swapped: high byte first is the classic mistake */
    uint8_t swapped[8] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xCD, 0xC5};
    assert_int_equal(md_mb_rtu_check_crc(swapped, 8), MD_MB_ECRC);
    assert_int_equal(md_mb_rtu_check_crc(f, 3), MD_MB_ESHORT);
    assert_int_equal(md_mb_rtu_check_crc(f, 0), MD_MB_ESHORT);
}

static void mbap_round_trip(void **state)
{
    (void)state;
    uint8_t h[7];
    assert_int_equal(md_mb_mbap_encode(h, 0x1234, 6, 0xFF), 0);
    static const uint8_t want[7] = {0x12, 0x34, 0x00, 0x00, 0x00, 0x07, 0xFF};
    assert_memory_equal(h, want, 7);

    struct md_mb_mbap m;
    assert_int_equal(md_mb_mbap_decode(h, &m), 0);
    assert_int_equal(m.tid, 0x1234);
    assert_int_equal(m.pdu_len, 6);
    assert_int_equal(m.unit, 0xFF);

    /* length field limits: 2 (unit + FC) and 254 (unit + 253) */
    assert_int_equal(md_mb_mbap_encode(h, 1, 1, 1), 0);
    assert_int_equal(md_mb_mbap_decode(h, &m), 0);
    assert_int_equal(m.pdu_len, 1);
    assert_int_equal(md_mb_mbap_encode(h, 0xFFFF, 253, 0), 0);
    assert_int_equal(md_mb_mbap_decode(h, &m), 0);
    assert_int_equal(m.pdu_len, 253);
    assert_int_equal(m.tid, 0xFFFF);
    assert_int_equal(md_mb_mbap_encode(h, 1, 0, 1), MD_MB_ELENGTH);
    assert_int_equal(md_mb_mbap_encode(h, 1, 254, 1), MD_MB_ELENGTH);
}

static void mbap_rejects(void **state)
{
    (void)state;
    struct md_mb_mbap m = {0};
    static const uint8_t proto[7] = {0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x01};
    assert_int_equal(md_mb_mbap_decode(proto, &m), MD_MB_EPROTO);
    static const uint8_t proto_lo[7] = {0x00, 0x01, 0x80, 0x00, 0x00, 0x06, 0x01};
    assert_int_equal(md_mb_mbap_decode(proto_lo, &m), MD_MB_EPROTO);
    static const uint8_t len0[7] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01};
    assert_int_equal(md_mb_mbap_decode(len0, &m), MD_MB_ELENGTH);
    static const uint8_t len1[7] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x01};
    assert_int_equal(md_mb_mbap_decode(len1, &m), MD_MB_ELENGTH);
    static const uint8_t len255[7] = {0x00, 0x01, 0x00, 0x00, 0x00, 0xFF, 0x01};
    assert_int_equal(md_mb_mbap_decode(len255, &m), MD_MB_ELENGTH);
    static const uint8_t big[7] = {0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01};
    assert_int_equal(md_mb_mbap_decode(big, &m), MD_MB_ELENGTH);
    static const uint8_t ok254[7] = {0x00, 0x01, 0x00, 0x00, 0x00, 0xFE, 0x01};
    assert_int_equal(md_mb_mbap_decode(ok254, &m), 0);
    assert_int_equal(m.pdu_len, 253);
}

/* }===== */

/* {===== request lengths ===== */

static void request_fixed_lengths(void **state)
{
    (void)state;
    /* FC 1-6: address + quantity or value */
    for (uint8_t fc = 1; fc <= 6; fc++) {
        uint8_t f[8] = {0x11, fc, 0x00, 0x13, 0x00, 0x25};
        if (fc == 5)
            md_mb_put_u16(f + 4, 0xFF00);
        md_mb_rtu_put_crc(f, 6);
        check_rtu(md_mb_rtu_request_len, f, 8, 2);
        check_prefixes(md_mb_pdu_request_len, f + 1, 5, 1, 5);
    }
    /* FC 22 mask write: address, AND mask, OR mask */
    uint8_t mask[10] = {0x01, 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25};
    md_mb_rtu_put_crc(mask, 8);
    check_rtu(md_mb_rtu_request_len, mask, 10, 2);
    check_prefixes(md_mb_pdu_request_len, mask + 1, 7, 1, 7);
    /* FC 17 report server id: the function code alone */
    uint8_t id[4] = {0x01, 0x11};
    md_mb_rtu_put_crc(id, 2);
    check_rtu(md_mb_rtu_request_len, id, 4, 2);
    check_prefixes(md_mb_pdu_request_len, id + 1, 1, 1, 1);
    /* FC 43/14: MEI type, read code, object id; the MEI byte must be seen */
    uint8_t dev[7] = {0x01, 0x2B, 0x0E, 0x01, 0x00};
    md_mb_rtu_put_crc(dev, 5);
    check_rtu(md_mb_rtu_request_len, dev, 7, 3);
    check_prefixes(md_mb_pdu_request_len, dev + 1, 4, 2, 4);
}

static void request_counted_lengths(void **state)
{
    (void)state;
    /* FC 15: 10 coils from 0x13 in 2 bytes (spec example) */
    uint8_t coils[11] = {0x11, 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01};
    md_mb_rtu_put_crc(coils, 9);
    check_rtu(md_mb_rtu_request_len, coils, 11, 7);
    check_prefixes(md_mb_pdu_request_len, coils + 1, 8, 6, 8);

    /* FC 16: 2 registers, 4 bytes */
    uint8_t regs[13] = {0x11, 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02};
    md_mb_rtu_put_crc(regs, 11);
    check_rtu(md_mb_rtu_request_len, regs, 13, 7);
    check_prefixes(md_mb_pdu_request_len, regs + 1, 10, 6, 10);

    /* FC 23: read 6 from 3, write 3 at 0x0E with 6 bytes */
    uint8_t rw[19] = {0x11, 0x17, 0x00, 0x03, 0x00, 0x06, 0x00, 0x0E, 0x00,
                      0x03, 0x06, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF};
    md_mb_rtu_put_crc(rw, 17);
    check_rtu(md_mb_rtu_request_len, rw, 19, 11);
    check_prefixes(md_mb_pdu_request_len, rw + 1, 16, 10, 16);

    /* the largest legal writes: 123 registers, 1968 coils */
    uint8_t big[256] = {0x01, 0x10, 0x00, 0x00, 0x00, 123, 246};
    assert_int_equal(md_mb_rtu_request_len(big, 7), 1 + 6 + 246 + 2);
    uint8_t many[256] = {0x01, 0x0F, 0x00, 0x00, 0x07, 0xB0, 246};
    assert_int_equal(md_mb_rtu_request_len(many, 7), 1 + 6 + 246 + 2);
    /* quantity 0 frames (the server answers exception 03) */
    static const uint8_t zero[] = {0x10, 0x00, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(md_mb_pdu_request_len(zero, sizeof zero), 6);
}

static void request_impossible(void **state)
{
    (void)state;
    /* unknown function codes, incl. 0, diagnostics (8) and exception-looking */
    static const uint8_t fcs[] = {0x00, 0x07, 0x08, 0x0B, 0x0C, 0x14, 0x18,
                                  0x2A, 0x2C, 0x7F, 0x80, 0x83, 0xFF};
    for (size_t i = 0; i < N(fcs); i++) {
        uint8_t f[2] = {0x01, fcs[i]};
        assert_int_equal(md_mb_rtu_request_len(f, 2), MD_MB_EFUNC);
        assert_int_equal(md_mb_pdu_request_len(f + 1, 1), MD_MB_EFUNC);
    }
    /* byte count does not match the quantity */
    static const uint8_t fc15[] = {0x0F, 0x00, 0x00, 0x00, 0x0A, 0x01};
    assert_int_equal(md_mb_pdu_request_len(fc15, sizeof fc15), MD_MB_ECOUNT);
    static const uint8_t fc15b[] = {0x0F, 0x00, 0x00, 0x00, 0x08, 0x02};
    assert_int_equal(md_mb_pdu_request_len(fc15b, sizeof fc15b), MD_MB_ECOUNT);
    static const uint8_t fc16[] = {0x10, 0x00, 0x00, 0x00, 0x02, 0x03};
    assert_int_equal(md_mb_pdu_request_len(fc16, sizeof fc16), MD_MB_ECOUNT);
    static const uint8_t fc16big[] = {0x10, 0x00, 0x00, 0x00, 0xC8, 0x90};
    assert_int_equal(md_mb_pdu_request_len(fc16big, sizeof fc16big), MD_MB_ECOUNT);
    static const uint8_t fc23[] = {0x17, 0, 0, 0, 1, 0, 0, 0x00, 0x02, 0x02};
    assert_int_equal(md_mb_pdu_request_len(fc23, sizeof fc23), MD_MB_ECOUNT);
    /* consistent but beyond 253 bytes: 124 registers */
    static const uint8_t fc16long[] = {0x10, 0x00, 0x00, 0x00, 124, 248};
    assert_int_equal(md_mb_pdu_request_len(fc16long, sizeof fc16long), MD_MB_ETOOLONG);
    uint8_t rtu16long[7] = {0x01, 0x10, 0x00, 0x00, 0x00, 124, 248};
    assert_int_equal(md_mb_rtu_request_len(rtu16long, 7), MD_MB_ETOOLONG);
    static const uint8_t fc23long[] = {0x17, 0, 0, 0, 1, 0, 0, 0, 122, 244};
    assert_int_equal(md_mb_pdu_request_len(fc23long, sizeof fc23long), MD_MB_ETOOLONG);
    /* FC 43 with another MEI type (13, CANopen) */
    static const uint8_t mei[] = {0x2B, 0x0D, 0x00};
    assert_int_equal(md_mb_pdu_request_len(mei, sizeof mei), MD_MB_EMEI);
}

/* }===== */

/* {===== response lengths ===== */

static void response_reads(void **state)
{
    (void)state;
    /* FC 3: 3 registers (spec example) */
    uint8_t r3[11] = {0x11, 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64};
    md_mb_rtu_put_crc(r3, 9);
    check_rtu(md_mb_rtu_response_len, r3, 11, 3);
    check_prefixes(md_mb_pdu_response_len, r3 + 1, 8, 2, 8);
    /* FC 4, FC 23 share the register rule */
    uint8_t r4[7] = {0x11, 0x04, 0x02, 0x00, 0x0A};
    md_mb_rtu_put_crc(r4, 5);
    check_rtu(md_mb_rtu_response_len, r4, 7, 3);
    uint8_t r23[9] = {0x11, 0x17, 0x04, 0x00, 0xFE, 0x0A, 0xCD};
    md_mb_rtu_put_crc(r23, 7);
    check_rtu(md_mb_rtu_response_len, r23, 9, 3);
    /* FC 1, FC 2: bytes of bits */
    uint8_t r1[8] = {0x11, 0x01, 0x03, 0xCD, 0x6B, 0x05};
    md_mb_rtu_put_crc(r1, 6);
    check_rtu(md_mb_rtu_response_len, r1, 8, 3);
    uint8_t r2[6] = {0x11, 0x02, 0x01, 0xAC};
    md_mb_rtu_put_crc(r2, 4);
    check_rtu(md_mb_rtu_response_len, r2, 6, 3);
    /* FC 17: byte count, server id, run indicator */
    uint8_t r17[9] = {0x11, 0x11, 0x04, 0x4D, 0x44, 0x31, 0xFF};
    md_mb_rtu_put_crc(r17, 7);
    check_rtu(md_mb_rtu_response_len, r17, 9, 3);
    /* the largest read: 125 registers, a 255-byte RTU frame */
    uint8_t big[3] = {0x01, 0x03, 250};
    assert_int_equal(md_mb_rtu_response_len(big, 3), 255);
    uint8_t bits[3] = {0x01, 0x01, 250};
    assert_int_equal(md_mb_rtu_response_len(bits, 3), 255);
    uint8_t id[3] = {0x01, 0x11, 251};
    assert_int_equal(md_mb_rtu_response_len(id, 3), 256);
}

static void response_writes(void **state)
{
    (void)state;
    static const uint8_t fcs[] = {0x05, 0x06, 0x0F, 0x10};
    for (size_t i = 0; i < N(fcs); i++) {
        uint8_t f[8] = {0x11, fcs[i], 0x00, 0x01, 0x00, 0x02};
        md_mb_rtu_put_crc(f, 6);
        check_rtu(md_mb_rtu_response_len, f, 8, 2);
        check_prefixes(md_mb_pdu_response_len, f + 1, 5, 1, 5);
    }
    uint8_t mask[10] = {0x01, 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25};
    md_mb_rtu_put_crc(mask, 8);
    check_rtu(md_mb_rtu_response_len, mask, 10, 2);
}

static void response_exceptions(void **state)
{
    (void)state;
    /* illegal data address for FC 3 */
    uint8_t ex[5] = {0x0A, 0x83, 0x02};
    md_mb_rtu_put_crc(ex, 3);
    check_rtu(md_mb_rtu_response_len, ex, 5, 2);
    check_prefixes(md_mb_pdu_response_len, ex + 1, 2, 1, 2);
    /* any function code may come back as an exception */
    for (unsigned fc = 0x81; fc <= 0xFF; fc++) {
        uint8_t f[2] = {0x01, (uint8_t)fc};
        assert_int_equal(md_mb_rtu_response_len(f, 2), 5);
    }
    /* 0x80 would be an exception to function code 0 */
    uint8_t bad[2] = {0x01, 0x80};
    assert_int_equal(md_mb_rtu_response_len(bad, 2), MD_MB_EFUNC);
    /* gateway target failed to respond, via FC 43 */
    uint8_t gw[5] = {0x01, 0xAB, 0x0B};
    md_mb_rtu_put_crc(gw, 3);
    check_rtu(md_mb_rtu_response_len, gw, 5, 2);
}

static void response_impossible(void **state)
{
    (void)state;
    static const uint8_t fcs[] = {0x00, 0x07, 0x08, 0x14, 0x18, 0x2A, 0x7F};
    for (size_t i = 0; i < N(fcs); i++) {
        uint8_t f[3] = {0x01, fcs[i], 0x02};
        assert_int_equal(md_mb_rtu_response_len(f, 3), MD_MB_EFUNC);
    }
    /* register reads: odd or zero byte count, or more than 125 registers */
    static const uint8_t reg_fcs[] = {0x03, 0x04, 0x17};
    static const uint8_t bad_counts[] = {0, 1, 3, 249, 251, 252, 254, 255};
    for (size_t i = 0; i < N(reg_fcs); i++)
        for (size_t j = 0; j < N(bad_counts); j++) {
            uint8_t f[2] = {reg_fcs[i], bad_counts[j]};
            assert_int_equal(md_mb_pdu_response_len(f, 2), MD_MB_ECOUNT);
        }
    /* bit reads: 1..250 bytes */
    static const uint8_t r1zero[2] = {0x01, 0};
    assert_int_equal(md_mb_pdu_response_len(r1zero, 2), MD_MB_ECOUNT);
    static const uint8_t r2big[2] = {0x02, 251};
    assert_int_equal(md_mb_pdu_response_len(r2big, 2), MD_MB_ECOUNT);
    static const uint8_t r17zero[2] = {0x11, 0};
    assert_int_equal(md_mb_pdu_response_len(r17zero, 2), MD_MB_ECOUNT);
    static const uint8_t r17big[2] = {0x11, 252};
    assert_int_equal(md_mb_pdu_response_len(r17big, 2), MD_MB_ECOUNT);
    /* FC 43 that is not MEI 14 */
    static const uint8_t mei[2] = {0x2B, 0x0D};
    assert_int_equal(md_mb_pdu_response_len(mei, 2), MD_MB_EMEI);
    /* nothing at all */
    assert_int_equal(md_mb_pdu_response_len(NULL, 0), 0);
    assert_int_equal(md_mb_rtu_response_len(NULL, 0), 0);
    assert_int_equal(md_mb_pdu_request_len(NULL, 0), 0);
    assert_int_equal(md_mb_rtu_request_len(NULL, 0), 0);
}

/* }===== */

/* {===== FC 43/14 ===== */

static void device_id_objects(void **state)
{
    (void)state;
    /* unit 1, basic identification, 3 objects: vendor, product code, revision */
    uint8_t f[] = {0x01, 0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 0x03, /* header, count 3 */
                   0x00, 0x07, 'm',  'o',  'o',  'n',  'd',  'o',  'g', /* 0 VendorName */
                   0x01, 0x03, 'M',  'D',  '1',             /* 1 ProductCode */
                   0x02, 0x05, '0',  '.',  '1',  '.',  '0', /* 2 Revision */
                   0x00, 0x00};
    size_t n = sizeof f;
    md_mb_rtu_put_crc(f, n - 2);
    assert_int_equal(md_mb_rtu_check_crc(f, n), 0);
    /* the length is known once the last object header (at byte 23) is in */
    size_t need = 1 + 7 + (2 + 7) + (2 + 3) + 2;
    check_rtu(md_mb_rtu_response_len, f, n, need);
    check_prefixes(md_mb_pdu_response_len, f + 1, n - 3, need - 1, (int)(n - 3));
    /* and not one byte earlier: the last object's length byte is missing */
    assert_int_equal(md_mb_rtu_response_len(f, need - 1), 0);
}

static void device_id_edges(void **state)
{
    (void)state;
    /* no objects: the 7-byte header alone */
    static const uint8_t empty[] = {0x2B, 0x0E, 0x04, 0x81, 0x00, 0x00, 0x00};
    check_prefixes(md_mb_pdu_response_len, empty, sizeof empty, 7, 7);
    /* more follows, next object id 3: framing does not care */
    static const uint8_t more[] = {0x2B, 0x0E, 0x02, 0x82, 0xFF, 0x03, 0x01, 0x03, 0x00};
    assert_int_equal(md_mb_pdu_response_len(more, sizeof more), 9);
    /* one object filling the PDU to exactly 253 bytes */
    uint8_t full[253] = {0x2B, 0x0E, 0x04, 0x83, 0x00, 0x00, 0x01, 0x80, 244};
    assert_int_equal(md_mb_pdu_response_len(full, 9), 253);
    full[8] = 245; /* one more byte is too long */
    assert_int_equal(md_mb_pdu_response_len(full, 9), MD_MB_ETOOLONG);
    /* two long objects: too long as soon as the first header is seen */
    static const uint8_t two[] = {0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 0x02, 0x00, 250};
    assert_int_equal(md_mb_pdu_response_len(two, sizeof two), MD_MB_ETOOLONG);
    /* 255 empty objects need 7 + 510 bytes: too long before all arrive */
    uint8_t many[253] = {0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 0xFF};
    assert_int_equal(md_mb_pdu_response_len(many, sizeof many), MD_MB_ETOOLONG);
    /* 123 empty objects: 7 + 246 = 253, exactly the maximum */
    many[6] = 123;
    assert_int_equal(md_mb_pdu_response_len(many, sizeof many), 253);
    many[6] = 124;
    assert_int_equal(md_mb_pdu_response_len(many, sizeof many), MD_MB_ETOOLONG);
}

/* Every prefix of a frame returns 0 or the final answer, never something
 * else: the contract transports rely on when bytes trickle in. */
static void lengths_are_stable(void **state)
{
    (void)state;
    uint8_t buf[300];
    uint32_t x = 99;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof buf; i++) {
            x = x * 1664525u + 1013904223u;
            buf[i] = (uint8_t)(x >> 24);
        }
        /* bias towards known function codes so that the rules get exercised */
        static const uint8_t fcs[] = {1, 2, 3, 4, 5, 6, 15, 16, 17, 22, 23, 43, 0x83};
        buf[1] = fcs[round % N(fcs)];
        if (round % 3 == 0)
            buf[2] = 0x0E;
        len_fn fns[] = {md_mb_rtu_request_len, md_mb_rtu_response_len};
        for (size_t k = 0; k < N(fns); k++) {
            int final = fns[k](buf, sizeof buf);
            assert_int_not_equal(final, 0);
            if (final > 0)
                assert_in_range(final, 4, MD_MB_MAX_RTU);
            for (size_t have = 0; have < sizeof buf; have++) {
                int got = fns[k](buf, have);
                if (got != 0)
                    assert_int_equal(got, final);
            }
        }
    }
}

/* }===== */

/* {===== typed values ===== */

/* The examples of mbcodec.h, word by word. */
static void order_vectors(void **state)
{
    (void)state;
    static const uint16_t want32[4][2] = {
        {0x1122, 0x3344}, {0x3344, 0x1122}, {0x2211, 0x4433}, {0x4433, 0x2211}};
    static const uint16_t want64[4][4] = {{0x0102, 0x0304, 0x0506, 0x0708},
                                          {0x0708, 0x0506, 0x0304, 0x0102},
                                          {0x0201, 0x0403, 0x0605, 0x0807},
                                          {0x0807, 0x0605, 0x0403, 0x0201}};
    static const uint16_t want16[4] = {0x1234, 0x1234, 0x3412, 0x3412};
    for (int o = 0; o < MD_MB_ORDER_COUNT; o++) {
        uint16_t r[4] = {0};
        assert_int_equal(md_mb_encode_uint(0x11223344, MD_MB_T_UINT32, o, r, 4), 0);
        assert_memory_equal(r, want32[o], sizeof want32[o]);
        assert_int_equal(md_mb_encode_uint(0x0102030405060708, MD_MB_T_UINT64, o, r, 4),
                         0);
        assert_memory_equal(r, want64[o], sizeof want64[o]);
        assert_int_equal(md_mb_encode_uint(0x1234, MD_MB_T_UINT16, o, r, 1), 0);
        assert_int_equal(r[0], want16[o]);

        uint64_t u = 0;
        assert_int_equal(md_mb_decode_uint(want32[o], 2, MD_MB_T_UINT32, o, &u), 0);
        assert_int_equal(u, 0x11223344);
        assert_int_equal(md_mb_decode_uint(want64[o], 4, MD_MB_T_UINT64, o, &u), 0);
        assert_int_equal(u, 0x0102030405060708);
        assert_int_equal(md_mb_decode_uint(&want16[o], 1, MD_MB_T_UINT16, o, &u), 0);
        assert_int_equal(u, 0x1234);
    }
}

static void float32_known(void **state)
{
    (void)state;
    /* 0.8479 as SunSpec and libmodbus' modbus_get_float_abcd see it */
    static const uint16_t regs[4][2] = {
        {0x3F59, 0x0F86}, {0x0F86, 0x3F59}, {0x593F, 0x860F}, {0x860F, 0x593F}};
    for (int o = 0; o < MD_MB_ORDER_COUNT; o++) {
        double d = 0;
        assert_int_equal(md_mb_decode_float(regs[o], 2, MD_MB_T_FLOAT32, o, &d), 0);
        assert_int_equal(bits_of_float((float)d), 0x3F590F86);
        assert_float_equal(d, 0.8478931188583374, 0);
    }
    /* 230.5 V is 0x43668000 */
    uint16_t r[2];
    assert_int_equal(md_mb_encode_float(230.5, MD_MB_T_FLOAT32, MD_MB_ABCD, r, 2), 0);
    assert_int_equal(r[0], 0x4366);
    assert_int_equal(r[1], 0x8000);
    /* float64 1.0 is 0x3FF0000000000000 */
    uint16_t r64[4];
    static const uint16_t one[4] = {0x3FF0, 0, 0, 0};
    assert_int_equal(md_mb_encode_float(1.0, MD_MB_T_FLOAT64, MD_MB_ABCD, r64, 4), 0);
    assert_memory_equal(r64, one, sizeof one);
}

static void int_round_trips(void **state)
{
    (void)state;
    static const struct {
        enum md_mb_type type;
        int64_t v;
    } cases[] = {
        {MD_MB_T_INT16, INT16_MIN},   {MD_MB_T_INT16, -1},
        {MD_MB_T_INT16, 0},           {MD_MB_T_INT16, INT16_MAX},
        {MD_MB_T_UINT16, 0},          {MD_MB_T_UINT16, UINT16_MAX},
        {MD_MB_T_UINT16, 0x8000},     {MD_MB_T_INT32, INT32_MIN},
        {MD_MB_T_INT32, -2},          {MD_MB_T_INT32, INT32_MAX},
        {MD_MB_T_INT32, 65536},       {MD_MB_T_UINT32, 0},
        {MD_MB_T_UINT32, UINT32_MAX}, {MD_MB_T_INT64, INT64_MIN},
        {MD_MB_T_INT64, -1},          {MD_MB_T_INT64, INT64_MAX},
        {MD_MB_T_INT64, 1},           {MD_MB_T_UINT64, 0},
        {MD_MB_T_UINT64, INT64_MAX},
    };
    for (size_t i = 0; i < N(cases); i++)
        for (int o = 0; o < MD_MB_ORDER_COUNT; o++) {
            uint16_t r[4] = {0};
            int64_t got = 0;
            assert_int_equal(md_mb_encode_int(cases[i].v, cases[i].type, o, r, 4), 0);
            assert_int_equal(md_mb_decode_int(r, 4, cases[i].type, o, &got), 0);
            assert_int_equal(got, cases[i].v);
        }
    /* the patterns behind the extremes */
    uint16_t r[4];
    static const uint16_t min64[4] = {0x8000, 0, 0, 0};
    assert_int_equal(md_mb_encode_int(INT64_MIN, MD_MB_T_INT64, MD_MB_ABCD, r, 4), 0);
    assert_memory_equal(r, min64, sizeof min64);
    static const uint16_t minus2[2] = {0xFFFE, 0xFFFF}; /* CDAB: low word first */
    assert_int_equal(md_mb_encode_int(-2, MD_MB_T_INT32, MD_MB_CDAB, r, 2), 0);
    assert_memory_equal(r, minus2, sizeof minus2);
}

static void uint64_extremes(void **state)
{
    (void)state;
    static const uint64_t cases[] = {
        0, 1, INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX, 0x8000000000000001};
    for (size_t i = 0; i < N(cases); i++)
        for (int o = 0; o < MD_MB_ORDER_COUNT; o++) {
            uint16_t r[4];
            uint64_t got = 0;
            assert_int_equal(md_mb_encode_uint(cases[i], MD_MB_T_UINT64, o, r, 4), 0);
            assert_int_equal(md_mb_decode_uint(r, 4, MD_MB_T_UINT64, o, &got), 0);
            assert_int_equal(got, cases[i]);
            int64_t s;
            int want = cases[i] > INT64_MAX ? MD_MB_ERANGE : 0;
            assert_int_equal(md_mb_decode_int(r, 4, MD_MB_T_UINT64, o, &s), want);
        }
    static const uint16_t ones[4] = {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF};
    uint64_t u;
    assert_int_equal(md_mb_decode_uint(ones, 4, MD_MB_T_UINT64, MD_MB_DCBA, &u), 0);
    assert_int_equal(u, UINT64_MAX);
    int64_t s;
    assert_int_equal(md_mb_decode_int(ones, 4, MD_MB_T_INT64, MD_MB_ABCD, &s), 0);
    assert_int_equal(s, -1);
    /* decode_uint of a negative signed value */
    assert_int_equal(md_mb_decode_uint(ones, 4, MD_MB_T_INT16, MD_MB_ABCD, &u),
                     MD_MB_ERANGE);
    assert_int_equal(md_mb_decode_uint(ones, 4, MD_MB_T_UINT16, MD_MB_ABCD, &u), 0);
    assert_int_equal(u, 0xFFFF);
}

static void float_round_trips(void **state)
{
    (void)state;
    static const double f32[] = {0.0,
                                 -0.0,
                                 1.0,
                                 -1.5,
                                 0.8478931188583374,
                                 FLT_MAX,
                                 -FLT_MAX,
                                 FLT_MIN,
                                 0x1p-149 /* smallest denormal */,
                                 0x1.fffffcp-127 /* largest denormal */,
                                 INFINITY,
                                 -INFINITY};
    static const double f64[] = {
        0.0,      -0.0,      1.0,     -1.5,      M_PI,
        DBL_MAX,  -DBL_MAX,  DBL_MIN, 0x1p-1074, 0x0.fffffffffffffp-1022,
        INFINITY, -INFINITY, 1e300};
    for (int o = 0; o < MD_MB_ORDER_COUNT; o++) {
        uint16_t r[4];
        double got;
        for (size_t i = 0; i < N(f32); i++) {
            assert_int_equal(md_mb_encode_float(f32[i], MD_MB_T_FLOAT32, o, r, 2), 0);
            assert_int_equal(md_mb_decode_float(r, 2, MD_MB_T_FLOAT32, o, &got), 0);
            assert_int_equal(bits_of(got), bits_of(f32[i]));
        }
        for (size_t i = 0; i < N(f64); i++) {
            assert_int_equal(md_mb_encode_float(f64[i], MD_MB_T_FLOAT64, o, r, 4), 0);
            assert_int_equal(md_mb_decode_float(r, 4, MD_MB_T_FLOAT64, o, &got), 0);
            assert_int_equal(bits_of(got), bits_of(f64[i]));
        }
        /* NaN stays NaN, with its payload in float64 */
        double nan64 = 0;
        uint64_t nan_bits = 0x7FF8000000000123;
        memcpy(&nan64, &nan_bits, sizeof nan64);
        assert_int_equal(md_mb_encode_float(nan64, MD_MB_T_FLOAT64, o, r, 4), 0);
        assert_int_equal(md_mb_decode_float(r, 4, MD_MB_T_FLOAT64, o, &got), 0);
        assert_int_equal(bits_of(got), nan_bits);
        assert_int_equal(md_mb_encode_float(NAN, MD_MB_T_FLOAT32, o, r, 2), 0);
        assert_int_equal(md_mb_decode_float(r, 2, MD_MB_T_FLOAT32, o, &got), 0);
        assert_true(isnan(got));
    }
    /* -0.0 keeps its sign bit on the wire */
    uint16_t r[2];
    assert_int_equal(md_mb_encode_float(-0.0, MD_MB_T_FLOAT32, MD_MB_ABCD, r, 2), 0);
    assert_int_equal(r[0], 0x8000);
    assert_int_equal(r[1], 0x0000);
    /* a NaN as devices send it for "no value": 0x7FC00000 */
    static const uint16_t qnan[2] = {0x7FC0, 0x0000};
    double d;
    assert_int_equal(md_mb_decode_float(qnan, 2, MD_MB_T_FLOAT32, MD_MB_ABCD, &d), 0);
    assert_true(isnan(d));
    /* a float64 denormal rounds to 0 as float32; FLT_MAX * 2 does not fit */
    assert_int_equal(md_mb_encode_float(0x1p-1074, MD_MB_T_FLOAT32, MD_MB_ABCD, r, 2), 0);
    assert_int_equal(r[0], 0);
    assert_int_equal(r[1], 0);
    assert_int_equal(md_mb_encode_float(1e39, MD_MB_T_FLOAT32, MD_MB_ABCD, r, 2),
                     MD_MB_ERANGE);
    assert_int_equal(md_mb_encode_float(-DBL_MAX, MD_MB_T_FLOAT32, MD_MB_ABCD, r, 2),
                     MD_MB_ERANGE);
}

static void value_errors(void **state)
{
    (void)state;
    uint16_t r[4] = {0};
    int64_t s;
    uint64_t u;
    double d;
    /* range */
    assert_int_equal(md_mb_encode_int(70000, MD_MB_T_UINT16, MD_MB_ABCD, r, 4),
                     MD_MB_ERANGE);
    assert_int_equal(md_mb_encode_int(-1, MD_MB_T_UINT16, MD_MB_ABCD, r, 4),
                     MD_MB_ERANGE);
    assert_int_equal(md_mb_encode_int(-1, MD_MB_T_UINT64, MD_MB_ABCD, r, 4),
                     MD_MB_ERANGE);
    assert_int_equal(md_mb_encode_int(32768, MD_MB_T_INT16, MD_MB_ABCD, r, 4),
                     MD_MB_ERANGE);
    assert_int_equal(md_mb_encode_int(-32769, MD_MB_T_INT16, MD_MB_ABCD, r, 4),
                     MD_MB_ERANGE);
    assert_int_equal(
        md_mb_encode_int((int64_t)INT32_MIN - 1, MD_MB_T_INT32, MD_MB_ABCD, r, 4),
        MD_MB_ERANGE);
    assert_int_equal(
        md_mb_encode_int((int64_t)UINT32_MAX + 1, MD_MB_T_UINT32, MD_MB_ABCD, r, 4),
        MD_MB_ERANGE);
    assert_int_equal(md_mb_encode_uint(UINT64_MAX, MD_MB_T_INT64, MD_MB_ABCD, r, 4),
                     MD_MB_ERANGE);
    /* a failed encode leaves the registers alone */
    static const uint16_t zero[4] = {0};
    assert_memory_equal(r, zero, sizeof zero);
    /* wrong type for the call */
    assert_int_equal(md_mb_decode_float(r, 4, MD_MB_T_INT32, MD_MB_ABCD, &d),
                     MD_MB_ETYPE);
    assert_int_equal(md_mb_decode_int(r, 4, MD_MB_T_FLOAT32, MD_MB_ABCD, &s),
                     MD_MB_ETYPE);
    assert_int_equal(md_mb_decode_uint(r, 4, MD_MB_T_FLOAT64, MD_MB_ABCD, &u),
                     MD_MB_ETYPE);
    assert_int_equal(md_mb_decode_int(r, 4, MD_MB_T_STRING, MD_MB_ABCD, &s), MD_MB_ETYPE);
    assert_int_equal(md_mb_encode_int(1, MD_MB_T_FLOAT32, MD_MB_ABCD, r, 4), MD_MB_ETYPE);
    assert_int_equal(md_mb_encode_uint(1, MD_MB_T_STRING, MD_MB_ABCD, r, 4), MD_MB_ETYPE);
    assert_int_equal(md_mb_encode_float(1, MD_MB_T_UINT16, MD_MB_ABCD, r, 4),
                     MD_MB_ETYPE);
    assert_int_equal(md_mb_decode_int(r, 4, (enum md_mb_type)42, MD_MB_ABCD, &s),
                     MD_MB_ETYPE);
    assert_int_equal(md_mb_decode_int(r, 4, (enum md_mb_type) - 1, MD_MB_ABCD, &s),
                     MD_MB_ETYPE);
    /* bad order */
    assert_int_equal(md_mb_decode_int(r, 4, MD_MB_T_INT16, (enum md_mb_order)4, &s),
                     MD_MB_EORDER);
    assert_int_equal(md_mb_encode_float(1, MD_MB_T_FLOAT32, (enum md_mb_order) - 1, r, 4),
                     MD_MB_EORDER);
    /* too few registers */
    assert_int_equal(md_mb_decode_int(r, 1, MD_MB_T_INT32, MD_MB_ABCD, &s), MD_MB_EREGS);
    assert_int_equal(md_mb_decode_float(r, 3, MD_MB_T_FLOAT64, MD_MB_ABCD, &d),
                     MD_MB_EREGS);
    assert_int_equal(md_mb_decode_uint(r, 0, MD_MB_T_UINT16, MD_MB_ABCD, &u),
                     MD_MB_EREGS);
    assert_int_equal(md_mb_encode_int(1, MD_MB_T_INT64, MD_MB_ABCD, r, 2), MD_MB_EREGS);
}

/* Only the first md_mb_type_regs registers are read and written. */
static void values_use_own_registers(void **state)
{
    (void)state;
    uint16_t r[6] = {0xAAAA, 0xAAAA, 0xAAAA, 0xAAAA, 0xAAAA, 0xAAAA};
    assert_int_equal(md_mb_encode_int(-1, MD_MB_T_INT32, MD_MB_CDAB, r + 1, 5), 0);
    static const uint16_t want[6] = {0xAAAA, 0xFFFF, 0xFFFF, 0xAAAA, 0xAAAA, 0xAAAA};
    assert_memory_equal(r, want, sizeof want);
    int64_t s;
    assert_int_equal(md_mb_decode_int(r + 1, 5, MD_MB_T_INT16, MD_MB_ABCD, &s), 0);
    assert_int_equal(s, -1);
}

/* }===== */

/* {===== strings, names, bits ===== */

static void strings(void **state)
{
    (void)state;
    uint16_t r[4];
    char out[9];
    /* odd length: the last register's low byte is the NUL pad */
    assert_int_equal(md_mb_encode_string("SN12345", 7, MD_MB_ABCD, r, 4), 0);
    static const uint16_t abcd[4] = {0x534E, 0x3132, 0x3334, 0x3500};
    assert_memory_equal(r, abcd, sizeof abcd);
    assert_int_equal(md_mb_decode_string(r, 4, MD_MB_ABCD, out, sizeof out), 7);
    assert_string_equal(out, "SN12345");
    /* byte-swapped devices */
    assert_int_equal(md_mb_encode_string("SN12345", 7, MD_MB_BADC, r, 4), 0);
    static const uint16_t badc[4] = {0x4E53, 0x3231, 0x3433, 0x0035};
    assert_memory_equal(r, badc, sizeof badc);
    assert_int_equal(md_mb_decode_string(r, 4, MD_MB_DCBA, out, sizeof out), 7);
    assert_string_equal(out, "SN12345");
    /* CDAB does not reverse a string's registers */
    assert_int_equal(md_mb_decode_string(abcd, 4, MD_MB_CDAB, out, sizeof out), 7);
    assert_string_equal(out, "SN12345");
    /* padding with spaces, and spaces before NULs */
    static const uint16_t spaces[4] = {0x4142, 0x2020, 0x2000, 0x0000};
    assert_int_equal(md_mb_decode_string(spaces, 4, MD_MB_ABCD, out, sizeof out), 2);
    assert_string_equal(out, "AB");
    /* text ends at the first NUL, even with bytes after it */
    static const uint16_t garbage[4] = {0x4100, 0x4243, 0x4445, 0x4647};
    assert_int_equal(md_mb_decode_string(garbage, 4, MD_MB_ABCD, out, sizeof out), 1);
    assert_string_equal(out, "A");
    /* leading spaces stay; a full field has no terminator */
    static const uint16_t full[4] = {0x2041, 0x4243, 0x4445, 0x4647};
    assert_int_equal(md_mb_decode_string(full, 4, MD_MB_ABCD, out, sizeof out), 8);
    assert_string_equal(out, " ABCDEFG");
    /* all blank, and no registers at all */
    static const uint16_t blank[2] = {0x2020, 0x0020};
    assert_int_equal(md_mb_decode_string(blank, 2, MD_MB_ABCD, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(md_mb_decode_string(blank, 0, MD_MB_ABCD, out, 1), 0);
    assert_string_equal(out, "");
    /* empty string pads every register */
    assert_int_equal(md_mb_encode_string("", 0, MD_MB_ABCD, r, 4), 0);
    static const uint16_t nul[4] = {0};
    assert_memory_equal(r, nul, sizeof nul);
    /* 8-bit bytes pass through */
    assert_int_equal(md_mb_encode_string("\xC3\xA9", 2, MD_MB_ABCD, r, 1), 0);
    assert_int_equal(r[0], 0xC3A9);
    /* errors */
    assert_int_equal(md_mb_encode_string("ABCDEFGHI", 9, MD_MB_ABCD, r, 4), MD_MB_ERANGE);
    assert_int_equal(md_mb_encode_string("AB", 2, (enum md_mb_order)9, r, 4),
                     MD_MB_EORDER);
    assert_int_equal(md_mb_decode_string(abcd, 4, MD_MB_ABCD, out, 8), MD_MB_ESPACE);
    assert_int_equal(md_mb_decode_string(abcd, 0, MD_MB_ABCD, out, 0), MD_MB_ESPACE);
    assert_int_equal(md_mb_decode_string(abcd, 4, (enum md_mb_order)9, out, 9),
                     MD_MB_EORDER);
}

static void names(void **state)
{
    (void)state;
    assert_int_equal(md_mb_type_from_name("float32"), MD_MB_T_FLOAT32);
    assert_int_equal(md_mb_type_from_name("FLOAT32"), MD_MB_T_FLOAT32);
    assert_int_equal(md_mb_type_from_name("UInt64"), MD_MB_T_UINT64);
    assert_int_equal(md_mb_type_from_name("string"), MD_MB_T_STRING);
    assert_int_equal(md_mb_type_from_name("flaot32"), MD_MB_ETYPE);
    assert_int_equal(md_mb_type_from_name("float"), MD_MB_ETYPE);
    assert_int_equal(md_mb_type_from_name("float321"), MD_MB_ETYPE);
    assert_int_equal(md_mb_type_from_name(""), MD_MB_ETYPE);
    assert_int_equal(md_mb_type_from_name(NULL), MD_MB_ETYPE);
    assert_int_equal(md_mb_order_from_name("CDAB"), MD_MB_CDAB);
    assert_int_equal(md_mb_order_from_name("cdab"), MD_MB_CDAB);
    assert_int_equal(md_mb_order_from_name("dcBA"), MD_MB_DCBA);
    assert_int_equal(md_mb_order_from_name("ABDC"), MD_MB_EORDER);
    assert_int_equal(md_mb_order_from_name(NULL), MD_MB_EORDER);
    for (int t = 0; t < MD_MB_T_COUNT; t++)
        assert_int_equal(md_mb_type_from_name(md_mb_type_name(t)), t);
    for (int o = 0; o < MD_MB_ORDER_COUNT; o++)
        assert_int_equal(md_mb_order_from_name(md_mb_order_name(o)), o);
    assert_null(md_mb_type_name(MD_MB_T_COUNT));
    assert_null(md_mb_type_name(-1));
    assert_null(md_mb_order_name(MD_MB_ORDER_COUNT));
    assert_string_equal(md_mb_type_name(MD_MB_T_INT16), "int16");
    assert_string_equal(md_mb_order_name(MD_MB_BADC), "BADC");

    static const unsigned regs[MD_MB_T_COUNT] = {1, 1, 2, 2, 4, 4, 2, 4, 0};
    for (int t = 0; t < MD_MB_T_COUNT; t++)
        assert_int_equal(md_mb_type_regs(t), regs[t]);
    assert_int_equal(md_mb_type_regs((enum md_mb_type)99), 0);
}

static void bit_fields(void **state)
{
    (void)state;
    assert_int_equal(md_mb_bits(0xABCD, 4, 8), 0xBC);
    assert_int_equal(md_mb_bits(0xABCD, 0, 1), 1);
    assert_int_equal(md_mb_bits(0xABCD, 1, 1), 0);
    assert_int_equal(md_mb_bits(0xABCD, 15, 1), 1);
    assert_int_equal(md_mb_bits(UINT64_MAX, 0, 64), UINT64_MAX);
    assert_int_equal(md_mb_bits(0x8000000000000000, 63, 1), 1);
    assert_int_equal(md_mb_bits(0xF000000000000000, 60, 8), 0xF); /* past bit 63: 0 */
    assert_int_equal(md_mb_bits(UINT64_MAX, 64, 1), 0);
    assert_int_equal(md_mb_bits(UINT64_MAX, 200, 3), 0);
    assert_int_equal(md_mb_bits(UINT64_MAX, 3, 0), 0);
    assert_int_equal(md_mb_bits(0x0123456789ABCDEF, 32, 32), 0x01234567);
    assert_int_equal(md_mb_bits(0x0123456789ABCDEF, 8, 100), 0x0123456789ABCD);
}

static void coil_packing(void **state)
{
    (void)state;
    /* coils 20..29 of the spec example: CD 01 */
    static const uint8_t bits[10] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    uint8_t packed[2] = {0xFF, 0xFF};
    md_mb_pack_bits(bits, 10, packed);
    static const uint8_t want[2] = {0xCD, 0x01};
    assert_memory_equal(packed, want, 2);
    uint8_t back[10];
    md_mb_unpack_bits(packed, 10, back);
    assert_memory_equal(back, bits, 10);
    /* any non-zero byte is a set bit; n = 0 touches nothing */
    static const uint8_t loose[3] = {7, 0, 0x80};
    uint8_t one = 0xFF;
    md_mb_pack_bits(loose, 3, &one);
    assert_int_equal(one, 0x05);
    md_mb_pack_bits(loose, 0, &one);
    assert_int_equal(one, 0x05);
    uint8_t all[8];
    uint8_t ff = 0xFF;
    md_mb_unpack_bits(&ff, 8, all);
    static const uint8_t ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    assert_memory_equal(all, ones, 8);
}

static void byte_helpers(void **state)
{
    (void)state;
    uint8_t b[6];
    md_mb_put_u16(b, 0xBEEF);
    assert_int_equal(b[0], 0xBE);
    assert_int_equal(b[1], 0xEF);
    assert_int_equal(md_mb_get_u16(b), 0xBEEF);
    static const uint16_t regs[3] = {0x0102, 0xA0B0, 0xFFFF};
    md_mb_put_regs(regs, 3, b);
    static const uint8_t wire[6] = {0x01, 0x02, 0xA0, 0xB0, 0xFF, 0xFF};
    assert_memory_equal(b, wire, 6);
    uint16_t back[3];
    md_mb_get_regs(b, 3, back);
    assert_memory_equal(back, regs, sizeof regs);
}

static void error_texts(void **state)
{
    (void)state;
    /* The codes are err.h's: one message and one token each. */
    assert_string_equal(md_strerror(MD_MB_ECRC), "CRC mismatch");
    assert_string_equal(md_strerror(MD_MB_ESHORT), "frame too short");
    assert_string_equal(md_strerror(MD_MB_EFUNC), "unknown function code");
    assert_string_equal(md_strerror(0), "success");
    assert_string_equal(md_err_token(MD_MB_ERANGE), "range");
    assert_string_equal(md_err_token(MD_MB_ECRC), "crc");
    const char *unknown = md_strerror(-(MD_EBASE + 9999));
    assert_string_equal(unknown, "unknown error");
    static const int codes[] = {MD_MB_ESHORT, MD_MB_ECRC,     MD_MB_EFUNC,  MD_MB_EMEI,
                                MD_MB_ECOUNT, MD_MB_ETOOLONG, MD_MB_EPROTO, MD_MB_ELENGTH,
                                MD_MB_ETYPE,  MD_MB_EORDER,   MD_MB_ERANGE, MD_MB_EREGS,
                                MD_MB_ESPACE};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_true(md_err_is_own(codes[i]));
        assert_in_range(-codes[i], MD_EBASE + 1, MD_EBASE + 999);
        assert_string_not_equal(md_strerror(codes[i]), unknown);
    }
    /* errno values share the functions: -ECONNREFUSED is "refused". */
    assert_string_equal(md_err_token(-ECONNREFUSED), "refused");
    assert_false(md_err_is_own(-ECONNREFUSED));
    assert_string_equal(md_mb_exception_name(2), "illegal_data_address");
    assert_string_equal(md_mb_exception_name(0x0B), "gateway_target_failed");
    assert_null(md_mb_exception_name(0));
    assert_null(md_mb_exception_name(9));
    assert_null(md_mb_exception_name(0x0C));
}

/* }===== */

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_known_frames),
        cmocka_unit_test(crc_table_matches_bitwise),
        cmocka_unit_test(crc_check_frame),
        cmocka_unit_test(mbap_round_trip),
        cmocka_unit_test(mbap_rejects),
        cmocka_unit_test(request_fixed_lengths),
        cmocka_unit_test(request_counted_lengths),
        cmocka_unit_test(request_impossible),
        cmocka_unit_test(response_reads),
        cmocka_unit_test(response_writes),
        cmocka_unit_test(response_exceptions),
        cmocka_unit_test(response_impossible),
        cmocka_unit_test(device_id_objects),
        cmocka_unit_test(device_id_edges),
        cmocka_unit_test(lengths_are_stable),
        cmocka_unit_test(order_vectors),
        cmocka_unit_test(float32_known),
        cmocka_unit_test(int_round_trips),
        cmocka_unit_test(uint64_extremes),
        cmocka_unit_test(float_round_trips),
        cmocka_unit_test(value_errors),
        cmocka_unit_test(values_use_own_registers),
        cmocka_unit_test(strings),
        cmocka_unit_test(names),
        cmocka_unit_test(bit_fields),
        cmocka_unit_test(coil_packing),
        cmocka_unit_test(byte_helpers),
        cmocka_unit_test(error_texts),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
