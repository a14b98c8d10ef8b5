/*
 * test_rctcodec.c - cmocka driver for core/rctcodec.c, the RCT Power codec.
 *
 * What is checked: the CRC against the check values of the protocol notes
 * and against a bitwise reference computed here (odd-length pad included);
 * frames built for every command, byte for byte against captured and
 * cross-checked vectors (escaped object ids, escaped CRC bytes, plant and
 * long forms, the extension); build errors; the streaming parser on every
 * split of a stream, on noise, and on each kind of bad frame (CRC, length,
 * escape, command) with the good frame after it still found; its buffer
 * limits; payload values of every type against published vectors and in
 * round trips, with their extremes.
 *
 * Frames are written as hex strings the way they travel, so a failure can
 * be compared with a capture by eye.
 *
 * Build and run (link with core/rctcodec.c only):
 *   cc -std=c11 -D_GNU_SOURCE -Icore tests/c/test_rctcodec.c core/rctcodec.c \
 *      $(pkg-config --cflags --libs cmocka) -lm -o /tmp/t && /tmp/t
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rctcodec.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* {===== helpers ===== */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        assert_int_equal(sscanf(hex, "%2x", &v), 1);
        assert_true(n < cap);
        out[n++] = (uint8_t)v;
    }
    return n;
}

/* CRC-16/CCITT-FALSE from the definition, bit by bit, no pad. */
static uint16_t crc_plain(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int k = 0; k < 8; k++)
            crc = crc & 0x8000 ? (uint16_t)(crc << 1 ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* The same with the protocol's pad byte for odd lengths. */
static uint16_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint8_t tmp[512] = {0};
    assert_true(n < sizeof tmp);
    memcpy(tmp, p, n);
    return crc_plain(tmp, n + (n & 1));
}

static uint8_t parser_buf[MD_RCT_MAX_WIRE];

/* Everything a parse of a stream produced, in order. */
typedef struct result {
    int rc; /* 1 frame, or an error */
    md_rct_frame f;
    uint8_t payload[512];
} result;

/* Feed in[0..len) in chunks of `chunk` bytes (0: all at once). */
static size_t parse_all(md_rct_parser *p, const uint8_t *in, size_t len, size_t chunk,
                        result *out, size_t max)
{
    size_t n = 0, pos = 0;
    if (chunk == 0)
        chunk = len ? len : 1;
    while (pos < len) {
        size_t take = len - pos < chunk ? len - pos : chunk;
        const uint8_t *c = in + pos;
        pos += take;
        for (;;) {
            size_t used;
            md_rct_frame f;
            int rc = md_rct_parse(p, c, take, &used, &f);
            assert_true(used <= take);
            c += used;
            take -= used;
            if (rc == 0) {
                assert_int_equal(take, 0);
                break;
            }
            assert_true(n < max);
            out[n].rc = rc;
            if (rc == 1) {
                out[n].f = f;
                assert_true(f.payload_len <= sizeof out[n].payload);
                memcpy(out[n].payload, f.payload, f.payload_len);
                out[n].f.payload = out[n].payload;
            }
            n++;
        }
    }
    return n;
}

static size_t parse_hex(const char *hex, result *out, size_t max)
{
    static uint8_t in[8192];
    size_t len = unhex(hex, in, sizeof in);
    md_rct_parser p;
    md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
    return parse_all(&p, in, len, 0, out, max);
}

static void assert_frame(const result *r, int command, uint32_t oid,
                         const char *payload_hex)
{
    uint8_t want[512];
    size_t n = unhex(payload_hex, want, sizeof want);
    assert_int_equal(r->rc, 1);
    assert_int_equal(r->f.command, command);
    assert_int_equal(r->f.oid, oid);
    assert_int_equal(r->f.payload_len, n);
    assert_memory_equal(r->f.payload, want, n);
}

static void assert_built(int command, uint32_t address, uint32_t oid,
                         const char *payload_hex, const char *frame_hex)
{
    uint8_t payload[512], want[1024], out[1024];
    size_t plen = unhex(payload_hex, payload, sizeof payload);
    size_t wlen = unhex(frame_hex, want, sizeof want);
    int n = md_rct_build(out, sizeof out, command, address, oid, payload, plen);
    assert_int_equal(n, (int)wlen);
    assert_memory_equal(out, want, wlen);
    assert_true((size_t)n <= md_rct_build_max(plen));
}

/* }===== */

/* {===== CRC ===== */

