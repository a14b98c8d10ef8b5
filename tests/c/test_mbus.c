/*
 * test_mbus.c - cmocka driver for the Modbus client (core/mbus.c and the
 * layers under it: mbus_net.c, mbus_base.c, conn.c).
 *
 * What is checked, on a TCP bus: the request ADU on the wire byte for byte,
 * a reply matched to it (data handed back), a reply with an exception, no
 * reply (timeout), and replies to another transaction (skipped; the request
 * then fails with EBADTID, or succeeds when its own answer follows). And on
 * mbus_base.c's framing alone: RTU request with its CRC, a bad CRC, an
 * answer from another unit.
 *
 * Design: the test itself is the device: a listener on 127.0.0.1 port 0,
 * whose accepted socket the test reads and writes directly, checking exact
 * bytes. The loop is driven with md_loop_run_once() in bounded rounds until
 * a condition holds. The only real-time wait is the timeout test's response
 * timeout (100 ms); nothing asserts on durations.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "mbcodec.h"
#include "mbus_impl.h"

enum { ROUNDS = 400, ROUND_MS = 10 };

/* Owned by the test: made by setup, freed by teardown. */
struct fixture {
    md_loop *loop;
    md_mbus *bus;
    int lfd, dev; /* the device's listener and accepted socket (-1) */
    md_mbus_req *req;
    bool done;
};

static void on_done(md_loop *loop, void *ud)
{
    (void)loop;
    ((struct fixture *)ud)->done = true;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->dev = -1;
    f->loop = md_loop_new();
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    if (!f->loop || f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        listen(f->lfd, 4) < 0 || getsockname(f->lfd, (struct sockaddr *)&sin, &len) < 0)
        return -1;
    md_mbus_config cfg = {.transport = MD_MBUS_TCP, .timeout_ms = 100};
    snprintf(cfg.link.host, sizeof cfg.link.host, "127.0.0.1");
    cfg.link.port = ntohs(sin.sin_port);
    f->bus = md_mbus_open(f->loop, &cfg);
    f->req = calloc(1, sizeof *f->req);
    if (!f->bus || !f->req)
        return -1;
    f->req->done = (md_completion){.fn = on_done, .ud = f};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    md_mbus_close(f->bus, true);
    md_loop_free(f->loop);
    if (f->dev >= 0)
        close(f->dev);
    close(f->lfd);
    free(f->req);
    free(f);
    return 0;
}

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Run the loop until fd is readable (bounded). */
static void run_until_readable(struct fixture *f, int fd)
{
    for (int i = 0; i < ROUNDS && !readable(fd); i++)
        md_loop_run_once(f->loop, ROUND_MS);
    assert_true(readable(fd));
}

static void run_until_done(struct fixture *f)
{
    for (int i = 0; i < ROUNDS && !f->done; i++)
        md_loop_run_once(f->loop, ROUND_MS);
    assert_true(f->done);
}

/* Submit a read of 2 holding registers at 0x0102 from unit 7, accept the
 * bus's connection and read its request: the transaction id it used. */
static uint16_t submit_read(struct fixture *f)
{
    md_mbus_req *r = f->req;
    r->unit = 7;
    r->fc = 3;
    r->addr = 0x0102;
    r->count = 2;
    md_mbus_submit(f->bus, r);
    if (f->dev < 0) {
        run_until_readable(f, f->lfd);
        f->dev = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(f->dev >= 0);
    }
    run_until_readable(f, f->dev);
    uint8_t adu[64];
    ssize_t n = recv(f->dev, adu, sizeof adu, 0);
    assert_int_equal(n, 12);
    uint16_t tid = md_mb_get_u16(adu);
    const uint8_t want[] = {0, 0, 0, 6, 7, 3, 0x01, 0x02, 0, 2};
    assert_memory_equal(adu + 2, want, sizeof want);
    return tid;
}

/* Answer as the device: MBAP with tid, unit 7, then pdu. */
static void reply(struct fixture *f, uint16_t tid, const uint8_t *pdu, size_t len)
{
    uint8_t adu[64];
    md_mb_mbap_encode(adu, tid, (uint16_t)len, 7);
    memcpy(adu + MD_MB_MBAP_LEN, pdu, len);
    assert_int_equal(send(f->dev, adu, MD_MB_MBAP_LEN + len, 0),
                     (ssize_t)(MD_MB_MBAP_LEN + len));
}

