/*
 * process.h - child processes that never block the loop and never outlive
 * the engine.
 *
 * md_process_spawn() forks and runs `/bin/sh -c "exec CMD"`, so the pid is
 * the command's own. The child gets SIGTERM when the engine's loop thread
 * dies (PR_SET_PDEATHSIG: the engine was killed), starts with default
 * signal dispositions and an empty signal mask, and keeps stdin, stdout
 * and stderr (its command line redirects them).
 *
 * Every spawned child is tracked in one process-wide table until it has
 * exited and the owner forgot it. Reaping is waitpid(pid, WNOHANG) on the
 * tracked pids only (never waitpid(-1): io.popen and os.execute reap their
 * own children), from md_process_reap() (call it on SIGCHLD) and from
 * md_process_poll(). md_process_kill_all() at engine exit sends SIGTERM to
 * every child still running, waits up to a grace period and then sends
 * SIGKILL, and reaps them all.
 *
 * Loop thread only: the table has no lock.
 */
#ifndef MD_PROCESS_H
#define MD_PROCESS_H

/* Start CMD (a /bin/sh command line). Returns 0 and sets *pid, or -errno
 * (-ENOMEM, -EAGAIN from fork). */
int md_process_spawn(const char *cmd, int *pid);

/* Returns 0 while pid runs, 1 once it exited (*status as from waitpid), or
 * -ECHILD when pid is not a tracked child. */
int md_process_poll(int pid, int *status);

/* Send signal sig to a tracked child that has not been reaped. Returns 0,
 * -ESRCH when it has exited already, -ECHILD when it is not tracked. */
int md_process_signal(int pid, int sig);

/* The owner lets go of pid: it is dropped from the table once it exited
 * (now, or when md_process_reap() reaps it). It keeps running. */
void md_process_forget(int pid);

/* Reap every tracked child that exited. */
void md_process_reap(void);

/* SIGTERM to every running child, SIGKILL to those still running after
 * grace_ms, reap all and empty the table. Blocks up to grace_ms + 1 s:
 * only for engine exit. */
void md_process_kill_all(int grace_ms);

#endif