static void crc_check_values(void **state)
{
    (void)state;
    uint8_t b[16];
    size_t n = unhex("0104959930bf", b, sizeof b);
    assert_int_equal(md_rct_crc(b, n), 0x0D65);
    n = unhex("06000400000000", b, sizeof b); /* 7 bytes: needs the pad */
    assert_int_equal(md_rct_crc(b, n), 0xB754);
    n = unhex("050529bda75fff", b, sizeof b);
    assert_int_equal(md_rct_crc(b, n), 0xB8D2);
    n = unhex("050597e203f955", b, sizeof b); /* a captured frame carried 0xBB9B */
    assert_int_equal(md_rct_crc(b, n), 0x6E18);
    /* the reference is CRC-16/CCITT-FALSE: its published check value */
    const uint8_t *digits = (const uint8_t *)"123456789\0";
    assert_int_equal(crc_plain(digits, 9), 0x29B1);
    /* even lengths: plain; odd lengths: as if a 0x00 followed */
    assert_int_equal(md_rct_crc(digits, 8), crc_plain(digits, 8));
    assert_int_equal(md_rct_crc(digits, 9), crc_plain(digits, 10));
    assert_int_not_equal(md_rct_crc(digits, 9), 0x29B1);
}

static void crc_matches_bitwise(void **state)
{
    (void)state;
    uint8_t b[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof b; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 16);
    }
    for (size_t n = 0; n <= sizeof b; n += 7)
        assert_int_equal(md_rct_crc(b, n), crc_bitwise(b, n));
}

/* }===== */

/* {===== building ===== */

static void build_every_command(void **state)
{
    (void)state;
    assert_built(MD_RCT_READ, 0, 0x959930BF, "", "2b0104959930bf0d65");
    assert_built(MD_RCT_READ, 0, 0x0000C0DE, "", "2b01040000c0defe51");
    assert_built(MD_RCT_WRITE, 0, 0xFFFFFFFF, "", "2b0204ffffffff9599");
    assert_built(MD_RCT_WRITE, 0, 0xCE266F0F, "3d8f5c29", "2b0208ce266f0f3d8f5c294fa0");
    assert_built(MD_RCT_RESPONSE, 0, 0x959930BF, "3f590f86",
                 "2b0508959930bf3f590f868810");
    assert_built(MD_RCT_RESPONSE, 0, 0x29BDA75F, "ff", "2b050529bda75fffb8d2");
    assert_built(MD_RCT_LONG_RESPONSE, 0, 0x00000000, "", "2b06000400000000b754");
    assert_built(MD_RCT_LONG_RESPONSE, 0, 0x064E4340,
                 "5f751c005f751ad4449a50005f7519a8c1440000",
                 "2b060018064e43405f751c005f751ad4449a50005f7519a8c144000018de");
    assert_built(MD_RCT_READ_PERIODICALLY, 0, 0x959930BF, "", "2b0804959930bf4587");
    assert_built(MD_RCT_PLANT | MD_RCT_READ, 0x12345678, 0x959930BF, "",
                 "2b410812345678959930bfd2cd");
    assert_built(MD_RCT_PLANT | MD_RCT_RESPONSE, 0x12345678, 0x959930BF, "3f000000",
                 "2b450c12345678959930bf3f00000021c2");
    /* plant long write: a 2-byte length, like every long command */
    assert_built(MD_RCT_PLANT | MD_RCT_LONG_WRITE, 1, 0x011F41DB, "616263",
                 "2b43000b00000001011f41db616263a187");
    assert_built(MD_RCT_EXTENSION, 0, 0, "e1", "2b3ce1");
}

static void build_escapes(void **state)
{
    (void)state;
    /* object id byte 0x2D, CRC byte 0x2D, payload bytes 0x2D and 0x2B */
    assert_built(MD_RCT_READ, 0, 0xDB2D69AE, "", "2b0104db2d2d69ae55ab");
    assert_built(MD_RCT_READ, 0, 0x3AFEF139, "", "2b01043afef139f92d2d");
    assert_built(MD_RCT_READ, 0, 0x1F44C23A, "", "2b01041f44c23a2d2bbd");
    assert_built(MD_RCT_WRITE, 0, 0xCE266F0F, "422d0000", "2b0208ce266f0f422d2d0000f45e");
    assert_built(MD_RCT_WRITE, 0, 0x29BDA75F, "2b", "2b020529bda75f2d2ba629");
}

