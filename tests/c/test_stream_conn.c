/*
 * test_stream_conn.c - cmocka driver for core/stream_conn.c, the
 * connection state machine of moondog.stream, without Lua.
 *
 * What is checked: a read takes what is there at once and waits otherwise
 * (a lazy read waits after a short read);
 * input that no reader took stays kept for the next read; the peer closing
 * or a broken pipe is a loss that ends the waiting read and every writer;
 * writes go out whole and in order, queue what the kernel does not take,
 * report progress until the queue drains, and a write past the bound is
 * refused whole ("busy"); liveness follows what waits and keepalive; a
 * connected TCP socket (as conn.c hands over) is adopted and carries bytes.
 * Connecting itself (addresses, refusals, timeouts) is conn.c's, tested in
 * test_conn.c.
 *
 * Design: real sockets (socketpair, loopback TCP on port 0) on a real
 * md_loop driven with md_loop_run_once(loop, 0) or with a bounded number of
 * 10 ms waits, so no test depends on timing. The callbacks
 * count in the fixture; the test asserts afterwards. Setup arms alarm() so
 * a hang fails instead of blocking.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netdb.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "stream.h"
#include "stream_conn.h"
#include "watchdog.h"

enum { WATCHDOG_S = 20 };

/* Owned by the test run: made by setup, freed by teardown. */
typedef struct fixture {
    md_loop *loop;
    md_stream_conn *c;
    int peer; /* the other end, or -1 */
    int listen_fd;
    int inputs, progress;
} fixture;

static void on_input(void *ud)
{
    ((fixture *)ud)->inputs++;
}

static void on_progress(void *ud)
{
    ((fixture *)ud)->progress++;
}

static const md_stream_conn_fns fns = {on_input, on_progress};

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = md_loop_new();
    assert_non_null(f->loop);
    f->c = md_stream_conn_new(f->loop, &fns, f);
    assert_non_null(f->c);
    f->peer = f->listen_fd = -1;
    md_test_watchdog(WATCHDOG_S);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    md_stream_conn_close(f->c);
    if (f->peer >= 0)
        close(f->peer);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    md_loop_free(f->loop);
    free(f);
    md_test_watchdog(0);
    return 0;
}

/* The connection on one end of a socketpair; f->peer is the other. */
static void pair(fixture *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(md_stream_conn_adopt(f->c, sv[0]), 0);
    f->peer = sv[1];
}

static void run(fixture *f, int times)
{
    for (int i = 0; i < times; i++)
        assert_true(md_loop_run_once(f->loop, 0) >= 0);
}

