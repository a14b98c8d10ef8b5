/*
 * test_mbserver.c - cmocka driver for core/mbserver.c, the Modbus server's
 * request handling without any I/O: from the bytes a client sends to the
 * bytes the server answers.
 *
 * What is checked: each supported function code (1-6, 15-17, 22, 23, 43/14)
 * against a map, byte for byte, over MBAP and RTU framing; writes landing in
 * the map; exceptions 1 (unknown function), 2 (a strict map's missing
 * address, with nothing written), 3 (bad quantity or byte count); no answer
 * to a response-shaped PDU; and the framing of a byte stream: partial ADUs,
 * two ADUs in one read, a broken MBAP header, RTU garbage and CRC errors.
 *
 * Design: serve() runs the whole path the I/O layer runs (md_mbsrv_frame,
 * md_mbsrv_unwrap, md_mbsrv_process, md_mbsrv_wrap) on a request written
 * out as bytes. RTU CRCs come from a CRC-16/MODBUS written here from the
 * specification, not from mbcodec.c, so the two check each other. Each test
 * gets a fresh map from setup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mbserver.h"

#define MAX_ADU 300

static int setup(void **state)
{
    md_mbsrv_map *map = md_mbsrv_map_new(false);
    assert_non_null(map);
    uint16_t regs[] = {0x0102, 0x0304, 0x0506, 0xABCD};
    assert_int_equal(md_mbsrv_map_set(map, MD_MBSRV_HOLDING, 100, regs, 4), 0);
    uint16_t inputs[] = {7, 8};
    assert_int_equal(md_mbsrv_map_set(map, MD_MBSRV_INPUT, 0, inputs, 2), 0);
    uint16_t bits[] = {1, 0, 1, 1, 0, 0, 0, 0, 1};
    assert_int_equal(md_mbsrv_map_set(map, MD_MBSRV_DISCRETE, 10, bits, 9), 0);
    *state = map;
    return 0;
}

static int setup_strict(void **state)
{
    md_mbsrv_map *map = md_mbsrv_map_new(true);
    assert_non_null(map);
    uint16_t regs[] = {11, 22};
    assert_int_equal(md_mbsrv_map_set(map, MD_MBSRV_HOLDING, 40, regs, 2), 0);
    *state = map;
    return 0;
}

static int teardown(void **state)
{
    md_mbsrv_map_free(*state);
    return 0;
}

/* CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), low byte first. */
static size_t add_crc(uint8_t *frame, size_t len)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= frame[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    frame[len] = (uint8_t)crc;
    frame[len + 1] = (uint8_t)(crc >> 8);
    return len + 2;
}

/* The server's whole path for one ADU; returns the reply length (0: none). */
static size_t serve(md_mbsrv_map *map, int framing, const uint8_t *req, size_t len,
                    uint8_t *reply)
{
    int n = md_mbsrv_frame(framing, req, len);
    assert_int_equal(n, (int)len);
    md_mbsrv_adu adu;
    md_mbsrv_unwrap(framing, req, len, &adu);
    uint8_t pdu[MD_MB_MAX_PDU];
    size_t pdu_len = 0;
    int rc = md_mbsrv_process(map, adu.pdu, adu.pdu_len, pdu, &pdu_len);
    if (rc == MD_MBSRV_NOREPLY)
        return 0;
    return md_mbsrv_wrap(framing, adu.tid, adu.unit, pdu, pdu_len, reply);
}

/* MBAP: tid 0x1234, unit 1, then the PDU; checks the reply's PDU. */
static void mbap_exchange(md_mbsrv_map *map, const uint8_t *pdu, size_t len,
                          const uint8_t *want, size_t want_len)
{
    uint8_t req[MAX_ADU] = {
        0x12, 0x34, 0, 0, (uint8_t)((len + 1) >> 8), (uint8_t)(len + 1), 0x01};
    memcpy(req + 7, pdu, len);
    uint8_t reply[MAX_ADU];
    size_t n = serve(map, MD_MBSRV_MBAP, req, 7 + len, reply);
    assert_int_equal(n, 7 + want_len);
    const uint8_t head[] = {
        0x12, 0x34, 0, 0, (uint8_t)((want_len + 1) >> 8), (uint8_t)(want_len + 1), 0x01};
    assert_memory_equal(reply, head, 7);
    assert_memory_equal(reply + 7, want, want_len);
}

