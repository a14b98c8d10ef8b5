/*
 * test_loop.c - cmocka driver for core/loop.c, moondog's event loop.
 *
 * What is checked: timer order and cancellation, liveness (md_loop_run,
 * keepalive, md_loop_stop), fd watches (read, write, pause, hang-up, unwatch
 * from a callback, EEXIST), deferred calls, cross-thread completions with
 * md_loop_hold/md_loop_release, md_loop_run_until's return codes and
 * nesting, md_loop_wake from another thread, signals, and simulated time
 * (jumps, ready I/O first, TCP data that arrived). Some tests aim at
 * use-after-free in the loop (unwatch during dispatch or a nested run); they
 * can pass in a plain build and fail only under ASan or valgrind, which is
 * how CI runs them.
 *
 * Design: setup gives every test a fresh loop, and teardown frees it together
 * with every fd and scratch buffer the test registered in the fixture, so a
 * failed assert leaks nothing. Most tests install a fake clock that moves only
 * when the test moves it and drive the loop with md_loop_run_once(loop, 0), so
 * they never sleep and never depend on real time. Callbacks only record what
 * they saw (ids in call order, fd, events, watch) in the fixture or in their
 * ud; the test asserts afterwards.
 *
 * Threads: cmocka's state is thread-local, so helper threads never assert.
 * They post, wake and count; the test joins them before it checks anything.
 * The wake test is the only one that sleeps (~20 ms, in its helper thread);
 * the TCP one may wait in real time for loopback delivery (bounded).
 *
 * A broken loop can block forever in epoll_wait. Setup arms alarm(), and the
 * SIGALRM handler reports the hang and exits non-zero; stdout is line
 * buffered so cmocka's "[ RUN ]" line names the test that hung.
 *
 * Usage: test_loop [pattern], e.g. test_loop 'timer*' to run some tests.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2, SOCK_NONBLOCK */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"

enum {
    LOG_MAX = 256,  /* ids a test may record */
    FD_MAX = 8,     /* fds a test may register for teardown */
    WATCHDOG_S = 20 /* a test taking longer is taken to hang */
};

/* The fake clock starts far from 0 so that no due time is 0 by accident. */
#define EPOCH INT64_C(1000000)

/* {===== fixture ===== */

/* Owned by the test run: made by setup, freed by teardown. */
struct fixture {
    md_loop *loop;
    int64_t now;      /* the fake clock, in ms */
    int log[LOG_MAX]; /* ids recorded by callbacks, in call order */
    int nlog;
    int fds[FD_MAX]; /* closed by teardown; -1 when free */
    void *scratch;   /* freed by teardown */
};

static void on_alarm(int signo)
{
    static const char msg[] = "test_loop: a test blocked for too long (loop hung?)\n";

    (void)signo;
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
        /* nothing more we can do in a signal handler */
    }
    _exit(1);
}

static int64_t fake_clock(void *ud)
{
    return ((struct fixture *)ud)->now;
}

static int setup(void **state, bool fake)
{
    struct fixture *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    for (int i = 0; i < FD_MAX; i++)
        f->fds[i] = -1;
    f->loop = md_loop_new();
    if (!f->loop) {
        free(f);
        return -1;
    }
    if (fake) {
        f->now = EPOCH;
        md_loop_set_clock(f->loop, fake_clock, f);
    }
    alarm(WATCHDOG_S);
    *state = f;
    return 0;
}

static int setup_fake_clock(void **state)
{
    return setup(state, true);
}

