/*
 * test_conn.c - cmocka driver for core/conn.c, the connection layer.
 *
 * What is checked: a name that does not resolve (dns), a refused port, a
 * connect that times out against a listener whose backlog is full, several
 * addresses with the first failing, a literal address that connects without
 * the resolver, that a slow resolver never blocks the loop (timers keep
 * firing while it hangs, and a cancel does not wait for it), and the
 * listeners' resolve-at-once through the same resolver.
 *
 * Design: the resolver is replaced (md_conn_set_resolver) by fakes that
 * return hand-built address lists on loopback, so nothing depends on DNS.
 * The slow fake blocks on a semaphore the test posts. All traffic goes to
 * 127.0.0.1, to listeners the test opens on port 0. The loop is driven by
 * md_loop_run_once() in bounded rounds (the conn layer's watch and timer do
 * not keep the loop alive, so md_loop_run would return at once). No timing
 * assertion: the timeout test only checks which error came back.
 *
 * Threads: the resolver fakes run on conn.c's resolver threads and never
 * assert; they record and post semaphores.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn.h"

enum {
    ROUNDS = 400, /* loop iterations a test waits for a callback, at most */
    ROUND_MS = 25,
    MAX_ADDRS = 4,
    FILLERS = 6 /* connects that fill a listener's backlog */
};

/* {===== fakes ===== */

/* Ports the fake resolvers hand out, in order (set by each test). */
static int fake_ports[MAX_ADDRS];
static int fake_nports;
static sem_t slow_go, slow_returned;

/* One block per node, as glibc allocates them, so freeaddrinfo frees it. */
static struct addrinfo *make_ai(int port, int socktype, struct addrinfo *next)
{
    struct {
        struct addrinfo ai;
        struct sockaddr_in sin;
    } *n = calloc(1, sizeof *n);
    if (!n)
        abort();
    n->sin.sin_family = AF_INET;
    n->sin.sin_port = htons((uint16_t)port);
    n->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    n->ai.ai_family = AF_INET;
    n->ai.ai_socktype = socktype;
    n->ai.ai_addr = (struct sockaddr *)&n->sin;
    n->ai.ai_addrlen = sizeof n->sin;
    n->ai.ai_next = next;
    return &n->ai;
}

static int fake_list(const struct addrinfo *hints, struct addrinfo **res)
{
    struct addrinfo *list = NULL;
    for (int i = fake_nports - 1; i >= 0; i--)
        list = make_ai(fake_ports[i], hints->ai_socktype, list);
    *res = list;
    return 0;
}

static int fake_resolver(const char *host, const char *service,
                         const struct addrinfo *hints, struct addrinfo **res)
{
    (void)service;
    if (strcmp(host, "nowhere.test") == 0)
        return EAI_NONAME;
    return fake_list(hints, res);
}

/* Hangs until the test posts slow_go, like a dead DNS server. */
static int slow_resolver(const char *host, const char *service,
                         const struct addrinfo *hints, struct addrinfo **res)
{
    (void)host, (void)service;
    while (sem_wait(&slow_go) < 0 && errno == EINTR)
        ;
    int rc = fake_list(hints, res);
    sem_post(&slow_returned);
    return rc;
}

/* }===== */

/* {===== fixture ===== */

