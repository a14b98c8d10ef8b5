/*
 * stream.h - TCP sockets for moondog.stream: listening, addresses. No Lua
 * and no loop here; stream_lua.c drives these sockets on the event loop,
 * and connects through conn.h (which resolves names off the loop thread).
 *
 * Every socket is created non-blocking and close-on-exec, with TCP_NODELAY
 * (the protocols on top send small requests and wait for the answer).
 * Functions return a file descriptor or 0 on success, -errno on failure;
 * name resolution failures give -MD_STREAM_ERESOLVE.
 */
#ifndef MD_STREAM_H
#define MD_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define MD_STREAM_ERESOLVE MD_EDNS /* the host name did not resolve (err.h) */

struct addrinfo;

/* Bind and listen on host:port (port 0 picks a free one; host NULL or "*"
 * every local address). Returns the listening socket or -errno /
 * -MD_STREAM_ERESOLVE. A host name blocks for DNS once (tests and C
 * callers; stream.listen resolves without blocking, resolve_lua.h, and
 * binds with md_stream_bind); a literal address never does. */
int md_stream_listen(const char *host, int port, int backlog);
/* Bind a socket of socktype to the first address of res that takes it
 * (SO_REUSEADDR for streams, so a restarted server gets its port back
 * despite TIME_WAIT; never for datagrams, where two servers would share
 * the port) and listen with backlog for streams. Returns the socket or the
 * -errno of the last address tried. For addresses resolved by conn.h. */
int md_stream_bind(const struct addrinfo *res, int socktype, int backlog);
/* accept4 with the flags every stream socket gets; -errno on failure. */
int md_stream_accept(int fd);

/* The local port of a bound socket (0 when unknown). */
int md_stream_local_port(int fd);
/* "host:port" of the peer ("[v6]:port" for IPv6) into buf; "?" if unknown. */
void md_stream_peer_name(int fd, char *buf, size_t len);

#endif