static void build_long_write_260_bytes(void **state)
{
    (void)state;
    uint8_t payload[260], out[600];
    memset(payload, 'x', sizeof payload);
    assert_int_equal(md_rct_build(out, sizeof out, MD_RCT_WRITE, 0, 0x011F41DB, payload,
                                  sizeof payload),
                     MD_RCT_ELENGTH); /* more than 251 bytes needs the long form */
    int n = md_rct_build(out, sizeof out, MD_RCT_LONG_WRITE, 0, 0x011F41DB, payload,
                         sizeof payload);
    assert_int_equal(n, 270);
    uint8_t head[] = {0x2B, 0x03, 0x01, 0x08, 0x01, 0x1F, 0x41, 0xDB, 'x'};
    assert_memory_equal(out, head, sizeof head);
    assert_int_equal(out[268], 0x3A);
    assert_int_equal(out[269], 0xCA);
    /* the largest payloads the length fields allow */
    static uint8_t big[MD_RCT_MAX_LENGTH], wire[MD_RCT_MAX_WIRE];
    assert_int_equal(md_rct_build(wire, sizeof wire, MD_RCT_WRITE, 0, 1, big, 251),
                     1 + 1 + 1 + 4 + 251 + 2);
    assert_int_equal(md_rct_build(wire, sizeof wire, MD_RCT_WRITE, 0, 1, big, 252),
                     MD_RCT_ELENGTH);
    assert_true(md_rct_build(wire, sizeof wire, MD_RCT_LONG_RESPONSE, 0, 1, big, 65531) >
                0);
    assert_int_equal(
        md_rct_build(wire, sizeof wire, MD_RCT_LONG_RESPONSE, 0, 1, big, 65532),
        MD_RCT_ELENGTH);
    assert_int_equal(md_rct_build(wire, sizeof wire, MD_RCT_PLANT | MD_RCT_LONG_RESPONSE,
                                  7, 1, big, 65528),
                     MD_RCT_ELENGTH);
}

static void build_errors(void **state)
{
    (void)state;
    uint8_t out[64], p[4] = {1, 2, 3, 4};
    assert_int_equal(md_rct_build(out, sizeof out, 0x04, 0, 1, NULL, 0), MD_RCT_ECOMMAND);
    assert_int_equal(md_rct_build(out, sizeof out, 0x07, 0, 1, NULL, 0), MD_RCT_ECOMMAND);
    assert_int_equal(md_rct_build(out, sizeof out, 0x00, 0, 1, NULL, 0), MD_RCT_ECOMMAND);
    assert_int_equal(md_rct_build(out, sizeof out, 0x7C, 0, 1, NULL, 0), MD_RCT_ECOMMAND);
    assert_int_equal(md_rct_build(out, sizeof out, 0x100 | 1, 0, 1, NULL, 0),
                     MD_RCT_ECOMMAND);
    assert_int_equal(md_rct_build(out, sizeof out, MD_RCT_READ, 0, 1, p, 4),
                     MD_RCT_ELENGTH);
    assert_int_equal(md_rct_build(out, sizeof out, MD_RCT_READ_PERIODICALLY, 0, 1, p, 1),
                     MD_RCT_ELENGTH);
    assert_int_equal(md_rct_build(out, sizeof out, MD_RCT_EXTENSION, 0, 0, p, 2),
                     MD_RCT_ELENGTH);
    /* too small: every size below the frame fails, the exact size works */
    uint8_t want[32];
    size_t wlen = unhex("2b0104db2d2d69ae55ab", want, sizeof want);
    for (size_t cap = 0; cap < wlen; cap++)
        assert_int_equal(md_rct_build(out, cap, MD_RCT_READ, 0, 0xDB2D69AE, NULL, 0),
                         MD_RCT_ESPACE);
    assert_int_equal(md_rct_build(out, wlen, MD_RCT_READ, 0, 0xDB2D69AE, NULL, 0),
                     (int)wlen);
}

static void command_names(void **state)
{
    (void)state;
    int valid[] = {0x01, 0x02, 0x03, 0x05, 0x06, 0x08, 0x41,
                   0x42, 0x43, 0x45, 0x46, 0x48, 0x3C};
    int count = 0;
    for (int c = -1; c < 0x200; c++)
        count += md_rct_command_valid(c);
    assert_int_equal(count, (int)N(valid));
    for (size_t i = 0; i < N(valid); i++) {
        const char *name = md_rct_command_name(valid[i]);
        assert_non_null(name);
        assert_int_equal(md_rct_command_from_name(name), valid[i]);
    }
    assert_string_equal(md_rct_command_name(0x46), "plant_long_response");
    assert_int_equal(md_rct_command_from_name("READ"), 0x01);
    assert_int_equal(md_rct_command_from_name("nonsense"), -1);
    assert_null(md_rct_command_name(0x04));
    assert_true(md_rct_command_long(0x03) && md_rct_command_long(0x46));
    assert_false(md_rct_command_long(0x05) || md_rct_command_long(0x3C) ||
                 md_rct_command_long(0x04));
    assert_string_equal(md_strerror(MD_RCT_ECRC), "CRC mismatch");
    assert_string_equal(md_err_token(MD_RCT_EESCAPE), "escape");
    assert_string_equal(md_err_token(MD_RCT_ERANGE), "range");
}

