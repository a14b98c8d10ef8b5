/*
 * engine.c - the Lua state, tasks, waits and the engine's life cycle.
 *
 * Tasks. A task is a coroutine plus a md_task record living inside a full
 * userdata (the task object Lua sees). While a task is unfinished the
 * registry holds its thread and its userdata, so neither is collected while
 * it waits. The thread's extra space (lua_getextraspace) points at the
 * md_task; plain coroutines and the main thread have NULL there, which is
 * how a primitive knows whether it may yield.
 *
 * Scheduling. Ready tasks wait in a FIFO and are resumed from one deferred
 * loop callback (run_ready). Each pass runs only the tasks that were ready
 * when it started, so a task that keeps yielding cannot starve I/O. This
 * file holds the only lua_resume.
 *
 * Waits. md_task_wait/md_task_yield/md_task_done implement the async
 * pattern described in engine.h. A wait is freed by its continuation
 * (wait_continue) or when its task is cancelled.
 *
 * Interrupts. SIGINT/SIGTERM and the watchdog stop a task that is busy in
 * Lua the way lua.c does: the signal handler sets a hook on the running
 * thread, and the hook raises. A hook is set only on demand because a
 * permanent count hook halves the speed of Lua code. The watchdog is a
 * one-shot POSIX timer aimed at the loop thread, re-armed every twentieth of
 * its limit while tasks run (see batch_enter and on_watchdog_signal).
 *
 * Signals for Lua. core.wait_signal("HUP") waits in a task for the next
 * SIGHUP (the site reloads its script on it: moondog.site.reload). The
 * route is installed at the first wait, so a script that never waits keeps
 * SIGHUP's default action; once installed, a SIGHUP nobody waits for is
 * logged and ignored.
 *
 * Stopping. A stop request (SIGINT/SIGTERM, md.exit) first runs the
 * shutdown phase: STOPPING=1 to systemd, then the Lua runner that
 * moondog.shutdown registered (core.set_shutdown_runner) runs as a task
 * while the loop still turns, so handlers can do I/O (give a battery back,
 * write an inverter's fail-safe limit). The loop stops when that task ends;
 * the runner bounds the handlers (md.shutdown_timeout). A second
 * SIGINT/SIGTERM during the phase stops at once. Without a runner the loop
 * stops at once, as before. Then md_engine_free cancels what is left.
 *
 * Threads: everything here runs on the loop thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "err.h"
#include "err_lua.h"
#include "log.h"
#include "mbcodec_lua.h"
#include "process.h"
#include "sdnotify.h"

#define TASK_MT "moondog.task"

#ifndef MD_VERSION
#define MD_VERSION "0.0.0"
#endif
#define WATCHDOG_SIGNAL SIGURG  /* ignored by default: harmless if it arrives late */
#define WATCHDOG_SLICES 20      /* the watchdog fires within 5 % past its limit */
#define INTERRUPT_GRACE 1000000 /* Lua instructions: a few ms */

#if LUA_VERSION_RELEASE_NUM >= 50406
#define reset_thread(co, from) lua_closethread(co, from)
#else
#define reset_thread(co, from) ((void)(from), lua_resetthread(co))
#endif

typedef enum {
    TASK_READY,
    TASK_RUNNING,
    TASK_WAITING,
    TASK_DONE,
    TASK_FAILED,
    TASK_CANCELLED,
} task_state;

static const char *const task_state_names[] = {"ready", "running", "waiting",
                                               "done",  "failed",  "cancelled"};

typedef struct md_task md_task;
typedef struct joiner joiner;

struct md_task {
    md_engine *E;
    lua_State *co;
    int co_ref, self_ref, results_ref; /* LUA_NOREF when unset */
    task_state state;
    bool is_main, cancel_requested, started;
    uint64_t id;
    md_wait *wait; /* what a waiting task waits for */
    md_task *ready_prev, *ready_next;
    bool queued;
    uint64_t ready_pass;          /* run_ready pass in which it became ready */
    md_task *all_prev, *all_next; /* unfinished tasks, in spawn order */
    joiner *joiners;
    char name[128];
};

typedef enum { WAIT_PENDING, WAIT_DONE, WAIT_TIMEDOUT } wait_state;

/* Owned by the engine; freed by wait_continue or by cancelling its task. */
struct md_wait {
    md_engine *E;
    md_task *task; /* the waiting task; NULL on the main thread */
    bool nested;   /* blocking wait: runs the loop instead of yielding */
    void *op;
    md_cancel_fn cancel;
    md_results_fn results;
    md_timer *timer;
    int64_t timeout_ms;
    int timeout_rc; /* err.h code a timeout returns: -MD_ETIMEOUT unless set */
    wait_state state;
    char what[48];
};

/* A task waiting in core.wait_signal; owned by the wait (freed by its
 * results or its cancel). listed: still on the engine's list. */
typedef struct sig_waiter sig_waiter;
struct sig_waiter {
    sig_waiter *next;
    md_engine *E;
    md_wait *wait;
    bool listed;
};

/* A task waiting in join() for another. */
struct joiner {
    joiner *next;
    md_task *target;
    md_wait *wait;
};

struct md_engine {
    lua_State *L;
    md_loop *loop;
    int exit_code;
    bool closing;
    bool stopping;      /* the shutdown phase has begun */
    md_task *stop_task; /* the shutdown runner's task while it runs */
    int stop_runner;    /* registry ref of the runner function, or LUA_NOREF */

    md_task *ready_head, *ready_tail;
    bool ready_scheduled;
    uint64_t pass;
    md_task *all_head, *all_tail;
    uint64_t next_task_id;

    /* What is executing Lua right now (for interrupts and the watchdog). */
    md_task *running;
    lua_State *volatile running_L;
    volatile uint64_t resume_seq;         /* counts resumes */
    volatile uint64_t watchdog_seen;      /* resume_seq when the watchdog last looked */
    volatile sig_atomic_t watchdog_ticks; /* looks since watchdog_seen changed */
    volatile sig_atomic_t interrupt_signo;
    volatile uint64_t interrupt_seq;      /* resume_seq when a stop signal came */
    volatile sig_atomic_t run_depth;      /* nested batches of resumes */
    volatile sig_atomic_t watchdog_armed; /* the watchdog timer is set */

    timer_t watchdog;
    bool has_watchdog;
    int64_t watchdog_ms; /* 0: off */

    void (*on_interrupt)(md_engine *E, void *ud);
    void *on_interrupt_ud;

    sig_waiter *hup_waits; /* tasks in core.wait_signal("HUP") */
    bool hup_routed;

    void (*on_main_done)(md_engine *E, bool ok, void *ud);
    void *on_main_done_ud;

