/*
 * attach_server.c - the listening socket and the framed connections of
 * `moondog attach` on the engine's side; see attach_server.h. No Lua: the
 * REPL sessions on top live in attach_lua.c, and tests/c/test_attach_server.c
 * drives this file alone over real unix sockets.
 *
 * Design. Everything is non-blocking on the loop thread. A connection sends
 * a frame with one sendmsg (header and payload) when nothing is queued, and
 * otherwise appends to its output queue and watches for writability, so
 * frames never interleave. Reading appends to an input buffer and hands out
 * every complete frame; a frame callback may close the connection, so the
 * connection counts the callbacks it is inside (depth) and frees itself only
 * when the outermost one returns.
 *
 * Ownership: see attach_server.h. A connection owns its fd, its watch and
 * both buffers; a server owns its fd, watch, retry timer and the socket file
 * it created (known by device and inode, so close never removes another
 * engine's socket that replaced it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "attach_server.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "attach.h"
#include "attachcodec.h"
#include "log.h"

#define FRAME_HEADER MD_ATTACH_HEADER
#define IN_MAX MD_ATTACH_LINE_MAX /* largest frame a client may send */
#define ACCEPT_RETRY_MS 1000
#define PATH_LEN sizeof(((struct sockaddr_un *)0)->sun_path)

/* {===== connections ===== */

struct md_attach_conn {
    md_loop *loop;
    int fd; /* -1 once closed */
    md_watch *watch;
    const md_attach_conn_fns *fns;
    void *ud;
    int depth; /* frame callbacks we are inside; free only at 0 */
    char *in;  /* received bytes not yet parsed */
    size_t in_len, in_cap;
    char *out; /* bytes the client has not taken yet */
    size_t out_len, out_cap;
};

static void conn_free_if_done(md_attach_conn *c)
{
    if (c->fd < 0 && c->depth == 0) {
        free(c->in);
        free(c->out);
        free(c);
    }
}

static void conn_shut(md_attach_conn *c)
{
    if (c->fd < 0)
        return;
    md_loop_unwatch_close(c->loop, &c->watch, &c->fd);
}

/* The connection ends by itself: tell the owner, then free (unless a frame
 * callback is still running further up the stack). */
static void conn_fail(md_attach_conn *c, const char *why)
{
    if (c->fd < 0)
        return;
    conn_shut(c);
    c->depth++;
    c->fns->closed(c->ud, why);
    c->depth--;
    conn_free_if_done(c);
}

void md_attach_conn_close(md_attach_conn *c)
{
    if (!c)
        return;
    conn_shut(c);
    conn_free_if_done(c);
}

size_t md_attach_conn_pending(const md_attach_conn *c)
{
    return c->out_len;
}

/* Queue bytes behind what the client has not taken yet. */
static bool queue_out(md_attach_conn *c, const char *data, size_t len)
{
    if (c->out_len + len > MD_ATTACH_OUT_MAX)
        return false;
    if (c->out_cap - c->out_len < len) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap - c->out_len < len)
            cap *= 2;
        char *out = realloc(c->out, cap);
        if (!out)
            return false;
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return true;
}

int md_attach_conn_send(md_attach_conn *c, char type, const void *data, size_t len)
{
    if (c->fd < 0)
        return -EPIPE;
    uint8_t head[FRAME_HEADER];
    md_attach_header(head, type, (uint32_t)len);
    size_t sent = 0, total = sizeof head + len;
    if (c->out_len == 0) {
        struct iovec iov[2] = {{head, sizeof head}, {(void *)data, len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_fail(c, "client went away");
            return -EPIPE;
        }
        sent = n > 0 ? (size_t)n : 0;
    }
    if (sent == total)
        return 0;
    bool ok = true;
    if (sent < sizeof head)
        ok = queue_out(c, (const char *)head + sent, sizeof head - sent);
    size_t from = sent > sizeof head ? sent - sizeof head : 0;
    if (ok)
        ok = queue_out(c, (const char *)data + from, len - from);
    if (!ok) {
        conn_fail(c, "client too slow: 1 MiB of output waiting");
        return -ENOBUFS;
    }
    md_loop_watch_set(c->loop, c->watch, MD_LOOP_READ | MD_LOOP_WRITE);
    return 0;
}

static void flush_out(md_attach_conn *c)
{
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        conn_fail(c, "client went away");
        return;
    }
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
    if (c->out_len == 0)
        md_loop_watch_set(c->loop, c->watch, MD_LOOP_READ);
}

