/*
 * test_growatt.c - cmocka driver for core/growatt.c, the Growatt datalogger
 * codec.
 *
 * What is checked: the CRC and the scramble against captured frames (a
 * server ACK, a ping, a config read from grott's captures); every builder
 * byte for byte against captured or reference frames (ACKs for protocols 2
 * and 6, inverter register read and write, config get and set, the ping)
 * and in round trips through the parser (0x10 writes); build errors; the
 * streaming parser on a stream split at every byte, on several frames in
 * one feed, on garbage before, between and inside frames, on each kind of
 * bad frame (CRC, length, protocol) with the good frame after it still
 * found and exactly one error per loss of step; a frame too long for the
 * buffer; reset.
 *
 * Frames are hex strings as they travel, so a failure compares by eye with
 * a capture.
 *
 * Build and run (links core/growatt.c only):
 *   cc -std=c11 -D_GNU_SOURCE -Icore tests/c/test_growatt.c core/growatt.c \
 *      $(pkg-config --cflags --libs cmocka) -o /tmp/t && /tmp/t
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "growatt.h"

/* {===== vectors ===== */

/* Captured by grott users (the reference packets), protocol 6. */
static const char ACK6[] = "00110006000301044720d9";
static const char PING6[] = "00200006002001160d222c4559454c74412d7761747447726f776174744772"
                            "6f7761747447720864";
static const char CONFIG_GET6[] = "00010006002401190d222c4559454c74412d7761747447726f77617474"
                                  "47726f7761747447726f7361615995";
/* Built by the reference notes' rules and cross-checked there. */
static const char ACK2[] = "000100020003010400";
static const char READ6[] = "00010006002401050d222c4559454c74412d7761747447726f7761747447"
                            "726f7761747447726f7761749418";
static const char WRITE6[] = "00010006002401060d222c4559454c74412d7761747447726f7761747447"
                             "726f7761747447726f746146411e";
static const char TIME6[] = "00010006003701180d222c4559454c74412d7761747447726f776174744772"
                            "6f7761747447726f6861674677405f5a514c5976454f45514e4070485a464d"
                            "28";
static const char SERIAL[] = "JPC281833B";

/* }===== */

/* {===== helpers ===== */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void assert_frame(const uint8_t *got, int n, const char *hex)
{
    uint8_t want[512];
    size_t wn = unhex(hex, want, sizeof want);
    assert_int_equal(n, (int)wn);
    assert_memory_equal(got, want, wn);
}

/* What a parse run said: frames (by start offset in the stream) and errors. */
typedef struct result {
    int frames, errors, codes[16];
    size_t lens[16];
    uint8_t types[16];
} result;

static void note(result *r, int rc, const md_gw_frame *f)
{
    if (rc == 1) {
        assert_true(r->frames < 16);
        r->lens[r->frames] = f->raw_len;
        r->types[r->frames++] = f->type;
    } else {
        assert_true(r->errors < 16);
        r->codes[r->errors++] = rc;
    }
}

/* Feed stream in chunks of `chunk` bytes (0: all at once), collecting. */
static result run(const uint8_t *s, size_t n, size_t chunk, size_t cap)
{
    static uint8_t buf[MD_GW_MAX_FRAME];
    md_gw_parser p;
    result r = {0};
    assert_true(cap <= sizeof buf);
    md_gw_parser_init(&p, buf, cap);
    size_t off = 0;
    while (off < n) {
        size_t want = chunk == 0 || chunk > n - off ? n - off : chunk;
        size_t took = md_gw_parser_feed(&p, s + off, want);
        off += took;
        md_gw_frame f;
        int rc;
        while ((rc = md_gw_parse(&p, &f)) != 0)
            note(&r, rc, &f);
    }
    return r;
}

/* }===== */