/* Owned by the test: made by setup, freed by teardown. */
struct fixture {
    md_loop *loop;
    bool called;
    int fd, err;
    int ticks;
    int fds[FILLERS + 2]; /* closed by teardown; -1 when free */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->loop = md_loop_new();
    f->fd = -1;
    for (size_t i = 0; i < sizeof f->fds / sizeof f->fds[0]; i++)
        f->fds[i] = -1;
    md_conn_set_resolver(fake_resolver);
    fake_nports = 0;
    *state = f;
    return f->loop ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    md_loop_free(f->loop);
    if (f->fd >= 0)
        close(f->fd);
    for (size_t i = 0; i < sizeof f->fds / sizeof f->fds[0]; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    md_conn_set_resolver(NULL);
    free(f);
    return 0;
}

static void keep_fd(struct fixture *f, int fd)
{
    for (size_t i = 0; i < sizeof f->fds / sizeof f->fds[0]; i++) {
        if (f->fds[i] < 0) {
            f->fds[i] = fd;
            return;
        }
    }
    fail_msg("too many fds");
}

static int port_of(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* A TCP socket bound to 127.0.0.1 on a free port; listening when
 * backlog >= 0 (else connects to it are refused). Returns its port. */
static int open_server(struct fixture *f, int backlog, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    keep_fd(f, fd);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    if (backlog >= 0)
        assert_int_equal(listen(fd, backlog), 0);
    if (fd_out)
        *fd_out = fd;
    return port_of(fd);
}

static void on_conn(md_loop *loop, int fd, int err, void *ud)
{
    (void)loop;
    struct fixture *f = ud;
    f->called = true;
    f->fd = fd;
    f->err = err;
}

/* Run the loop until the conn callback ran (bounded). */
static void run_until_called(struct fixture *f)
{
    for (int i = 0; i < ROUNDS && !f->called; i++)
        md_loop_run_once(f->loop, ROUND_MS);
    assert_true(f->called);
}

static md_conn *start(struct fixture *f, const char *host, int port, int timeout_ms)
{
    md_conn_config cfg = {
        .host = host, .port = port, .socktype = SOCK_STREAM, .timeout_ms = timeout_ms};
    md_conn *c = md_conn_start(f->loop, &cfg, on_conn, f);
    assert_non_null(c);
    assert_false(f->called); /* never inside md_conn_start */
    return c;
}

/* }===== */

/* {===== tests ===== */

static void dns_failure(void **state)
{
    struct fixture *f = *state;
    start(f, "nowhere.test", 502, 0);
    run_until_called(f);
    assert_int_equal(f->fd, -1);
    assert_int_equal(f->err, -MD_CONN_EDNS);
    assert_string_equal(md_err_token(md_err_connect(f->err)), "dns");
}

static void refused(void **state)
{
    struct fixture *f = *state;
    int port = open_server(f, -1, NULL); /* bound, not listening */
    start(f, "127.0.0.1", port, 0);
    run_until_called(f);
    assert_int_equal(f->fd, -1);
    assert_int_equal(f->err, -ECONNREFUSED);
    assert_string_equal(md_err_token(md_err_connect(f->err)), "refused");
}

/* A listener whose accept queue is full drops new SYNs: the connect
 * neither succeeds nor fails until the conn layer's timeout. */
static void timeout_on_full_backlog(void **state)
{
    struct fixture *f = *state;
    int port = open_server(f, 0, NULL);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < FILLERS; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        keep_fd(f, fd);
        connect(fd, (struct sockaddr *)&sin, sizeof sin); /* in progress or queued */
    }
    start(f, "127.0.0.1", port, 150);
    run_until_called(f);
    assert_int_equal(f->fd, -1);
    assert_int_equal(f->err, -ETIMEDOUT);
    assert_string_equal(md_err_token(md_err_connect(f->err)), "connect_timeout");
}

static void first_address_fails(void **state)
{
    struct fixture *f = *state;
    fake_ports[0] = open_server(f, -1, NULL); /* refuses */
    int lfd;
    fake_ports[1] = open_server(f, 4, &lfd);
    fake_nports = 2;
    start(f, "two.test", 1, 0);
    run_until_called(f);
    assert_int_equal(f->err, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    assert_int_equal(getpeername(f->fd, (struct sockaddr *)&peer, &len), 0);
    assert_int_equal(ntohs(peer.sin_port), fake_ports[1]);
}

static void literal_connects(void **state)
{
    struct fixture *f = *state;
    md_conn_set_resolver(slow_resolver); /* would hang: must not be called */
    int port = open_server(f, 4, NULL);
    start(f, "127.0.0.1", port, 0);
    run_until_called(f);
    assert_int_equal(f->err, 0);
    assert_true(f->fd >= 0);
    struct addrinfo *res = NULL;
    assert_int_equal(md_conn_resolve_literal("::1", 1, SOCK_STREAM, false, &res), 0);
    assert_int_equal(res->ai_family, AF_INET6);
    freeaddrinfo(res);
    assert_int_equal(md_conn_resolve_literal("name.test", 1, SOCK_STREAM, false, &res),
                     -EAGAIN);
}

static void on_tick(md_loop *loop, md_timer *t, void *ud)
{
    (void)t;
    struct fixture *f = ud;
    f->ticks++;
    if (f->ticks < 5)
        md_loop_timer(loop, md_loop_now(loop) + 5, on_tick, f);
}

/* The resolver hangs; the loop keeps running timers meanwhile, and the
 * connect completes once the resolver answers. */
static void slow_resolver_does_not_block(void **state)
{
    struct fixture *f = *state;
    md_conn_set_resolver(slow_resolver);
    fake_ports[0] = open_server(f, 4, NULL);
    fake_nports = 1;
    start(f, "slow.test", 1, 0);
    md_loop_timer(f->loop, md_loop_now(f->loop) + 5, on_tick, f);
    for (int i = 0; i < ROUNDS && f->ticks < 5; i++)
        md_loop_run_once(f->loop, ROUND_MS);
    assert_int_equal(f->ticks, 5);
    assert_false(f->called);
    sem_post(&slow_go);
    run_until_called(f);
    assert_int_equal(f->err, 0);
    assert_true(f->fd >= 0);
    while (sem_wait(&slow_returned) < 0 && errno == EINTR)
        ;
}

/* Cancelling while the resolver hangs returns at once, releases the loop
 * and never calls back; the resolver thread cleans up when it returns. */
static void cancel_while_resolving(void **state)
{
    struct fixture *f = *state;
    md_conn_set_resolver(slow_resolver);
    fake_nports = 1;
    fake_ports[0] = 1;
    md_conn *c = start(f, "slow.test", 1, 0);
    md_loop_run_once(f->loop, 0);
    md_loop_counts counts;
    md_loop_get_counts(f->loop, &counts);
    assert_int_equal(counts.holds, 1);
    md_conn_cancel(c);
    md_loop_get_counts(f->loop, &counts);
    assert_int_equal(counts.holds, 0);
    sem_post(&slow_go);
    while (sem_wait(&slow_returned) < 0 && errno == EINTR)
        ;
    /* Let the detached thread finish its cleanup before the run ends
     * (a leak checker at exit would otherwise race it). */
    nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
    for (int i = 0; i < 4; i++)
        md_loop_run_once(f->loop, 0);
    assert_false(f->called);
}

/* The listeners' resolve: the same resolver and errors, at once. */
static void resolve_now(void **state)
{
    (void)state;
    struct addrinfo *res = NULL;
    assert_int_equal(md_conn_resolve_now("nowhere.test", 1, SOCK_STREAM, true, &res),
                     -MD_CONN_EDNS);
    fake_ports[0] = 1502;
    fake_nports = 1;
    assert_int_equal(md_conn_resolve_now("one.test", 1, SOCK_STREAM, true, &res), 0);
    assert_int_equal(ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port), 1502);
    freeaddrinfo(res);
    assert_int_equal(md_conn_resolve_now("*", 1503, SOCK_DGRAM, true, &res), 0);
    assert_int_equal(res->ai_socktype, SOCK_DGRAM);
    freeaddrinfo(res);
}

static void tokens(void **state)
{
    (void)state;
    assert_string_equal(md_err_token(md_err_connect(-EHOSTUNREACH)), "unreachable");
    assert_string_equal(md_err_token(md_err_connect(-ENETUNREACH)), "unreachable");
    assert_string_equal(md_err_token(md_err_connect(-EPERM)), "permission"); /* a firewall rule */
    assert_string_equal(md_err_token(md_err_connect(-EPROTO)), "connect");
    assert_string_equal(md_strerror(-MD_CONN_EDNS),
                        "the host name does not resolve");
}

/* }===== */

int main(void)
{
    sem_init(&slow_go, 0, 0);
    sem_init(&slow_returned, 0, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(dns_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(refused, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_on_full_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(first_address_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(literal_connects, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_resolver_does_not_block, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_while_resolving, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_now, setup, teardown),
        cmocka_unit_test(tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
