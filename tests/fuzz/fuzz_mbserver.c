/*
 * fuzz_mbserver.c - libFuzzer target for core/mbserver.c, the pure half of
 * the Modbus server: request processing and request framing.
 *
 * The same arbitrary bytes go through two paths, each against a fresh
 * non-strict and a fresh strict map with a few pages set (registers at
 * 0..299 and 40000..40199, coils, discrete and input registers, device
 * identification objects incl. one near the size limit):
 *  - md_mbsrv_process() on the bytes as a request PDU;
 *  - the stream path of a connection: md_mbsrv_frame() over the bytes as a
 *    received TCP (MBAP) and RTU byte stream, dropping a byte where the
 *    server resynchronises or a gap would, then unwrap, process, wrap.
 * Besides crashes and sanitizer reports, the target checks the contracts
 * the transports rely on and aborts when one breaks:
 *   - a response PDU is delimited by the codec's own rule to exactly its
 *     length (md_mb_pdu_response_len(resp) == resp_len), so any client can
 *     frame what the server sends, and fits 253 bytes;
 *   - an exception response is FC | 0x80 and the code returned; NOREPLY
 *     only for PDUs that are not requests;
 *   - reads return what the map holds, a successful single write reads
 *     back, a strict map never answers an address that was not set;
 *   - a delimited frame lies within the bytes received, and a wrapped
 *     response ADU passes the CRC / MBAP checks and the codec's response
 *     framing;
 *   - the framing never reads past the bytes it was given (the stream
 *     sits at the end of an exactly sized heap buffer).
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_mbserver.c core/mbserver.c core/mbcodec.c -o /tmp/fuzz_mbserver
 *   /tmp/fuzz_mbserver tests/fuzz/corpus/mbserver
 *
 * Seeds (tests/fuzz/corpus/mbserver/): hand-built request PDUs of every
 * function code the server answers (the Modbus application protocol
 * spec's examples where it has one), MBAP ADUs incl. a pipelined pair, and
 * RTU frames with computed CRCs incl. a broadcast and an unknown FC.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbserver.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* {===== maps ===== */

static void fill(md_mbsrv_map *m, int kind, unsigned addr, size_t n, uint16_t seed)
{
    uint16_t v[200];
    for (size_t i = 0; i < n; i++)
        v[i] = (uint16_t)(seed + i * 7919u);
    CHECK(md_mbsrv_map_set(m, kind, addr, v, n) == 0);
}

static md_mbsrv_map *new_map(bool strict)
{
    md_mbsrv_map *m = md_mbsrv_map_new(strict);
    CHECK(m != NULL);
    fill(m, MD_MBSRV_HOLDING, 0, 200, 1);
    fill(m, MD_MBSRV_HOLDING, 200, 100, 2);
    fill(m, MD_MBSRV_HOLDING, 40000, 200, 3);
    fill(m, MD_MBSRV_INPUT, 30000, 125, 4);
    fill(m, MD_MBSRV_COIL, 0, 200, 5);
    fill(m, MD_MBSRV_DISCRETE, 65400, 136, 6);
    static const char big[MD_MBSRV_MAX_OBJECT] = {'x'};
    CHECK(md_mbsrv_map_set_object(m, 0, "moondog", 7) == 0);
    CHECK(md_mbsrv_map_set_object(m, 4, big, sizeof big) == 0);
    CHECK(md_mbsrv_map_set_object(m, 0x80, "ext", 3) == 0);
    CHECK(md_mbsrv_map_set_object(m, 0x81, big, 100) == 0);
    CHECK(md_mbsrv_map_set_object(m, 0x82, big, 0) == 0);
    return m;
}

/* }===== */

/* {===== processing ===== */

/* What a read response must carry: the map's values. */
static void check_read(const md_mbsrv_map *m, const uint8_t *req, const uint8_t *resp,
                       size_t len)
{
    uint8_t fc = req[0];
    if (fc != 3 && fc != 4)
        return;
    unsigned addr = md_mb_get_u16(req + 1), qty = md_mb_get_u16(req + 3);
    CHECK(len == 2 + 2 * qty && resp[1] == 2 * qty);
    uint16_t want[MD_MB_MAX_READ_REGS];
    CHECK(md_mbsrv_map_get(m, fc == 3 ? MD_MBSRV_HOLDING : MD_MBSRV_INPUT, addr, want,
                           qty) == 0);
    for (unsigned i = 0; i < qty; i++)
        CHECK(md_mb_get_u16(resp + 2 + 2 * i) == want[i]);
}