static void crc_and_scramble(void **state)
{
    (void)state;
    uint8_t f[64];
    size_t n = unhex(ACK6, f, sizeof f);
    assert_int_equal(md_gw_crc(f, n - 2), 0x20D9);
    n = unhex(PING6, f, sizeof f);
    assert_int_equal(md_gw_crc(f, n - 2), md_gw_get_u16(f + n - 2));
    /* The ping's body unscrambles to the serial and 20 zero bytes. */
    md_gw_scramble(f + 8, n - 10, 0);
    assert_memory_equal(f + 8, SERIAL, 10);
    for (size_t i = 18; i < 38; i++)
        assert_int_equal(f[i], 0);
    /* Key alignment: a zero byte at key index k shows key[k]. */
    uint8_t z[9] = {0};
    md_gw_scramble(z, sizeof z, 3);
    assert_memory_equal(z, "wattGrowa", 9);
    md_gw_scramble(z, sizeof z, 3);
    for (size_t i = 0; i < sizeof z; i++)
        assert_int_equal(z[i], 0);
    /* Eight bytes at a time, then one: the same as a byte at a time, for
     * every length, start in the buffer and key index. */
    static const char key[] = "Growatt";
    uint8_t b[48], want[48];
    for (size_t off = 0; off < 14; off++)
        for (size_t start = 0; start < 3; start++)
            for (size_t len = 0; len + start <= sizeof b; len++) {
                for (size_t i = 0; i < sizeof b; i++)
                    b[i] = want[i] = (uint8_t)(i * 37 + len);
                for (size_t i = 0; i < len; i++)
                    want[start + i] ^= (uint8_t)key[(off + i) % 7];
                md_gw_scramble(b + start, len, off);
                assert_memory_equal(b, want, sizeof b);
            }
}

static void build_acks(void **state)
{
    (void)state;
    uint8_t out[64];
    assert_frame(out, md_gw_build_ack(out, sizeof out, 17, 6, 1, MD_GW_DATA), ACK6);
    assert_frame(out, md_gw_build_ack(out, sizeof out, 1, 2, 1, MD_GW_DATA), ACK2);
}

static void build_commands(void **state)
{
    (void)state;
    uint8_t out[128];
    assert_frame(out, md_gw_build_read_holding(out, sizeof out, 1, 6, 1, SERIAL, 10, 0, 0),
                 READ6);
    assert_frame(out,
                 md_gw_build_write_holding(out, sizeof out, 1, 6, 1, SERIAL, 10, 3, 50),
                 WRITE6);
    assert_frame(out, md_gw_build_config_get(out, sizeof out, 1, 6, 1, SERIAL, 10, 4, 21),
                 CONFIG_GET6);
    const char *t = "2020-08-17 20:47:51";
    assert_frame(out,
                 md_gw_build_config_set(out, sizeof out, 1, 6, 1, SERIAL, 10, 31, t,
                                        strlen(t)),
                 TIME6);
    assert_frame(out, md_gw_build_ping(out, sizeof out, 0x20, 6, 1, SERIAL, 10), PING6);
}

/* Protocol 5 has no pad, protocol 2 no scramble; 0x10 round trip. */
static void build_protocols_and_multiple(void **state)
{
    (void)state;
    uint8_t out[128], buf[MD_GW_MAX_FRAME];
    int n = md_gw_build_read_holding(out, sizeof out, 9, 5, 0x51, SERIAL, 10, 3000, 3010);
    assert_int_equal(n, 8 + 10 + 4 + 2);
    n = md_gw_build_read_holding(out, sizeof out, 9, 2, 1, SERIAL, 10, 3000, 3010);
    assert_int_equal(n, 8 + 10 + 4);
    assert_memory_equal(out + 8, SERIAL, 10);
    assert_int_equal(md_gw_get_u16(out + 18), 3000);

    uint16_t values[3] = {1, 0x4772, 0xFFFF};
    n = md_gw_build_write_multiple(out, sizeof out, 7, 6, 1, SERIAL, 10, 100, values, 3);
    assert_int_equal(n, 8 + 10 + 20 + 4 + 6 + 2);
    md_gw_parser p;
    md_gw_parser_init(&p, buf, sizeof buf);
    assert_int_equal(md_gw_parser_feed(&p, out, (size_t)n), (size_t)n);
    md_gw_frame f;
    assert_int_equal(md_gw_parse(&p, &f), 1);
    assert_int_equal(f.type, MD_GW_WRITE_MULTIPLE);
    assert_int_equal(f.seq, 7);
    uint8_t body[64];
    memcpy(body, f.body, f.body_len);
    md_gw_scramble(body, f.body_len, 0);
    assert_int_equal(md_gw_get_u16(body + 30), 100);
    assert_int_equal(md_gw_get_u16(body + 32), 102);
    assert_int_equal(md_gw_get_u16(body + 36), 0x4772);
    assert_int_equal(md_gw_parse(&p, &f), 0);
}

