/*
 * sdnotify.h - systemd's service notification protocol (sd_notify) and the
 * service watchdog, for moondog run as a Type=notify unit.
 *
 * Every function is a no-op when $NOTIFY_SOCKET is unset (not under
 * systemd), so callers never need to check. Loop thread only.
 */
#ifndef MD_SDNOTIFY_H
#define MD_SDNOTIFY_H

#include <stdint.h>

#include "loop.h"

/*
 * Send one notification ("READY=1", "STATUS=polling 3 devices",
 * "WATCHDOG=1", several lines joined by '\n') to $NOTIFY_SOCKET.
 * Returns 1 when sent, 0 when $NOTIFY_SOCKET is unset, -EINVAL when the
 * variable holds no usable address (too long, not absolute or abstract),
 * or -errno from socket/sendto (ECONNREFUSED, ENOENT, EAGAIN, ...).
 */
int md_sdnotify(const char *state);

/*
 * The watchdog interval systemd expects keep-alives in, in ms: $WATCHDOG_USEC
 * when it is set and $WATCHDOG_PID is unset or this process. 0 otherwise.
 */
int64_t md_sdnotify_watchdog_ms(void);

/*
 * Send WATCHDOG=1 from a timer on loop every half of md_sdnotify_watchdog_ms()
 * (the first one now), so that a loop that stops turning stops the
 * keep-alives and systemd restarts the service. The timer does not keep the
 * loop alive and goes with md_loop_free. Returns 1 when started, 0 when no
 * watchdog was asked for, -ENOMEM.
 */
int md_sdnotify_watchdog_start(md_loop *loop);

#endif
