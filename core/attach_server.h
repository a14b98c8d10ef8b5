/*
 * attach_server.h - the engine's side of `moondog attach` without Lua: a
 * listening unix socket and framed client connections on the md_loop.
 * attach_lua.c binds them to REPL sessions; the wire protocol is described
 * there and the frames in attachcodec.h.
 *
 *  - md_attach_server: binds the socket (mode 0600, never through a
 *    symbolic link or over another user's file, replacing a stale socket of
 *    our own), accepts clients and hands each fd over, pauses accepting for
 *    a second when out of fds, and removes only its own socket file on close.
 *  - md_attach_conn: one client. Incoming bytes are split into frames (a
 *    frame larger than MD_ATTACH_LINE_MAX ends the connection); output goes
 *    out at once when the socket takes it, else is queued, in order, up to
 *    MD_ATTACH_OUT_MAX, past which the client is dropped as too slow.
 *
 * Threads: the loop thread only. Ownership: the caller owns each server and
 * connection it opened until it closes it; a connection that ends by itself
 * (the peer left, a broken or oversized frame, a slow client) calls
 * fns->closed and frees itself after that callback returns. Closing a
 * connection or sending on it from inside its own frame callback is safe:
 * it is freed when the callback returns.
 */
#ifndef MD_ATTACH_SERVER_H
#define MD_ATTACH_SERVER_H

#include <stddef.h>

#include "loop.h"

#define MD_ATTACH_OUT_MAX (1u << 20) /* output queued for a slow client */

typedef struct md_attach_server md_attach_server;
typedef struct md_attach_conn md_attach_conn;

/* A new client: fd is non-blocking and close-on-exec, and the callee owns it. */
typedef void (*md_attach_accept_fn)(void *ud, int fd);

/*
 * Check the file at a socket path before listening there (lstat, never
 * following a link): 0 when nothing is there or it is a socket of this
 * user (which md_attach_server_open probes and replaces when stale); -ELOOP
 * for a symbolic link, -EPERM for a file of another user, -ENOTSOCK for any
 * other file, each with a message in err.
 */
int md_attach_check_socket_file(const char *path, char *err, size_t errlen);

/*
 * Listen on path. Returns the server, or NULL with a message in err and
 * *code one of "in_use" (a live server is there), "exists" (a file that is
 * not a socket), "unsafe" (a symbolic link or another user's file), "io".
 */
md_attach_server *md_attach_server_open(md_loop *loop, const char *path,
                                        md_attach_accept_fn fn, void *ud, char *err,
                                        size_t errlen, const char **code);
const char *md_attach_server_path(const md_attach_server *srv);
/* Stop listening, remove the socket file if it is still ours, free. */
void md_attach_server_close(md_attach_server *srv);

typedef struct md_attach_conn_fns {
    /* One complete frame from the client. */
    void (*frame)(void *ud, char type, const char *data, size_t len);
    /* The connection ended by itself; why is for the log. Do not use the
     * connection any more. */
    void (*closed)(void *ud, const char *why);
} md_attach_conn_fns;

/* A connection on fd (taken over on success). NULL with errno on failure;
 * the fd then stays the caller's. */
md_attach_conn *md_attach_conn_new(md_loop *loop, int fd, const md_attach_conn_fns *fns,
                                   void *ud);
/*
 * Send one frame, or queue what the socket does not take. Returns 0, or
 * -EPIPE (the peer is gone) or -ENOBUFS (too much output queued); in both
 * cases the connection closed itself and fns->closed was called.
 */
int md_attach_conn_send(md_attach_conn *c, char type, const void *data, size_t len);
/* Bytes queued for the client. */
size_t md_attach_conn_pending(const md_attach_conn *c);
/* Close without calling fns->closed. */
void md_attach_conn_close(md_attach_conn *c);

#endif
