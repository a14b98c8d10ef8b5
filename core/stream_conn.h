/*
 * stream_conn.h - one TCP connection of moondog.stream on the md_loop,
 * without Lua: a connected socket (from conn.c, or accepted), reading into a buffer
 * that keeps what no reader took, an ordered output queue with a bound, the
 * lost state, read interest and liveness. stream_lua.c binds it to tasks
 * (its waits, timeouts and results); tests/c/test_stream_conn.c drives it
 * over socketpairs and loopback sockets.
 *
 * Events go to the owner through two callbacks, which only record and
 * wake (they never call back into this connection's close):
 *  - input(ud): the waiting read got bytes (md_stream_conn_kept() > 0) or
 *    the connection was lost (md_stream_conn_lost() != 0);
 *  - progress(ud): md_stream_conn_sent() advanced, or the connection was
 *    lost: writers whose bytes went out, or all of them, are done.
 *
 * Read interest is switched off lazily: after a read completes it stays on,
 * and is dropped only when input arrives with no reader, which saves two
 * epoll_ctl calls per message for a task that reads in a loop. Liveness: a
 * connection keeps the loop alive only while something waits on it
 * (a reader, writers the owner declared) and keepalive is on.
 *
 * Threads: the loop thread only. Ownership: the owner creates and closes
 * the connection; it owns its fd, watch and both buffers.
 */
#ifndef MD_STREAM_CONN_H
#define MD_STREAM_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#define MD_STREAM_OUT_MAX                                                                \
    (4u * 1024 * 1024)      /* queued output past which writes are busy */
#define MD_STREAM_LOST (-1) /* a read or write found the connection lost */

typedef struct md_stream_conn md_stream_conn;

typedef struct md_stream_conn_fns {
    void (*input)(void *ud);
    void (*progress)(void *ud);
} md_stream_conn_fns;

/* A new connection with no socket yet; NULL when out of memory. */
md_stream_conn *md_stream_conn_new(md_loop *loop, const md_stream_conn_fns *fns,
                                   void *ud);
/* Stop everything and free; nothing is called back. NULL is ignored. */
void md_stream_conn_close(md_stream_conn *c);

/* Use a connected (conn.c) or accepted non-blocking socket, taken over. 0 or -errno (the
 * fd is closed then). */
int md_stream_conn_adopt(md_stream_conn *c, int fd);

/*
 * Read up to max bytes. Returns n > 0 when bytes are kept (at most max:
 * take them with md_stream_conn_take), 0 when nothing is there yet (the
 * read now waits: fns->input reports bytes or a loss), MD_STREAM_LOST, or
 * -ENOMEM.
 */
int md_stream_conn_read(md_stream_conn *c, size_t max);

/*
 * md_stream_conn_read, except that after a read that took less than it
 * asked for (the socket was empty then) it waits for the loop to report
 * input instead of trying recv() at once: that recv() would nearly always
 * fail with EAGAIN, one system call per read wasted on a request/answer
 * exchange (nginx's recv does the same). The loop's epoll is
 * level-triggered, so input that came meanwhile is reported on its next
 * turn. For reads without a timeout only: a timer due at once would run
 * before that turn.
 */
int md_stream_conn_read_lazy(md_stream_conn *c, size_t max);
/* The waiting reader went away (timeout, cancel). */
void md_stream_conn_cancel_read(md_stream_conn *c);
/* Bytes received and not taken yet. */
size_t md_stream_conn_kept(const md_stream_conn *c);
/* Copy up to max kept bytes to out (NULL: drop them); returns how many. */
size_t md_stream_conn_take(md_stream_conn *c, void *out, size_t max);

/*
 * Write len bytes, whole or not at all: what the kernel does not take at
 * once is queued and sent in order. Returns 0 when everything went out, 1
 * when the rest is queued (it is out once md_stream_conn_sent() reaches
 * *end), -EBUSY when more than MD_STREAM_OUT_MAX bytes would wait (nothing
 * taken), MD_STREAM_LOST, or -ENOMEM.
 */
int md_stream_conn_write(md_stream_conn *c, const void *data, size_t len, uint64_t *end);
/* Bytes handed to the kernel so far. */
uint64_t md_stream_conn_sent(const md_stream_conn *c);
/* Bytes queued and not yet handed to the kernel. */
size_t md_stream_conn_pending(const md_stream_conn *c);
/* Whether writers wait on this connection (for liveness). */
void md_stream_conn_set_writers(md_stream_conn *c, bool waiting);
/* Whether waits keep the loop alive (default on). */
void md_stream_conn_keepalive(md_stream_conn *c, bool on);

/* 0 while fine; -1 when the peer closed the connection; else the errno of
 * the failure. */
int md_stream_conn_lost(const md_stream_conn *c);
/* Whether the connection has its socket. */
bool md_stream_conn_open(const md_stream_conn *c);
/* The socket, or -1. */
int md_stream_conn_fd(const md_stream_conn *c);

#endif