#define EXCHANGE(map, req, want) mbap_exchange(map, req, sizeof req, want, sizeof want)

static void reads_registers_and_bits(void **state)
{
    md_mbsrv_map *map = *state;
    const uint8_t fc3[] = {0x03, 0x00, 0x64, 0x00, 0x03};
    const uint8_t fc3_want[] = {0x03, 0x06, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06};
    EXCHANGE(map, fc3, fc3_want);
    const uint8_t fc4[] = {0x04, 0x00, 0x00, 0x00, 0x03};
    const uint8_t fc4_want[] = {0x04, 0x06, 0x00, 0x07, 0x00, 0x08, 0x00, 0x00};
    EXCHANGE(map, fc4, fc4_want);
    const uint8_t fc2[] = {0x02, 0x00, 0x0A, 0x00, 0x09}; /* bits 10..18 */
    const uint8_t fc2_want[] = {0x02, 0x02, 0x0D, 0x01};  /* 1,0,1,1,0,0,0,0 | 1 */
    EXCHANGE(map, fc2, fc2_want);
}

static void writes_land_in_the_map(void **state)
{
    md_mbsrv_map *map = *state;
    const uint8_t fc6[] = {0x06, 0x00, 0x65, 0xBE, 0xEF};
    EXCHANGE(map, fc6, fc6); /* echoed */
    const uint8_t fc16[] = {0x10, 0x00, 0xC8, 0x00, 0x02, 0x04, 0x11, 0x22, 0x33, 0x44};
    const uint8_t fc16_want[] = {0x10, 0x00, 0xC8, 0x00, 0x02};
    EXCHANGE(map, fc16, fc16_want);
    uint16_t got[2];
    assert_int_equal(md_mbsrv_map_get(map, MD_MBSRV_HOLDING, 200, got, 2), 0);
    assert_int_equal(got[0], 0x1122);
    assert_int_equal(got[1], 0x3344);
    assert_int_equal(md_mbsrv_map_get(map, MD_MBSRV_HOLDING, 101, got, 1), 0);
    assert_int_equal(got[0], 0xBEEF);
    /* FC 22: (current AND and_mask) OR (or_mask AND NOT and_mask) */
    const uint8_t fc22[] = {0x16, 0x00, 0x67, 0xFF, 0x00, 0x00, 0x12};
    EXCHANGE(map, fc22, fc22);
    assert_int_equal(md_mbsrv_map_get(map, MD_MBSRV_HOLDING, 103, got, 1), 0);
    assert_int_equal(got[0], 0xAB12);
    /* FC 23: the write happens before the read */
    const uint8_t fc23[] = {0x17, 0x00, 0x64, 0x00, 0x02, 0x00,
                            0x64, 0x00, 0x01, 0x02, 0x55, 0x66};
    const uint8_t fc23_want[] = {0x17, 0x04, 0x55, 0x66, 0xBE, 0xEF};
    EXCHANGE(map, fc23, fc23_want);
    /* coils: FC 5 on, FC 15 a pattern, FC 1 reads them back */
    const uint8_t fc5[] = {0x05, 0x00, 0x03, 0xFF, 0x00};
    EXCHANGE(map, fc5, fc5);
    const uint8_t fc15[] = {0x0F, 0x00, 0x08, 0x00, 0x0A, 0x02, 0xCD, 0x01};
    const uint8_t fc15_want[] = {0x0F, 0x00, 0x08, 0x00, 0x0A};
    EXCHANGE(map, fc15, fc15_want);
    const uint8_t fc1[] = {0x01, 0x00, 0x00, 0x00, 0x12};
    const uint8_t fc1_want[] = {0x01, 0x03, 0x08, 0xCD, 0x01};
    EXCHANGE(map, fc1, fc1_want);
}

