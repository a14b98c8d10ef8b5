/*
 * fuzz_mbcodec.c - libFuzzer target for core/mbcodec.c, the Modbus codec.
 *
 * Every decoding path sees the same arbitrary bytes: the RTU and PDU
 * length rules (request and response), the CRC check of whatever frame a
 * rule delimits, the MBAP header, typed values of every type and order,
 * strings, bit fields and coil packing. Besides crashes and sanitizer
 * reports, the target checks the contracts the transports rely on and
 * aborts when one breaks:
 *   - a length rule never reads past `have`: each prefix is copied to the
 *     end of a heap buffer, so ASan sees the first byte too far;
 *   - a prefix returns 0 or the final answer, and once the whole frame is
 *     there the answer is its length, within the Modbus limits;
 *   - a decoded MBAP header encodes back to the same 7 bytes;
 *   - typed values and strings survive decode -> encode -> decode.
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_mbcodec.c core/mbcodec.c -o /tmp/fuzz_mbcodec
 *   /tmp/fuzz_mbcodec tests/fuzz/corpus/mbcodec
 *
 * Seeds (tests/fuzz/corpus/mbcodec/): hand-built frames, mostly the
 * examples of the Modbus application protocol spec, with computed CRCs:
 * RTU requests and responses of FC 3, 15, 16, 17, 22, 23, 43/14, an
 * exception, two Modbus TCP ADUs and a string register block.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mbcodec.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*len_fn)(const uint8_t *, size_t);

/* Longest prefix worth trying: every frame is known by 256 bytes. */
enum { PREFIX_MAX = MD_MB_MAX_RTU + 4 };

static int is_frame_error(int rc)
{
    return rc == MD_MB_EFUNC || rc == MD_MB_EMEI || rc == MD_MB_ECOUNT ||
           rc == MD_MB_ETOOLONG;
}

/* {===== frame lengths ===== */

/* end: one past the last byte of a heap buffer of size bytes */
static void check_lengths(len_fn fn, int rtu, const uint8_t *data, size_t size,
                          uint8_t *end)
{
    int final = fn(data, size);
    CHECK(final >= 0 || is_frame_error(final));
    CHECK(final >= 0 || md_err_is_own(final));
    if (final > 0) {
        CHECK(final >= (rtu ? 4 : 1));
        CHECK(final <= (rtu ? MD_MB_MAX_RTU : MD_MB_MAX_PDU));
    }
    size_t top = size < PREFIX_MAX ? size : PREFIX_MAX;
    for (size_t have = 0; have <= top; have++) {
        uint8_t *p = end - have; /* the prefix ends where the buffer does */
        memcpy(p, data, have);
        int got = fn(p, have);
        CHECK(got == 0 || got == final);
        if (final > 0 && have >= (size_t) final)
            CHECK(got == final);
    }
    if (rtu && final > 0 && (size_t) final <= size) {
        int rc = md_mb_rtu_check_crc(data, (size_t) final);
        CHECK(rc == 0 || rc == MD_MB_ECRC);
    }
}

static void check_mbap(const uint8_t *data, size_t size)
{
    if (size < MD_MB_MBAP_LEN)
        return;
    struct md_mb_mbap m;
    int rc = md_mb_mbap_decode(data, &m);
    CHECK(rc == 0 || rc == MD_MB_EPROTO || rc == MD_MB_ELENGTH);
    if (rc < 0)
        return;
    CHECK(m.pdu_len >= 1 && m.pdu_len <= MD_MB_MAX_PDU);
    uint8_t again[MD_MB_MBAP_LEN];
    CHECK(md_mb_mbap_encode(again, m.tid, m.pdu_len, m.unit) == 0);
    CHECK(memcmp(again, data, sizeof again) == 0);
    /* what a TCP transport does next: does the PDU match the header? */
    size_t have = size - MD_MB_MBAP_LEN;
    if (have > m.pdu_len)
        have = m.pdu_len;
    int len = md_mb_pdu_response_len(data + MD_MB_MBAP_LEN, have);
    CHECK(len >= 0 || is_frame_error(len));
    len = md_mb_pdu_request_len(data + MD_MB_MBAP_LEN, have);
    CHECK(len >= 0 || is_frame_error(len));
}

/* }===== */

/* {===== values ===== */

static int is_signed(enum md_mb_type t)
{
    return t == MD_MB_T_INT16 || t == MD_MB_T_INT32 || t == MD_MB_T_INT64;
}

/* Decode one value, encode it back: the registers must come out the same
 * (float32 NaNs may be quietened on the way through double, so for them
 * only NaN-ness is checked). */
