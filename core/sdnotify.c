/*
 * sdnotify.c - systemd's sd_notify protocol, written here rather than linked
 * from libsystemd.
 *
 * The protocol is one datagram of "KEY=value\n" lines sent to the
 * AF_UNIX/SOCK_DGRAM address in $NOTIFY_SOCKET (a path, or an abstract name
 * written with a leading '@'). systemd documents it as a stable interface
 * that services may reimplement (sd_notify(3), "Notes"; systemd.io
 * PORTABILITY_AND_STABILITY), and it is 40 lines. Linking libsystemd instead
 * would add a run-time dependency (and its own dependencies: liblzma, libzstd,
 * libgcrypt, ...) to a binary that otherwise runs on machines without
 * systemd, for one sendto().
 *
 * The watchdog is one self-rearming loop timer: WATCHDOG=1 goes out only
 * while the event loop turns, so a task that never yields, a blocked
 * system call or a dead-locked loop stops the keep-alives and systemd
 * (WatchdogSec=) kills and restarts the service. It uses the loop's clock;
 * simulated time is for tests and tools, never for a service, and main.c
 * does not start the watchdog under it.
 *
 * Loop thread only; the one piece of state is the watchdog timer's interval.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int md_sdnotify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    if (!state)
        return -EINVAL;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path)
        return -EINVAL;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace: no terminating NUL counted */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (path[0] == '/' ? 1 : 0));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    ssize_t n =
        sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int rc = n < 0 ? -errno : 1;
    close(fd);
    return rc;
}

int64_t md_sdnotify_watchdog_ms(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    if (!usec || !*usec)
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
        return 0;
    char *end;
    long long us = strtoll(usec, &end, 10);
    if (*end != '\0' || us <= 0)
        return 0;
    return us < 1000 ? 1 : us / 1000;
}

static int64_t watchdog_half_ms; /* the keep-alive period, once started */

static void watchdog_tick(md_loop *loop, md_timer *timer, void *ud)
{
    (void)timer;
    (void)ud;
    md_sdnotify("WATCHDOG=1");
    md_timer *t =
        md_loop_timer(loop, md_loop_now(loop) + watchdog_half_ms, watchdog_tick, NULL);
    if (t)
        md_loop_timer_keepalive(loop, t, false);
}

int md_sdnotify_watchdog_start(md_loop *loop)
{
    int64_t ms = md_sdnotify_watchdog_ms();
    if (ms <= 0 || !getenv("NOTIFY_SOCKET"))
        return 0;
    watchdog_half_ms = ms / 2 > 0 ? ms / 2 : 1;
    md_timer *t = md_loop_timer(loop, md_loop_now(loop), watchdog_tick, NULL);
    if (!t)
        return -ENOMEM;
    md_loop_timer_keepalive(loop, t, false);
    return 1;
}