static void identification(void **state)
{
    md_mbsrv_map *map = *state;
    assert_int_equal(md_mbsrv_map_set_object(map, 0, "moondog", 7), 0);
    assert_int_equal(md_mbsrv_map_set_object(map, 1, "T1", 2), 0);
    assert_int_equal(md_mbsrv_map_set_object(map, 2, "0.1", 3), 0);
    /* basic objects from 0; conformity 0x82: regular, individual access too */
    const uint8_t fc43[] = {0x2B, 0x0E, 0x01, 0x00};
    const uint8_t fc43_want[] = {0x2B, 0x0E, 0x01, 0x82, 0x00, 0x00, 0x03, 0x00, 0x07,
                                 'm',  'o',  'o',  'n',  'd',  'o',  'g',  0x01, 0x02,
                                 'T',  '1',  0x02, 0x03, '0',  '.',  '1'};
    EXCHANGE(map, fc43, fc43_want);
    const uint8_t id[] = {0x42, 0xFF};
    assert_int_equal(md_mbsrv_map_set_server_id(map, id, sizeof id), 0);
    const uint8_t fc17[] = {0x11};
    const uint8_t fc17_want[] = {0x11, 0x02, 0x42, 0xFF};
    EXCHANGE(map, fc17, fc17_want);
}

static void exceptions(void **state)
{
    md_mbsrv_map *map = *state;
    const uint8_t fc7[] = {0x07};
    const uint8_t fc7_want[] = {0x87, 0x01}; /* illegal function */
    EXCHANGE(map, fc7, fc7_want);
    const uint8_t zero[] = {0x03, 0x00, 0x00, 0x00, 0x00};
    const uint8_t zero_want[] = {0x83, 0x03}; /* quantity 0 */
    EXCHANGE(map, zero, zero_want);
    const uint8_t many[] = {0x03, 0x00, 0x00, 0x00, 0x7E};
    EXCHANGE(map, many, zero_want); /* quantity 126 > 125 */
    const uint8_t past[] = {0x03, 0xFF, 0xFF, 0x00, 0x02};
    const uint8_t past_want[] = {0x83, 0x02}; /* past address 65535 */
    EXCHANGE(map, past, past_want);
    const uint8_t bytes[] = {0x10, 0x00, 0x00, 0x00, 0x02, 0x03, 0x00, 0x01, 0x00};
    const uint8_t bytes_want[] = {0x90, 0x03}; /* byte count != 2 * quantity */
    EXCHANGE(map, bytes, bytes_want);
    const uint8_t coil[] = {0x05, 0x00, 0x00, 0x12, 0x34};
    const uint8_t coil_want[] = {0x85, 0x03}; /* FC 5 value neither 0 nor 0xFF00 */
    EXCHANGE(map, coil, coil_want);
    /* A response-shaped PDU gets no answer at all. */
    uint8_t req[] = {0, 1, 0, 0, 0, 3, 1, 0x83, 0x02};
    uint8_t reply[MAX_ADU];
    assert_int_equal(serve(map, MD_MBSRV_MBAP, req, sizeof req, reply), 0);
}

static void strict_map_writes_nothing_missing(void **state)
{
    md_mbsrv_map *map = *state;
    const uint8_t ok[] = {0x03, 0x00, 0x28, 0x00, 0x02};
    const uint8_t ok_want[] = {0x03, 0x04, 0x00, 0x0B, 0x00, 0x16};
    EXCHANGE(map, ok, ok_want);
    const uint8_t over[] = {0x03, 0x00, 0x28, 0x00, 0x03};
    const uint8_t over_want[] = {0x83, 0x02};
    EXCHANGE(map, over, over_want);
    /* 41 exists, 42 does not: the whole write is refused, 41 unchanged */
    const uint8_t w[] = {0x10, 0x00, 0x29, 0x00, 0x02, 0x04, 0x00, 0x63, 0x00, 0x64};
    const uint8_t w_want[] = {0x90, 0x02};
    EXCHANGE(map, w, w_want);
    uint16_t got;
    assert_int_equal(md_mbsrv_map_get(map, MD_MBSRV_HOLDING, 41, &got, 1), 0);
    assert_int_equal(got, 22);
    assert_false(md_mbsrv_map_exists(map, MD_MBSRV_HOLDING, 42, 1));
}