    md_timer *idle_timer; /* armed after a batch: is the engine idle yet? */
    uint64_t idle_pass;   /* E->pass when idle_timer was armed */
    size_t idle_lua_kb;   /* the Lua heap after the last idle collection */
};

/* The engine of the process, for the signal handler's hook only. */
static md_engine *signal_engine;
static const char cancel_sentinel = 'c';
static const char exit_sentinel = 'x';

static void make_ready(md_task *t);
static void finish_task(md_task *t, task_state state);

/* {===== helpers ===== */

md_engine *md_engine_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static md_task *task_of_thread(lua_State *L)
{
    return *(md_task **)lua_getextraspace(L);
}

/* }===== */

/* {===== interrupts and watchdog ===== */

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    md_engine *E = md_engine_of(L);
    int signo = E->interrupt_signo;
    if (signo != WATCHDOG_SIGNAL && E->resume_seq != E->interrupt_seq)
        return; /* it yielded since: the loop has the signal, nothing was stuck */
    E->interrupt_signo = 0;
    luaL_where(L, 0); /* inside a hook, level 0 is the interrupted function */
    if (signo == WATCHDOG_SIGNAL)
        lua_pushfstring(L,
                        "task ran for more than %f s without yielding (watchdog; see "
                        "md.watchdog)",
                        (lua_Number)E->watchdog_ms / 1000.0);
    else
        lua_pushfstring(L, "interrupted by %s",
                        sigabbrev_np(signo) ? sigabbrev_np(signo) : "signal");
    lua_concat(L, 2);
    lua_error(L);
}

/* Signal handler context: only flags and lua_sethook, as lua.c does.
 * The watchdog raises at once. A stop signal raises only in a task still
 * busy INTERRUPT_GRACE instructions later (a few ms) in the same resume:
 * one that yields before lets the loop handle the signal, and the shutdown
 * handlers then need the task the signal happened to land in (a poller,
 * the battery writer), which must not fail for it. */
static void interrupt_running_lua(int signo)
{
    md_engine *E = signal_engine;
    if (!E || !E->running_L)
        return;
    E->interrupt_signo = signo;
    E->interrupt_seq = E->resume_seq;
    if (signo == WATCHDOG_SIGNAL)
        lua_sethook(E->running_L, interrupt_hook,
                    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    else
        lua_sethook(E->running_L, interrupt_hook, LUA_MASKCOUNT, INTERRUPT_GRACE);
}

static void arm_watchdog(md_engine *E, int64_t ms)
{
    if (!E->has_watchdog)
        return;
    struct itimerspec its = {
        .it_value = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000}};
    timer_settime(E->watchdog, 0, &its, NULL);
}

/* The timer fires every slice (a WATCHDOG_SLICES-th of the limit) while
 * tasks run. If the same resume is still running after WATCHDOG_SLICES
 * looks in a row, it has been busy for at least the limit and at most one
 * slice more: interrupt it (a timer of the whole limit fired anywhere
 * between 1 and 2 times it: issue 17). Comparing a counter keeps clock
 * reads and syscalls off the resume path. After a slice with no resume at
 * all the timer rests until the next batch. */
static int64_t watchdog_slice(const md_engine *E)
{
    int64_t slice = E->watchdog_ms / WATCHDOG_SLICES;
    return slice > 0 ? slice : 1;
}

static void on_watchdog_signal(int signo)
{
    md_engine *E = signal_engine;
    if (!E)
        return;
    if (E->watchdog_ms <= 0) {
        E->watchdog_armed = 0;
        return;
    }
    if (E->running_L && E->resume_seq == E->watchdog_seen) {
        if (++E->watchdog_ticks >= WATCHDOG_SLICES) {
            E->watchdog_armed = 0; /* the next batch arms it again */
            interrupt_running_lua(signo);
            return;
        }
        arm_watchdog(E, watchdog_slice(E));
        return;
    }
    if (E->run_depth == 0 && E->resume_seq == E->watchdog_seen) {
        E->watchdog_armed = 0;
        return;
    }
    E->watchdog_seen = E->resume_seq;
    E->watchdog_ticks = 0;
    arm_watchdog(E, watchdog_slice(E)); /* timer_settime is async-signal-safe */
}

static void setup_watchdog(md_engine *E)
{
    struct sigaction sa = {.sa_handler = on_watchdog_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(WATCHDOG_SIGNAL, &sa, NULL);
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID,
                           .sigev_signo = WATCHDOG_SIGNAL};
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    E->has_watchdog = timer_create(CLOCK_MONOTONIC, &sev, &E->watchdog) == 0;
    E->watchdog_ms = 30000;
}

/*
 * A batch of resumes. The watchdog must run while one does. Arming it here
 * and disarming it after every batch cost two syscalls per resume, as much
 * as the send or the recv of the I/O request a task usually waits for, so
 * it is armed by the first batch and keeps running across batches until
 * the signal handler finds a whole period without a resume. run_depth is
 * raised before watchdog_armed is read: a signal in between sees a batch
 * running and re-arms.
 */
static void batch_enter(md_engine *E)
{
    if (E->run_depth++ == 0 && E->watchdog_ms > 0 && !E->watchdog_armed) {
        E->watchdog_seen = E->resume_seq - 1;
        E->watchdog_armed = 1;
        arm_watchdog(E, watchdog_slice(E));
    }
}

static void batch_leave(md_engine *E)
{
    E->run_depth--;
}

/* }===== */

/* {===== scheduling ===== */

static void ready_unlink(md_engine *E, md_task *t)
{
    if (!t->queued)
        return;
    if (t->ready_prev)
        t->ready_prev->ready_next = t->ready_next;
    else
        E->ready_head = t->ready_next;
    if (t->ready_next)
        t->ready_next->ready_prev = t->ready_prev;
    else
        E->ready_tail = t->ready_prev;
    t->ready_prev = t->ready_next = NULL;
    t->queued = false;
}

static void resume_task(md_task *t);
static void arm_idle(md_engine *E);

static void run_ready(md_loop *loop, void *ud)
{
    (void)loop;
    md_engine *E = ud;
    E->ready_scheduled = false;
    uint64_t pass = ++E->pass;
    batch_enter(E);
    while (E->ready_head && E->ready_head->ready_pass < pass) {
        md_task *t = E->ready_head;
        ready_unlink(E, t);
        if (t->state == TASK_READY)
            resume_task(t);
    }
    batch_leave(E);
    if (E->ready_head && !E->ready_scheduled) {
        E->ready_scheduled = md_loop_defer(E->loop, run_ready, E) == 0;
    }
    if (!E->idle_timer)
        arm_idle(E);
}