/* }===== */

/* {===== parsing ===== */

static void parse_vectors(void **state)
{
    (void)state;
    result r[8];
    assert_int_equal(parse_hex("002b050529bda75fffb8d2", r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_RESPONSE, 0x29BDA75F, "ff");
    assert_int_equal(parse_hex("2b0104db2d2d69ae55ab", r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_READ, 0xDB2D69AE, "");
    assert_int_equal(parse_hex("2b0208ce266f0f422d2d0000f45e", r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_WRITE, 0xCE266F0F, "422d0000");
    assert_int_equal(parse_hex("2b06000400000000b754", r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_LONG_RESPONSE, 0, "");
    assert_int_equal(parse_hex("2b450c12345678959930bf3f00000021c2", r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_PLANT | MD_RCT_RESPONSE, 0x959930BF, "3f000000");
    assert_int_equal(r[0].f.address, 0x12345678);
    assert_int_equal(parse_hex("2b43000b00000001011f41db616263a187", r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_PLANT | MD_RCT_LONG_WRITE, 0x011F41DB, "616263");
    assert_int_equal(r[0].f.address, 1);
    assert_int_equal(parse_hex("2b3ce1", r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_EXTENSION, 0, "e1");
}

/* Seven back-to-back reads (one TCP segment of a capture), every split. */
static const char *stream7 =
    "2b0104b403a7e6b9c72b0104663f1452e0692b01041ac87aa06c942b0104db2"
    "d2d69ae55ab2b010491617c58480f2b0104db11855b0f0a2b01040cb5d21b4894";
static const uint32_t stream7_oids[] = {0xB403A7E6, 0x663F1452, 0x1AC87AA0, 0xDB2D69AE,
                                        0x91617C58, 0xDB11855B, 0x0CB5D21B};

static void parse_every_split(void **state)
{
    (void)state;
    uint8_t in[128];
    size_t len = unhex(stream7, in, sizeof in);
    result r[16];
    for (size_t chunk = 1; chunk <= len; chunk++) {
        md_rct_parser p;
        md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
        size_t n = parse_all(&p, in, len, chunk, r, N(r));
        assert_int_equal(n, N(stream7_oids));
        for (size_t i = 0; i < n; i++)
            assert_frame(&r[i], MD_RCT_READ, stream7_oids[i], "");
        assert_int_equal(md_rct_parser_pending(&p), 0);
        assert_int_equal(p.noise, 0);
    }
    /* two chunks, split at every byte boundary (an escape at the boundary too) */
    for (size_t cut = 0; cut <= len; cut++) {
        md_rct_parser p;
        md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
        size_t n = parse_all(&p, in, cut, 0, r, N(r));
        n += parse_all(&p, in + cut, len - cut, 0, r + n, N(r) - n);
        assert_int_equal(n, N(stream7_oids));
        for (size_t i = 0; i < n; i++)
            assert_int_equal(r[i].f.oid, stream7_oids[i]);
    }
}

static void parse_noise_between_frames(void **state)
{
    (void)state;
    result r[16];
    /* a NUL before, "AT+\r" keep-alive between, garbage after */
    size_t n = parse_hex("002b0104959930bf0d65"
                         "41542b0d"
                         "2b0104db2d2d69ae55ab"
                         "0102ff",
                         r, N(r));
    assert_int_equal(n, 3);
    assert_frame(&r[0], MD_RCT_READ, 0x959930BF, "");
    assert_int_equal(r[1].rc, MD_RCT_ECOMMAND);
    assert_frame(&r[2], MD_RCT_READ, 0xDB2D69AE, "");
}

static void parse_errors_and_resync(void **state)
{
    (void)state;
    result r[16];
    md_rct_parser p;
    md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
    /* CRC error, then a good frame */
    assert_int_equal(parse_hex("2b050597e203f955bb9b2b0104959930bf0d65", r, N(r)), 2);
    assert_int_equal(r[0].rc, MD_RCT_ECRC);
    assert_frame(&r[1], MD_RCT_READ, 0x959930BF, "");
    /* details of the CRC error */
    uint8_t in[64];
    size_t len = unhex("2b050597e203f955bb9b", in, sizeof in);
    md_rct_frame f;
    size_t used;
    assert_int_equal(md_rct_parse(&p, in, len, &used, &f), MD_RCT_ECRC);
    assert_int_equal(p.err_crc_rx, 0xBB9B);
    assert_int_equal(p.err_crc_calc, 0x6E18);
    /* a frame cut short by the next one: bad escape (start inside a frame) */
    assert_int_equal(parse_hex("2b0508959930bf3f59"
                               "2b0104959930bf0d65",
                               r, N(r)),
                     2);
    assert_int_equal(r[0].rc, MD_RCT_EESCAPE);
    assert_frame(&r[1], MD_RCT_READ, 0x959930BF, "");
    /* a lone escape inside an id */
    assert_int_equal(parse_hex("2b0104db2d69ae55ab"
                               "2b0104959930bf0d65",
                               r, N(r)),
                     2);
    assert_int_equal(r[0].rc, MD_RCT_EESCAPE);
    assert_frame(&r[1], MD_RCT_READ, 0x959930BF, "");
    /* an escape before a byte that needs none */
    assert_int_equal(parse_hex("2b01042d959930bf0d65", r, N(r)), 1);
    assert_int_equal(r[0].rc, MD_RCT_EESCAPE);
    /* reserved command */
    assert_int_equal(parse_hex("2b0404959930bf0000"
                               "2b0104959930bf0d65",
                               r, N(r)),
                     2);
    assert_int_equal(r[0].rc, MD_RCT_ECOMMAND);
    assert_frame(&r[1], MD_RCT_READ, 0x959930BF, "");
    /* impossible lengths: a read with a payload, a response without an id */
    assert_int_equal(parse_hex("2b0105959930bf00"
                               "2b0104959930bf0d65",
                               r, N(r)),
                     2);
    assert_int_equal(r[0].rc, MD_RCT_ELENGTH);
    assert_frame(&r[1], MD_RCT_READ, 0x959930BF, "");
    assert_int_equal(parse_hex("2b0503959930"
                               "2b0104959930bf0d65",
                               r, N(r)),
                     2);
    assert_int_equal(r[0].rc, MD_RCT_ELENGTH);
    assert_int_equal(parse_hex("2b410412345678", r, N(r)), 1); /* plant read: 8 */
    assert_int_equal(r[0].rc, MD_RCT_ELENGTH);
}

/* A bad frame whose last byte is a lone escape swallows the next start
 * byte as data; the rescan still finds that frame. */
static void parse_rescan_finds_hidden_frame(void **state)
{
    (void)state;
    /* 2B 05 08 then "2D 2B" = an escaped 0x2B in the id: the response goes on
     * through the read that follows and needs one more byte. */
    uint8_t in[64];
    size_t len = unhex("2b05082d2b0104959930bf0d65", in, sizeof in);
    for (size_t chunk = 0; chunk <= 3; chunk++) {
        md_rct_parser p;
        md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
        result r[16];
        size_t n = parse_all(&p, in, len, chunk, r, N(r));
        assert_int_equal(n, 0); /* nothing is known yet ... */
        assert_int_equal(md_rct_parser_pending(&p), len);
        /* ... until the next frame's start byte ends the response: the rescan
         * then finds the hidden read, and the next frame follows */
        uint8_t next[16];
        size_t nlen = unhex("2b0104663f1452e069", next, sizeof next);
        n = parse_all(&p, next, nlen, chunk, r, N(r));
        assert_int_equal(n, 3);
        assert_int_equal(r[0].rc, MD_RCT_EESCAPE);
        assert_frame(&r[1], MD_RCT_READ, 0x959930BF, "");
        assert_frame(&r[2], MD_RCT_READ, 0x663F1452, "");
        assert_int_equal(md_rct_parser_pending(&p), 0);
    }
}

static void parse_truncated_waits(void **state)
{
    (void)state;
    result r[4];
    uint8_t in[64];
    size_t len =
        unhex("2b050c959930bf3f590f868810", in, sizeof in); /* length 12, 8 follow */
    md_rct_parser p;
    md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
    assert_int_equal(parse_all(&p, in, len, 0, r, N(r)), 0);
    assert_int_equal(md_rct_parser_pending(&p), len);
    md_rct_parser_reset(&p);
    assert_int_equal(md_rct_parser_pending(&p), 0);
    len = unhex("2b0104959930bf0d65", in, sizeof in);
    assert_int_equal(parse_all(&p, in, len, 0, r, N(r)), 1);
    assert_frame(&r[0], MD_RCT_READ, 0x959930BF, "");
}

static void parse_buffer_limits(void **state)
{
    (void)state;
    uint8_t payload[300], wire[700], small[40];
    memset(payload, 0x2D, sizeof payload); /* every byte escaped */
    int n = md_rct_build(wire, sizeof wire, MD_RCT_LONG_RESPONSE, 0, 0x11223344, payload,
                         sizeof payload);
    assert_int_equal(n, 1 + 1 + 2 + 4 + 2 * 300 + 2);
    result r[16];
    /* a buffer too small for this frame: length error, and the parser goes on */
    md_rct_parser p;
    md_rct_parser_init(&p, small, sizeof small);
    uint8_t read[16];
    size_t rlen = unhex("2b0104959930bf0d65", read, sizeof read);
    size_t count = parse_all(&p, wire, (size_t)n, 0, r, N(r));
    count += parse_all(&p, read, rlen, 0, r + count, N(r) - count);
    assert_int_equal(r[0].rc, MD_RCT_ELENGTH);
    assert_int_equal(r[count - 1].rc, 1);
    assert_int_equal(r[count - 1].f.oid, 0x959930BF);
    /* a buffer exactly the wire size of the frame takes it */
    static uint8_t exact[700];
    md_rct_parser_init(&p, exact, (size_t)n);
    assert_int_equal(parse_all(&p, wire, (size_t)n, 7, r, N(r)), 1);
    assert_int_equal(r[0].rc, 1);
    assert_int_equal(r[0].f.payload_len, 300);
    assert_memory_equal(r[0].f.payload, payload, 300);
}

/* Built frames of every command parse back to the same fields. */
static void build_parse_round_trip(void **state)
{
    (void)state;
    int commands[] = {0x01, 0x02, 0x03, 0x05, 0x06, 0x08,
                      0x41, 0x42, 0x43, 0x45, 0x46, 0x48};
    uint32_t oids[] = {0, 0x2B2D2B2D, 0xDB2D69AE, 0xFFFFFFFF};
    uint8_t payload[200], wire[600];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 37 + 0x2B);
    for (size_t c = 0; c < N(commands); c++) {
        int base = commands[c] & 0x0F;
        bool reads = base == 0x01 || base == 0x08;
        for (size_t o = 0; o < N(oids); o++) {
            for (size_t len = 0; len <= (reads ? 0 : sizeof payload); len += 13) {
                int n = md_rct_build(wire, sizeof wire, commands[c], 0x2D2B0001, oids[o],
                                     payload, len);
                assert_true(n > 0);
                md_rct_parser p;
                md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
                result r[2];
                assert_int_equal(parse_all(&p, wire, (size_t)n, 3, r, N(r)), 1);
                assert_int_equal(r[0].rc, 1);
                assert_int_equal(r[0].f.command, commands[c]);
                assert_int_equal(r[0].f.oid, oids[o]);
                assert_int_equal(r[0].f.address, commands[c] & 0x40 ? 0x2D2B0001 : 0);
                assert_int_equal(r[0].f.payload_len, len);
                if (len)
                    assert_memory_equal(r[0].f.payload, payload, len);
            }
        }
    }
}

/* }===== */

/* {===== values ===== */

static void values_integers(void **state)
{
    (void)state;
    struct {
        int type;
        int64_t lo, hi;
        const char *lo_hex, *hi_hex;
    } cases[] = {
        {MD_RCT_T_BOOL, 0, 1, "00", "01"},
        {MD_RCT_T_UINT8, 0, 255, "00", "ff"},
        {MD_RCT_T_ENUM, 0, 255, "00", "ff"},
        {MD_RCT_T_INT8, -128, 127, "80", "7f"},
        {MD_RCT_T_UINT16, 0, 65535, "0000", "ffff"},
        {MD_RCT_T_INT16, -32768, 32767, "8000", "7fff"},
        {MD_RCT_T_UINT32, 0, 0xFFFFFFFF, "00000000", "ffffffff"},
        {MD_RCT_T_INT32, INT32_MIN, INT32_MAX, "80000000", "7fffffff"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        uint8_t out[4], want[4];
        int64_t v;
        size_t size = md_rct_type_size(cases[i].type);
        int64_t ends[2] = {cases[i].lo, cases[i].hi};
        const char *hex[2] = {cases[i].lo_hex, cases[i].hi_hex};
        for (int e = 0; e < 2; e++) {
            assert_int_equal(md_rct_encode_int(cases[i].type, ends[e], out), (int)size);
            assert_int_equal(unhex(hex[e], want, sizeof want), size);
            assert_memory_equal(out, want, size);
            assert_int_equal(md_rct_decode_int(cases[i].type, out, size, &v), 0);
            assert_int_equal(v, ends[e]);
        }
        assert_int_equal(md_rct_encode_int(cases[i].type, cases[i].lo - 1, out),
                         MD_RCT_ERANGE);
        assert_int_equal(md_rct_encode_int(cases[i].type, cases[i].hi + 1, out),
                         MD_RCT_ERANGE);
        assert_int_equal(md_rct_decode_int(cases[i].type, out, size + 1, &v),
                         MD_RCT_ESIZE);
        assert_int_equal(md_rct_decode_int(cases[i].type, out, size - 1, &v),
                         MD_RCT_ESIZE);
    }
    int64_t v;
    uint8_t two = 2, ff = 0xFF;
    assert_int_equal(md_rct_decode_int(MD_RCT_T_BOOL, &two, 1, &v), 0);
    assert_int_equal(v, 1); /* any non-zero byte is true */
    assert_int_equal(md_rct_decode_int(MD_RCT_T_BOOL, &ff, 1, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(md_rct_decode_int(MD_RCT_T_FLOAT, &ff, 1, &v), MD_RCT_ETYPE);
    assert_int_equal(md_rct_encode_int(MD_RCT_T_STRING, 0, &ff), MD_RCT_ETYPE);
}

static void values_float(void **state)
{
    (void)state;
    uint8_t b[4];
    float f;
    unhex("3f590f86", b, sizeof b);
    assert_int_equal(md_rct_decode_float(b, 4, &f), 0);
    assert_true(fabsf(f - 0.8478931188583374f) == 0);
    assert_int_equal(md_rct_encode_float(43.25, b), 4);
    uint8_t want[4];
    unhex("422d0000", want, sizeof want);
    assert_memory_equal(b, want, 4);
    assert_int_equal(md_rct_encode_float(1e39, b), MD_RCT_ERANGE);
    assert_int_equal(md_rct_encode_float(-1e39, b), MD_RCT_ERANGE);
    assert_int_equal(md_rct_encode_float(INFINITY, b), 4);
    assert_int_equal(md_rct_encode_float(NAN, b), 4);
    assert_int_equal(md_rct_decode_float(b, 4, &f), 0);
    assert_true(isnan(f));
    assert_int_equal(md_rct_encode_float(-0.0, b), 4);
    unhex("80000000", want, sizeof want);
    assert_memory_equal(b, want, 4);
    assert_int_equal(md_rct_decode_float(b, 3, &f), MD_RCT_ESIZE);
}

static void values_string(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n = unhex("505320362e30204241334c", b, sizeof b);
    assert_int_equal(md_rct_string_len(b, n), 11);
    n = unhex("505320362e30204241334c000000", b, sizeof b);
    assert_int_equal(md_rct_string_len(b, n), 11);
    assert_int_equal(md_rct_string_len(b, 0), 0);
}

static void values_series_and_events(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n = unhex("5f751c005f751ad4449a50005f7519a8c1440000", b, sizeof b);
    assert_int_equal(md_rct_series_count(n), 2);
    assert_int_equal(md_rct_get_u32(b), 1601510400);
    uint32_t t;
    float v;
    md_rct_series_get(b, 0, &t, &v);
    assert_int_equal(t, 1601510100);
    assert_true(v == 1234.5f);
    md_rct_series_get(b, 1, &t, &v);
    assert_int_equal(t, 1601509800);
    assert_true(v == -12.25f);
    uint8_t c[64] = {0};
    memcpy(c, b, 4);
    md_rct_series_put(c, 0, 1601510100, 1234.5f);
    md_rct_series_put(c, 1, 1601509800, -12.25f);
    assert_memory_equal(c, b, n);
    assert_int_equal(md_rct_series_count(n - 1), MD_RCT_ESIZE); /* cut short */
    assert_int_equal(md_rct_series_count(3), MD_RCT_ESIZE);
    assert_int_equal(md_rct_series_count(4), 0);

    n = unhex("5f751c00000000315f750df05f750e54434f800000000000", b, sizeof b);
    assert_int_equal(md_rct_events_count(n), 1);
    uint32_t w[5];
    md_rct_event_get(b, 0, w);
    uint32_t want[5] = {0x31, 1601506800, 0x5F750E54, 0x434F8000, 0};
    assert_memory_equal(w, want, sizeof want);
    memset(c, 0, sizeof c);
    memcpy(c, b, 4);
    md_rct_event_put(c, 0, want);
    assert_memory_equal(c, b, n);
    assert_int_equal(md_rct_events_count(n + 8), MD_RCT_ESIZE);
}

static void values_battery_module(void **state)
{
    (void)state;
    uint8_t b[128], c[128];
    size_t n =
        unhex("19f60c0019f60c001af60c001af70c001af60c001af60c001bf60c001af70c001bf70"
              "c001bf60c001bf60c001bf60c001cfd0c001bfd0c001cfd0c001bff0c001bfd0c001b"
              "fd0c001bfd0c001afd0c001afd0c001afd0c001aff0c0019fd0c00",
              b, sizeof b);
    assert_int_equal(n, md_rct_type_size(MD_RCT_T_BATTERY_MODULE_STATUS));
    md_rct_cell cell;
    md_rct_cell_get(b, 0, &cell);
    assert_int_equal(cell.temp, 25);
    assert_int_equal(cell.mv, 3318);
    assert_int_equal(cell.status, 0);
    md_rct_cell_get(b, 15, &cell);
    assert_int_equal(cell.temp, 27);
    assert_int_equal(cell.mv, 3327);
    for (size_t i = 0; i < MD_RCT_CELLS; i++) {
        md_rct_cell_get(b, i, &cell);
        md_rct_cell_put(c, i, &cell);
    }
    assert_memory_equal(b, c, n);

    n = unhex("0000000046d25b6223db414000000000f163ab6619045e4000000000baeea06500009041"
              "0e0000001ba4e26000002442",
              b, sizeof b);
    assert_int_equal(n, md_rct_type_size(MD_RCT_T_BATTERY_MODULE_STATISTICS));
    md_rct_stat s;
    md_rct_stat_get(b, 0, &s);
    assert_int_equal(s.cell, 0);
    assert_int_equal(s.time, 1650184774);
    assert_true(fabsf(s.value - 3.029f) < 0.0005f);
    md_rct_stat_get(b, 3, &s);
    assert_int_equal(s.cell, 14);
    assert_int_equal(s.time, 1625465883);
    assert_true(s.value == 41.0f);
    for (size_t i = 0; i < MD_RCT_STAT_RECORDS; i++) {
        md_rct_stat_get(b, i, &s);
        md_rct_stat_put(c, i, &s);
    }
    assert_memory_equal(b, c, n);

    n = unhex("01fb00000152000001fb000001fb0000018a000001fb0000018a0000018a0000018a0000"
              "01fb0000018a000001c2000001c2000001520000026b0000026b0000018a000001fb0000"
              "01fb0000018a000001c2000001c2000001fb000001c20000",
              b, sizeof b);
    assert_int_equal(n, md_rct_type_size(MD_RCT_T_BATTERY_MODULE_RESISTANCE));
    assert_int_equal(md_rct_resistance_get(b, 0), 0x01FB); /* 1.9805 mOhm x 256 */
    assert_int_equal(md_rct_resistance_get(b, 14), 0x026B);
    for (size_t i = 0; i < MD_RCT_CELLS; i++)
        md_rct_resistance_put(c, i, md_rct_resistance_get(b, i));
    assert_memory_equal(b, c, n);
}

static void type_names(void **state)
{
    (void)state;
    for (int t = 0; t < MD_RCT_T_COUNT; t++)
        assert_int_equal(md_rct_type_from_name(md_rct_type_name(t)), t);
    assert_int_equal(md_rct_type_from_name("float"), MD_RCT_T_FLOAT);
    assert_int_equal(md_rct_type_from_name("DOUBLE"), -1);
    assert_null(md_rct_type_name(MD_RCT_T_COUNT));
    assert_int_equal(md_rct_type_size(MD_RCT_T_STRING), 0);
    assert_int_equal(md_rct_type_size(MD_RCT_T_INT16), 2);
}

/* }===== */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_check_values),
        cmocka_unit_test(crc_matches_bitwise),
        cmocka_unit_test(build_every_command),
        cmocka_unit_test(build_escapes),
        cmocka_unit_test(build_long_write_260_bytes),
        cmocka_unit_test(build_errors),
        cmocka_unit_test(command_names),
        cmocka_unit_test(parse_vectors),
        cmocka_unit_test(parse_every_split),
        cmocka_unit_test(parse_noise_between_frames),
        cmocka_unit_test(parse_errors_and_resync),
        cmocka_unit_test(parse_rescan_finds_hidden_frame),
        cmocka_unit_test(parse_truncated_waits),
        cmocka_unit_test(parse_buffer_limits),
        cmocka_unit_test(build_parse_round_trip),
        cmocka_unit_test(values_integers),
        cmocka_unit_test(values_float),
        cmocka_unit_test(values_string),
        cmocka_unit_test(values_series_and_events),
        cmocka_unit_test(values_battery_module),
        cmocka_unit_test(type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
