/*
 * process.c - child processes that never block the loop and never outlive
 * the engine; see process.h for the contract.
 *
 * Why not io.popen: closing (or collecting) a popen handle calls pclose,
 * which waits for the child on the loop thread; a broker dropped by a script
 * froze the engine that way, with SIGTERM never handled (issue 17).
 *
 * The table: one entry per child, owned by this file. An entry goes away
 * when the child has exited and its owner forgot it, or at kill_all.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "process.h"

typedef struct child {
    int pid;
    int status;
    bool exited;
    bool forgotten;
} child;

static child *children; /* owned here; realloc'd */
static int nchildren, capchildren;

static child *find(int pid)
{
    for (int i = 0; i < nchildren; i++)
        if (children[i].pid == pid)
            return &children[i];
    return NULL;
}

/* Record c's exit status if it exited. */
static void reap_one(child *c)
{
    if (c->exited)
        return;
    int status;
    pid_t r = waitpid(c->pid, &status, WNOHANG);
    if (r == c->pid || (r < 0 && errno == ECHILD)) {
        c->exited = true;
        c->status = r == c->pid ? status : 0;
    }
}

/* Drop the entries that exited and were forgotten. */
static void sweep(void)
{
    for (int i = nchildren - 1; i >= 0; i--)
        if (children[i].exited && children[i].forgotten)
            children[i] = children[--nchildren];
}

/* In the child between fork and exec: async-signal-safe calls only. */
static void run_child(const char *cmd, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) /* the engine died before prctl */
        _exit(127);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* No descriptor of the engine's survives into the child: a socket
     * libmosquitto opened without O_CLOEXEC, inherited by a child, would
     * outlive its close in the engine and keep its epoll registration
     * alive, reporting events for a freed watch. */
    if (close_range(3, ~0U, 0) < 0)
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
}

int md_process_spawn(const char *cmd, int *pid)
{
    if (!cmd || !pid)
        return -EINVAL;
    if (nchildren == capchildren) {
        int cap = capchildren ? capchildren * 2 : 8;
        child *grown = realloc(children, (size_t)cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        children = grown;
        capchildren = cap;
    }
    pid_t parent = getpid();
    pid_t p = fork();
    if (p < 0)
        return -errno;
    if (p == 0)
        run_child(cmd, parent);
    children[nchildren++] = (child){.pid = p};
    *pid = p;
    return 0;
}

int md_process_poll(int pid, int *status)
{
    child *c = find(pid);
    if (!c)
        return -ECHILD;
    reap_one(c);
    if (!c->exited)
        return 0;
    if (status)
        *status = c->status;
    return 1;
}

int md_process_signal(int pid, int sig)
{
    child *c = find(pid);
    if (!c)
        return -ECHILD;
    reap_one(c);
    if (c->exited)
        return -ESRCH;
    return kill(pid, sig) < 0 ? -errno : 0;
}

void md_process_forget(int pid)
{
    child *c = find(pid);
    if (c) {
        c->forgotten = true;
        reap_one(c);
        sweep();
    }
}

/* Reap every child that exited; returns how many still run. */
static int running(void)
{
    int n = 0;
    for (int i = 0; i < nchildren; i++) {
        reap_one(&children[i]);
        n += !children[i].exited;
    }
    return n;
}

void md_process_reap(void)
{
    running();
    sweep();
}

static void nap_ms(int ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
    nanosleep(&ts, NULL);
}

void md_process_kill_all(int grace_ms)
{
    for (int i = 0; i < nchildren; i++)
        if (!children[i].exited)
            kill(children[i].pid, SIGTERM);
    for (int waited = 0; running() > 0 && waited < grace_ms; waited += 10)
        nap_ms(10);
    for (int i = 0; i < nchildren; i++)
        if (!children[i].exited)
            kill(children[i].pid, SIGKILL);
    for (int waited = 0; running() > 0 && waited < 1000; waited += 10)
        nap_ms(10);
    free(children);
    children = NULL;
    nchildren = capchildren = 0;
}