static void make_ready(md_task *t)
{
    md_engine *E = t->E;
    t->state = TASK_READY;
    if (!t->queued) {
        t->ready_pass = E->pass;
        t->ready_prev = E->ready_tail;
        t->ready_next = NULL;
        if (E->ready_tail)
            E->ready_tail->ready_next = t;
        else
            E->ready_head = t;
        E->ready_tail = t;
        t->queued = true;
    }
    if (!E->ready_scheduled)
        E->ready_scheduled = md_loop_defer(E->loop, run_ready, E) == 0;
}

/* Store a finished task's return values (top nres of co) in a table. */
static void keep_results(md_task *t, int nres)
{
    lua_State *co = t->co;
    lua_createtable(co, nres, 1);
    int tbl = lua_gettop(co);
    for (int i = 1; i <= nres; i++) {
        lua_pushvalue(co, tbl - nres - 1 + i);
        lua_rawseti(co, tbl, i);
    }
    lua_pushinteger(co, nres);
    lua_setfield(co, -2, "n");
    t->results_ref = luaL_ref(co, LUA_REGISTRYINDEX);
}

static void log_task_error(md_task *t)
{
    lua_State *co = t->co, *L = t->E->L;
    const char *msg = lua_tostring(co, -1);
    if (!msg) {
        if (luaL_callmeta(co, -1, "__tostring") && lua_type(co, -1) == LUA_TSTRING) {
            msg = lua_tostring(co, -1);
        } else {
            msg = lua_pushfstring(co, "(error object is a %s value)",
                                  luaL_typename(co, -1));
        }
    }
    luaL_traceback(L, co, msg, 0);
    md_log(MD_LOG_ERROR, "%s failed: %s", t->name, lua_tostring(L, -1));
    lua_pop(L, 1);
    /* keep the message for join(): { n = 1, message } */
    lua_createtable(co, 1, 1);
    lua_pushstring(co, msg);
    lua_seti(co, -2, 1);
    t->results_ref = luaL_ref(co, LUA_REGISTRYINDEX);
}

static bool is_sentinel(lua_State *co, const void *sentinel)
{
    return lua_islightuserdata(co, -1) && lua_touserdata(co, -1) == sentinel;
}

/* The only lua_resume. */
static void resume_task(md_task *t)
{
    md_engine *E = t->E;
    md_task *prev = E->running;
    lua_State *prev_L = E->running_L;
    /* First resume: the function's arguments; later: the continuation
     * pushes its own results, so nothing is passed. */
    int nargs = t->started ? 0 : lua_gettop(t->co) - 1;
    t->started = true;
    E->running = t;
    t->state = TASK_RUNNING;
    E->resume_seq++;
    E->running_L = t->co;
    int nres = 0;
    int status = lua_resume(t->co, prev_L, nargs, &nres);
    E->running_L = prev_L;
    E->resume_seq++;
    E->running = prev;

    if (status == LUA_YIELD) {
        lua_pop(t->co, nres);
        if (t->cancel_requested) /* cancelled while it ran: act at its first stop */
            finish_task(t, TASK_CANCELLED);
        else if (t->wait)
            t->state = TASK_WAITING;
        else
            make_ready(t); /* a bare coroutine.yield(): let others run */
    } else if (status == LUA_OK) {
        keep_results(t, nres);
        finish_task(t, TASK_DONE);
    } else if (is_sentinel(t->co, &cancel_sentinel) || t->cancel_requested) {
        finish_task(t, TASK_CANCELLED);
    } else if (is_sentinel(t->co, &exit_sentinel)) {
        finish_task(t, TASK_CANCELLED);
    } else {
        log_task_error(t);
        finish_task(t, TASK_FAILED);
    }
}

/* }===== */

/* {===== waits ===== */

/*
 * Where a wait cannot yield, it must not run the loop either: that would
 * run every other task from inside a finalizer (with the collector
 * stopped: RSS grew from 8 to 75 MB in half a second), a table.sort
 * comparator or a metamethod called from C, none of which expects the
 * world to change under it. Only the main thread (the REPL, a script's
 * top level) runs the loop for its own wait, and not from a finalizer:
 * Lua 5.4.4 answers -1 to every lua_gc() option while one runs.
 */
static const char no_wait_msg[] =
    "cannot wait for I/O here: a __gc handler, a metamethod called from C or a "
    "callback such as a table.sort comparator cannot yield; call it from a task "
    "(md.spawn) instead";

/* Why L cannot wait, or NULL when it can. */
static const char *wait_refusal(lua_State *L)
{
    md_task *t = task_of_thread(L);
    bool main_thread = lua_pushthread(L);
    lua_pop(L, 1);
    if (!t && !main_thread)
        return "cannot wait inside a plain coroutine: run this code in a task "
               "(md.spawn) or at the top level";
    if ((t && !lua_isyieldable(L)) || lua_gc(L, LUA_GCISRUNNING) < 0)
        return no_wait_msg;
    return NULL;
}

void md_task_check(lua_State *L)
{
    const char *why = wait_refusal(L);
    if (why)
        luaL_error(L, "%s", why);
}

md_wait *md_task_wait(lua_State *L, void *op, md_cancel_fn cancel)
{
    md_engine *E = md_engine_of(L);
    md_task *t = task_of_thread(L);
    md_task_check(L);
    md_wait *w = calloc(1, sizeof *w);
    if (!w)
        luaL_error(L, "out of memory");
    *w = (md_wait){.E = E,
                   .task = t,
                   .nested = !t, /* md_task_check: a task here can yield */
                   .op = op,
                   .cancel = cancel,
                   .state = WAIT_PENDING};
    if (t)
        t->wait = w;
    return w;
}

/* Resume the task of a wait that ended, if it is parked on it. A task that
 * has not yielded yet takes the fast path in md_task_yield instead. */
static void wake_waiter(md_wait *w)
{
    if (w->task && !w->nested && w->task->state == TASK_WAITING)
        make_ready(w->task);
}

static void on_wait_timeout(md_loop *loop, md_timer *timer, void *ud)
{
    (void)loop, (void)timer;
    md_wait *w = ud;
    w->timer = NULL;
    w->state = WAIT_TIMEDOUT;
    if (w->cancel)
        w->cancel(w->op);
    wake_waiter(w);
}

void md_wait_timeout_rc(md_wait *w, int64_t ms, const char *what, int rc)
{
    w->timeout_rc = rc;
    md_wait_timeout(w, ms, what);
}

void md_wait_timeout(md_wait *w, int64_t ms, const char *what)
{
    assert(w->state == WAIT_PENDING && !w->timer);
    if (ms < 0)
        return;
    snprintf(w->what, sizeof w->what, "%s", what ? what : "operation");
    w->timeout_ms = ms;
    if (!w->timeout_rc)
        w->timeout_rc = -MD_ETIMEOUT;
    md_loop *loop = w->E->loop;
    w->timer = md_loop_timer(loop, md_loop_now(loop) + ms, on_wait_timeout, w);
}

