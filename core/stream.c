/*
 * stream.c - TCP socket helpers for moondog.stream; see stream.h.
 *
 * Kept apart from stream_lua.c so that the socket calls, which need care
 * with errno and address families, stay free of Lua and loop details.
 * Threads: any; no state.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int md_stream_listen(const char *host, int port, int backlog)
{
    struct addrinfo *res;
    int rc = md_conn_resolve_now(host, port, SOCK_STREAM, true, &res);
    if (rc < 0)
        return rc == -MD_CONN_EDNS ? -MD_STREAM_ERESOLVE : rc;
    int fd = md_stream_bind(res, SOCK_STREAM, backlog);
    freeaddrinfo(res);
    return fd;
}

int md_stream_bind(const struct addrinfo *res, int socktype, int backlog)
{
    int err = EADDRNOTAVAIL;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        if (socktype == SOCK_STREAM)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            (socktype != SOCK_STREAM || listen(fd, backlog) == 0))
            return fd;
        err = errno;
        close(fd);
    }
    return -err;
}

int md_stream_accept(int fd)
{
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return -errno;
    set_nodelay(c);
    return c;
}

int md_stream_local_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return 0;
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return 0;
}

void md_stream_peer_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&sa, &salen) == 0) {
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
    }
    if (port == 0)
        snprintf(buf, len, "?");
    else if (strchr(host, ':'))
        snprintf(buf, len, "[%s]:%d", host, port);
    else
        snprintf(buf, len, "%s:%d", host, port);
}
