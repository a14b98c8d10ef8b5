/*
 * fuzz_rctcodec.c - libFuzzer target for core/rctcodec.c, the RCT Power codec.
 *
 * Input: byte 0 picks the chunk size the stream is fed in (0: all at
 * once), byte 1 the parser's buffer size (0: the protocol maximum, else a
 * small one, so that frames too long for it occur), the rest is the
 * stream. The same bytes also go through every value decoder.
 *
 * Contracts checked (abort on a broken one), besides crashes and sanitizer
 * reports:
 *   - the parser's answer does not depend on how the stream is chunked;
 *   - the parser is exactly "greedy from the first start byte": with s the
 *     first 0x2B at or after the current position, a frame is the bytes
 *     build() makes of it, starting at s (so parse(build(x)) == x and
 *     nothing is accepted in a non-canonical form), and after an error
 *     the rest of the answer is what a fresh parser makes of the stream
 *     from s + 1 on: the bad frame's bytes are rescanned, so a good frame
 *     that began inside it is re-emitted, never lost;
 *   - at the end the parser holds exactly the bytes from the last start;
 *   - payloads decoded as every type encode back to the same bytes.
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_rctcodec.c core/rctcodec.c -o /tmp/fuzz_rctcodec
 *   /tmp/fuzz_rctcodec tests/fuzz/corpus/rctcodec
 *
 * Seeds (tests/fuzz/corpus/rctcodec/): the frame vectors of the protocol
 * notes (reads, writes, responses, long and plant forms, the extension,
 * escaped ids and CRCs, a captured stream of seven reads, bad CRC, bad
 * escapes, "AT+\r" noise, cut frames), each behind the two selector bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rctcodec.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_EVENTS = 4096, MAX_STREAM = 4096 };

/* One thing the parser said: a frame (rc 1, copied out) or an error. */
typedef struct event {
    int rc;
    uint8_t command;
    uint32_t address, oid;
    size_t off, len; /* payload in the run's payload store */
} event;

typedef struct run {
    event ev[MAX_EVENTS];
    size_t n;
    uint8_t store[2 * MAX_STREAM];
    size_t used;
    size_t pending;
} run;

static uint8_t big_buf[MD_RCT_MAX_WIRE];
static uint8_t small_buf[1100];

/* Parse in[0..len) in chunks of `chunk` bytes with a parser buffer of cap. */
static void parse(const uint8_t *in, size_t len, size_t chunk, size_t cap, run *r)
{
    md_rct_parser p;
    md_rct_parser_init(&p, cap == 0 ? big_buf : small_buf,
                       cap == 0 ? sizeof big_buf : cap);
    r->n = r->used = 0;
    if (chunk == 0)
        chunk = len ? len : 1;
    for (size_t pos = 0; pos < len;) {
        size_t take = len - pos < chunk ? len - pos : chunk;
        const uint8_t *c = in + pos;
        pos += take;
        for (;;) {
            size_t used;
            md_rct_frame f;
            int rc = md_rct_parse(&p, c, take, &used, &f);
            CHECK(used <= take);
            c += used;
            take -= used;
            if (rc == 0) {
                CHECK(take == 0);
                break;
            }
            CHECK(rc == 1 || rc == MD_RCT_ECRC || rc == MD_RCT_ELENGTH ||
                  rc == MD_RCT_EESCAPE || rc == MD_RCT_ECOMMAND);
            CHECK(r->n < MAX_EVENTS);
            event *e = &r->ev[r->n++];
            *e = (event){.rc = rc};
            if (rc == 1) {
                CHECK(md_rct_command_valid(f.command));
                CHECK(r->used + f.payload_len <= sizeof r->store);
                e->command = f.command;
                e->address = f.address;
                e->oid = f.oid;
                e->off = r->used;
                e->len = f.payload_len;
                memcpy(r->store + r->used, f.payload, f.payload_len);
                r->used += f.payload_len;
            }
        }
    }
    r->pending = md_rct_parser_pending(&p);
}

static void same_events(const run *a, size_t from_a, const run *b)
{
    CHECK(a->n - from_a == b->n);
    for (size_t i = 0; i < b->n; i++) {
        const event *x = &a->ev[from_a + i], *y = &b->ev[i];
        CHECK(x->rc == y->rc);
        if (x->rc != 1)
            continue;
        CHECK(x->command == y->command && x->address == y->address && x->oid == y->oid);
        CHECK(x->len == y->len);
        CHECK(memcmp(a->store + x->off, b->store + y->off, x->len) == 0);
    }
    CHECK(a->pending == b->pending);
}

static const uint8_t *first_start(const uint8_t *p, size_t n)
{
    return memchr(p, MD_RCT_START, n);
}