static void build_errors(void **state)
{
    (void)state;
    uint8_t out[64];
    uint16_t v = 0;
    assert_int_equal(md_gw_build_ack(out, sizeof out, 1, 4, 1, 4), MD_GW_EPROTOCOL);
    assert_int_equal(md_gw_build_ack(out, 10, 1, 6, 1, 4), MD_GW_ESPACE);
    assert_int_equal(md_gw_build_read_holding(out, sizeof out, 1, 6, 1, "12345678901", 11,
                                              0, 0),
                     MD_GW_ERANGE);
    assert_int_equal(md_gw_build_read_holding(out, sizeof out, 1, 6, 1, SERIAL, 10, 5, 4),
                     MD_GW_ERANGE);
    assert_int_equal(md_gw_build_read_holding(out, sizeof out, 1, 6, 1, SERIAL, 10, 0, 125),
                     MD_GW_ERANGE);
    assert_int_equal(md_gw_build_write_multiple(out, sizeof out, 1, 6, 1, SERIAL, 10, 0,
                                                &v, 0),
                     MD_GW_ERANGE);
    assert_int_equal(md_gw_build(out, sizeof out, 1, 6, 1, 4, out, MD_GW_MAX_LENGTH),
                     MD_GW_ELENGTH);
    assert_string_equal(md_err_token(MD_GW_ECRC), "crc");
    assert_string_equal(md_err_token(MD_GW_ELENGTH), "length");
    assert_string_equal(md_err_token(MD_GW_EPROTOCOL), "protocol");
    assert_string_equal(md_err_token(MD_GW_ERANGE), "range");
    assert_string_equal(md_gw_type_name(0x50), "buffered");
    assert_null(md_gw_type_name(0x77));
}

/* A stream: ping, config get, ACK (protocol 6), ACK (protocol 2), read. */
static size_t stream(uint8_t *s, size_t cap)
{
    size_t n = 0;
    n += unhex(PING6, s + n, cap - n);
    n += unhex(CONFIG_GET6, s + n, cap - n);
    n += unhex(ACK6, s + n, cap - n);
    n += unhex(ACK2, s + n, cap - n);
    n += unhex(READ6, s + n, cap - n);
    return n;
}

static void parse_split_everywhere(void **state)
{
    (void)state;
    uint8_t s[512];
    size_t n = stream(s, sizeof s);
    static const uint8_t types[5] = {0x16, 0x19, 0x04, 0x04, 0x05};
    for (size_t chunk = 0; chunk <= n; chunk++) {
        result r = run(s, n, chunk, MD_GW_MAX_FRAME);
        assert_int_equal(r.frames, 5);
        assert_int_equal(r.errors, 0);
        assert_memory_equal(r.types, types, 5);
    }
    /* Two pieces, cut at every byte. */
    for (size_t cut = 1; cut < n; cut++) {
        static uint8_t buf[MD_GW_MAX_FRAME];
        md_gw_parser p;
        md_gw_parser_init(&p, buf, sizeof buf);
        result r = {0};
        md_gw_frame f;
        int rc;
        md_gw_parser_feed(&p, s, cut);
        while ((rc = md_gw_parse(&p, &f)) != 0)
            note(&r, rc, &f);
        md_gw_parser_feed(&p, s + cut, n - cut);
        while ((rc = md_gw_parse(&p, &f)) != 0)
            note(&r, rc, &f);
        assert_int_equal(r.frames, 5);
        assert_int_equal(r.errors, 0);
        assert_int_equal(md_gw_parser_pending(&p), 0);
    }
}

static void parse_fields(void **state)
{
    (void)state;
    uint8_t s[64], buf[MD_GW_MAX_FRAME];
    size_t n = unhex(PING6, s, sizeof s);
    md_gw_parser p;
    md_gw_parser_init(&p, buf, sizeof buf);
    md_gw_parser_feed(&p, s, n);
    md_gw_frame f;
    assert_int_equal(md_gw_parse(&p, &f), 1);
    assert_int_equal(f.seq, 0x20);
    assert_int_equal(f.protocol, 6);
    assert_int_equal(f.length, 0x20);
    assert_int_equal(f.unit, 1);
    assert_int_equal(f.type, 0x16);
    assert_int_equal(f.raw_len, n);
    assert_memory_equal(f.raw, s, n);
    assert_int_equal(f.body_len, 30);
}

