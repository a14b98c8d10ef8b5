/*
 * test_stream_listener.c - cmocka driver for core/stream_listener.c, the
 * listening socket behind moondog.stream's l:accept(), on a real loop and
 * loopback sockets, without Lua.
 *
 * What is checked: a connection already waiting is taken at once; with
 * none, take says -EAGAIN, the loop stays alive while it waits, ready()
 * fires once a client connects and take then hands over that socket; a
 * caller that stops waiting (unwant) lets the loop end and gets no
 * ready(); a connection that arrives then stays in the kernel's backlog
 * for the next take; close frees everything (ASan/valgrind).
 *
 * Design: one loop and one listener on 127.0.0.1 port 0 per test; clients
 * are plain non-blocking sockets. An alarm ends a hung run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "stream.h"
#include "stream_listener.h"
#include "watchdog.h"

enum { WATCHDOG_S = 20 };

typedef struct fixture {
    md_loop *loop;
    md_stream_listener *l;
    int readies;
    int clients[4], nclients;
} fixture;

static void on_ready(void *ud)
{
    ((fixture *)ud)->readies++;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = md_loop_new();
    assert_non_null(f->loop);
    int fd = md_stream_listen("127.0.0.1", 0, 4);
    assert_true(fd >= 0);
    f->l = md_stream_listener_new(f->loop, fd, on_ready, f);
    assert_non_null(f->l);
    assert_true(md_stream_listener_port(f->l) > 0);
    md_test_watchdog(WATCHDOG_S);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    md_stream_listener_close(f->l);
    for (int i = 0; i < f->nclients; i++)
        close(f->clients[i]);
    md_loop_free(f->loop);
    free(f);
    md_test_watchdog(0);
    return 0;
}

/* A client connecting to the listener (loopback: it completes at once). */
static void connect_client(fixture *f)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)md_stream_listener_port(f->l))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    f->clients[f->nclients++] = c;
}

static bool got_ready(void *ud)
{
    return ((fixture *)ud)->readies > 0;
}

static void waiting_connection_taken_at_once(void **state)
{
    fixture *f = *state;
    connect_client(f);
    int fd = md_stream_listener_take(f->l);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(f->readies, 0);
    assert_false(md_loop_alive(f->loop)); /* nobody waits */
}

static void ready_fires_when_a_client_connects(void **state)
{
    fixture *f = *state;
    assert_int_equal(md_stream_listener_take(f->l), -EAGAIN);
    assert_true(md_loop_alive(f->loop)); /* a waiter keeps it alive */
    assert_int_equal(md_loop_run_once(f->loop, 0), 0);
    assert_int_equal(f->readies, 0);
    connect_client(f);
    assert_int_equal(md_loop_run_until(f->loop, got_ready, f), 0);
    assert_int_equal(f->readies, 1);
    assert_false(md_loop_alive(f->loop)); /* served: no longer waiting */
    int fd = md_stream_listener_take(f->l);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(md_stream_listener_take(f->l), -EAGAIN); /* nothing more */
    md_stream_listener_unwant(f->l);
}

static void unwant_stops_accepting(void **state)
{
    fixture *f = *state;
    assert_int_equal(md_stream_listener_take(f->l), -EAGAIN);
    md_stream_listener_unwant(f->l);
    assert_false(md_loop_alive(f->loop));
    connect_client(f);
    assert_int_equal(md_loop_run(f->loop), 0); /* ends: nothing keeps it alive */
    assert_int_equal(f->readies, 0);
    int fd = md_stream_listener_take(f->l); /* still in the backlog */
    assert_true(fd >= 0);
    close(fd);
}

static void close_with_an_untaken_connection(void **state)
{
    fixture *f = *state;
    assert_int_equal(md_stream_listener_take(f->l), -EAGAIN);
    connect_client(f);
    assert_int_equal(md_loop_run_until(f->loop, got_ready, f), 0);
    md_stream_listener_close(f->l); /* frees the accepted socket too */
    f->l = NULL;
    md_stream_listener_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(waiting_connection_taken_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(ready_fires_when_a_client_connects, setup, teardown),
        cmocka_unit_test_setup_teardown(unwant_stops_accepting, setup, teardown),
        cmocka_unit_test_setup_teardown(close_with_an_untaken_connection, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