/* Process one PDU and check the response. Returns the rc. */
static int check_process(md_mbsrv_map *m, const uint8_t *req, size_t len, uint8_t *resp,
                         size_t *resp_len)
{
    md_mbsrv_op op;
    int parsed = md_mbsrv_parse(req, len, &op);
    bool existed = parsed == 0 && (op.rkind == MD_MBSRV_NO_KIND ||
                                   md_mbsrv_map_exists(m, op.rkind, op.raddr, op.rcount));
    memset(resp, 0xA5, MD_MB_MAX_PDU);
    *resp_len = 0;
    int rc = md_mbsrv_process(m, req, len, resp, resp_len);
    if (rc == MD_MBSRV_NOREPLY) {
        CHECK(len == 0 || req[0] == 0 || (req[0] & 0x80));
        return rc;
    }
    CHECK(rc >= 0 && rc <= 255);
    CHECK(*resp_len >= 2 && *resp_len <= MD_MB_MAX_PDU);
    CHECK(md_mb_pdu_response_len(resp, *resp_len) == (int)*resp_len);
    if (rc > 0) {
        CHECK(*resp_len == 2 && resp[0] == (req[0] | 0x80) && resp[1] == rc);
        CHECK(parsed == rc || parsed == 0); /* execute adds 02 (strict), 04 */
        return rc;
    }
    CHECK(parsed == 0 && resp[0] == req[0]);
    CHECK(existed); /* strict maps: never an answer for an unset address */
    check_read(m, req, resp, *resp_len);
    if (req[0] == 6) { /* a successful single write reads back */
        uint16_t v;
        md_mbsrv_map_get(m, MD_MBSRV_HOLDING, md_mb_get_u16(req + 1), &v, 1);
        CHECK(v == md_mb_get_u16(req + 3));
    }
    return rc;
}

/* }===== */

/* {===== stream framing ===== */

/* A response ADU must pass the checks a client makes. */
static void check_adu(int framing, const uint8_t *adu, size_t n, size_t pdu_len)
{
    if (framing == MD_MBSRV_MBAP) {
        struct md_mb_mbap h;
        CHECK(n == MD_MB_MBAP_LEN + pdu_len);
        CHECK(md_mb_mbap_decode(adu, &h) == 0 && h.pdu_len == pdu_len);
    } else {
        CHECK(n == pdu_len + 3);
        CHECK(md_mb_rtu_check_crc(adu, n) == 0);
        CHECK(md_mb_rtu_response_len(adu, n) == (int)n);
    }
}

/*
 * Walk the bytes as a received stream, like a connection does: answer each
 * delimited ADU, drop a byte on RTU garbage, stop at a broken MBAP header.
 * When a partial frame is left, a quiet gap drops a byte on RTU; on MBAP
 * the client would send the rest, which a fuzzer cannot, so stop.
 */
static void check_stream(int framing, md_mbsrv_map *m, const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    uint8_t *buf = malloc(size); /* exactly sized: over-reads hit ASan */
    CHECK(buf != NULL);
    memcpy(buf, data, size);
    size_t pos = 0;
    while (pos < size) {
        size_t have = size - pos;
        int n = md_mbsrv_frame(framing, buf + pos, have);
        if (framing == MD_MBSRV_MBAP && n == MD_MBSRV_EBADMBAP)
            break;
        if (n <= 0) {
            CHECK(n == 0 || (framing == MD_MBSRV_RTU_FRAMING && n == -1));
            if (framing == MD_MBSRV_MBAP)
                break;
            pos++;
            continue;
        }
        CHECK((size_t)n <= have);
        CHECK(framing == MD_MBSRV_MBAP ? n >= MD_MB_MBAP_LEN + 1 && n <= MD_MB_MAX_TCP
                                       : n >= 4 && n <= MD_MB_MAX_RTU);
        md_mbsrv_adu a;
        md_mbsrv_unwrap(framing, buf + pos, (size_t)n, &a);
        CHECK(a.pdu >= buf + pos && a.pdu + a.pdu_len <= buf + pos + n);
        uint8_t resp[MD_MB_MAX_PDU], out[MD_MB_MAX_TCP];
        size_t resp_len;
        if (check_process(m, a.pdu, a.pdu_len, resp, &resp_len) != MD_MBSRV_NOREPLY) {
            size_t len = md_mbsrv_wrap(framing, a.tid, a.unit, resp, resp_len, out);
            check_adu(framing, out, len, resp_len);
        }
        pos += (size_t)n;
    }
    free(buf);
}

/* }===== */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int strict = 0; strict <= 1; strict++) {
        md_mbsrv_map *m = new_map(strict);
        uint8_t resp[MD_MB_MAX_PDU];
        size_t resp_len;
        check_process(m, data, size, resp, &resp_len);
        check_stream(MD_MBSRV_MBAP, m, data, size);
        check_stream(MD_MBSRV_RTU_FRAMING, m, data, size);
        md_mbsrv_map_free(m);
    }
    return 0;
}