void md_task_done(md_wait *w)
{
    assert(w->state == WAIT_PENDING);
    w->state = WAIT_DONE;
    if (w->timer) {
        md_loop_timer_cancel(w->E->loop, w->timer);
        w->timer = NULL;
    }
    wake_waiter(w);
}

static void wait_free(md_wait *w)
{
    if (w->timer)
        md_loop_timer_cancel(w->E->loop, w->timer);
    if (w->task && w->task->wait == w)
        w->task->wait = NULL;
    free(w);
}

/* Abandon a wait whose task will never take its results: the operation is
 * told to forget it. That includes a completed operation whose task was
 * cancelled before it resumed, so that the module frees what its results
 * function would have freed. A timed-out one was told when it timed out. */
static void wait_abandon(md_wait *w)
{
    if (w->state != WAIT_TIMEDOUT && w->cancel)
        w->cancel(w->op);
    wait_free(w);
}

static int wait_continue(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    md_wait *w = (md_wait *)ctx;
    wait_state state = w->state;
    md_results_fn results = w->results;
    void *op = w->op;
    int64_t timeout_ms = w->timeout_ms;
    int timeout_rc = w->timeout_rc;
    char what[sizeof w->what];
    memcpy(what, w->what, sizeof what);
    wait_free(w);
    if (state == WAIT_TIMEDOUT)
        return md_err_pushf(L, timeout_rc, "%s timed out after %f s", what,
                            (double)timeout_ms / 1000.0);
    return results ? results(L, op) : 0;
}

static bool nested_wait_over(void *ud)
{
    md_wait *w = ud;
    return w->state != WAIT_PENDING || (w->task && w->task->cancel_requested);
}

/* Blocking wait: run the loop here until the wait ends. */
static int nested_wait(lua_State *L, md_wait *w)
{
    md_engine *E = w->E;
    lua_State *saved_L = E->running_L;
    E->running_L = NULL; /* waiting in the loop is not "busy in Lua" */
    int rc = md_loop_run_until(E->loop, nested_wait_over, w);
    E->running_L = saved_L;
    E->resume_seq++; /* the wait was not busy time */
    if (w->state != WAIT_PENDING && !(w->task && w->task->cancel_requested))
        return wait_continue(L, LUA_OK, (lua_KContext)w);
    bool cancelled = w->task && w->task->cancel_requested;
    wait_abandon(w);
    if (cancelled) {
        lua_pushlightuserdata(L, (void *)&cancel_sentinel);
        return lua_error(L);
    }
    if (rc == 1)
        return luaL_error(L, "interrupted: the engine is shutting down");
    return luaL_error(L, "nothing is left that could complete this wait");
}

int md_task_yield(lua_State *L, md_wait *w, md_results_fn results)
{
    w->results = results;
    if (w->state != WAIT_PENDING) /* completed before we got to wait */
        return wait_continue(L, LUA_OK, (lua_KContext)w);
    if (w->nested)
        return nested_wait(L, w);
    return lua_yieldk(L, 0, (lua_KContext)w, wait_continue);
}

/* }===== */

/* {===== task life cycle ===== */

static void all_unlink(md_engine *E, md_task *t)
{
    if (t->all_prev)
        t->all_prev->all_next = t->all_next;
    else if (E->all_head == t)
        E->all_head = t->all_next;
    if (t->all_next)
        t->all_next->all_prev = t->all_prev;
    else if (E->all_tail == t)
        E->all_tail = t->all_prev;
    t->all_prev = t->all_next = NULL;
}

static void finish_task(md_task *t, task_state state)
{
    md_engine *E = t->E;
    t->state = state;
    ready_unlink(E, t);
    if (t->wait) {
        wait_abandon(t->wait);
        t->wait = NULL;
    }
    all_unlink(E, t);
    if (t == E->stop_task) { /* the shutdown phase is over */
        E->stop_task = NULL;
        md_loop_stop(E->loop);
    }
    if (t->is_main && state == TASK_FAILED)
        E->exit_code = 1;
    if (t->is_main && E->on_main_done)
        E->on_main_done(E, state == TASK_DONE, E->on_main_done_ud);
    /* Run the task's pending to-be-closed variables now. */
    int status = reset_thread(t->co, E->L);
    /* After an error the thread reports that error again: already logged. */
    if (status != LUA_OK && state != TASK_FAILED && lua_type(t->co, -1) == LUA_TSTRING)
        md_log(MD_LOG_ERROR, "%s: error while closing: %s", t->name,
               lua_tostring(t->co, -1));
    while (t->joiners) {
        joiner *j = t->joiners;
        t->joiners = j->next;
        j->target = NULL;
        md_task_done(j->wait);
    }
    if (t->results_ref == LUA_NOREF) {
        lua_createtable(E->L, 0, 1);
        t->results_ref = luaL_ref(E->L, LUA_REGISTRYINDEX);
    }
    luaL_unref(E->L, LUA_REGISTRYINDEX, t->co_ref);
    t->co_ref = LUA_NOREF;
    luaL_unref(E->L, LUA_REGISTRYINDEX, t->self_ref);
    t->self_ref = LUA_NOREF;
}

static void task_cancel(md_task *t)
{
    switch (t->state) {
    case TASK_READY:
    case TASK_WAITING: finish_task(t, TASK_CANCELLED); break;
    case TASK_RUNNING:
        t->cancel_requested = true; /* acted on where it next waits or yields */
        break;
    default: break;
    }
}

static void describe_function(lua_State *L, int idx, char *buf, size_t len)
{
    lua_Debug ar;
    lua_pushvalue(L, idx);
    if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0)
        snprintf(buf, len, " (%s:%d)", ar.short_src, ar.linedefined);
    else
        buf[0] = '\0';
}

void md_task_spawn(lua_State *L, int idx, int nargs)
{
    md_engine *E = md_engine_of(L);
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TFUNCTION);
    if (E->closing)
        luaL_error(L, "cannot spawn a task: the engine is shutting down");
    /* The arguments are copied once on L, then moved to the new thread. */
    luaL_checkstack(L, nargs + LUA_MINSTACK, "too many arguments for a task");
    md_task *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    t->E = E;
    t->co_ref = t->self_ref = t->results_ref = LUA_NOREF;
    t->id = ++E->next_task_id;
    luaL_setmetatable(L, TASK_MT);
    char where[80];
    describe_function(L, idx, where, sizeof where);
    snprintf(t->name, sizeof t->name, "task %llu%s", (unsigned long long)t->id, where);

    lua_State *co = lua_newthread(L); /* stack: fn, args..., task, co */
    *(md_task **)lua_getextraspace(co) = t;
    t->co = co;
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops co */
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!lua_checkstack(co, nargs + 1))
        luaL_error(L, "cannot spawn a task: too many arguments (%d)", nargs);
    lua_pushvalue(L, idx);
    lua_xmove(L, co, 1); /* function */
    for (int i = 1; i <= nargs; i++)
        lua_pushvalue(L, idx + i);
    lua_xmove(L, co, nargs);
    lua_insert(L, idx);    /* task below fn */
    lua_pop(L, nargs + 1); /* drop fn and args, keep task on top */

    t->all_prev = E->all_tail;
    if (E->all_tail)
        E->all_tail->all_next = t;
    else
        E->all_head = t;
    E->all_tail = t;
    make_ready(t);
}