/* Hand out every complete frame in c->in; a callback may close c. */
static void handle_frames(md_attach_conn *c)
{
    size_t off = 0;
    while (c->fd >= 0) {
        char type;
        uint32_t n;
        int rc = md_attach_next((const uint8_t *)c->in + off, c->in_len - off, IN_MAX,
                                &type, &n);
        if (rc < 0) {
            conn_fail(c, "frame too large");
            return;
        }
        if (rc == 0)
            break;
        size_t at = off + FRAME_HEADER;
        off += FRAME_HEADER + n;
        c->fns->frame(c->ud, type, c->in + at, n);
    }
    if (c->fd >= 0 && off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

static void read_frames(md_attach_conn *c)
{
    if (c->in_cap - c->in_len < 4096) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
        char *in = cap <= 2 * (IN_MAX + FRAME_HEADER) ? realloc(c->in, cap) : NULL;
        if (!in) {
            conn_fail(c, "input buffer full");
            return;
        }
        c->in = in;
        c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_fail(c, "client disconnected");
        return;
    }
    c->in_len += (size_t)n;
    handle_frames(c);
}

static void on_conn_io(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)fd;
    md_attach_conn *c = ud;
    c->depth++;
    if ((events & MD_LOOP_WRITE) && c->out_len)
        flush_out(c);
    if ((events & MD_LOOP_READ) && c->fd >= 0)
        read_frames(c);
    c->depth--;
    conn_free_if_done(c);
}

md_attach_conn *md_attach_conn_new(md_loop *loop, int fd, const md_attach_conn_fns *fns,
                                   void *ud)
{
    if (!loop || fd < 0 || !fns || !fns->frame || !fns->closed) {
        errno = EINVAL;
        return NULL;
    }
    md_attach_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->fns = fns;
    c->ud = ud;
    c->watch = md_loop_watch(loop, fd, MD_LOOP_READ, on_conn_io, c);
    if (!c->watch) {
        int e = errno;
        free(c);
        errno = e;
        return NULL;
    }
    c->fd = fd;
    return c;
}

/* }===== */

/* {===== the listening socket ===== */

struct md_attach_server {
    md_loop *loop;
    int fd;
    md_watch *watch;
    md_timer *retry; /* accepting paused after EMFILE and friends */
    md_attach_accept_fn accept_fn;
    void *ud;
    dev_t dev; /* of the socket file we created, so close removes only it */
    ino_t ino;
    char path[PATH_LEN];
};

int md_attach_check_socket_file(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0; /* nothing there (or bind will say why) */
    if (S_ISLNK(st.st_mode)) {
        snprintf(err, errlen,
                 "%s is a symbolic link: moondog never follows one for its socket; "
                 "remove it",
                 path);
        return -ELOOP;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "%s belongs to user %u, not to you (%u): moondog never reuses it; "
                 "remove it or choose another --name",
                 path, (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -ENOTSOCK;
    }
    return 0;
}

static void on_accept(md_loop *loop, md_watch *w, int fd, int events, void *ud);

static void accept_again(md_loop *loop, md_timer *t, void *ud)
{
    (void)t;
    md_attach_server *srv = ud;
    srv->retry = NULL;
    md_loop_watch_set(loop, srv->watch, MD_LOOP_READ);
}

/* Out of fds or memory: a level-triggered watch would spin, so stop
 * accepting for a while; the waiting clients stay in the backlog. */
static void pause_accepting(md_attach_server *srv, int err)
{
    md_log(MD_LOG_WARN, "attach: cannot accept on %s: %s; retrying in %d ms", srv->path,
           strerror(err), ACCEPT_RETRY_MS);
    md_loop_watch_set(srv->loop, srv->watch, 0);
    srv->retry = md_loop_timer(srv->loop, md_loop_now(srv->loop) + ACCEPT_RETRY_MS,
                               accept_again, srv);
    if (srv->retry)
        md_loop_timer_keepalive(srv->loop, srv->retry, false);
    else
        md_loop_watch_set(srv->loop, srv->watch, MD_LOOP_READ);
}

static void on_accept(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)fd, (void)events;
    md_attach_server *srv = ud;
    for (int i = 0; i < 16; i++) {
        int c = accept4(srv->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            int e = errno;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
                pause_accepting(srv, e);
            return;
        }
        srv->accept_fn(srv->ud, c);
    }
}