static run whole, chunked, suffix;

static void check_parser(const uint8_t *in, size_t len, size_t chunk, size_t cap)
{
    parse(in, len, 0, cap, &whole);
    parse(in, len, chunk, cap, &chunked);
    same_events(&whole, 0, &chunked);

    static uint8_t built[MD_RCT_MAX_WIRE];
    size_t pos = 0;
    for (size_t i = 0; i < whole.n; i++) {
        const uint8_t *s = first_start(in + pos, len - pos);
        CHECK(s != NULL); /* every event begins at a start byte */
        size_t at = (size_t)(s - in);
        const event *e = &whole.ev[i];
        if (e->rc == 1) {
            int n = md_rct_build(built, sizeof built, e->command, e->address, e->oid,
                                 whole.store + e->off, e->len);
            CHECK(n > 0);
            CHECK(at + (size_t)n <= len);
            CHECK(memcmp(in + at, built, (size_t)n) == 0);
            pos = at + (size_t)n;
        } else {
            pos = at + 1;
        }
        /* the rest is what a fresh parser makes of the stream from pos on
         * (on long inputs for the first events only, which keeps the check
         * linear there and the fuzzer fast) */
        if (len <= 256 || i < 4) {
            parse(in + pos, len - pos, 0, cap, &suffix);
            same_events(&whole, i + 1, &suffix);
        }
    }
    const uint8_t *s = first_start(in + pos, len - pos);
    CHECK(whole.pending == (s ? len - (size_t)(s - in) : 0));
}

/* {===== values ===== */

static void check_values(const uint8_t *p, size_t n)
{
    uint8_t out[96];
    for (int t = MD_RCT_T_BOOL; t <= MD_RCT_T_INT32; t++) {
        int64_t v;
        size_t size = md_rct_type_size(t);
        int rc = md_rct_decode_int(t, p, n, &v);
        if (n != size) {
            CHECK(rc == MD_RCT_ESIZE);
            continue;
        }
        CHECK(rc == 0);
        CHECK(md_rct_encode_int(t, v, out) == (int)size);
        if (t == MD_RCT_T_BOOL)
            CHECK(out[0] == (p[0] != 0));
        else
            CHECK(memcmp(out, p, size) == 0);
    }
    float f;
    if (md_rct_decode_float(p, n, &f) == 0) {
        CHECK(md_rct_encode_float(f, out) == 4);
        CHECK(isnan(f) || memcmp(out, p, 4) == 0);
    }
    CHECK(md_rct_string_len(p, n) <= n);
    int count = md_rct_series_count(n);
    if (count >= 0) {
        static uint8_t back[MAX_STREAM];
        memcpy(back, p, 4);
        for (int i = 0; i < count; i++) {
            uint32_t t;
            float v;
            md_rct_series_get(p, (size_t)i, &t, &v);
            md_rct_series_put(back, (size_t)i, t, v);
            if (isnan(v))
                memcpy(back + 8 + 8 * (size_t)i, p + 8 + 8 * (size_t)i, 4);
        }
        CHECK(memcmp(back, p, n) == 0);
    }
    count = md_rct_events_count(n);
    if (count >= 0) {
        static uint8_t back[MAX_STREAM];
        memcpy(back, p, 4);
        for (int i = 0; i < count; i++) {
            uint32_t w[5];
            md_rct_event_get(p, (size_t)i, w);
            md_rct_event_put(back, (size_t)i, w);
        }
        CHECK(memcmp(back, p, n) == 0);
    }
    if (n == MD_RCT_MODULE_STATUS_SIZE) {
        for (size_t i = 0; i < MD_RCT_CELLS; i++) {
            md_rct_cell c;
            md_rct_cell_get(p, i, &c);
            md_rct_cell_put(out, i, &c);
            md_rct_resistance_put(out, i, md_rct_resistance_get(p, i));
            CHECK(memcmp(out + 4 * i, p + 4 * i, 2) == 0);
        }
    }
    if (n == MD_RCT_MODULE_STATISTICS_SIZE) {
        for (size_t i = 0; i < MD_RCT_STAT_RECORDS; i++) {
            md_rct_stat s;
            md_rct_stat_get(p, i, &s);
            md_rct_stat_put(out, i, &s);
            CHECK(isnan(s.value) || memcmp(out + 12 * i, p + 12 * i, 12) == 0);
        }
    }
}

/* }===== */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size - 2 > MAX_STREAM)
        return 0;
    size_t chunk = data[0];
    size_t cap = data[1] == 0 ? 0 : 16 + (size_t)data[1] * 4;
    const uint8_t *in = data + 2;
    size_t len = size - 2;
    check_parser(in, len, chunk, cap);
    check_values(in, len);
    return 0;
}
