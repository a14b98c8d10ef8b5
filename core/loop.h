/*
 * loop.h - moondog's event loop: fd readiness, timers, deferred calls,
 * a thread-safe completion queue and signals, on epoll.
 *
 * One loop per process, driven by one thread (the "loop thread"). Every
 * function here must be called on the loop thread except md_loop_post() and
 * md_loop_wake(), which any thread may call.
 *
 * Liveness: md_loop_run() returns when nothing is left that could produce
 * work: no timer, no watch that keeps the loop alive, no deferred call, no
 * posted completion and no hold (md_loop_hold) for work in flight on another
 * thread. An idle loop sleeps in epoll_wait; it never polls.
 *
 * Time is milliseconds on the monotonic clock, read through md_loop_now(),
 * which a test can replace with md_loop_set_clock().
 *
 * Simulated time (md_loop_simulate): md_loop_now() then reads a virtual
 * clock that stands still while anything can run and, when nothing is
 * runnable, no fd is ready and no other thread holds work in flight, jumps
 * to the next timer (the autojump of Trio's MockClock). Real sockets still
 * carry the traffic, so a site and its simulated devices run the code a
 * real site runs, a day in seconds, the same way every time. Before a
 * jump the loop asks the kernel whether data written to a TCP connection
 * is still on its way to a socket the loop watches (on a loaded machine
 * loopback delivery can lag the write), and waits for it in real time
 * (bounded; loop.c says what is covered). With peers in other processes (a
 * broker) give a quiet time, the real time to wait for them before the
 * clock jumps.
 */
#ifndef MD_LOOP_H
#define MD_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct md_loop md_loop;
typedef struct md_watch md_watch;
typedef struct md_timer md_timer;

enum {
    MD_LOOP_READ = 1,  /* readable, or peer hung up / error: read to find out */
    MD_LOOP_WRITE = 2, /* writable */
};

typedef void (*md_watch_fn)(md_loop *loop, md_watch *w, int fd, int events, void *ud);
typedef void (*md_timer_fn)(md_loop *loop, md_timer *t, void *ud);
typedef void (*md_call_fn)(md_loop *loop, void *ud);
typedef int64_t (*md_clock_fn)(void *ud);

/*
 * A completion handed from another thread to the loop. The poster owns the
 * storage (usually embedded in its request struct) until fn runs on the loop
 * thread; posting never allocates and never fails.
 */
typedef struct md_completion {
    struct md_completion *next; /* private to the loop */
    md_call_fn fn;
    void *ud;
} md_completion;

/* Returns NULL with errno set when epoll/eventfd cannot be created. */
md_loop *md_loop_new(void);
/* Frees the loop and every watch and timer still registered (their
 * callbacks are not called). Posted completions not yet run are dropped. */
void md_loop_free(md_loop *loop);

/* Milliseconds on the monotonic clock (or the test clock, or simulated). */
int64_t md_loop_now(md_loop *loop);
void md_loop_set_clock(md_loop *loop, md_clock_fn fn, void *ud);

/*
 * Switch to simulated time, from now on. The virtual clock starts at the
 * same value in every run (timers already set move with it; times that
 * modules kept from the real clock do not, so switch before opening
 * anything); wall_ms
 * is the wall-clock time (ms since the epoch) the simulation starts at
 * (md_loop_wall_ms), quiet_ms the real time to wait for outside peers
 * before each jump (0: none). Calling it again changes wall_ms and quiet_ms.
 */
void md_loop_simulate(md_loop *loop, int64_t wall_ms, int quiet_ms);
bool md_loop_simulated(md_loop *loop);
/* Where the loop sends the rare line worth logging (md_log_text's shape;
 * NULL: nowhere). The loop itself does not link the log. */
void md_loop_set_log(md_loop *loop, void (*log)(int level, const char *text));
/* Wall-clock milliseconds since the epoch: real, or the simulation's. */
int64_t md_loop_wall_ms(md_loop *loop);

/*
 * Watch fd for events (MD_LOOP_READ|MD_LOOP_WRITE). Returns NULL with errno
 * set on failure (EEXIST: fd already watched). The watch keeps the loop
 * alive unless md_loop_watch_keepalive(w, false).
 */
md_watch *md_loop_watch(md_loop *loop, int fd, int events, md_watch_fn fn, void *ud);
/* Change the events of interest; 0 pauses the watch. Returns 0 or -errno. */
int md_loop_watch_set(md_loop *loop, md_watch *w, int events);
void md_loop_watch_keepalive(md_loop *loop, md_watch *w, bool keepalive);
/* Stop watching and free w. Safe from inside w's own callback. Does not
 * close the fd. */
