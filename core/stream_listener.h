/*
 * stream_listener.h - a listening socket on the loop, for moondog.stream's
 * listener: accepting only while someone waits, keeping one accepted
 * connection (or accept error) for that waiter, and the loop kept alive
 * only while someone waits. No Lua: stream_lua.c turns it into
 * l:accept(); tests/c/test_stream_listener.c drives it alone.
 *
 * Ownership: the listener owns its listening socket and a connection it
 * accepted that nobody took yet; md_stream_listener_take hands that socket
 * to the caller. Threads: the loop thread only.
 */
#ifndef MD_STREAM_LISTENER_H
#define MD_STREAM_LISTENER_H

#include "loop.h"

typedef struct md_stream_listener md_stream_listener;

/* A connection was accepted, or accepting failed, for the caller that got
 * -EAGAIN from md_stream_listener_take: take it now. */
typedef void (*md_stream_listener_fn)(void *ud);

/* Watch the listening socket fd (taken over, closed on failure). NULL with
 * errno set when it cannot be watched. */
md_stream_listener *md_stream_listener_new(md_loop *loop, int fd,
                                           md_stream_listener_fn ready, void *ud);
/* A connected socket (the caller's), -errno of a failed accept, or -EAGAIN:
 * none yet, and ready() is called once one is accepted or accepting fails
 * (until md_stream_listener_unwant). */
int md_stream_listener_take(md_stream_listener *l);
/* The caller stopped waiting: accept nothing more for now. */
void md_stream_listener_unwant(md_stream_listener *l);
/* The local port it listens on (0 when unknown). */
int md_stream_listener_port(const md_stream_listener *l);
/* Close the socket and any connection nobody took, and free. NULL: nothing. */
void md_stream_listener_close(md_stream_listener *l);

#endif
