/*
 * stream.h - TCP sockets for moondog.stream: name resolution, non-blocking
 * connect, listening, addresses. No Lua and no loop here; stream_lua.c
 * drives these sockets on the event loop.
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

struct addrinfo;

#define MD_STREAM_ERESOLVE MD_EDNS /* the host name did not resolve (err.h) */

/* getaddrinfo for a TCP connection or listener (passive: host NULL or "*"
 * means every local address). A host name blocks for DNS; a literal IP
 * address never does. 0 or -errno / -MD_STREAM_ERESOLVE. */
int md_stream_resolve(const char *host, int port, bool passive, struct addrinfo **res);

/* Start connecting to one address. Returns the socket; *in_progress tells
 * whether the connect still runs (wait for the socket to become writable,
 * then md_stream_connect_result). */
int md_stream_connect_addr(const struct addrinfo *ai, bool *in_progress);
/* After writability: 0 when connected, else -errno of the failure. */
int md_stream_connect_result(int fd);

/* Bind and listen on host:port (port 0 picks a free one). Returns the
 * listening socket or -errno. */
int md_stream_listen(const char *host, int port, int backlog);
/* accept4 with the flags every stream socket gets; -errno on failure. */
int md_stream_accept(int fd);

/* The local port of a bound socket (0 when unknown). */
int md_stream_local_port(int fd);
/* "host:port" of the peer ("[v6]:port" for IPv6) into buf; "?" if unknown. */
void md_stream_peer_name(int fd, char *buf, size_t len);

#endif