static int setup_real_clock(void **state)
{
    return setup(state, false);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    alarm(0);
    md_loop_free(f->loop); /* before the fds close, so it can still unwatch them */
    for (int i = 0; i < FD_MAX; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    free(f->scratch);
    free(f);
    return 0;
}

static void keep_fd(struct fixture *f, int fd)
{
    for (int i = 0; i < FD_MAX; i++) {
        if (f->fds[i] < 0) {
            f->fds[i] = fd;
            return;
        }
    }
    fail_msg("more than %d fds in one test", FD_MAX);
}

static void close_fd(struct fixture *f, int fd)
{
    for (int i = 0; i < FD_MAX; i++) {
        if (f->fds[i] == fd) {
            f->fds[i] = -1;
            assert_int_equal(close(fd), 0);
            return;
        }
    }
    fail_msg("fd %d is not the test's", fd);
}

/* p[0] is the read end. */
static void make_pipe(struct fixture *f, int p[2])
{
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    keep_fd(f, p[0]);
    keep_fd(f, p[1]);
}

static void make_socketpair(struct fixture *f, int s[2])
{
    int type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;

    assert_int_equal(socketpair(AF_UNIX, type, 0, s), 0);
    keep_fd(f, s[0]);
    keep_fd(f, s[1]);
}

/* A TCP connection over 127.0.0.1: s[0] connected to s[1] (accepted from
 * *listener, kept listening), all non-blocking. */
static void make_tcp_pair(struct fixture *f, int s[2], int *listener)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int type = SOCK_STREAM | SOCK_CLOEXEC;

    *listener = socket(AF_INET, type | SOCK_NONBLOCK, 0);
    assert_true(*listener >= 0);
    keep_fd(f, *listener);
    assert_int_equal(bind(*listener, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(*listener, 4), 0);
    assert_int_equal(getsockname(*listener, (struct sockaddr *)&a, &len), 0);
    s[0] = socket(AF_INET, type, 0);
    assert_true(s[0] >= 0);
    keep_fd(f, s[0]);
    assert_int_equal(connect(s[0], (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(fcntl(s[0], F_SETFL, O_NONBLOCK), 0);
    for (int i = 0;
         i < 1000 && (s[1] = accept4(*listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0;
         i++)
        usleep(1000); /* the handshake's last ACK can lag under load */
    assert_true(s[1] >= 0);
    keep_fd(f, s[1]);
}

static void put_byte(int fd)
{
    assert_int_equal(write(fd, "x", 1), 1);
}

static void note(struct fixture *f, int id)
{
    assert_in_range(f->nlog, 0, LOG_MAX - 1);
    f->log[f->nlog++] = id;
}

static void assert_log(struct fixture *f, const int *want, int n)
{
    assert_int_equal(f->nlog, n);
    if (n > 0)
        assert_memory_equal(f->log, want, (size_t)n * sizeof *want);
}

static md_loop_counts counts(struct fixture *f)
{
    md_loop_counts c;

    md_loop_get_counts(f->loop, &c);
    return c;
}

/* Move the fake clock to now and run one iteration without waiting. */
static int tick(struct fixture *f, int64_t now)
{
    f->now = now;
    return md_loop_run_once(f->loop, 0);
}

/* }===== */

/* {===== callbacks ===== */

/* A timer's ud. */
struct tag {
    struct fixture *f;
    int id;
    md_timer *timer;    /* NULL once fired or cancelled */
    struct tag *victim; /* its timer is cancelled by this tag's callback */
    bool stop;          /* the callback calls md_loop_stop */
};

static void on_timer(md_loop *loop, md_timer *t, void *ud)
{
    struct tag *tag = ud;

    assert_ptr_equal(t, tag->timer);
    tag->timer = NULL; /* the loop frees t when we return */
    if (tag->victim) {
        assert_non_null(tag->victim->timer);
        md_loop_timer_cancel(loop, tag->victim->timer);
        tag->victim->timer = NULL;
    }
    if (tag->stop)
        md_loop_stop(loop);
    note(tag->f, tag->id);
}

static void add_timer(struct fixture *f, struct tag *tag, int id, int64_t due)
{
    *tag = (struct tag){.f = f, .id = id};
    tag->timer = md_loop_timer(f->loop, due, on_timer, tag);
    assert_non_null(tag->timer);
}

static void cancel_timer(struct fixture *f, struct tag *tag)
{
    md_loop_timer_cancel(f->loop, tag->timer);
    tag->timer = NULL;
}

/* A watch's ud: records the last call. */
struct probe {
    md_watch *w; /* NULL once unwatched */
    int calls;
    int fd; /* arguments of the last call */
    int events;
    md_watch *got;
    bool drain;                  /* read one byte per call */
    bool unwatch_self;           /* unwatch w from its own callback */
    struct probe *unwatch_other; /* unwatch its watch from this callback */
    struct probe *pause_other;   /* pause its watch from this callback */
};

static void on_watch(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    struct probe *p = ud;
    char c;

    p->calls++;
    p->fd = fd;
    p->events = events;
    p->got = w;
    if (p->drain)
        assert_int_equal(read(fd, &c, 1), 1);
    if (p->unwatch_self) {
        md_loop_unwatch(loop, w);
        p->w = NULL;
    }
    if (p->unwatch_other && p->unwatch_other->w) {
        md_loop_unwatch(loop, p->unwatch_other->w);
        p->unwatch_other->w = NULL;
    }
    if (p->pause_other && p->pause_other->w)
        assert_int_equal(md_loop_watch_set(loop, p->pause_other->w, 0), 0);
}

static void add_watch(struct fixture *f, struct probe *p, int fd, int events)
{
    p->w = md_loop_watch(f->loop, fd, events, on_watch, p);
    assert_non_null(p->w);
}

/* A deferred call's ud. */
struct call {
    struct fixture *f;
    int id;
    struct call *then; /* deferred by this call when it runs */
};

static void on_call(md_loop *loop, void *ud)
{
    struct call *c = ud;

    note(c->f, c->id);
    if (c->then)
        assert_int_equal(md_loop_defer(loop, on_call, c->then), 0);
}

static void set_flag(md_loop *loop, void *ud)
{
    (void)loop;
    *(bool *)ud = true;
}

static bool never(void *ud)
{
    (void)ud;
    return false;
}

static bool flag_is_set(void *ud)
{
    return *(bool *)ud;
}

/* }===== */

/* {===== timers ===== */

static void timers_fire_in_due_order_then_creation_order(void **state)
{
    enum { N = 100, SPREAD = 10 };
    struct fixture *f = *state;
    struct tag tags[N];
    int want[N], n = 0;

    /* Due times interleave, and ten timers share each one. */
    for (int i = 0; i < N; i++)
        add_timer(f, &tags[i], i, EPOCH + (i * 37) % SPREAD);
    for (int due = 0; due < SPREAD; due++)
        for (int i = 0; i < N; i++)
            if ((i * 37) % SPREAD == due)
                want[n++] = i;

    assert_int_equal(tick(f, EPOCH + SPREAD), N);
    assert_log(f, want, N);
    assert_false(md_loop_alive(f->loop));
}

static void timers_fire_only_once_due(void **state)
{
    struct fixture *f = *state;
    struct tag tags[6];
    static const int want[] = {2, 4, 6, 3, 5, 1};

    add_timer(f, &tags[0], 1, EPOCH + 30);
    add_timer(f, &tags[1], 2, EPOCH + 10);
    add_timer(f, &tags[2], 3, EPOCH + 20);
    add_timer(f, &tags[3], 4, EPOCH + 10);
    add_timer(f, &tags[4], 5, EPOCH + 20);

    assert_int_equal(tick(f, EPOCH + 9), 0);
    assert_int_equal(f->nlog, 0);
    assert_int_equal(tick(f, EPOCH + 10), 2);
    assert_log(f, want, 2);

    /* A timer created already overdue fires on the next iteration. */
    add_timer(f, &tags[5], 6, EPOCH);
    assert_int_equal(tick(f, EPOCH + 10), 1);
    assert_int_equal(tick(f, EPOCH + 29), 2);
    assert_int_equal(tick(f, EPOCH + 1000), 1);
    assert_int_equal(tick(f, EPOCH + 2000), 0);
    assert_log(f, want, 6);
}

static void cancelled_timers_never_fire(void **state)
{
    enum { N = 30, SPREAD = 5 };
    struct fixture *f = *state;
    struct tag tags[N];
    bool cancelled[N] = {false};
    int want[N], n = 0;

    for (int i = 0; i < N; i++)
        add_timer(f, &tags[i], i, EPOCH + i % SPREAD);
    /* Every third, which includes the first (earliest) and the last. */
    for (int i = 0; i < N; i += 3)
        cancelled[i] = true;
    cancelled[N - 1] = true;
    for (int i = 0; i < N; i++)
        if (cancelled[i])
            cancel_timer(f, &tags[i]);
    for (int due = 0; due < SPREAD; due++)
        for (int i = 0; i < N; i++)
            if (i % SPREAD == due && !cancelled[i])
                want[n++] = i;

    assert_int_equal(counts(f).timers, n); /* the cancelled ones are gone */
    assert_int_equal(tick(f, EPOCH + SPREAD), n);
    assert_log(f, want, n);
    assert_int_equal(tick(f, EPOCH + 1000), 0);
    assert_int_equal(counts(f).timers, 0);
    assert_false(md_loop_alive(f->loop));
}

static void timer_cancelled_by_callback_at_same_due_time_never_fires(void **state)
{
    struct fixture *f = *state;
    struct tag tags[6];
    static const int want[] = {1, 2, 4, 5};

    /* Timers 1..4 are all due at EPOCH + 5; 1 cancels 3 while 3 is due. */
    add_timer(f, &tags[0], 0, EPOCH + 50);
    add_timer(f, &tags[1], 1, EPOCH + 5);
    add_timer(f, &tags[2], 2, EPOCH + 5);
    add_timer(f, &tags[3], 3, EPOCH + 5);
    add_timer(f, &tags[4], 4, EPOCH + 5);
    add_timer(f, &tags[5], 5, EPOCH + 6);
    tags[1].victim = &tags[3];
    cancel_timer(f, &tags[0]);

    assert_int_equal(tick(f, EPOCH + 10), 4);
    assert_log(f, want, 4);
    assert_int_equal(tick(f, EPOCH + 1000), 0);
    assert_false(md_loop_alive(f->loop));
}

/* }===== */

/* {===== liveness and stop ===== */

static void run_returns_0_when_nothing_is_alive(void **state)
{
    struct fixture *f = *state;
    struct tag tag;
    static const int want[] = {1};

    assert_false(md_loop_alive(f->loop));
    assert_int_equal(md_loop_run(f->loop), 0);

    add_timer(f, &tag, 1, EPOCH);
    assert_true(md_loop_alive(f->loop));
    assert_int_equal(md_loop_run(f->loop), 0);
    assert_log(f, want, 1);
    assert_false(md_loop_alive(f->loop));
}

static void timer_without_keepalive_does_not_keep_loop_alive(void **state)
{
    struct fixture *f = *state;
    struct tag tag;

    add_timer(f, &tag, 1, EPOCH + 1000);
    md_loop_timer_keepalive(f->loop, tag.timer, false);
    assert_false(md_loop_alive(f->loop));
    assert_int_equal(md_loop_run(f->loop), 0);
    assert_int_equal(f->nlog, 0);

    /* It is still registered and fires when due. */
    md_loop_timer_keepalive(f->loop, tag.timer, true);
    assert_true(md_loop_alive(f->loop));
    assert_int_equal(tick(f, EPOCH + 1000), 1);
    assert_int_equal(f->nlog, 1);
}

static void watch_without_keepalive_does_not_keep_loop_alive(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {0};
    int p[2];

    make_pipe(f, p);
    add_watch(f, &probe, p[0], MD_LOOP_READ);
    assert_true(md_loop_alive(f->loop));
    md_loop_watch_keepalive(f->loop, probe.w, false);
    assert_false(md_loop_alive(f->loop));
    assert_int_equal(md_loop_run(f->loop), 0);
    assert_int_equal(probe.calls, 0);
}

/* md_loop_unwatch_close drops the watch and closes the fd, and does
 * nothing the second time. */
static void unwatch_close_drops_watch_and_fd(void **state)
{
    struct fixture *f = *state;
    int p[2];

    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    keep_fd(f, p[1]);
    int fd = p[0];
    md_watch *w = md_loop_watch(f->loop, fd, MD_LOOP_READ, on_watch, NULL);
    assert_non_null(w);
    assert_true(md_loop_alive(f->loop));
    md_loop_unwatch_close(f->loop, &w, &fd);
    assert_null(w);
    assert_int_equal(fd, -1);
    assert_false(md_loop_alive(f->loop));
    assert_int_equal(fcntl(p[0], F_GETFD), -1); /* closed */
    md_loop_unwatch_close(f->loop, &w, &fd);   /* again: nothing to do */
    assert_int_equal(md_loop_run(f->loop), 0);
}

static void stop_makes_run_return_1(void **state)
{
    struct fixture *f = *state;
    struct probe idle = {0};
    struct tag tag;
    int p[2];

    /* The idle watch keeps the loop alive; only the stop can end run. */
    make_pipe(f, p);
    add_watch(f, &idle, p[0], MD_LOOP_READ);
    add_timer(f, &tag, 1, EPOCH);
    tag.stop = true;

    assert_int_equal(md_loop_run(f->loop), 1);
    assert_true(md_loop_stopped(f->loop));
    assert_int_equal(f->nlog, 1);

    /* A later run clears the stop. */
    md_loop_unwatch(f->loop, idle.w);
    assert_int_equal(md_loop_run(f->loop), 0);
    assert_false(md_loop_stopped(f->loop));
}

/* The wake-up of the loop's own eventfd runs no callback of the caller's. */
static void run_once_returns_number_of_callbacks_run(void **state)
{
    struct fixture *f = *state;

    md_loop_wake(f->loop);
    assert_int_equal(tick(f, EPOCH), 0);
}

/* }===== */

/* {===== fd watches ===== */

static void readable_pipe_reports_read_with_fd_and_ud(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {.drain = true};
    int p[2];

    make_pipe(f, p);
    add_watch(f, &probe, p[0], MD_LOOP_READ);
    assert_int_equal(tick(f, EPOCH), 0);
    assert_int_equal(probe.calls, 0);

    put_byte(p[1]);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(probe.calls, 1); /* so ud was &probe */
    assert_int_equal(probe.fd, p[0]);
    assert_int_equal(probe.events, MD_LOOP_READ);
    assert_ptr_equal(probe.got, probe.w);
}

static void watch_set_zero_pauses_until_set_again(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {0};
    int p[2];

    make_pipe(f, p);
    add_watch(f, &probe, p[0], MD_LOOP_READ);
    assert_int_equal(md_loop_watch_set(f->loop, probe.w, 0), 0);
    put_byte(p[1]);
    assert_int_equal(tick(f, EPOCH), 0);
    assert_int_equal(probe.calls, 0);

    assert_int_equal(md_loop_watch_set(f->loop, probe.w, MD_LOOP_READ), 0);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(probe.calls, 1);
    assert_int_equal(probe.events, MD_LOOP_READ);
}

/* epoll reports EPOLLHUP even for an empty event mask, so a pause must
 * hold against a hang-up too. */
static void paused_watch_ignores_peer_hangup(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {0};
    int s[2];

    make_socketpair(f, s);
    add_watch(f, &probe, s[0], MD_LOOP_READ);
    assert_int_equal(md_loop_watch_set(f->loop, probe.w, 0), 0);
    close_fd(f, s[1]);
    assert_int_equal(tick(f, EPOCH), 0);
    assert_int_equal(probe.calls, 0);

    assert_int_equal(md_loop_watch_set(f->loop, probe.w, MD_LOOP_READ), 0);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(probe.events, MD_LOOP_READ);
}

/* Readable and writable at once, so a loop that dispatches the two
 * separately would touch the freed watch. */
static void unwatch_inside_own_callback_is_safe(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {.unwatch_self = true};
    int s[2];

    make_socketpair(f, s);
    add_watch(f, &probe, s[0], MD_LOOP_READ | MD_LOOP_WRITE);
    put_byte(s[1]);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(probe.calls, 1);
    assert_null(probe.w);

    put_byte(s[1]);
    assert_int_equal(tick(f, EPOCH), 0);
    assert_int_equal(probe.calls, 1);
    assert_int_equal(counts(f).watches, 0);
    assert_false(md_loop_alive(f->loop));
}

/* Both fds are ready in the same epoll batch; whichever runs first unwatches
 * the other, which then must not run. */
static void unwatch_of_another_ready_watch_inside_callback_is_safe(void **state)
{
    struct fixture *f = *state;
    struct probe a = {0}, b = {0};
    int pa[2], pb[2];

    a.unwatch_other = &b;
    b.unwatch_other = &a;
    make_pipe(f, pa);
    make_pipe(f, pb);
    add_watch(f, &a, pa[0], MD_LOOP_READ);
    add_watch(f, &b, pb[0], MD_LOOP_READ);
    put_byte(pa[1]);
    put_byte(pb[1]);

    tick(f, EPOCH);
    assert_int_equal(a.calls + b.calls, 1);
}

/* The same for a pause: a paused watch gets no callback, even for an event
 * the kernel reported before the pause. */
static void pause_of_another_ready_watch_inside_callback_holds(void **state)
{
    struct fixture *f = *state;
    struct probe a = {0}, b = {0};
    int pa[2], pb[2];

    a.pause_other = &b;
    b.pause_other = &a;
    make_pipe(f, pa);
    make_pipe(f, pb);
    add_watch(f, &a, pa[0], MD_LOOP_READ);
    add_watch(f, &b, pb[0], MD_LOOP_READ);
    put_byte(pa[1]);
    put_byte(pb[1]);

    tick(f, EPOCH);
    assert_int_equal(a.calls + b.calls, 1);
}

static void watching_same_fd_twice_fails_with_eexist(void **state)
{
    struct fixture *f = *state;
    struct probe first = {0}, second = {0};
    int p[2];

    make_pipe(f, p);
    add_watch(f, &first, p[0], MD_LOOP_READ);
    errno = 0;
    assert_null(md_loop_watch(f->loop, p[0], MD_LOOP_WRITE, on_watch, &second));
    assert_int_equal(errno, EEXIST);

    /* Once unwatched, the fd can be watched again. */
    md_loop_unwatch(f->loop, first.w);
    add_watch(f, &second, p[0], MD_LOOP_READ);
}

static void writable_socket_reports_write(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {0};
    int s[2];

    make_socketpair(f, s);
    add_watch(f, &probe, s[0], MD_LOOP_WRITE);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(probe.calls, 1);
    assert_int_equal(probe.fd, s[0]);
    assert_int_equal(probe.events, MD_LOOP_WRITE);
}

static void socket_peer_hangup_reports_read(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {0};
    int s[2];
    char c;

    make_socketpair(f, s);
    add_watch(f, &probe, s[0], MD_LOOP_READ);
    close_fd(f, s[1]);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(probe.events, MD_LOOP_READ);
    assert_int_equal(read(s[0], &c, 1), 0); /* "read to find out": EOF */
}

static void pipe_writer_hangup_reports_read(void **state)
{
    struct fixture *f = *state;
    struct probe probe = {0};
    int p[2];

    make_pipe(f, p);
    add_watch(f, &probe, p[0], MD_LOOP_READ);
    close_fd(f, p[1]);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(probe.events, MD_LOOP_READ);
}

/* }===== */

/* {===== deferred calls ===== */

static void deferred_calls_run_fifo_on_next_iteration(void **state)
{
    struct fixture *f = *state;
    struct call calls[3];
    static const int want[] = {1, 2, 3};

    for (int i = 0; i < 3; i++) {
        calls[i] = (struct call){.f = f, .id = i + 1};
        assert_int_equal(md_loop_defer(f->loop, on_call, &calls[i]), 0);
    }
    assert_int_equal(f->nlog, 0);
    assert_int_equal(counts(f).deferred, 3);
    assert_true(md_loop_alive(f->loop));

    assert_int_equal(tick(f, EPOCH), 3);
    assert_log(f, want, 3);
    assert_int_equal(counts(f).deferred, 0);
    assert_int_equal(tick(f, EPOCH), 0);
    assert_false(md_loop_alive(f->loop));
}

static void defer_from_deferred_call_runs_on_following_iteration(void **state)
{
    struct fixture *f = *state;
    struct call later = {.f = f, .id = 2};
    struct call first = {.f = f, .id = 1, .then = &later};
    struct call second = {.f = f, .id = 3};
    static const int want[] = {1, 3, 2};

    assert_int_equal(md_loop_defer(f->loop, on_call, &first), 0);
    assert_int_equal(md_loop_defer(f->loop, on_call, &second), 0);
    assert_int_equal(tick(f, EPOCH), 2);
    assert_log(f, want, 2);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_log(f, want, 3);
}

static void self_deferring_call_does_not_starve_timers_or_fds(void **state)
{
    struct fixture *f = *state;
    struct call spin = {.f = f, .id = 1};
    struct probe probe = {.drain = true};
    struct tag tag;
    int p[2];
    static const int want[] = {1, 2, 1, 1};

    spin.then = &spin; /* forever */
    assert_int_equal(md_loop_defer(f->loop, on_call, &spin), 0);
    add_timer(f, &tag, 2, EPOCH);
    make_pipe(f, p);
    add_watch(f, &probe, p[0], MD_LOOP_READ);
    put_byte(p[1]);

    assert_int_equal(tick(f, EPOCH), 3);
    assert_int_equal(probe.calls, 1);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(tick(f, EPOCH), 1);
    assert_log(f, want, 4);
}

/* }===== */

/* {===== cross-thread completions ===== */

enum { POSTERS = 4, PER_POSTER = 2500 };

struct item {
    md_completion c;
    struct flood *fl;
    int thread;
    int seq;
    int runs;
};

/* Shared by the posters and the loop thread. The posters only read loop
 * and their own slice of items; everything else is the loop thread's. */
struct flood {
    md_loop *loop;
    pthread_t loop_thread;
    struct item items[POSTERS][PER_POSTER];
    md_completion ends[POSTERS];
    int next_seq[POSTERS];
    int ran, ended, out_of_order, off_thread;
};

struct poster {
    struct flood *fl;
    int thread;
};

static void on_item(md_loop *loop, void *ud)
{
    struct item *it = ud;
    struct flood *fl = it->fl;

    (void)loop;
    if (!pthread_equal(pthread_self(), fl->loop_thread))
        fl->off_thread++;
    if (it->seq != fl->next_seq[it->thread])
        fl->out_of_order++;
    fl->next_seq[it->thread] = it->seq + 1;
    it->runs++;
    fl->ran++;
}

/* A poster's last completion: its work is no longer in flight. */
static void on_poster_end(md_loop *loop, void *ud)
{
    struct flood *fl = ud;

    md_loop_release(loop);
    fl->ended++;
}

static bool flood_done(void *ud)
{
    struct flood *fl = ud;

    return fl->ran == POSTERS * PER_POSTER && fl->ended == POSTERS;
}

static void *post_items(void *arg)
{
    struct poster *ps = arg;
    struct flood *fl = ps->fl;

    for (int i = 0; i < PER_POSTER; i++)
        md_loop_post(fl->loop, &fl->items[ps->thread][i].c);
    md_loop_post(fl->loop, &fl->ends[ps->thread]);
    return NULL;
}

static void completions_from_threads_run_once_each_in_fifo_order(void **state)
{
    struct fixture *f = *state;
    struct flood *fl = calloc(1, sizeof *fl);
    struct poster posters[POSTERS];
    pthread_t threads[POSTERS];
    int started = 0, rc;

    assert_non_null(fl);
    f->scratch = fl;
    fl->loop = f->loop;
    fl->loop_thread = pthread_self();
    for (int t = 0; t < POSTERS; t++) {
        for (int i = 0; i < PER_POSTER; i++) {
            struct item *it = &fl->items[t][i];

            *it = (struct item){
                .c = {.fn = on_item, .ud = it}, .fl = fl, .thread = t, .seq = i};
        }
        fl->ends[t] = (md_completion){.fn = on_poster_end, .ud = fl};
        posters[t] = (struct poster){.fl = fl, .thread = t};
    }

    /* One hold per poster, released by its last completion. */
    for (int t = 0; t < POSTERS; t++) {
        md_loop_hold(f->loop);
        if (pthread_create(&threads[t], NULL, post_items, &posters[t]) != 0)
            break;
        started++;
    }
    if (started == POSTERS)
        rc = md_loop_run_until(f->loop, flood_done, fl);
    else
        rc = -1; /* threads that did start only post; nothing to run */
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);

    assert_int_equal(started, POSTERS);
    assert_int_equal(rc, 0);
    assert_int_equal(fl->ran, POSTERS * PER_POSTER);
    assert_int_equal(fl->ended, POSTERS);
    assert_int_equal(fl->out_of_order, 0);
    assert_int_equal(fl->off_thread, 0);
    for (int t = 0; t < POSTERS; t++) {
        assert_int_equal(fl->next_seq[t], PER_POSTER);
        for (int i = 0; i < PER_POSTER; i++)
            assert_int_equal(fl->items[t][i].runs, 1);
    }
    assert_false(md_loop_alive(f->loop));
    assert_int_equal(md_loop_run(f->loop), 0);
}

/* }===== */

/* {===== run_until ===== */

static void run_until_returns_edeadlk_when_nothing_is_alive(void **state)
{
    struct fixture *f = *state;
    struct tag due, idle;

    assert_int_equal(md_loop_run_until(f->loop, never, NULL), -EDEADLK);

    /* A due timer runs first; a timer without keepalive does not count. */
    add_timer(f, &due, 1, EPOCH);
    add_timer(f, &idle, 2, EPOCH + 1000);
    md_loop_timer_keepalive(f->loop, idle.timer, false);
    assert_int_equal(md_loop_run_until(f->loop, never, NULL), -EDEADLK);
    assert_int_equal(f->nlog, 1);
    assert_non_null(idle.timer);
}

static void run_until_returns_1_when_stopped(void **state)
{
    struct fixture *f = *state;
    struct tag tag;

    md_loop_hold(f->loop); /* nothing will release it before the stop */
    add_timer(f, &tag, 1, EPOCH);
    tag.stop = true;
    assert_int_equal(md_loop_run_until(f->loop, never, NULL), 1);
    assert_int_equal(f->nlog, 1);
    assert_true(md_loop_stopped(f->loop));
    md_loop_release(f->loop);
    assert_false(md_loop_alive(f->loop));
}

static void run_until_returns_0_when_done(void **state)
{
    struct fixture *f = *state;
    bool done = false;

    /* Nothing is alive after the call, but done wins over -EDEADLK. */
    assert_int_equal(md_loop_defer(f->loop, set_flag, &done), 0);
    assert_int_equal(md_loop_run_until(f->loop, flag_is_set, &done), 0);
    assert_true(done);
}

/* The blocking-primitive case: the result arrives while something unrelated
 * (here an idle watch, as the REPL's stdin would be) keeps the loop alive.
 * run_until must return then, not wait for that unrelated fd. */
static void run_until_returns_when_done_while_loop_stays_alive(void **state)
{
    struct fixture *f = *state;
    struct probe idle = {0};
    bool done = false;
    int p[2];

    make_pipe(f, p);
    add_watch(f, &idle, p[0], MD_LOOP_READ);
    assert_int_equal(md_loop_defer(f->loop, set_flag, &done), 0);
    assert_int_equal(md_loop_run_until(f->loop, flag_is_set, &done), 0);
    assert_int_equal(idle.calls, 0);
}

struct nest {
    bool inner_done, outer_done;
    int inner_rc;
};

static void run_inner(md_loop *loop, void *ud)
{
    struct nest *n = ud;

    assert_int_equal(md_loop_defer(loop, set_flag, &n->inner_done), 0);
    n->inner_rc = md_loop_run_until(loop, flag_is_set, &n->inner_done);
    n->outer_done = true;
}

static void run_until_can_nest(void **state)
{
    struct fixture *f = *state;
    struct nest n = {.inner_rc = 42};

    assert_int_equal(md_loop_defer(f->loop, run_inner, &n), 0);
    assert_int_equal(md_loop_run_until(f->loop, flag_is_set, &n.outer_done), 0);
    assert_int_equal(n.inner_rc, 0);
    assert_true(n.inner_done);
}

/* Both calls were queued before the nested run_until, so the nested loop
 * runs the second one, and the second one is what it waits for. */
struct defer_nest {
    bool flag, inner_ran;
    int inner_rc;
};

static void run_inner_on_flag(md_loop *loop, void *ud)
{
    struct defer_nest *n = ud;

    n->inner_rc = md_loop_run_until(loop, flag_is_set, &n->flag);
    n->inner_ran = true;
}

static void nested_run_until_runs_calls_deferred_before_it(void **state)
{
    struct fixture *f = *state;
    struct defer_nest n = {.inner_rc = 42};

    assert_int_equal(md_loop_defer(f->loop, run_inner_on_flag, &n), 0);
    assert_int_equal(md_loop_defer(f->loop, set_flag, &n.flag), 0);
    assert_int_equal(md_loop_run_until(f->loop, flag_is_set, &n.inner_ran), 0);
    assert_int_equal(n.inner_rc, 0);
}

/* The REPL case: a watch callback runs code that blocks in run_until. The
 * outer epoll batch still names the other ready watch, which unwatches
 * itself inside the nested run; the outer dispatch must not touch it. */
struct watch_nest {
    md_watch *w[2]; /* NULL once unwatched */
    int calls[2];
    bool nested;
    int inner_rc;
};

static bool one_unwatched(void *ud)
{
    struct watch_nest *n = ud;

    return !n->w[0] || !n->w[1];
}

static void on_nesting_watch(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    struct watch_nest *n = ud;
    int me = w == n->w[0] ? 0 : 1;
    char c;

    (void)events;
    n->calls[me]++;
    if (read(fd, &c, 1) != 1)
        return; /* drained already: called again for a stale event */
    if (!n->nested) {
        n->nested = true;
        n->inner_rc = md_loop_run_until(loop, one_unwatched, n);
        return;
    }
    md_loop_unwatch(loop, w);
    n->w[me] = NULL;
}

static void unwatch_inside_nested_run_until_is_safe(void **state)
{
    struct fixture *f = *state;
    struct watch_nest n = {.inner_rc = 42};
    int pa[2], pb[2];

    make_pipe(f, pa);
    make_pipe(f, pb);
    n.w[0] = md_loop_watch(f->loop, pa[0], MD_LOOP_READ, on_nesting_watch, &n);
    assert_non_null(n.w[0]);
    n.w[1] = md_loop_watch(f->loop, pb[0], MD_LOOP_READ, on_nesting_watch, &n);
    assert_non_null(n.w[1]);
    put_byte(pa[1]);
    put_byte(pb[1]);

    tick(f, EPOCH);
    assert_int_equal(n.inner_rc, 0);
    assert_int_equal(n.calls[0], 1);
    assert_int_equal(n.calls[1], 1);
}

/* }===== */

/* {===== wake and signals ===== */

static void *wake_later(void *arg)
{
    struct timespec ts = {.tv_nsec = 20 * 1000 * 1000};

    nanosleep(&ts, NULL);
    md_loop_wake(arg);
    return NULL;
}

static void wake_from_thread_ends_blocking_run_once(void **state)
{
    struct fixture *f = *state;
    struct probe idle = {0};
    pthread_t thread;
    int p[2], rc;

    make_pipe(f, p);
    add_watch(f, &idle, p[0], MD_LOOP_READ);
    assert_int_equal(pthread_create(&thread, NULL, wake_later, f->loop), 0);
    rc = md_loop_run_once(f->loop, -1);
    pthread_join(thread, NULL);
    assert_in_range(rc, 0, INT_MAX); /* it returned, without an error */
    assert_int_equal(idle.calls, 0);
}

/* The async hook runs inside the signal handler, so it can only count. */
static volatile sig_atomic_t async_calls, async_signo;

static void on_signal_async(int signo)
{
    async_calls++;
    async_signo = signo;
}

struct sig_seen {
    pthread_t loop_thread;
    int calls;
    bool on_loop_thread;
};

static void on_signal(md_loop *loop, void *ud)
{
    struct sig_seen *seen = ud;

    (void)loop;
    seen->calls++;
    seen->on_loop_thread = pthread_equal(pthread_self(), seen->loop_thread) != 0;
}

static void signal_runs_fn_on_loop_and_async_in_handler(void **state)
{
    struct fixture *f = *state;
    struct sig_seen seen = {.loop_thread = pthread_self()};

    async_calls = 0;
    async_signo = 0;
    assert_int_equal(md_loop_signal(f->loop, SIGUSR1, on_signal, &seen, on_signal_async),
                     0);
    assert_false(md_loop_alive(f->loop)); /* signal watches do not keep it alive */

    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(async_calls, 1);
    assert_int_equal(async_signo, SIGUSR1);
    assert_int_equal(seen.calls, 0); /* not from inside the handler */

    assert_int_equal(tick(f, EPOCH), 1);
    assert_int_equal(seen.calls, 1);
    assert_true(seen.on_loop_thread);
    assert_int_equal(tick(f, EPOCH), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(async_calls, 1);
}

/* }===== */

/* {===== simulated time ===== */

/* Idle, the virtual clock jumps straight to the next timer: the fake real
 * clock never moves, yet every timer fires in order, at its own time. */
static void simulated_time_jumps_to_each_timer_in_turn(void **state)
{
    struct fixture *f = *state;
    struct tag tags[3];
    static const int want[] = {1, 2, 3};

    add_timer(f, &tags[1], 2, EPOCH + 60000);
    md_loop_simulate(f->loop, 1700000000000, 0);
    assert_true(md_loop_simulated(f->loop));
    int64_t origin = md_loop_now(f->loop);
    add_timer(f, &tags[0], 1, origin + 1000);
    add_timer(f, &tags[2], 3, origin + 3600000);
    assert_int_equal(md_loop_run(f->loop), 0);
    assert_log(f, want, 3);
    assert_int_equal(md_loop_now(f->loop), origin + 3600000);
    assert_int_equal(md_loop_wall_ms(f->loop), 1700000000000 + 3600000);
    assert_int_equal(f->now, EPOCH); /* no real time passed */
}

/* A readable fd is served before the clock jumps past a timer. */
static void simulated_time_serves_ready_io_before_jumping(void **state)
{
    struct fixture *f = *state;
    struct tag tag;
    struct probe probe = {.drain = true};
    int p[2];

    md_loop_simulate(f->loop, 0, 0);
    int64_t origin = md_loop_now(f->loop);
    make_pipe(f, p);
    add_watch(f, &probe, p[0], MD_LOOP_READ);
    add_timer(f, &tag, 1, origin + 5000);
    put_byte(p[1]);
    assert_int_equal(md_loop_run_once(f->loop, -1), 1);
    assert_int_equal(probe.calls, 1);
    assert_int_equal(md_loop_now(f->loop), origin);     /* no jump while I/O was ready */
    assert_int_equal(md_loop_run_once(f->loop, -1), 0); /* idle: jump */
    assert_int_equal(md_loop_now(f->loop), origin + 5000);
    md_loop_unwatch(f->loop, probe.w);
    probe.w = NULL;
    assert_int_equal(md_loop_run(f->loop), 0);
    assert_int_equal(f->nlog, 1);
}

/* TCP data that has arrived, or that goes to a paused watch, does not hold
 * the clock: the check before a jump matches both ends of the connection
 * (core/loop.c, "data in flight"), so a delayed ACK or an unread byte never
 * costs the 1 s bound (flight_giveups stays 0). Data still in flight is
 * waited for (test_clock_flight.lua makes that certain in a namespace). */
static void simulated_time_jumps_once_tcp_data_has_arrived(void **state)
{
    struct fixture *f = *state;
    struct tag tags[2];
    struct probe server = {.drain = true}, client = {0}, accept = {0};
    static const int want[] = {1, 2};
    int s[2], l;

    make_tcp_pair(f, s, &l);
    md_loop_simulate(f->loop, 0, 0);
    int64_t origin = md_loop_now(f->loop);
    add_watch(f, &client, s[0], MD_LOOP_READ);
    add_watch(f, &server, s[1], MD_LOOP_READ);
    add_watch(f, &accept, l, MD_LOOP_READ);
    add_timer(f, &tags[0], 1, origin + 5000);
    add_timer(f, &tags[1], 2, origin + 10000);

    put_byte(s[0]);
    assert_int_equal(md_loop_run_once(f->loop, -1), 1); /* waits if it must */
    assert_int_equal(server.calls, 1);
    assert_int_equal(md_loop_now(f->loop), origin); /* no jump before it arrived */
    assert_int_equal(md_loop_run_once(f->loop, -1), 0); /* idle: jump */
    assert_int_equal(md_loop_now(f->loop), origin + 5000);
    assert_int_equal(md_loop_run_once(f->loop, -1), 1); /* timer 1 */

    assert_int_equal(md_loop_watch_set(f->loop, server.w, 0), 0); /* not read now */
    put_byte(s[0]);
    assert_int_equal(md_loop_run_once(f->loop, -1), 0); /* idle: jump */
    assert_int_equal(md_loop_now(f->loop), origin + 10000);
    assert_int_equal(md_loop_run_once(f->loop, -1), 1); /* timer 2 */
    assert_log(f, want, 2);
    assert_int_equal(client.calls, 0);
    assert_int_equal(accept.calls, 0);
    assert_int_equal(counts(f).flight_giveups, 0);
}

/* }===== */

#define FAKE(test) cmocka_unit_test_setup_teardown(test, setup_fake_clock, teardown)
#define REAL(test) cmocka_unit_test_setup_teardown(test, setup_real_clock, teardown)

/* An optional argument selects tests by name pattern, e.g. 'timer*'. */
int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        FAKE(timers_fire_in_due_order_then_creation_order),
        FAKE(timers_fire_only_once_due),
        FAKE(cancelled_timers_never_fire),
        FAKE(timer_cancelled_by_callback_at_same_due_time_never_fires),
        FAKE(run_returns_0_when_nothing_is_alive),
        FAKE(run_once_returns_number_of_callbacks_run),
        FAKE(timer_without_keepalive_does_not_keep_loop_alive),
        FAKE(watch_without_keepalive_does_not_keep_loop_alive),
        FAKE(unwatch_close_drops_watch_and_fd),
        FAKE(stop_makes_run_return_1),
        FAKE(readable_pipe_reports_read_with_fd_and_ud),
        FAKE(watch_set_zero_pauses_until_set_again),
        FAKE(paused_watch_ignores_peer_hangup),
        FAKE(unwatch_inside_own_callback_is_safe),
        FAKE(unwatch_of_another_ready_watch_inside_callback_is_safe),
        FAKE(pause_of_another_ready_watch_inside_callback_holds),
        FAKE(watching_same_fd_twice_fails_with_eexist),
        FAKE(writable_socket_reports_write),
        FAKE(socket_peer_hangup_reports_read),
        FAKE(pipe_writer_hangup_reports_read),
        FAKE(deferred_calls_run_fifo_on_next_iteration),
        FAKE(defer_from_deferred_call_runs_on_following_iteration),
        FAKE(self_deferring_call_does_not_starve_timers_or_fds),
        REAL(completions_from_threads_run_once_each_in_fifo_order),
        FAKE(run_until_returns_edeadlk_when_nothing_is_alive),
        FAKE(run_until_returns_1_when_stopped),
        FAKE(run_until_returns_0_when_done),
        FAKE(run_until_returns_when_done_while_loop_stays_alive),
        FAKE(run_until_can_nest),
        FAKE(nested_run_until_runs_calls_deferred_before_it),
        FAKE(unwatch_inside_nested_run_until_is_safe),
        REAL(wake_from_thread_ends_blocking_run_once),
        FAKE(signal_runs_fn_on_loop_and_async_in_handler),
        FAKE(simulated_time_jumps_to_each_timer_in_turn),
        FAKE(simulated_time_serves_ready_io_before_jumping),
        FAKE(simulated_time_jumps_once_tcp_data_has_arrived),
    };
    struct sigaction sa = {.sa_handler = on_alarm};

    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigaction(SIGALRM, &sa, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