static void check_value(const uint16_t *regs, size_t n, enum md_mb_type t,
                        enum md_mb_order o)
{
    unsigned nw = md_mb_type_regs(t);
    uint16_t back[4] = {0};
    if (n < nw) {
        int64_t s;
        CHECK(md_mb_decode_int(regs, n, t, o, &s) == MD_MB_EREGS);
        return;
    }
    if (t == MD_MB_T_FLOAT32 || t == MD_MB_T_FLOAT64) {
        double d;
        CHECK(md_mb_decode_float(regs, n, t, o, &d) == 0);
        CHECK(md_mb_encode_float(d, t, o, back, nw) == 0);
        if (t == MD_MB_T_FLOAT32 && isnan(d)) {
            double again;
            CHECK(md_mb_decode_float(back, nw, t, o, &again) == 0);
            CHECK(isnan(again));
            return;
        }
    } else if (is_signed(t)) {
        int64_t s;
        CHECK(md_mb_decode_int(regs, n, t, o, &s) == 0);
        CHECK(md_mb_encode_int(s, t, o, back, nw) == 0);
    } else {
        uint64_t u;
        CHECK(md_mb_decode_uint(regs, n, t, o, &u) == 0);
        CHECK(md_mb_encode_uint(u, t, o, back, nw) == 0);
        int64_t s;
        int rc = md_mb_decode_int(regs, n, t, o, &s);
        CHECK(rc == (u > INT64_MAX ? MD_MB_ERANGE : 0));
    }
    CHECK(memcmp(back, regs, nw * sizeof *regs) == 0);
}

/* A decoded string is trimmed, NUL-free, and decodes the same once encoded. */
static void check_string(const uint16_t *regs, size_t n, enum md_mb_order o)
{
    size_t outsize = 2 * n + 1;
    char *out = malloc(outsize); /* exact size: ASan catches a write too far */
    uint16_t *back = malloc(n * sizeof *back + 1);
    char *again = malloc(outsize);
    CHECK(out && back && again);
    int len = md_mb_decode_string(regs, n, o, out, outsize);
    CHECK(len >= 0 && (size_t)len <= 2 * n);
    CHECK(out[len] == '\0' && strlen(out) == (size_t)len);
    CHECK(len == 0 || out[len - 1] != ' ');
    CHECK(md_mb_encode_string(out, (size_t)len, o, back, n) == 0);
    CHECK(md_mb_decode_string(back, n, o, again, outsize) == len);
    CHECK(memcmp(out, again, (size_t)len + 1) == 0);
    CHECK(md_mb_decode_string(regs, n, o, out, outsize - 1) == MD_MB_ESPACE);
    free(again);
    free(back);
    free(out);
}

static void check_values(const uint8_t *data, size_t size)
{
    size_t n = size / 2;
    if (n > 128)
        n = 128; /* a long string adds nothing but time */
    uint16_t *regs = malloc(n * sizeof *regs + 1);
    CHECK(regs);
    md_mb_get_regs(data, n, regs);
    for (int o = 0; o < MD_MB_ORDER_COUNT; o++) {
        for (int t = 0; t < MD_MB_T_STRING; t++)
            check_value(regs, n, (enum md_mb_type)t, (enum md_mb_order)o);
        check_string(regs, n, (enum md_mb_order)o);
    }
    uint8_t *raw = malloc(2 * n + 1);
    CHECK(raw);
    md_mb_put_regs(regs, n, raw);
    CHECK(memcmp(raw, data, 2 * n) == 0);
    free(raw);
    free(regs);
}

static void check_bits(const uint8_t *data, size_t size)
{
    if (size >= 10) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | data[i];
        unsigned first = data[8], nbits = data[9];
        uint64_t b = md_mb_bits(v, first, nbits);
        if (nbits < 64)
            CHECK(b >> nbits == 0);
        if (first >= 64 || nbits == 0)
            CHECK(b == 0);
    }
    size_t n = size * 8;
    if (n > 2000)
        n = 2000; /* the most coils one read returns */
    uint8_t *bits = malloc(n + 1), *packed = malloc((n + 7) / 8 + 1);
    CHECK(bits && packed);
    md_mb_unpack_bits(data, n, bits);
    md_mb_pack_bits(bits, n, packed);
    CHECK(memcmp(packed, data, n / 8) == 0);
    free(packed);
    free(bits);
}

/* Type and order names come from device profiles: any text must parse to
 * a valid value or to the error, and a valid name must print back. */
static void check_names(const uint8_t *data, size_t size)
{
    char name[16];
    size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    int t = md_mb_type_from_name(name);
    CHECK(t == MD_MB_ETYPE || (t >= 0 && t < MD_MB_T_COUNT));
    if (t >= 0)
        CHECK(strcasecmp(md_mb_type_name(t), name) == 0);
    int o = md_mb_order_from_name(name);
    CHECK(o == MD_MB_EORDER || (o >= 0 && o < MD_MB_ORDER_COUNT));
    if (o >= 0)
        CHECK(strcasecmp(md_mb_order_name(o), name) == 0);
    if (size >= 3 && (data[1] & MD_MB_FC_EXCEPTION)) {
        const char *ex = md_mb_exception_name(data[2]);
        CHECK(ex == NULL || strlen(ex) > 0);
    }
}

/* }===== */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exactly size bytes, so that ASan flags a read one byte too far */
    uint8_t *scratch = malloc(size ? size : 1);
    CHECK(scratch);
    uint8_t *end = scratch + size;
    check_lengths(md_mb_rtu_request_len, 1, data, size, end);
    check_lengths(md_mb_rtu_response_len, 1, data, size, end);
    check_lengths(md_mb_pdu_request_len, 0, data, size, end);
    check_lengths(md_mb_pdu_response_len, 0, data, size, end);
    free(scratch);
    check_mbap(data, size);
    check_values(data, size);
    check_bits(data, size);
    check_names(data, size);
    return 0;
}