void md_loop_unwatch(md_loop *loop, md_watch *w);
/* Unwatch *w and close *fd, each if set, leaving *w NULL and *fd -1: how
 * an owner drops the socket it watches. */
void md_loop_unwatch_close(md_loop *loop, md_watch **w, int *fd);

/*
 * One-shot timer due at the absolute time due_ms (md_loop_now() scale).
 * Timers fire in order of due time, and in creation order for equal times.
 * The loop frees the timer right after its callback returns, so the owner
 * must forget its pointer in the callback. Returns NULL on out of memory.
 */
md_timer *md_loop_timer(md_loop *loop, int64_t due_ms, md_timer_fn fn, void *ud);
/* Cancel a timer that has not fired yet and free it; its callback never
 * runs. Must not be called on a timer that already fired. */
void md_loop_timer_cancel(md_loop *loop, md_timer *t);
/* Whether a timer keeps the loop alive (default true). */
void md_loop_timer_keepalive(md_loop *loop, md_timer *t, bool keepalive);

/* Run fn(ud) on the next iteration, in FIFO order, before the loop waits
 * for events. Returns 0 or -ENOMEM. */
int md_loop_defer(md_loop *loop, md_call_fn fn, void *ud);

/* Any thread: queue c for the loop thread and wake the loop. FIFO. */
void md_loop_post(md_loop *loop, md_completion *c);
/* Loop thread: run the completions posted so far, nothing else. Used at
 * shutdown, after a worker was joined, so that its last completions still
 * free their requests. Returns how many ran. */
int md_loop_run_posted(md_loop *loop);

/* Any thread: wake the loop from epoll_wait without queuing anything. */
void md_loop_wake(md_loop *loop);

/* Count work in flight elsewhere (a worker thread's request) as keeping
 * the loop alive until the matching release. Simulated time waits for it
 * in real time before the clock jumps. */
void md_loop_hold(md_loop *loop);
void md_loop_release(md_loop *loop);
/* The same for work the loop itself carries (a request on a socket this
 * loop serves, a client that lives on the loop): it keeps the loop alive,
 * but simulated time does not wait for it, since only the loop can move it. */
void md_loop_hold_local(md_loop *loop);
void md_loop_release_local(md_loop *loop);

/*
 * Route signo (SIGINT, SIGTERM, ...) to fn on the loop thread. The handler
 * itself only records the signal and writes a byte to a self-pipe; async,
 * if not NULL, is also called inside the signal handler and must be
 * async-signal-safe (the engine uses it to interrupt a busy Lua task).
 * Signal watches do not keep the loop alive. Returns 0 or -errno.
 */
int md_loop_signal(md_loop *loop, int signo, md_call_fn fn, void *ud,
                   void (*async)(int signo));

/* What the loop holds now, for leak checks in tests and md.stats(). */
typedef struct md_loop_counts {
    int watches; /* live watches, the loop's own internal ones excluded */
    int timers;
    long holds;
    int deferred;
    long flight_waits;   /* simulated time: jumps held back for data in flight */
    long flight_giveups; /* ... that jumped anyway after the bound (see loop.c) */
} md_loop_counts;
void md_loop_get_counts(md_loop *loop, md_loop_counts *out);

/* True while something keeps the loop alive (see above). */
bool md_loop_alive(md_loop *loop);

/*
 * Run one iteration: deferred calls, posted completions, due timers, then
 * wait at most timeout_ms (-1: until the next timer or event, 0: do not
 * wait) for fd events and dispatch them. Returns the number of callbacks
 * run, or -errno if epoll_wait failed.
 */
int md_loop_run_once(md_loop *loop, int timeout_ms);

/*
 * Run until md_loop_stop() or until nothing keeps the loop alive.
 * Returns 0 when nothing is left, 1 when stopped.
 */
int md_loop_run(md_loop *loop);

/*
 * Run until done(ud) is true (checked after every iteration). Used by a
 * blocking primitive called outside a task. Returns 0 when done, 1 when the
 * loop was stopped first, -EDEADLK when nothing is left that could make
 * done() true. Nested calls are allowed.
 */
int md_loop_run_until(md_loop *loop, bool (*done)(void *ud), void *ud);

/* Make md_loop_run()/md_loop_run_until() return after this iteration.
 * A later md_loop_run() clears the stop. */
void md_loop_stop(md_loop *loop);
bool md_loop_stopped(md_loop *loop);

#endif
