/*
 * test_attach_server.c - cmocka driver for core/attach_server.c, the
 * engine's side of `moondog attach` without Lua.
 *
 * What is checked: a connection splits a byte stream into frames however it
 * arrives (several in one read, one cut in half); sent frames arrive with
 * their header; output the client does not take is queued in order and a
 * client that takes nothing is dropped at the limit; an oversized frame and
 * a client that goes away end the connection with a reason; closing a
 * connection from inside its own frame callback is safe (ASan, valgrind).
 * The server: several clients at once, each with its own connection, one
 * leaving without disturbing the other; a stale socket is replaced, a live
 * one reported in_use; a symbolic link or a plain file at the path is
 * refused and left alone; close removes only its own socket file.
 *
 * Design: real unix sockets (socketpair for a connection, a socket in a
 * fresh temporary directory for the server) on a real md_loop driven with
 * md_loop_run_once(loop, 0), so nothing sleeps. Callbacks record what they
 * saw in the fixture; the test asserts afterwards. Setup arms alarm() so a
 * hang fails the run instead of blocking it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "attach.h"
#include "attach_server.h"
#include "attachcodec.h"
#include "loop.h"
#include "watchdog.h"

enum { MAX_FRAMES = 16, MAX_CLIENTS = 4, WATCHDOG_S = 20 };

typedef struct rec {
    struct fixture *f;
    md_attach_conn *conn;
    int nframes;
    char types[MAX_FRAMES];
    char data[MAX_FRAMES][64];
    size_t lens[MAX_FRAMES];
    const char *closed; /* the reason, once closed by itself */
    bool close_on_frame;
} rec;