bool md_task_finished(lua_State *L, int idx)
{
    md_task *t = luaL_checkudata(L, idx, TASK_MT);
    return t->state >= TASK_DONE;
}

void md_task_cancel_at(lua_State *L, int idx)
{
    task_cancel(luaL_checkudata(L, idx, TASK_MT));
}

void md_engine_spawn_main(md_engine *E, int nargs)
{
    lua_State *L = E->L;
    md_task_spawn(L, -(nargs + 1), nargs);
    md_task *t = lua_touserdata(L, -1);
    t->is_main = true;
    snprintf(t->name, sizeof t->name, "main chunk");
    lua_pop(L, 1);
}

/* }===== */

/* {===== Lua API: task objects ===== */

static md_task *check_task(lua_State *L)
{
    return luaL_checkudata(L, 1, TASK_MT);
}

static int join_results(lua_State *L, void *op)
{
    free(op);
    md_task *target = lua_touserdata(L, 1); /* join's stack survives the yield */
    lua_rawgeti(L, LUA_REGISTRYINDEX, target->results_ref);
    if (target->state == TASK_DONE) {
        lua_getfield(L, -1, "n");
        int n = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, n, "too many results");
        for (int i = 1; i <= n; i++)
            lua_rawgeti(L, -i, i);
        return n;
    }
    lua_pushnil(L);
    if (target->state == TASK_FAILED) {
        lua_rawgeti(L, -2, 1);
        lua_pushliteral(L, "error");
    } else {
        lua_pushfstring(L, "%s was cancelled", target->name);
        lua_pushliteral(L, "cancelled");
    }
    return 3;
}

static void join_cancel(void *op)
{
    joiner *j = op;
    if (j->target) {
        joiner **p = &j->target->joiners;
        while (*p && *p != j)
            p = &(*p)->next;
        if (*p)
            *p = j->next;
    }
    free(j);
}

/* task:join([timeout]) -> the task's return values, or nil, err, code */
static int task_join(lua_State *L)
{
    md_task *t = check_task(L);
    double timeout = luaL_optnumber(L, 2, -1);
    lua_settop(L, 1);
    if (t == task_of_thread(L))
        return luaL_error(L, "a task cannot join itself");
    joiner *j = calloc(1, sizeof *j);
    if (!j)
        return luaL_error(L, "out of memory");
    j->target = t;
    md_wait *w = md_task_wait(L, j, join_cancel);
    j->wait = w;
    if (t->state >= TASK_DONE) {
        j->target = NULL;
        md_task_done(w);
    } else {
        j->next = t->joiners;
        t->joiners = j;
        if (timeout >= 0)
            md_wait_timeout(w, (int64_t)(timeout * 1000), "join");
    }
    return md_task_yield(L, w, join_results);
}

static int task_cancel_lua(lua_State *L)
{
    md_task *t = check_task(L);
    bool was_alive = t->state < TASK_DONE;
    if (t == task_of_thread(L) && t->state == TASK_RUNNING) {
        t->cancel_requested = true;
        lua_pushlightuserdata(L, (void *)&cancel_sentinel);
        return lua_error(L);
    }
    task_cancel(t);
    lua_pushboolean(L, was_alive);
    return 1;
}

static int task_status(lua_State *L)
{
    lua_pushstring(L, task_state_names[check_task(L)->state]);
    return 1;
}

static int task_name(lua_State *L)
{
    md_task *t = check_task(L);
    if (!lua_isnoneornil(L, 2)) {
        const char *name = luaL_checkstring(L, 2);
        snprintf(t->name, sizeof t->name, "%s", name);
    }
    lua_pushstring(L, t->name);
    return 1;
}

static int task_tostring(lua_State *L)
{
    md_task *t = check_task(L);
    lua_pushfstring(L, "%s [%s]", t->name, task_state_names[t->state]);
    return 1;
}

static int task_gc(lua_State *L)
{
    md_task *t = check_task(L);
    if (t->results_ref != LUA_NOREF && !t->E->closing) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->results_ref);
        t->results_ref = LUA_NOREF;
    }
    return 0;
}

/* `local t <close> = md.spawn(...)` cancels the task when the scope ends. */
static int task_close(lua_State *L)
{
    md_task *t = check_task(L);
    if (t->state < TASK_DONE && t != task_of_thread(L))
        task_cancel(t);
    return 0;
}

static const luaL_Reg task_methods[] = {
    {"join", task_join},
    {"cancel", task_cancel_lua},
    {"status", task_status},
    {"name", task_name},
    {NULL, NULL},
};

static const luaL_Reg task_meta[] = {
    {"__tostring", task_tostring},
    {"__gc", task_gc},
    {"__close", task_close},
    {NULL, NULL},
};

/* }===== */

/* {===== Lua API: moondog.core ===== */

static int core_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    md_task_spawn(L, 1, lua_gettop(L) - 1);
    return 1;
}

static void sleep_timer_fired(md_loop *loop, md_timer *timer, void *ud)
{
    (void)loop, (void)timer;
    md_wait *w = ud;
    w->timer = NULL; /* the loop frees a timer after its callback */
    md_task_done(w);
}

/* md.sleep returns nothing; md.every's iterator returns the tick number,
 * carried in the op pointer. */
static int push_tick(lua_State *L, void *op)
{
    lua_pushinteger(L, (lua_Integer)(intptr_t)op);
    return 1;
}

static int tick_continue(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    lua_pushinteger(L, (lua_Integer)ctx);
    return 1;
}

/* Sleep until the absolute loop time due (ms); tick > 0 is returned. */
static int sleep_until(lua_State *L, int64_t due, intptr_t tick)
{
    md_engine *E = md_engine_of(L);
    md_task *t = task_of_thread(L);
    if (t && lua_isyieldable(L) && due <= md_loop_now(E->loop)) {
        /* Nothing to wait for: just let the others run. */
        return tick ? lua_yieldk(L, 0, (lua_KContext)tick, tick_continue)
                    : lua_yield(L, 0);
    }
    md_wait *w = md_task_wait(L, (void *)tick, NULL);
    w->timer = md_loop_timer(E->loop, due, sleep_timer_fired, w);
    if (!w->timer) {
        wait_free(w);
        return luaL_error(L, "out of memory");
    }
    return md_task_yield(L, w, tick ? push_tick : NULL);
}