/* Is a live server behind the socket file at path? 1: yes, 0: no (stale,
 * removed), -errno: cannot tell; -ENOTSOCK: not a socket at all. */
static int probe(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
        return 1;
    if (e != ECONNREFUSED)
        return -e;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
}

/* Bind and listen at srv->path, mode 0600, replacing a stale socket file.
 * Returns the fd, or -1 with a message and a code. */
static int open_socket(md_attach_server *srv, char *err, size_t errlen, const char **code)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, srv->path, strlen(srv->path) + 1);
    *code = "io";
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
            return -1;
        }
        /* Nobody else may connect even for the moment before chmod. umask is
         * per process: a file created by another thread right now would get
         * 0600 too, which errs on the safe side. */
        mode_t old = umask(0077);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        int e = errno;
        umask(old);
        struct stat st;
        if (rc == 0 && chmod(srv->path, 0600) == 0 && listen(fd, 16) == 0 &&
            stat(srv->path, &st) == 0) {
            srv->dev = st.st_dev;
            srv->ino = st.st_ino;
            return fd;
        }
        if (rc == 0) {
            e = errno;
            unlink(srv->path);
        }
        close(fd);
        if (rc < 0 && e == EADDRINUSE && attempt == 0) {
            int live = probe(srv->path, &sa);
            if (live == 0)
                continue;
            if (live == 1) {
                *code = "in_use";
                snprintf(err, errlen, "another engine is listening on %s", srv->path);
            } else if (live == -ENOTSOCK) {
                *code = "exists";
                snprintf(err, errlen, "%s exists and is not a socket", srv->path);
            } else {
                snprintf(err, errlen, "cannot listen on %s: %s", srv->path,
                         strerror(-live));
            }
            return -1;
        }
        snprintf(err, errlen, "cannot listen on %s: %s", srv->path, strerror(e));
        return -1;
    }
    snprintf(err, errlen, "cannot listen on %s: %s", srv->path, strerror(EADDRINUSE));
    return -1;
}

/* Remove the socket file only if it is still the one we created. */
static void remove_socket_file(md_attach_server *srv)
{
    struct stat st;
    if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
        unlink(srv->path);
}

md_attach_server *md_attach_server_open(md_loop *loop, const char *path,
                                        md_attach_accept_fn fn, void *ud, char *err,
                                        size_t errlen, const char **code)
{
    *code = "io";
    if (!loop || !path || !*path || !fn || strlen(path) >= PATH_LEN) {
        snprintf(err, errlen, "cannot listen on '%s': not a usable socket path",
                 path ? path : "");
        return NULL;
    }
    int chk = md_attach_check_socket_file(path, err, errlen);
    if (chk < 0) {
        *code = chk == -ENOTSOCK ? "exists" : "unsafe";
        return NULL;
    }
    md_attach_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "cannot listen on %s: out of memory", path);
        return NULL;
    }
    srv->loop = loop;
    srv->accept_fn = fn;
    srv->ud = ud;
    snprintf(srv->path, sizeof srv->path, "%s", path);
    srv->fd = open_socket(srv, err, errlen, code);
    if (srv->fd < 0)
        goto fail;
    srv->watch = md_loop_watch(loop, srv->fd, MD_LOOP_READ, on_accept, srv);
    if (!srv->watch) {
        snprintf(err, errlen, "cannot watch %s: %s", path, strerror(errno));
        *code = "io";
        close(srv->fd);
        remove_socket_file(srv);
        goto fail;
    }
    md_loop_watch_keepalive(loop, srv->watch, false);
    return srv;
fail:
    free(srv);
    return NULL;
}

const char *md_attach_server_path(const md_attach_server *srv)
{
    return srv->path;
}

void md_attach_server_close(md_attach_server *srv)
{
    if (!srv)
        return;
    md_loop_unwatch(srv->loop, srv->watch);
    if (srv->retry)
        md_loop_timer_cancel(srv->loop, srv->retry);
    close(srv->fd);
    remove_socket_file(srv);
    free(srv);
}

/* }===== */
