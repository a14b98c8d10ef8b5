/*
 * watchdog.h - ends a hung cmocka test program (a loop test can block in
 * epoll_wait forever): md_test_watchdog(seconds) arms SIGALRM, which writes
 * "<program>: hung (alarm)" and exits 3; md_test_watchdog(0) disarms it.
 * Shared by the test_*.c files that run a real loop; header-only, since
 * each test program is linked on its own.
 */
#ifndef MD_TEST_WATCHDOG_H
#define MD_TEST_WATCHDOG_H

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void md_test_watchdog_fire(int signo)
{
    (void)signo;
    static const char msg[] = ": hung (alarm)\n";
    const char *name = program_invocation_short_name; /* strlen, write: signal-safe */
    (void)!write(STDERR_FILENO, name, strlen(name));
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(3);
}

static inline void md_test_watchdog(unsigned seconds)
{
    if (seconds)
        signal(SIGALRM, md_test_watchdog_fire);
    alarm(seconds);
}

#endif