static int core_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s == s, 1, "not a number");
    md_engine *E = md_engine_of(L);
    int64_t ms = s > 0 ? (int64_t)(s * 1000.0 + 0.5) : 0;
    return sleep_until(L, md_loop_now(E->loop) + ms, 0);
}

/* The iterator of md.every; upvalues: start (ms), period (ms), last tick. */
static int every_next(lua_State *L)
{
    md_engine *E = md_engine_of(L);
    int64_t start = lua_tointeger(L, lua_upvalueindex(1));
    int64_t period = lua_tointeger(L, lua_upvalueindex(2));
    int64_t n = lua_tointeger(L, lua_upvalueindex(3)) + 1;
    int64_t now = md_loop_now(E->loop);
    /* Missed ticks are skipped, never bunched: the next tick is the first
     * start + n * period that is not yet past. */
    if (start + n * period < now)
        n = (now - start) / period + 1;
    lua_pushinteger(L, n);
    lua_replace(L, lua_upvalueindex(3));
    return sleep_until(L, start + n * period, (intptr_t)n);
}

/* md.every(s) -> iterator: `for n in md.every(1) do ... end`; the n-th tick
 * is due at start + n * s, whatever the body took. */
static int core_every(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s >= 0.001, 1, "period must be at least 0.001 s");
    md_engine *E = md_engine_of(L);
    lua_pushinteger(L, md_loop_now(E->loop));
    lua_pushinteger(L, (lua_Integer)(s * 1000.0 + 0.5));
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, every_next, 3);
    return 1;
}

static int core_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)md_loop_now(md_engine_of(L)->loop) / 1000.0);
    return 1;
}

