/*
 * process_lua.c - moondog.process.core: child processes for moondog.process
 * (core/process.c does the work).
 *
 *   local child = core.spawn("mosquitto -c conf >log 2>&1")   -- or nil, msg, code
 *   child:pid(); child:poll()   -- nil while it runs; "exit", code | "signal", signo
 *   child:kill("TERM")           -- true, or nil, msg, code ("exited")
 *
 * Collecting a child object never waits and never kills: the child keeps
 * running (core/process.c reaps it when it exits) until the engine exits,
 * which stops every child still running.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "err_lua.h"
#include "loop.h"
#include "process.h"

#define CHILD_MT "moondog.process.child"

typedef struct lchild {
    int pid; /* 0 once forgotten */
} lchild;

static bool sigchld_routed;

static void on_sigchld(md_loop *loop, void *ud)
{
    (void)loop, (void)ud;
    md_process_reap();
}

static lchild *check_child(lua_State *L)
{
    lchild *c = luaL_checkudata(L, 1, CHILD_MT);
    if (!c->pid)
        luaL_error(L, "attempt to use a forgotten child process");
    return c;
}

static int l_spawn(lua_State *L)
{
    const char *cmd = luaL_checkstring(L, 1);
    lchild *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->pid = 0;
    luaL_setmetatable(L, CHILD_MT);
    if (!sigchld_routed) {
        md_loop_signal(md_engine_loop(md_engine_of(L)), SIGCHLD, on_sigchld, NULL, NULL);
        sigchld_routed = true;
    }
    int pid, rc = md_process_spawn(cmd, &pid);
    if (rc < 0) {
        return md_err_pusht(L, "spawn", "cannot start a process for '%s': %s", cmd,
                            md_strerror(rc));
    }
    c->pid = pid;
    return 1;
}

static int child_pid(lua_State *L)
{
    lua_pushinteger(L, check_child(L)->pid);
    return 1;
}

static int child_poll(lua_State *L)
{
    lchild *c = check_child(L);
    int status = 0, rc = md_process_poll(c->pid, &status);
    if (rc <= 0)
        return 0;
    if (WIFSIGNALED(status)) {
        lua_pushliteral(L, "signal");
        lua_pushinteger(L, WTERMSIG(status));
    } else {
        lua_pushliteral(L, "exit");
        lua_pushinteger(L, WEXITSTATUS(status));
    }
    return 2;
}

static int child_kill(lua_State *L)
{
    lchild *c = check_child(L);
    static const char *const names[] = {"TERM", "KILL", "INT", "HUP",
                                        "STOP", "CONT", NULL};
    static const int signos[] = {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGSTOP, SIGCONT};
    int sig = signos[luaL_checkoption(L, 2, "TERM", names)];
    int rc = md_process_signal(c->pid, sig);
    if (rc < 0) {
        return md_err_pusht(L, "exited", "process %d has exited already", c->pid);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* __gc: let go; the child keeps running and is reaped when it exits. */
static int child_gc(lua_State *L)
{
    lchild *c = luaL_checkudata(L, 1, CHILD_MT);
    if (c->pid)
        md_process_forget(c->pid);
    c->pid = 0;
    return 0;
}

int luaopen_moondog_process_core(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"pid", child_pid}, {"poll", child_poll}, {"kill", child_kill},
        {"__gc", child_gc}, {NULL, NULL},
    };
    luaL_newmetatable(L, CHILD_MT);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {{"spawn", l_spawn}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
