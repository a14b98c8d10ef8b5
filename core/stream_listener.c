/*
 * stream_listener.c - a listening socket on the loop; see
 * stream_listener.h. The watch reads only while a caller waits, so
 * connections queue in the kernel's backlog rather than here, and an idle
 * listener does not keep the loop alive.
 */
#include "stream_listener.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "stream.h"

struct md_stream_listener {
    md_loop *loop;
    int fd;
    md_watch *watch;
    int port;
    bool wanted;  /* a caller got -EAGAIN and waits for ready() */
    int ready_fd; /* accepted for that caller, not taken yet; -1 */
    int err;      /* accept failed: -errno for that caller; 0 */
    md_stream_listener_fn ready;
    void *ud;
};

/* An accept that found nothing to take: the peer gave up, or another
 * process took it. Keep waiting. */
static bool transient(int rc)
{
    return rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR || rc == -ECONNABORTED;
}

static void arm(md_stream_listener *l)
{
    md_loop_watch_set(l->loop, l->watch, l->wanted ? MD_LOOP_READ : 0);
    md_loop_watch_keepalive(l->loop, l->watch, l->wanted);
}

static void on_readable(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)fd, (void)events;
    md_stream_listener *l = ud;
    if (!l->wanted || l->ready_fd >= 0 || l->err) {
        arm(l);
        return;
    }
    int c = md_stream_accept(l->fd);
    if (transient(c))
        return;
    if (c >= 0)
        l->ready_fd = c;
    else
        l->err = c;
    l->wanted = false;
    arm(l);
    l->ready(l->ud);
}

md_stream_listener *md_stream_listener_new(md_loop *loop, int fd,
                                           md_stream_listener_fn ready, void *ud)
{
    md_stream_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    *l = (md_stream_listener){
        .loop = loop, .fd = fd, .ready_fd = -1, .ready = ready, .ud = ud};
    l->watch = md_loop_watch(loop, fd, 0, on_readable, l);
    if (!l->watch) {
        int e = errno;
        close(fd);
        free(l);
        errno = e;
        return NULL;
    }
    l->port = md_stream_local_port(fd);
    arm(l);
    return l;
}

int md_stream_listener_take(md_stream_listener *l)
{
    if (l->ready_fd >= 0) {
        int fd = l->ready_fd;
        l->ready_fd = -1;
        return fd;
    }
    if (l->err) {
        int err = l->err;
        l->err = 0;
        return err;
    }
    int fd = md_stream_accept(l->fd);
    if (fd >= 0)
        return fd;
    if (!transient(fd))
        return fd;
    l->wanted = true;
    arm(l);
    return -EAGAIN;
}

void md_stream_listener_unwant(md_stream_listener *l)
{
    l->wanted = false;
    arm(l);
}

int md_stream_listener_port(const md_stream_listener *l)
{
    return l->port;
}

void md_stream_listener_close(md_stream_listener *l)
{
    if (!l)
        return;
    md_loop_unwatch_close(l->loop, &l->watch, &l->fd);
    if (l->ready_fd >= 0)
        close(l->ready_fd);
    free(l);
}