static void request_built_reply_matched(void **state)
{
    struct fixture *f = *state;
    uint16_t tid = submit_read(f);
    assert_false(f->done);
    const uint8_t pdu[] = {3, 4, 0x12, 0x34, 0xab, 0xcd};
    reply(f, tid, pdu, sizeof pdu);
    run_until_done(f);
    assert_int_equal(f->req->status, 0);
    assert_int_equal(f->req->data_len, 4);
    assert_memory_equal(f->req->data, pdu + 2, 4);
    md_mbus_stats st;
    assert_true(md_mbus_get_stats(f->bus, 7, &st));
    assert_int_equal(st.ok, 1);
}

static void exception_reply(void **state)
{
    struct fixture *f = *state;
    uint16_t tid = submit_read(f);
    const uint8_t pdu[] = {0x83, 2};
    reply(f, tid, pdu, sizeof pdu);
    run_until_done(f);
    assert_int_equal(f->req->status, -MD_MBUS_EEXCEPTION);
    assert_int_equal(f->req->exception, 2);
    assert_string_equal(md_err_token(f->req->status), "exception");
}

static void no_reply_times_out(void **state)
{
    struct fixture *f = *state;
    submit_read(f);
    run_until_done(f);
    assert_int_equal(f->req->status, -MD_MBUS_ETIMEOUT);
    md_mbus_stats st;
    assert_true(md_mbus_get_stats(f->bus, -1, &st));
    assert_int_equal(st.timeouts, 1);
}

static void wrong_transaction_id(void **state)
{
    struct fixture *f = *state;
    uint16_t tid = submit_read(f);
    const uint8_t pdu[] = {3, 4, 0, 1, 0, 2};
    reply(f, (uint16_t)(tid + 100), pdu, sizeof pdu); /* skipped: not ours */
    run_until_done(f);
    assert_int_equal(f->req->status, -MD_MBUS_EBADTID);
}

static void own_answer_after_a_foreign_one(void **state)
{
    struct fixture *f = *state;
    uint16_t tid = submit_read(f);
    const uint8_t other[] = {3, 4, 9, 9, 9, 9};
    const uint8_t mine[] = {3, 4, 0, 1, 0, 2};
    reply(f, (uint16_t)(tid - 1), other, sizeof other);
    reply(f, tid, mine, sizeof mine);
    run_until_done(f);
    assert_int_equal(f->req->status, 0);
    assert_memory_equal(f->req->data, mine + 2, 4);
}

/* {===== mbus_base.c framing alone ===== */

static void rtu_framing(void **state)
{
    (void)state;
    md_mbus b = {.cfg = {.transport = MD_MBUS_RTU_TCP}, .on_loop = true};
    md_mbus_req r = {.unit = 5, .fc = 4, .addr = 0x10, .count = 1};
    uint8_t pdu[MD_MB_MAX_PDU], adu[MD_MB_MAX_TCP];
    size_t n = mbus_build_pdu(&r, pdu);
    assert_int_equal(n, 5);
    n = mbus_build_adu(&b, r.unit, pdu, n, adu);
    assert_int_equal(n, 8);
    const uint8_t head[] = {5, 4, 0, 0x10, 0, 1};
    assert_memory_equal(adu, head, sizeof head);
    assert_int_equal(md_mb_rtu_check_crc(adu, n), 0);

    uint8_t ans[8] = {5, 4, 2, 0x01, 0x02};
    size_t alen = md_mb_rtu_put_crc(ans, 5);
    const uint8_t *p;
    size_t plen;
    bool other = false;
    assert_int_equal(mbus_adu_len(&b, ans, alen), (int)alen);
    assert_int_equal(mbus_check_adu(&b, &r, ans, alen, &p, &plen, &other), 0);
    assert_int_equal(mbus_take_response(&r, p, plen), 0);
    assert_int_equal(r.data_len, 2);

    ans[3] ^= 0xff; /* bad CRC */
    assert_int_equal(mbus_check_adu(&b, &r, ans, alen, &p, &plen, &other), -MD_MBUS_ECRC);
    ans[3] ^= 0xff;
    ans[0] = 6; /* another unit */
    alen = md_mb_rtu_put_crc(ans, 5);
    assert_int_equal(mbus_check_adu(&b, &r, ans, alen, &p, &plen, &other),
                     -MD_MBUS_EBADUNIT);
}

/* }===== */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(request_built_reply_matched, setup, teardown),
        cmocka_unit_test_setup_teardown(exception_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(no_reply_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_transaction_id, setup, teardown),
        cmocka_unit_test_setup_teardown(own_answer_after_a_foreign_one, setup, teardown),
        cmocka_unit_test(rtu_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