static int core_time(lua_State *L)
{
    md_loop *loop = md_engine_of(L)->loop;
    if (md_loop_simulated(loop)) {
        lua_pushnumber(L, (lua_Number)md_loop_wall_ms(loop) / 1000.0);
        return 1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int64_t log_wall_ms(void *ud)
{
    return md_loop_wall_ms(ud);
}

void md_engine_simulate_time(md_engine *E, int64_t wall_ms, int quiet_ms)
{
    md_loop_simulate(E->loop, wall_ms, quiet_ms);
    md_log_set_clock(log_wall_ms, E->loop);
}

/* core.simulate_time(wall_s, quiet_s): simulated time from now on (see
 * loop.h); core.simulated() -> whether time is simulated. */
static int core_simulate_time(lua_State *L)
{
    lua_Number wall = luaL_checknumber(L, 1);
    lua_Number quiet = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, wall >= 0 && wall < 1e12, 1,
                  "wall-clock start must be seconds since 1970");
    luaL_argcheck(L, quiet >= 0 && quiet <= 10, 2, "quiet time must be 0..10 seconds");
    md_engine_simulate_time(md_engine_of(L), (int64_t)(wall * 1000),
                            (int)(quiet * 1000 + 0.5));
    return 0;
}

static int core_simulated(lua_State *L)
{
    lua_pushboolean(L, md_loop_simulated(md_engine_of(L)->loop));
    return 1;
}

static int core_exit(lua_State *L)
{
    md_engine *E = md_engine_of(L);
    int code;
    if (lua_isboolean(L, 1))
        code = lua_toboolean(L, 1) ? 0 : 1;
    else {
        lua_Integer n = luaL_optinteger(L, 1, 0);
        /* A process exit status is 8 bits: 300 would leave as 44. */
        luaL_argcheck(L, n >= 0 && n <= 255, 1, "exit code must be 0..255");
        code = (int)n;
    }
    md_engine_exit(E, code);
    /* Unwind the calling task; shutdown then cancels the others. */
    lua_pushlightuserdata(L, (void *)&exit_sentinel);
    return lua_error(L);
}

/* core.set_shutdown_runner(fn): the function the shutdown phase runs as a
 * task (moondog.shutdown's); nil removes it. */
static int core_set_shutdown_runner(lua_State *L)
{
    md_engine *E = md_engine_of(L);
    if (!lua_isnil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_unref(L, LUA_REGISTRYINDEX, E->stop_runner);
    E->stop_runner = LUA_NOREF;
    if (!lua_isnil(L, 1)) {
        lua_pushvalue(L, 1);
        E->stop_runner = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 0;
}

/* core.stopping() -> true once the shutdown phase has begun. */
static int core_stopping(lua_State *L)
{
    lua_pushboolean(L, md_engine_of(L)->stopping);
    return 1;
}

static int core_current(lua_State *L)
{
    md_task *t = task_of_thread(L);
    if (!t || t->self_ref == LUA_NOREF)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    return 1;
}

/* md.tasks() -> array of unfinished task objects, in spawn order */
static int core_tasks(lua_State *L)
{
    md_engine *E = md_engine_of(L);
    lua_newtable(L);
    int i = 0;
    for (md_task *t = E->all_head; t; t = t->all_next) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/* md.stats() -> what the engine holds now: tasks, timers, watches, holds,
 * Lua memory in KiB. Tests use it to find leaks; people to inspect. */
static int core_stats(lua_State *L)
{
    md_engine *E = md_engine_of(L);
    md_loop_counts c;
    md_loop_get_counts(E->loop, &c);
    int tasks = 0;
    for (md_task *t = E->all_head; t; t = t->all_next)
        tasks++;
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, tasks);
    lua_setfield(L, -2, "tasks");
    lua_pushinteger(L, c.timers - (E->idle_timer != NULL)); /* not the engine's own */
    lua_setfield(L, -2, "timers");
    lua_pushinteger(L, c.watches);
    lua_setfield(L, -2, "watches");
    lua_pushinteger(L, c.holds);
    lua_setfield(L, -2, "holds");
    lua_pushinteger(L, lua_gc(L, LUA_GCCOUNT, 0));
    lua_setfield(L, -2, "lua_kb");
    lua_pushinteger(L, c.flight_waits); /* simulated time (core/loop.c) */
    lua_setfield(L, -2, "sim_flight_waits");
    lua_pushinteger(L, c.flight_giveups);
    lua_setfield(L, -2, "sim_flight_giveups");
    return 1;
}

/* md.watchdog([seconds]) -> previous limit; 0 turns it off */
static int core_watchdog(lua_State *L)
{
    md_engine *E = md_engine_of(L);
    lua_pushnumber(L, (lua_Number)E->watchdog_ms / 1000.0);
    if (!lua_isnoneornil(L, 1)) {
        double s = luaL_checknumber(L, 1);
        luaL_argcheck(L, s >= 0, 1, "must be 0 (off) or a number of seconds");
        E->watchdog_ms = (int64_t)(s * 1000.0);
        if (E->run_depth > 0 || E->watchdog_armed) {
            E->watchdog_armed = E->watchdog_ms > 0;
            E->watchdog_seen = E->resume_seq - 1;
            arm_watchdog(E, E->watchdog_ms > 0 ? watchdog_slice(E) : 0);
        }
    }
    return 1;
}

/* {===== signals for Lua ===== */

static void on_hup(md_loop *loop, void *ud)
{
    (void)loop;
    md_engine *E = ud;
    sig_waiter *list = E->hup_waits;
    E->hup_waits = NULL;
    if (!list)
        md_log(MD_LOG_WARN, "SIGHUP received, but nothing waits for it (no site script "
                            "to reload); ignored");
    for (sig_waiter *s = list; s; s = s->next) {
        s->listed = false;
        md_task_done(s->wait);
    }
}

static int sig_results(lua_State *L, void *op)
{
    free(op);
    lua_pushliteral(L, "HUP");
    return 1;
}

static void sig_cancel(void *op)
{
    sig_waiter *s = op;
    if (s->listed) {
        for (sig_waiter **p = &s->E->hup_waits; *p; p = &(*p)->next) {
            if (*p == s) {
                *p = s->next;
                break;
            }
        }
    }
    free(s);
}

/* core.wait_signal("HUP") -> "HUP" when the next SIGHUP arrives. */
static int core_wait_signal(lua_State *L)
{
    static const char *const names[] = {"HUP", NULL};
    luaL_checkoption(L, 1, NULL, names);
    md_engine *E = md_engine_of(L);
    md_task_check(L);
    if (!E->hup_routed) {
        int rc = md_loop_signal(E->loop, SIGHUP, on_hup, E, NULL);
        if (rc < 0)
            return luaL_error(L, "cannot catch SIGHUP: %s", strerror(-rc));
        E->hup_routed = true;
    }
    sig_waiter *s = calloc(1, sizeof *s);
    if (!s)
        return luaL_error(L, "out of memory");
    s->E = E;
    s->wait = md_task_wait(L, s, sig_cancel);
    s->listed = true;
    s->next = E->hup_waits;
    E->hup_waits = s;
    return md_task_yield(L, s->wait, sig_results);
}

/* }===== */

/* core.can_wait() -> whether an I/O call may wait here: false in a __gc
 * handler, a sort comparator, a __close run while an error unwinds, a plain
 * coroutine. A close that would flush first skips the flush then. */
static int core_can_wait(lua_State *L)
{
    lua_pushboolean(L, wait_refusal(L) == NULL);
    return 1;
}

static const luaL_Reg core_funcs[] = {
    {"wait_signal", core_wait_signal},
    {"can_wait", core_can_wait},
    {"spawn", core_spawn},
    {"sleep", core_sleep},
    {"every", core_every},
    {"now", core_now},
    {"time", core_time},
    {"exit", core_exit},
    {"set_shutdown_runner", core_set_shutdown_runner},
    {"stopping", core_stopping},
    {"current", core_current},
    {"tasks", core_tasks},
    {"watchdog", core_watchdog},
    {"stats", core_stats},
    {"simulate_time", core_simulate_time},
    {"simulated", core_simulated},
    {NULL, NULL},
};

int luaopen_moondog_core(lua_State *L)
{
    if (luaL_newmetatable(L, TASK_MT)) {
        luaL_setfuncs(L, task_meta, 0);
        luaL_newlib(L, task_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, core_funcs);
    lua_getfield(L, LUA_REGISTRYINDEX, "moondog.home");
    lua_setfield(L, -2, "home");
    lua_pushliteral(L, MD_VERSION);
    lua_setfield(L, -2, "version");
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    lua_pushlstring(L, exe, n > 0 ? (size_t)n : 0);
    lua_setfield(L, -2, "exe");
    return 1;
}

/* }===== */

/* {===== memory after a burst =====
 *
 * A burst of work (a datalogger's records sent at once, a reconnect's
 * backlog, a site reload) leaves memory behind once it is over: Lua garbage,
 * which the generational collector frees only when later allocations start
 * a collection (an idle engine allocates nothing, so it stays), and free
 * holes in glibc's heap, which free() gives back to the system only from the
 * top. Measured on the Growatt proxy after 3000 records sent at once (see
 * docs/growatt.md): a heap of 2.3 to 5.4 MB resident where 0.85 MB was
 * before the burst, with 0.57 MB of Lua objects still alive.
 *
 * So once no task has run for IDLE_MS, the engine collects the Lua heap in
 * full if it grew by more than a quarter since the last such collection,
 * then hands glibc's free pages back (malloc_trim(0) also releases whole
 * free pages inside the heap, not only at its top). The check is a one-shot
 * timer armed by the first batch of resumes after it fired: an idle engine
 * never wakes up for it, a busy one looks once per IDLE_MS. It does not keep
 * the loop alive, is not counted in md.stats(), and is off under simulated
 * time (it would add jumps to the virtual clock).
 */
#define IDLE_MS 1000

static void on_idle(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_engine *E = ud;
    E->idle_timer = NULL;
    if (E->pass != E->idle_pass) { /* tasks ran meanwhile: look again later */
        arm_idle(E);
        return;
    }
    size_t kb = (size_t)lua_gc(E->L, LUA_GCCOUNT, 0);
    if (kb > E->idle_lua_kb + E->idle_lua_kb / 4 + 64) {
        lua_gc(E->L, LUA_GCCOLLECT, 0);
        E->idle_lua_kb = (size_t)lua_gc(E->L, LUA_GCCOUNT, 0);
    }
    malloc_trim(0);
}

static void arm_idle(md_engine *E)
{
    if (E->closing || md_loop_simulated(E->loop))
        return;
    E->idle_pass = E->pass;
    E->idle_timer = md_loop_timer(E->loop, md_loop_now(E->loop) + IDLE_MS, on_idle, E);
    if (E->idle_timer)
        md_loop_timer_keepalive(E->loop, E->idle_timer, false);
}

/* }===== */

/* {===== engine life cycle ===== */

static void *engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud, (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

static int engine_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    md_log(MD_LOG_ERROR, "unrecoverable Lua error: %s", msg ? msg : "(not a string)");
    abort();
}

/* Protected part of begin_stop: the runner as a task. */
static int spawn_stop_task(lua_State *L)
{
    md_engine *E = md_engine_of(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, E->stop_runner);
    md_task_spawn(L, -1, 0);
    md_task *t = lua_touserdata(L, -1);
    snprintf(t->name, sizeof t->name, "shutdown");
    E->stop_task = t;
    return 0;
}

/* A stop request: the shutdown phase, once (see the opening comment).
 * signo: the signal that asked for it, 0 for md.exit. */
static void begin_stop(md_engine *E, int code, int signo)
{
    const char *sig = signo && sigabbrev_np(signo) ? sigabbrev_np(signo) : "signal";
    if (E->stopping) {
        if (signo && E->stop_task) {
            md_log(MD_LOG_WARN,
                   "SIG%s received again during shutdown: stopping at once, without "
                   "waiting for the shutdown handlers",
                   sig);
            E->stop_task = NULL;
            md_loop_stop(E->loop);
        } else if (!signo) {
            E->exit_code = code; /* md.exit in a shutdown handler */
        }
        return;
    }
    E->stopping = true;
    E->exit_code = code;
    if (signo)
        md_log(MD_LOG_INFO, "SIG%s received, shutting down", sig);
    md_sdnotify("STOPPING=1");
    if (E->stop_runner == LUA_NOREF || E->closing) {
        md_loop_stop(E->loop);
        return;
    }
    lua_State *L = E->L;
    lua_pushcfunction(L, spawn_stop_task);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        md_log(MD_LOG_ERROR, "cannot run the shutdown handlers: %s",
               lua_tostring(L, -1) ? lua_tostring(L, -1) : "(not a string)");
        lua_pop(L, 1);
        E->stop_task = NULL;
        md_loop_stop(E->loop);
    }
}

static void on_sigterm(md_loop *loop, void *ud)
{
    (void)loop;
    md_engine *E = ud;
    begin_stop(E, E->exit_code, SIGTERM);
}

static void on_sigint(md_loop *loop, void *ud)
{
    md_engine *E = ud;
    (void)loop;
    if (E->on_interrupt)
        E->on_interrupt(E, E->on_interrupt_ud);
    else
        begin_stop(E, E->exit_code, SIGINT);
}

void md_engine_on_interrupt(md_engine *E, void (*fn)(md_engine *E, void *ud), void *ud)
{
    E->on_interrupt = fn;
    E->on_interrupt_ud = ud;
}

void md_engine_on_main_done(md_engine *E, void (*fn)(md_engine *E, bool ok, void *ud),
                            void *ud)
{
    E->on_main_done = fn;
    E->on_main_done_ud = ud;
}

/* package.path: the moondog library first, then Lua's defaults. */
static void set_package_path(lua_State *L, const char *home)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", home, home,
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    lua_pushstring(L, home);
    lua_setfield(L, LUA_REGISTRYINDEX, "moondog.home");
}

static void preload(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

md_engine *md_engine_new(const char *home, char *err, size_t errlen)
{
    md_engine *E = calloc(1, sizeof *E);
    if (!E) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    E->loop = md_loop_new();
    if (!E->loop) {
        snprintf(err, errlen, "cannot create the event loop: %s", strerror(errno));
        free(E);
        return NULL;
    }
    md_loop_set_log(E->loop, md_log_text);
    E->stop_runner = LUA_NOREF;
    E->L = lua_newstate(engine_alloc, E);
    if (!E->L) {
        snprintf(err, errlen, "cannot create the Lua state: out of memory");
        md_loop_free(E->loop);
        free(E);
        return NULL;
    }
    /* New threads copy the main thread's extra space: it must say "no task". */
    *(md_task **)lua_getextraspace(E->L) = NULL;
    lua_atpanic(E->L, engine_panic);
    lua_gc(E->L, LUA_GCGEN, 0, 0);
    luaL_openlibs(E->L);
    set_package_path(E->L, home);
    preload(E->L, "moondog.core", luaopen_moondog_core);
    preload(E->L, "moondog.log", luaopen_moondog_log);
    preload(E->L, "moondog.err", luaopen_moondog_err);
    preload(E->L, "moondog.modbus.core", luaopen_moondog_modbus_core);
    preload(E->L, "moondog.modbus.server_core", luaopen_moondog_modbus_server_core);
    preload(E->L, "moondog.modbus.codec", luaopen_moondog_modbus_codec);
    preload(E->L, "moondog.attach", luaopen_moondog_attach);
    preload(E->L, "moondog.mqtt.core", luaopen_moondog_mqtt_core);
    preload(E->L, "moondog.rct.codec", luaopen_moondog_rct_codec);
    preload(E->L, "moondog.growatt.core", luaopen_moondog_growatt_core);
    preload(E->L, "moondog.jsonfmt", luaopen_moondog_jsonfmt);
    preload(E->L, "moondog.stream", luaopen_moondog_stream);
    preload(E->L, "moondog.event", luaopen_moondog_event);
    preload(E->L, "moondog.signal", luaopen_moondog_signal);
    preload(E->L, "moondog.sunspec.codec", luaopen_moondog_sunspec_codec);
    preload(E->L, "moondog.process.core", luaopen_moondog_process_core);
    preload(E->L, "moondog.service.core", luaopen_moondog_service_core);

    signal_engine = E;
    signal(SIGPIPE, SIG_IGN); /* a peer closing a socket is an error, not a death */
    md_loop_signal(E->loop, SIGINT, on_sigint, E, interrupt_running_lua);
    md_loop_signal(E->loop, SIGTERM, on_sigterm, E, interrupt_running_lua);
    setup_watchdog(E);
    return E;
}

lua_State *md_engine_lua(md_engine *E)
{
    return E->L;
}

md_loop *md_engine_loop(md_engine *E)
{
    return E->loop;
}

bool md_engine_stopping(md_engine *E)
{
    return E->stopping;
}

bool md_engine_closing(md_engine *E)
{
    return E->closing;
}

void md_engine_exit(md_engine *E, int code)
{
    begin_stop(E, code, 0);
}

int md_engine_run(md_engine *E)
{
    md_loop_run(E->loop);
    return E->exit_code;
}

void md_engine_free(md_engine *E)
{
    if (!E)
        return;
    E->stop_task = NULL; /* cancelled below like the others */
    /* Cancel in spawn order so that to-be-closed variables run while the
     * loop and every module still exist. */
    for (md_task *t = E->all_head, *next; t; t = next) {
        next = t->all_next;
        task_cancel(t);
    }
    E->closing = true;
    if (E->idle_timer)
        md_loop_timer_cancel(E->loop, E->idle_timer);
    E->idle_timer = NULL;
    /* No child outlives its engine; stopped before lua_close so that the
     * finalizers see them gone (a broker's folder is removed then). */
    md_process_kill_all(3000);
    lua_close(E->L);
    if (E->has_watchdog)
        timer_delete(E->watchdog);
    signal(WATCHDOG_SIGNAL, SIG_IGN);
    if (signal_engine == E)
        signal_engine = NULL;
    md_log_set_clock(NULL, NULL); /* the simulated clock goes with the loop */
    md_loop_free(E->loop);
    free(E);
}

/* }===== */
