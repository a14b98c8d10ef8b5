/*
 * event_lua.c - moondog.event: one-shot events that tasks wait on.
 *
 *   local event = require "moondog.event"
 *   local ev = event.new()
 *   -- in one task:
 *   local a, b = ev:wait([timeout [, what]])  -- the values given to set, or
 *                                             -- nil, "<what> timed out after N s",
 * "timeout"
 *   -- in another:
 *   ev:set(a, b)     --> true; false if it was set before (the values stay the first
 * ones) ev:is_set()
 *   ev:clear()       -- not set again, its values dropped, for the next wait
 *                    -- (a task woken once per record reuses one event)
 *
 * Why: a protocol client with several requests in flight on one connection
 * (moondog.rct) has one task reading answers and many tasks waiting each
 * for its own. The reader hands each answer to the waiting request's
 * event. Every waiter is woken by set; a wait after set returns at once.
 *
 * Design: THE async pattern of engine.h. Each waiting task has a small
 * record, a userdata on its own stack, linked into the event; the engine's
 * cancel callback (timeout, cancelled task) unlinks it, and set() unlinks
 * and wakes the rest. A waiting task holds the event on its stack, so the
 * event cannot be collected under a wait. The values live in the event's
 * user value. A wait without a timeout does not keep the engine running.
 */
#include <stdbool.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"

#define EVENT_MT "moondog.event"

typedef struct waiter waiter;

typedef struct event {
    bool set;
    waiter *waiters;
} event;

struct waiter {
    md_wait *wait;
    event *ev;
    waiter *prev, *next;
};

static void unlink_waiter(waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else if (w->ev->waiters == w)
        w->ev->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* Push the values stored by set; idx is the event. */
static int push_values(lua_State *L, int idx)
{
    if (lua_getiuservalue(L, idx, 1) == LUA_TNIL) { /* set without values */
        lua_pop(L, 1);
        return 0;
    }
    int t = lua_gettop(L); /* stack: ..., values */
    lua_getfield(L, t, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many values");
    for (int i = 1; i <= n; i++)
        lua_rawgeti(L, t, i);
    return n;
}

static int wait_results(lua_State *L, void *op)
{
    (void)op;
    return push_values(L, 1); /* the event, argument 1 of ev:wait */
}

static void wait_cancel(void *op)
{
    waiter *w = op;
    unlink_waiter(w);
    w->wait = NULL;
}

/* ev:wait([timeout [, what]]) -> values | nil, err, "timeout" */
static int event_wait(lua_State *L)
{
    event *ev = luaL_checkudata(L, 1, EVENT_MT);
    lua_Number s = luaL_optnumber(L, 2, -1);
    const char *what = luaL_optstring(L, 3, "waiting for an event");
    luaL_argcheck(L, lua_isnoneornil(L, 2) || (s >= 0 && s <= 1e6), 2,
                  "timeout must be 0..1e6 seconds");
    lua_settop(L, 3);
    if (ev->set)
        return push_values(L, 1);
    md_task_check(L);
    waiter *w = lua_newuserdatauv(L, sizeof *w, 0); /* lives on this task's stack */
    *w = (waiter){.ev = ev};
    w->wait = md_task_wait(L, w, wait_cancel);
    w->next = ev->waiters;
    if (ev->waiters)
        ev->waiters->prev = w;
    ev->waiters = w;
    if (s >= 0)
        md_wait_timeout(w->wait, (int64_t)(s * 1000 + 0.5), what);
    return md_task_yield(L, w->wait, wait_results);
}

/* ev:set(...) -> true, or false when already set */
static int event_set(lua_State *L)
{
    event *ev = luaL_checkudata(L, 1, EVENT_MT);
    if (ev->set) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int n = lua_gettop(L) - 1;
    if (n > 0) { /* no values: no table (a wake-up per record) */
        lua_createtable(L, n, 1);
        for (int i = 1; i <= n; i++) {
            lua_pushvalue(L, i + 1);
            lua_rawseti(L, -2, i);
        }
        lua_pushinteger(L, n);
        lua_setfield(L, -2, "n");
        lua_setiuservalue(L, 1, 1);
    }
    ev->set = true;
    while (ev->waiters) {
        waiter *w = ev->waiters;
        unlink_waiter(w);
        md_wait *wait = w->wait;
        w->wait = NULL;
        md_task_done(wait);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int event_is_set(lua_State *L)
{
    event *ev = luaL_checkudata(L, 1, EVENT_MT);
    lua_pushboolean(L, ev->set);
    return 1;
}

/* ev:clear(): not set any more, its values dropped. An event that is not
 * set is left as it is (with its waiters). */
static int event_clear(lua_State *L)
{
    event *ev = luaL_checkudata(L, 1, EVENT_MT);
    if (ev->set) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, 1);
        ev->set = false;
    }
    return 0;
}

/* event.new() -> an event that is not set */
static int event_new(lua_State *L)
{
    event *ev = lua_newuserdatauv(L, sizeof *ev, 1);
    memset(ev, 0, sizeof *ev);
    luaL_setmetatable(L, EVENT_MT);
    return 1;
}

int luaopen_moondog_event(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"wait", event_wait},   {"set", event_set}, {"is_set", event_is_set},
        {"clear", event_clear}, {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {{"new", event_new}, {NULL, NULL}};
    luaL_newmetatable(L, EVENT_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
