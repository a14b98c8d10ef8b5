/*
 * fuzz_growatt.c - libFuzzer target for core/growatt.c, the Growatt
 * datalogger codec.
 *
 * Input: byte 0 picks the chunk size the stream is fed in (0: all at
 * once), byte 1 the parser's buffer size (0: MD_GW_MAX_FRAME, else a small
 * one, so that frames too long for it occur); the rest is the stream.
 *
 * Contracts checked (abort on a broken one), besides crashes and sanitizer
 * reports:
 *   - the parser's answer (frames and errors, in order) does not depend on
 *     how the stream is chunked;
 *   - every frame is consistent: raw length = 6 + length (+ 2 for protocols
 *     5 and 6), a CRC that checks, a protocol of 2, 5 or 6; and building
 *     a frame from its header and unscrambled body gives back its exact
 *     bytes (nothing is accepted in a form the builder would not make);
 *   - errors come one per loss of step: never two in a row without a frame
 *     between them;
 *   - frames do not overlap and come in stream order; at the end the parser
 *     holds no more than its buffer.
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_growatt.c core/growatt.c -o /tmp/fuzz_growatt
 *   /tmp/fuzz_growatt tests/fuzz/corpus/growatt
 *
 * Seeds (tests/fuzz/corpus/growatt/): captured frames (protocol 6 ping,
 * ACK, config read, a TL-X data record), the builders' frames (register
 * read/write, clock set, protocol 2 ACK), a stream of several, a frame with
 * a bad CRC, garbage before a frame, each behind the two selector bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "growatt.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_EVENTS = 4096 };

typedef struct event {
    int rc;
    uint32_t hash; /* of the frame's raw bytes */
    size_t len;
} event;

typedef struct run {
    event ev[MAX_EVENTS];
    int n;
} run;

static uint32_t fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void check_frame(const md_gw_frame *f)
{
    static uint8_t body[MD_GW_MAX_FRAME], out[MD_GW_MAX_FRAME];
    bool crc = f->protocol != 2;
    CHECK(md_gw_protocol_valid(f->protocol));
    CHECK(f->raw_len == 6 + (size_t)f->length + (crc ? 2 : 0));
    CHECK(f->body_len + 2 == f->length);
    if (crc)
        CHECK(md_gw_crc(f->raw, f->raw_len - 2) ==
              md_gw_get_u16(f->raw + f->raw_len - 2));
    memcpy(body, f->body, f->body_len);
    if (crc)
        md_gw_scramble(body, f->body_len, 0);
    int n = md_gw_build(out, sizeof out, f->seq, f->protocol, f->unit, f->type, body,
                        f->body_len);
    CHECK(n == (int)f->raw_len);
    CHECK(memcmp(out, f->raw, f->raw_len) == 0);
}

static void parse(const uint8_t *s, size_t n, size_t chunk, size_t cap, run *r)
{
    static uint8_t buf[MD_GW_MAX_FRAME];
    md_gw_parser p;
    md_gw_parser_init(&p, buf, cap);
    r->n = 0;
    size_t off = 0;
    int last = 1;
    while (off < n) {
        size_t want = chunk == 0 || chunk > n - off ? n - off : chunk;
        off += md_gw_parser_feed(&p, s + off, want);
        md_gw_frame f;
        int rc;
        while ((rc = md_gw_parse(&p, &f)) != 0) {
            CHECK(rc == 1 || rc == MD_GW_ECRC || rc == MD_GW_ELENGTH ||
                  rc == MD_GW_EPROTOCOL);
            CHECK(!(rc < 0 && last < 0));
            last = rc;
            if (r->n == MAX_EVENTS)
                continue;
            event *e = &r->ev[r->n++];
            e->rc = rc;
            e->len = 0;
            e->hash = 0;
            if (rc == 1) {
                check_frame(&f);
                e->len = f.raw_len;
                e->hash = fnv(f.raw, f.raw_len);
            }
        }
        CHECK(md_gw_parser_pending(&p) <= cap);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run whole, chunked;
    if (size < 2)
        return 0;
    size_t chunk = data[0];
    size_t cap = data[1] == 0 ? MD_GW_MAX_FRAME : 16 + data[1];
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    parse(s, n, 0, cap, &whole);
    parse(s, n, chunk == 0 ? 1 : chunk, cap, &chunked);
    CHECK(whole.n == chunked.n);
    for (int i = 0; i < whole.n; i++) {
        CHECK(whole.ev[i].rc == chunked.ev[i].rc);
        CHECK(whole.ev[i].len == chunked.ev[i].len);
        CHECK(whole.ev[i].hash == chunked.ev[i].hash);
    }
    return 0;
}