/* Garbage before and between frames: no frame lost, one error each time. */
static void parse_garbage(void **state)
{
    (void)state;
    uint8_t s[600];
    size_t n = 0;
    static const char junk[] = "AT+\r\n\x00\x06\x00\x07garbage\x00\x02";
    memcpy(s, junk, sizeof junk - 1);
    n += sizeof junk - 1;
    n += stream(s + n, sizeof s - n);
    memcpy(s + n, junk, sizeof junk - 1);
    n += sizeof junk - 1;
    n += unhex(ACK6, s + n, sizeof s - n);
    /* "e\0\2" + ACK6 looks like the start of a protocol-2 frame 23 bytes
     * long: the ACK is handed out once the bytes after it show that this
     * was noise (a later frame), not lost. */
    n += unhex(PING6, s + n, sizeof s - n);
    for (size_t chunk = 0; chunk < 12; chunk++) {
        result r = run(s, n, chunk, MD_GW_MAX_FRAME);
        assert_int_equal(r.frames, 7);
        assert_int_equal(r.errors, 2);
    }
}

/* Each kind of bad frame, the good frame after it still found. */
static void parse_bad_frames(void **state)
{
    (void)state;
    uint8_t s[256];
    size_t n;
    result r;

    /* CRC: one byte of a ping flipped. */
    n = unhex(PING6, s, sizeof s);
    s[20] ^= 1;
    n += unhex(ACK6, s + n, sizeof s - n);
    r = run(s, n, 0, MD_GW_MAX_FRAME);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.codes[0], MD_GW_ECRC);
    assert_int_equal(r.frames, 1);
    assert_int_equal(r.types[0], 0x04);

    /* Protocol id 7. */
    n = unhex("0001000700030104", s, sizeof s);
    n += unhex(ACK6, s + n, sizeof s - n);
    r = run(s, n, 0, MD_GW_MAX_FRAME);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.codes[0], MD_GW_EPROTOCOL);
    assert_int_equal(r.frames, 1);

    /* Length 1, then length past the maximum. */
    n = unhex("000100060001", s, sizeof s);
    n += unhex(ACK6, s + n, sizeof s - n);
    n += unhex("00010006ffff", s + n, sizeof s - n);
    n += unhex(ACK2, s + n, sizeof s - n);
    n += unhex(ACK6, s + n, sizeof s - n); /* after noise, a protocol-2 frame
                                             needs the next frame's header */
    r = run(s, n, 1, MD_GW_MAX_FRAME);
    assert_int_equal(r.errors, 2);
    assert_int_equal(r.codes[0], MD_GW_ELENGTH);
    assert_int_equal(r.codes[1], MD_GW_ELENGTH);
    assert_int_equal(r.frames, 3);

    /* A frame cut short: its length swallows the next frame, whose bytes
     * are looked at again. */
    n = unhex(PING6, s, sizeof s);
    n -= 15;
    n += unhex(CONFIG_GET6, s + n, sizeof s - n);
    n += unhex(ACK6, s + n, sizeof s - n);
    r = run(s, n, 0, MD_GW_MAX_FRAME);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.codes[0], MD_GW_ECRC);
    assert_int_equal(r.frames, 2);
    assert_int_equal(r.types[0], 0x19);
}

/* A frame longer than the buffer is a length error; what follows is found. */
static void parse_small_buffer(void **state)
{
    (void)state;
    uint8_t s[256];
    size_t n = unhex(CONFIG_GET6, s, sizeof s);
    n += unhex(ACK6, s + n, sizeof s - n);
    result r = run(s, n, 0, 32);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.codes[0], MD_GW_ELENGTH);
    assert_int_equal(r.frames, 1);
    assert_int_equal(r.types[0], 0x04);
}

static void parse_reset(void **state)
{
    (void)state;
    uint8_t s[64], buf[MD_GW_MAX_FRAME];
    size_t n = unhex(PING6, s, sizeof s);
    md_gw_parser p;
    md_gw_parser_init(&p, buf, sizeof buf);
    md_gw_parser_feed(&p, s, n - 3);
    md_gw_frame f;
    assert_int_equal(md_gw_parse(&p, &f), 0);
    assert_int_equal(md_gw_parser_pending(&p), n - 3);
    md_gw_parser_reset(&p);
    assert_int_equal(md_gw_parser_pending(&p), 0);
    md_gw_parser_feed(&p, s, n);
    assert_int_equal(md_gw_parse(&p, &f), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_and_scramble),
        cmocka_unit_test(build_acks),
        cmocka_unit_test(build_commands),
        cmocka_unit_test(build_protocols_and_multiple),
        cmocka_unit_test(build_errors),
        cmocka_unit_test(parse_split_everywhere),
        cmocka_unit_test(parse_fields),
        cmocka_unit_test(parse_garbage),
        cmocka_unit_test(parse_bad_frames),
        cmocka_unit_test(parse_small_buffer),
        cmocka_unit_test(parse_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