static void rtu_request_to_reply(void **state)
{
    md_mbsrv_map *map = *state;
    uint8_t req[16] = {0x11, 0x03, 0x00, 0x64, 0x00, 0x02};
    size_t len = add_crc(req, 6);
    uint8_t reply[MAX_ADU];
    size_t n = serve(map, MD_MBSRV_RTU_FRAMING, req, len, reply);
    uint8_t want[16] = {0x11, 0x03, 0x04, 0x01, 0x02, 0x03, 0x04};
    size_t want_len = add_crc(want, 7);
    assert_int_equal(n, want_len);
    assert_memory_equal(reply, want, want_len);
    /* The same request arriving in pieces: nothing until it is whole. */
    for (size_t have = 0; have < len; have++)
        assert_int_equal(md_mbsrv_frame(MD_MBSRV_RTU_FRAMING, req, have), 0);
    /* A CRC error or a garbage byte in front: drop a byte and look again. */
    req[len - 1] ^= 0x01;
    assert_int_equal(md_mbsrv_frame(MD_MBSRV_RTU_FRAMING, req, len), -1);
    req[len - 1] ^= 0x01;
    uint8_t noisy[20] = {0x00};
    memcpy(noisy + 1, req, len);
    assert_int_equal(md_mbsrv_frame(MD_MBSRV_RTU_FRAMING, noisy, len + 1), -1);
    assert_int_equal(md_mbsrv_frame(MD_MBSRV_RTU_FRAMING, noisy + 1, len), (int)len);
}

static void mbap_stream_framing(void **state)
{
    (void)state;
    const uint8_t two[] = {0, 1, 0, 0, 0, 6, 1, 0x03, 0, 0, 0, 1,
                           0, 2, 0, 0, 0, 6, 1, 0x04, 0, 0, 0, 1};
    assert_int_equal(md_mbsrv_frame(MD_MBSRV_MBAP, two, sizeof two), 12);
    assert_int_equal(md_mbsrv_frame(MD_MBSRV_MBAP, two + 12, 12), 12);
    for (size_t have = 0; have < 12; have++)
        assert_int_equal(md_mbsrv_frame(MD_MBSRV_MBAP, two, have), 0);
    md_mbsrv_adu adu;
    md_mbsrv_unwrap(MD_MBSRV_MBAP, two + 12, 12, &adu);
    assert_int_equal(adu.tid, 2);
    assert_int_equal(adu.unit, 1);
    assert_int_equal(adu.pdu_len, 5);
    assert_int_equal(adu.pdu[0], 0x04);
    const uint8_t proto[] = {0, 1, 0, 7, 0, 6, 1, 0x03, 0, 0, 0, 1};
    assert_int_equal(md_mbsrv_frame(MD_MBSRV_MBAP, proto, sizeof proto),
                     MD_MBSRV_EBADMBAP);
    const uint8_t huge[] = {0, 1, 0, 0, 0x01, 0x00, 1};
    assert_int_equal(md_mbsrv_frame(MD_MBSRV_MBAP, huge, sizeof huge), MD_MBSRV_EBADMBAP);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_registers_and_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_land_in_the_map, setup, teardown),
        cmocka_unit_test_setup_teardown(identification, setup, teardown),
        cmocka_unit_test_setup_teardown(exceptions, setup, teardown),
        cmocka_unit_test_setup_teardown(strict_map_writes_nothing_missing, setup_strict,
                                        teardown),
        cmocka_unit_test_setup_teardown(rtu_request_to_reply, setup, teardown),
        cmocka_unit_test(mbap_stream_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
