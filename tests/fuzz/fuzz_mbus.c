/*
 * fuzz_mbus.c - libFuzzer target for the Modbus client's own response
 * framing (mbus_base.c): the ADU length rules for MBAP and RTU, the check of a
 * complete ADU against its request (transaction id, unit, CRC, function
 * code, exception) and the extraction of the response data.
 *
 * Input: byte 0 picks the transport, byte 1 the function code, byte 2 the
 * quantity, byte 3 how the rest is cut into chunks; the rest is what the
 * device "sent". It is fed as a stream would arrive and as one datagram.
 * Contracts checked (abort on violation): a length, once known, never
 * changes as more bytes arrive and never exceeds the buffer; an accepted
 * response fills at most the request's data buffer, and for reads exactly
 * the bytes the request asked for.
 */
#include <stdlib.h>
#include <string.h>

#include "mbus_impl.h"

static const uint8_t fcs[] = {1, 2, 3, 4, 5, 6, 15, 16, 17, 22, 23, 43};
static const md_mbus_transport transports[] = {MD_MBUS_TCP, MD_MBUS_UDP, MD_MBUS_RTU_TCP,
                                               MD_MBUS_RTU_UDP};

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void setup(md_mbus *b, md_mbus_req *r, const uint8_t *data)
{
    memset(b, 0, sizeof *b);
    b->cfg.transport = transports[data[0] % 4];
    b->tid = 7;
    memset(r, 0, sizeof *r);
    r->unit = 1;
    r->fc = fcs[data[1] % sizeof fcs];
    unsigned max = r->fc <= 2 ? MD_MBUS_MAX_BITS : MD_MBUS_MAX_REGS;
    r->count = (uint16_t)(data[2] % max + 1);
    r->wcount = 2;
    r->mei_code = 1;
}

/* Expected data length of an accepted read response. */
static size_t read_bytes(const md_mbus_req *r)
{
    if (r->fc == 1 || r->fc == 2)
        return (r->count + 7u) / 8u;
    if (r->fc == 3 || r->fc == 4 || r->fc == 23)
        return 2u * r->count;
    return 0;
}

static void accept_adu(md_mbus *b, md_mbus_req *r, const uint8_t *adu, size_t n)
{
    const uint8_t *pdu;
    size_t pdu_len;
    bool other = false;
    int rc = mbus_check_adu(b, r, adu, n, &pdu, &pdu_len, &other);
    if (rc != 0)
        return;
    check(pdu >= adu && pdu + pdu_len <= adu + n);
    if (mbus_take_response(r, pdu, pdu_len) != 0)
        return;
    check(r->data_len <= sizeof r->data);
    size_t want = read_bytes(r);
    if (want)
        check(r->data_len == want);
}

/* Feed the bytes in chunks, as a stream delivers them. */
static void as_stream(md_mbus *b, md_mbus_req *r, const uint8_t *p, size_t n,
                      unsigned step)
{
    int known = 0;
    for (size_t have = 0; have < n;) {
        have += step < n - have ? step : n - have;
        int len = mbus_adu_len(b, p, have);
        if (len < 0)
            return;
        if (known > 0)
            check(len == known); /* more bytes never change a known length */
        if (len == 0)
            continue;
        known = len;
        check(len <= 600);
        if ((size_t)len <= have) {
            accept_adu(b, r, p, (size_t)len);
            return;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    md_mbus b;
    md_mbus_req r;
    setup(&b, &r, data);
    const uint8_t *p = data + 4;
    size_t n = size - 4;
    as_stream(&b, &r, p, n, data[3] % 16 + 1);
    setup(&b, &r, data); /* as one datagram */
    int len = mbus_adu_len(&b, p, n);
    if (len > 0 && (size_t)len == n)
        accept_adu(&b, &r, p, n);
    return 0;
}