static void put(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void take(fixture *f, const char *want)
{
    char buf[64] = {0};
    size_t n = md_stream_conn_take(f->c, buf, sizeof buf - 1);
    assert_int_equal(n, strlen(want));
    assert_string_equal(buf, want);
}

/* {===== reading ===== */

static void read_takes_what_is_there(void **state)
{
    fixture *f = *state;
    pair(f);
    put(f->peer, "hello");
    assert_int_equal(md_stream_conn_read(f->c, 3), 3); /* at most max */
    take(f, "hel");
    assert_int_equal(md_stream_conn_read(f->c, 64), 2);
    take(f, "lo");
    assert_int_equal(f->inputs, 0);
}

static void read_waits_then_gets_input(void **state)
{
    fixture *f = *state;
    pair(f);
    assert_int_equal(md_stream_conn_read(f->c, 64), 0);
    assert_true(md_loop_alive(f->loop)); /* a waiting read keeps the loop alive */
    md_stream_conn_keepalive(f->c, false);
    assert_false(md_loop_alive(f->loop));
    md_stream_conn_keepalive(f->c, true);
    run(f, 1);
    assert_int_equal(f->inputs, 0);
    put(f->peer, "ping");
    run(f, 1);
    assert_int_equal(f->inputs, 1);
    assert_false(md_loop_alive(f->loop)); /* nothing waits any more */
    /* The owner did not take it (its task went away): the next read does. */
    put(f->peer, "more");
    assert_int_equal(md_stream_conn_read(f->c, 64), 4);
    take(f, "ping");
    assert_int_equal(md_stream_conn_read(f->c, 64), 4);
    take(f, "more");
}

/* After a short read the lazy read waits for the loop instead of trying
 * recv() at once; input already there is reported on the loop's next turn
 * (level-triggered), and a read that filled its max tries at once. */
static void lazy_read_after_a_short_one_waits_for_the_loop(void **state)
{
    fixture *f = *state;
    pair(f);
    put(f->peer, "one");
    assert_int_equal(md_stream_conn_read_lazy(f->c, 64), 3);
    take(f, "one");
    put(f->peer, "two");
    assert_int_equal(md_stream_conn_read_lazy(f->c, 64), 0); /* no recv(): waits */
    run(f, 1);
    assert_int_equal(f->inputs, 1);
    assert_int_equal(md_stream_conn_read_lazy(f->c, 64), 3);
    take(f, "two");
    put(f->peer, "abcdef");
    assert_int_equal(md_stream_conn_read_lazy(f->c, 64), 0); /* "two" was short too */
    run(f, 1);
    assert_int_equal(f->inputs, 2);
    take(f, "abcdef");
    put(f->peer, "xyz");
    assert_int_equal(md_stream_conn_read_lazy(f->c, 2), 0); /* "abcdef" was short */
    run(f, 1);
    assert_int_equal(f->inputs, 3);
    take(f, "xy");
    assert_int_equal(md_stream_conn_read(f->c, 2), 1); /* kept */
    take(f, "z");
    put(f->peer, "full");
    assert_int_equal(md_stream_conn_read(f->c, 4), 4); /* filled max: not drained */
    take(f, "full");
    put(f->peer, "next");
    assert_int_equal(md_stream_conn_read_lazy(f->c, 64), 4); /* tries at once */
    take(f, "next");
}

static void cancelled_read_leaves_input_in_the_socket(void **state)
{
    fixture *f = *state;
    pair(f);
    assert_int_equal(md_stream_conn_read(f->c, 64), 0);
    md_stream_conn_cancel_read(f->c);
    assert_false(md_loop_alive(f->loop));
    put(f->peer, "late");
    run(f, 2);
    assert_int_equal(f->inputs, 0);
    assert_int_equal(md_stream_conn_kept(f->c), 0);
    assert_int_equal(md_stream_conn_read(f->c, 64), 4);
    take(f, "late");
}

static void peer_closing_is_a_loss(void **state)
{
    fixture *f = *state;
    pair(f);
    assert_int_equal(md_stream_conn_read(f->c, 64), 0);
    close(f->peer);
    f->peer = -1;
    run(f, 1);
    assert_int_equal(f->inputs, 1);
    assert_int_equal(md_stream_conn_lost(f->c), -1);
    assert_int_equal(md_stream_conn_read(f->c, 64), MD_STREAM_LOST);
    uint64_t end;
    assert_int_equal(md_stream_conn_write(f->c, "x", 1, &end), MD_STREAM_LOST);
}

/* }===== */

/* {===== writing ===== */

/* Fill the socket until a write queues; returns the bytes written. */
static size_t fill(fixture *f, char *chunk, size_t len, uint64_t *end)
{
    size_t total = 0;
    for (int i = 0; i < 10000; i++) {
        memset(chunk, 'a' + i % 26, len);
        int rc = md_stream_conn_write(f->c, chunk, len, end);
        assert_true(rc == 0 || rc == 1);
        total += len;
        if (rc == 1)
            return total;
    }
    fail_msg("the socket never filled up");
    return 0;
}

static void writes_queue_in_order_and_drain(void **state)
{
    fixture *f = *state;
    pair(f);
    static char chunk[65536];
    uint64_t end = 0;
    size_t total = fill(f, chunk, sizeof chunk, &end);
    assert_true(md_stream_conn_pending(f->c) > 0);
    /* Two more queue behind, in order. */
    uint64_t end2, end3;
    memset(chunk, 'Y', sizeof chunk);
    assert_int_equal(md_stream_conn_write(f->c, chunk, sizeof chunk, &end2), 1);
    memset(chunk, 'Z', 10);
    assert_int_equal(md_stream_conn_write(f->c, chunk, 10, &end3), 1);
    total += sizeof chunk + 10;
    assert_true(end < end2 && end2 < end3);
    assert_int_equal(end3, total);
    md_stream_conn_set_writers(f->c, true);
    assert_true(md_loop_alive(f->loop));
    char *got = malloc(total);
    assert_non_null(got);
    size_t have = 0;
    for (int spins = 0; have < total && spins < 100000; spins++) {
        ssize_t n = read(f->peer, got + have, total - have);
        if (n > 0)
            have += (size_t)n;
        run(f, 1);
    }
    assert_int_equal(have, total);
    assert_int_equal(md_stream_conn_sent(f->c), total);
    assert_int_equal(md_stream_conn_pending(f->c), 0);
    assert_true(f->progress > 0);
    for (size_t i = 0; i + 65536 + 10 < total; i += 65536)
        assert_int_equal(got[i], 'a' + (int)(i / 65536) % 26);
    assert_int_equal(got[total - 11], 'Y');
    assert_memory_equal(got + total - 10, "ZZZZZZZZZZ", 10);
    free(got);
    md_stream_conn_set_writers(f->c, false);
    assert_false(md_loop_alive(f->loop));
}

static void write_past_the_bound_is_refused_whole(void **state)
{
    fixture *f = *state;
    pair(f);
    static char chunk[65536];
    uint64_t end;
    fill(f, chunk, sizeof chunk, &end);
    int rc = 1;
    size_t pending = 0;
    for (int i = 0; i < 1000 && rc == 1; i++) {
        pending = md_stream_conn_pending(f->c);
        rc = md_stream_conn_write(f->c, chunk, sizeof chunk, &end);
    }
    assert_int_equal(rc, -EBUSY);
    assert_int_equal(md_stream_conn_pending(f->c), pending); /* nothing taken */
    assert_true(pending + sizeof chunk > MD_STREAM_OUT_MAX);
}

static void broken_pipe_fails_the_writers(void **state)
{
    fixture *f = *state;
    pair(f);
    static char chunk[65536];
    uint64_t end;
    fill(f, chunk, sizeof chunk, &end);
    close(f->peer);
    f->peer = -1;
    run(f, 2);
    assert_true(md_stream_conn_lost(f->c) == EPIPE ||
                md_stream_conn_lost(f->c) == ECONNRESET);
    assert_true(f->progress >= 1); /* the owner wakes every writer */
    assert_int_equal(md_stream_conn_pending(f->c), 0);
    assert_true(md_stream_conn_sent(f->c) < end);
}

/* }===== */

/* {===== an adopted TCP socket ===== */

/* A blocking loopback connect, made non-blocking afterwards: what conn.c
 * hands over, without conn.c. */
static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

static void adopts_a_connected_socket(void **state)
{
    fixture *f = *state;
    f->listen_fd = md_stream_listen("127.0.0.1", 0, 4);
    assert_true(f->listen_fd >= 0);
    assert_int_equal(
        md_stream_conn_adopt(f->c, connect_loopback(md_stream_local_port(f->listen_fd))),
        0);
    assert_true(md_stream_conn_open(f->c));
    int fd = -1;
    for (int i = 0; i < 500 && fd < 0; i++) {
        fd = md_stream_accept(f->listen_fd);
        if (fd < 0)
            assert_true(md_loop_run_once(f->loop, 10) >= 0);
    }
    assert_true(fd >= 0);
    f->peer = fd;
    uint64_t end;
    assert_int_equal(md_stream_conn_write(f->c, "over tcp", 8, &end), 0);
    char buf[16] = {0};
    for (int i = 0; i < 500; i++) {
        if (read(fd, buf, sizeof buf - 1) == 8)
            break;
        assert_true(md_loop_run_once(f->loop, 10) >= 0);
    }
    assert_string_equal(buf, "over tcp");
    assert_int_equal(md_stream_conn_adopt(f->c, -1),
                     -EINVAL); /* one socket per connection */
}

/* }===== */

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(read_takes_what_is_there, setup, teardown),
        cmocka_unit_test_setup_teardown(read_waits_then_gets_input, setup, teardown),
        cmocka_unit_test_setup_teardown(lazy_read_after_a_short_one_waits_for_the_loop,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(cancelled_read_leaves_input_in_the_socket, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(peer_closing_is_a_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_queue_in_order_and_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(write_past_the_bound_is_refused_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(broken_pipe_fails_the_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(adopts_a_connected_socket, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
