/*
 * signal_lua.c - moondog.signal: tasks that wait for a signal the user
 * sends (SIGUSR1, SIGUSR2), e.g. "write your counters to the log".
 *
 *   local signal = require "moondog.signal"
 *   while true do
 *     signal.wait("USR1")      -- in a task: until the next SIGUSR1
 *     ...
 *   end
 *
 * Design: the loop owns signal delivery (md_loop_signal: the handler only
 * records the signal and writes to a self-pipe; the loop calls on_signal on
 * its own thread). Each wait routes the signal to this module; from the
 * first one on, the signal no longer ends the process. Every task waiting
 * when it arrives is woken; a signal that comes while nobody waits is
 * dropped (the waiters loop, so at most one delivery is merged). Waiters
 * follow the async pattern of engine.h, as event_lua.c does: a small record
 * on the waiting task's stack, linked into the signal's list, unlinked by
 * the engine's cancel callback (a cancelled task) or by the delivery. A wait
 * does not keep the engine running. Signals are per process, so the state
 * is static; only the loop thread touches it.
 */
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "loop.h"

typedef struct waiter waiter;

typedef struct sigstate {
    const char *name;
    int signo;
    waiter *waiters;
} sigstate;

struct waiter {
    md_wait *wait;
    sigstate *sig;
    waiter *prev, *next;
};

static sigstate signals[] = {
    {.name = "USR1", .signo = SIGUSR1},
    {.name = "USR2", .signo = SIGUSR2},
};

static void unlink_waiter(waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else if (w->sig->waiters == w)
        w->sig->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void wait_cancel(void *op)
{
    waiter *w = op;
    unlink_waiter(w);
    w->wait = NULL;
}

static int wait_results(lua_State *L, void *op)
{
    (void)op;
    lua_pushvalue(L, 1); /* the signal's name, argument 1 of signal.wait */
    return 1;
}

/* On the loop thread: wake every waiter of the signal. */
static void on_signal(md_loop *loop, void *ud)
{
    (void)loop;
    sigstate *s = ud;
    while (s->waiters) {
        waiter *w = s->waiters;
        unlink_waiter(w);
        md_wait *wait = w->wait;
        w->wait = NULL;
        md_task_done(wait);
    }
}

/* signal.wait(name) -> name, once the signal came ("USR1" or "USR2") */
static int signal_wait(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    sigstate *s = NULL;
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (strcmp(signals[i].name, name) == 0)
            s = &signals[i];
    if (!s)
        return luaL_argerror(L, 1, "expected \"USR1\" or \"USR2\"");
    lua_settop(L, 1);
    md_task_check(L);
    /* Route it on every wait: cheap, and right for a new engine's loop too. */
    int rc =
        md_loop_signal(md_engine_loop(md_engine_of(L)), s->signo, on_signal, s, NULL);
    if (rc < 0)
        return luaL_error(L, "cannot route SIG%s to the loop (error %d)", s->name, -rc);
    waiter *w = lua_newuserdatauv(L, sizeof *w, 0); /* lives on this task's stack */
    *w = (waiter){.sig = s};
    w->wait = md_task_wait(L, w, wait_cancel);
    w->next = s->waiters;
    if (s->waiters)
        s->waiters->prev = w;
    s->waiters = w;
    return md_task_yield(L, w->wait, wait_results);
}

int luaopen_moondog_signal(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"wait", signal_wait}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