/* Owned by the test run: made by setup, freed by teardown. */
typedef struct fixture {
    md_loop *loop;
    char dir[40];
    char path[64];
    int peer; /* the client's end of a socketpair */
    rec conns[MAX_CLIENTS];
    int naccepted;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = md_loop_new();
    assert_non_null(f->loop);
    f->peer = -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/md-attach-test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/site.sock", f->dir);
    md_test_watchdog(WATCHDOG_S);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (f->conns[i].conn && !f->conns[i].closed)
            md_attach_conn_close(f->conns[i].conn);
    if (f->peer >= 0)
        close(f->peer);
    md_loop_free(f->loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    (void)!system(cmd);
    free(f);
    md_test_watchdog(0);
    return 0;
}

static void on_frame(void *ud, char type, const char *data, size_t len)
{
    rec *r = ud;
    if (r->nframes < MAX_FRAMES) {
        r->types[r->nframes] = type;
        r->lens[r->nframes] = len;
        memcpy(r->data[r->nframes], data, len < 63 ? len : 63);
        r->nframes++;
    }
    if (r->close_on_frame) {
        md_attach_conn_close(r->conn);
        r->conn = NULL;
        r->closed = "closed by the test";
    }
}

static void on_closed(void *ud, const char *why)
{
    rec *r = ud;
    r->closed = why;
}

static const md_attach_conn_fns fns = {on_frame, on_closed};

/* A connection on one end of a socketpair; the other end is f->peer. */
static rec *pair(fixture *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    rec *r = &f->conns[0];
    r->f = f;
    r->conn = md_attach_conn_new(f->loop, sv[0], &fns, r);
    assert_non_null(r->conn);
    f->peer = sv[1];
    return r;
}

static void run(fixture *f, int times)
{
    for (int i = 0; i < times; i++)
        assert_true(md_loop_run_once(f->loop, 0) >= 0);
}

/* Append a frame to buf at *len. */
static void frame(uint8_t *buf, size_t *len, char type, const char *payload)
{
    size_t n = strlen(payload);
    md_attach_header(buf + *len, type, (uint32_t)n);
    memcpy(buf + *len + MD_ATTACH_HEADER, payload, n);
    *len += MD_ATTACH_HEADER + n;
}

static void put(int fd, const void *data, size_t len)
{
    assert_int_equal(write(fd, data, len), (ssize_t)len);
}

/* {===== connections ===== */

static void conn_splits_frames_however_they_arrive(void **state)
{
    fixture *f = *state;
    rec *r = pair(f);
    uint8_t buf[256];
    size_t len = 0;
    frame(buf, &len, 'L', "x = 1");
    frame(buf, &len, 'C', "pri");
    size_t two = len;
    frame(buf, &len, 'L', "print(x)");
    frame(buf, &len, 'I', "");
    put(f->peer, buf, two + 3); /* two frames and 3 bytes of the third's header */
    run(f, 1);
    assert_int_equal(r->nframes, 2);
    assert_int_equal(r->types[0], 'L');
    assert_int_equal(r->lens[0], 5);
    assert_memory_equal(r->data[0], "x = 1", 5);
    assert_int_equal(r->types[1], 'C');
    assert_memory_equal(r->data[1], "pri", 3);
    put(f->peer, buf + two + 3, len - two - 3);
    run(f, 1);
    assert_int_equal(r->nframes, 4);
    assert_int_equal(r->types[2], 'L');
    assert_memory_equal(r->data[2], "print(x)", 8);
    assert_int_equal(r->types[3], 'I');
    assert_int_equal(r->lens[3], 0);
    assert_null(r->closed);
}

static void conn_sends_header_and_payload(void **state)
{
    fixture *f = *state;
    rec *r = pair(f);
    assert_int_equal(md_attach_conn_send(r->conn, 'P', "> ", 2), 0);
    assert_int_equal(md_attach_conn_send(r->conn, 'O', "", 0), 0);
    uint8_t got[32];
    ssize_t n = read(f->peer, got, sizeof got);
    assert_int_equal(n, 2 * MD_ATTACH_HEADER + 2);
    static const uint8_t want[] = {'P', 0, 0, 0, 2, '>', ' ', 'O', 0, 0, 0, 0};
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(md_attach_conn_pending(r->conn), 0);
}

/* A client that stops reading: output queues in order behind what the
 * socket took, goes out in order once it reads, and past the limit the
 * client is dropped. */
static void conn_queues_in_order_then_drops_a_slow_client(void **state)
{
    fixture *f = *state;
    rec *r = pair(f);
    static char chunk[60000];
    int sent = 0;
    while (md_attach_conn_pending(r->conn) == 0 && sent < 1000) {
        memset(chunk, 'a' + sent % 26, sizeof chunk);
        assert_int_equal(md_attach_conn_send(r->conn, 'O', chunk, sizeof chunk), 0);
        sent++;
    }
    assert_true(md_attach_conn_pending(r->conn) > 0);
    /* A few more queue behind; then drain everything and check the order. */
    for (int i = 0; i < 3; i++, sent++) {
        memset(chunk, 'a' + sent % 26, sizeof chunk);
        assert_int_equal(md_attach_conn_send(r->conn, 'O', chunk, sizeof chunk), 0);
    }
    size_t total = (size_t)sent * (MD_ATTACH_HEADER + sizeof chunk), got = 0;
    uint8_t *all = malloc(total);
    assert_non_null(all);
    for (int spins = 0; got < total && spins < 10000; spins++) {
        ssize_t n = read(f->peer, all + got, total - got);
        if (n > 0)
            got += (size_t)n;
        run(f, 1);
    }
    assert_int_equal(got, total);
    for (int i = 0; i < sent; i++) {
        const uint8_t *fr = all + (size_t)i * (MD_ATTACH_HEADER + sizeof chunk);
        char type;
        uint32_t plen;
        assert_int_equal(
            md_attach_next(fr, MD_ATTACH_HEADER + sizeof chunk, UINT32_MAX, &type, &plen),
            1);
        assert_int_equal(type, 'O');
        assert_int_equal(plen, sizeof chunk);
        assert_int_equal(fr[MD_ATTACH_HEADER], 'a' + i % 26);
        assert_int_equal(fr[MD_ATTACH_HEADER + sizeof chunk - 1], 'a' + i % 26);
    }
    free(all);
    assert_int_equal(md_attach_conn_pending(r->conn), 0);
    assert_null(r->closed);
    /* Now nobody reads: more than MD_ATTACH_OUT_MAX waiting drops the client. */
    int rc = 0;
    for (int i = 0; i < 1000 && rc == 0; i++)
        rc = md_attach_conn_send(r->conn, 'O', chunk, sizeof chunk);
    assert_int_equal(rc, -ENOBUFS);
    assert_non_null(r->closed);
    assert_non_null(strstr(r->closed, "too slow"));
}

static void conn_oversized_frame_ends_it(void **state)
{
    fixture *f = *state;
    rec *r = pair(f);
    uint8_t head[MD_ATTACH_HEADER];
    md_attach_header(head, 'L', MD_ATTACH_LINE_MAX + 1);
    put(f->peer, head, sizeof head);
    run(f, 1);
    assert_int_equal(r->nframes, 0);
    assert_string_equal(r->closed, "frame too large");
}

static void conn_client_going_away_ends_it(void **state)
{
    fixture *f = *state;
    rec *r = pair(f);
    uint8_t buf[64];
    size_t len = 0;
    frame(buf, &len, 'L', "last words");
    put(f->peer, buf, len);
    close(f->peer);
    f->peer = -1;
    run(f, 2);
    assert_int_equal(r->nframes, 1);
    assert_string_equal(r->closed, "client disconnected");
}

static void conn_closed_inside_its_frame_callback(void **state)
{
    fixture *f = *state;
    rec *r = pair(f);
    r->close_on_frame = true;
    uint8_t buf[64];
    size_t len = 0;
    frame(buf, &len, 'L', "one");
    frame(buf, &len, 'L', "two");
    put(f->peer, buf, len);
    run(f, 1);
    assert_int_equal(r->nframes, 1); /* the second frame is never handed out */
    assert_null(r->conn);
    char c;
    assert_int_equal(read(f->peer, &c, 1), 0); /* the engine's end is closed */
}

/* }===== */

/* {===== the server ===== */

static void on_accept(void *ud, int fd)
{
    fixture *f = ud;
    assert_true(f->naccepted < MAX_CLIENTS);
    rec *r = &f->conns[f->naccepted++];
    r->f = f;
    r->conn = md_attach_conn_new(f->loop, fd, &fns, r);
    assert_non_null(r->conn);
}

static int client(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static md_attach_server *listen_here(fixture *f)
{
    char err[256];
    const char *code = NULL;
    md_attach_server *srv =
        md_attach_server_open(f->loop, f->path, on_accept, f, err, sizeof err, &code);
    if (!srv)
        fail_msg("listen: %s (%s)", err, code);
    return srv;
}

static void server_several_clients_one_leaves(void **state)
{
    fixture *f = *state;
    md_attach_server *srv = listen_here(f);
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    int a = client(f->path), b = client(f->path);
    run(f, 2);
    assert_int_equal(f->naccepted, 2);
    uint8_t buf[64];
    size_t len = 0;
    frame(buf, &len, 'L', "from a");
    put(a, buf, len);
    len = 0;
    frame(buf, &len, 'L', "from b");
    put(b, buf, len);
    run(f, 2);
    /* accept order is the kernel's: match by content */
    rec *ra = f->conns[0].data[0][5] == 'a' ? &f->conns[0] : &f->conns[1];
    rec *rb = ra == &f->conns[0] ? &f->conns[1] : &f->conns[0];
    assert_int_equal(ra->nframes, 1);
    assert_int_equal(rb->nframes, 1);
    assert_memory_equal(ra->data[0], "from a", 6);
    assert_memory_equal(rb->data[0], "from b", 6);
    close(a);
    run(f, 2);
    assert_string_equal(ra->closed, "client disconnected");
    assert_null(rb->closed);
    assert_int_equal(md_attach_conn_send(rb->conn, 'P', "> ", 2), 0);
    uint8_t got[16];
    assert_int_equal(read(b, got, sizeof got), MD_ATTACH_HEADER + 2);
    assert_int_equal(got[0], 'P');
    close(b);
    run(f, 2);
    assert_string_equal(rb->closed, "client disconnected");
    md_attach_server_close(srv);
    assert_int_equal(lstat(f->path, &st), -1); /* close removed the socket file */
}

static void server_replaces_stale_and_reports_live(void **state)
{
    fixture *f = *state;
    /* A stale socket: bound, then its owner went away without unlinking. */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->path);
    assert_int_equal(bind(stale, (struct sockaddr *)&sa, sizeof sa), 0);
    close(stale);
    md_attach_server *srv = listen_here(f);
    char err[256];
    const char *code = NULL;
    assert_null(
        md_attach_server_open(f->loop, f->path, on_accept, f, err, sizeof err, &code));
    assert_string_equal(code, "in_use");
    assert_non_null(strstr(err, "another engine is listening"));
    md_attach_server_close(srv);
}

static void server_refuses_link_and_plain_file(void **state)
{
    fixture *f = *state;
    char target[64];
    snprintf(target, sizeof target, "%s/target", f->dir);
    FILE *t = fopen(target, "w");
    assert_non_null(t);
    fputs("keep me", t);
    fclose(t);
    assert_int_equal(symlink(target, f->path), 0);
    char err[256];
    const char *code = NULL;
    assert_null(
        md_attach_server_open(f->loop, f->path, on_accept, f, err, sizeof err, &code));
    assert_string_equal(code, "unsafe");
    assert_non_null(strstr(err, "symbolic link"));
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISLNK(st.st_mode)); /* left alone */
    assert_null(
        md_attach_server_open(f->loop, target, on_accept, f, err, sizeof err, &code));
    assert_string_equal(code, "exists");
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 7);
}

/* }===== */

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(conn_splits_frames_however_they_arrive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(conn_sends_header_and_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(conn_queues_in_order_then_drops_a_slow_client,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(conn_oversized_frame_ends_it, setup, teardown),
        cmocka_unit_test_setup_teardown(conn_client_going_away_ends_it, setup, teardown),
        cmocka_unit_test_setup_teardown(conn_closed_inside_its_frame_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_several_clients_one_leaves, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_replaces_stale_and_reports_live, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_refuses_link_and_plain_file, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
