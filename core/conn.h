/*
 * conn.h - one connection layer on the event loop: resolve a host name
 * without blocking the loop, then connect to each of its addresses in turn,
 * each under a connect timeout, with a non-blocking connect the loop polls.
 * No Lua here; mbus_net.c (Modbus TCP/UDP/RTU over TCP) connects through
 * it, and md_resolve serves any caller that needs only the addresses.
 *
 * Threads. Everything here is called on the loop thread, and every callback
 * runs there, from the loop's dispatch, never inside md_conn_start() or
 * md_resolve_start(). A host name is looked up on a short-lived resolver
 * thread, which hands the result back through md_loop_post(); a literal
 * IPv4/IPv6 address is parsed on the loop thread (no lookup, never blocks)
 * and delivered on the next iteration. While a lookup runs on its thread
 * the loop is held (md_loop_hold), so simulated time waits for it.
 *
 * Errors are 0 or -errno, plus -MD_CONN_EDNS (err.h's MD_EDNS) for a name
 * that does not resolve. err.h explains them: md_err_token(md_err_connect(err))
 * is the token of a failed attempt, md_strerror(err) its text.
 *
 * Ownership. An md_conn / md_resolve belongs to the conn layer from start
 * to its callback; it is freed just before the callback runs, so the owner
 * forgets its pointer there (as with loop timers), or cancels it before.
 * A connected socket handed to the callback belongs to the callback.
 */
#ifndef MD_CONN_H
#define MD_CONN_H

#include <stdbool.h>

#include "err.h"
#include "loop.h"

struct addrinfo;

/* The host name does not resolve: err.h's code, under the name this
 * layer's callers use. */
#define MD_CONN_EDNS MD_EDNS

typedef struct md_conn md_conn;
typedef struct md_resolve md_resolve;

/* getaddrinfo()'s signature: tests replace the resolver with a fake. */
typedef int (*md_conn_resolver)(const char *host, const char *service,
                                const struct addrinfo *hints, struct addrinfo **res);
/* Install fn as the resolver of every later lookup (NULL: getaddrinfo).
 * It runs on resolver threads, so it may block. For tests. A test of the
 * whole program sets MOONDOG_TEST_DNS_DELAY_MS instead: each name lookup
 * then waits that long on its thread before it starts (never a literal
 * address, never the loop thread). */
void md_conn_set_resolver(md_conn_resolver fn);

/*
 * Look host:port up for sockets of socktype (SOCK_STREAM, SOCK_DGRAM);
 * passive: for bind(), where host NULL, "" or "*" is every local address.
 * fn gets the list (its to free with freeaddrinfo) or NULL and -errno /
 * -MD_CONN_EDNS. Returns NULL with errno set when it cannot start (then fn
 * is never called).
 */
typedef void (*md_resolve_fn)(md_loop *loop, struct addrinfo *res, int err, void *ud);
md_resolve *md_resolve_start(md_loop *loop, const char *host, int port, int socktype,
                             bool passive, md_resolve_fn fn, void *ud);
/* Forget a lookup before its callback: fn is never called. */
void md_resolve_cancel(md_resolve *r);

/*
 * Resolve host:port without a lookup when host is a literal address (or
 * passive and every local address): 0 and *res, -EAGAIN when host is a
 * name that needs the resolver, or -MD_CONN_EDNS. Never blocks.
 */
int md_conn_resolve_literal(const char *host, int port, int socktype, bool passive,
                            struct addrinfo **res);

/*
 * Resolve host:port at once, through the same resolver and with the same
 * errors as md_resolve_start: for a listener that must have its socket
 * before its open returns. A literal address (and passive "*") never
 * blocks; a host name blocks the caller for one lookup. 0 and *res (free
 * with freeaddrinfo), or -errno / -MD_CONN_EDNS.
 */
int md_conn_resolve_now(const char *host, int port, int socktype, bool passive,
                        struct addrinfo **res);

typedef struct md_conn_config {
    const char *host; /* copied */
    int port;
    int socktype;   /* SOCK_STREAM (TCP_NODELAY is set) or SOCK_DGRAM */
    int timeout_ms; /* per address; 0: 3000 */
} md_conn_config;

/*
 * Connect: fn gets a connected non-blocking close-on-exec socket and 0, or
 * -1 and the error of the last address tried (-MD_CONN_EDNS, -ETIMEDOUT,
 * -ECONNREFUSED, -EHOSTUNREACH, ...). Returns NULL with errno set when it
 * cannot start (EINVAL: bad config; then fn is never called). The conn's
 * watch and timers do not keep the loop alive; its resolver thread does.
 */
typedef void (*md_conn_fn)(md_loop *loop, int fd, int err, void *ud);
md_conn *md_conn_start(md_loop *loop, const md_conn_config *cfg, md_conn_fn fn, void *ud);
/* Stop an attempt before its callback: fn is never called, any socket of
 * the attempt is closed. */
void md_conn_cancel(md_conn *c);

#endif
