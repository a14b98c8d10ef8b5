/*
 * repl.c - `moondog repl`: interactive Lua on the local terminal, inside the
 * engine's loop.
 *
 * Concern. The terminal side of the REPL: reading lines, history, tab
 * completion, Ctrl-C and Ctrl-D. What a line means (compile, run, print the
 * results) is the Lua module moondog.repl; this file hands it lines.
 *
 * Design. The REPL never blocks the loop, so background tasks (md.every,
 * servers, attach sessions) keep running while the user sits at the prompt:
 *  - On a terminal, libedit's readline-compatible callback interface does the
 *    line editing: stdin is an md_loop watch, each readable event feeds
 *    rl_callback_read_char(), and a finished line arrives in on_line().
 *    libedit (BSD) rather than GNU readline (GPL) keeps the binary MIT.
 *  - Without a terminal (piped input, a file) there is no line editing, no
 *    banner and no prompt: lines are read from fd 0 and split on '\n'.
 *  - Each line runs as a new task calling session:eval_line(line), so a line
 *    may call md.sleep or any I/O primitive. Input stops while it runs. The
 *    task's body holds a to-be-closed guard whose __close calls line_done(),
 *    which runs however the task ends: returned, raised, or cancelled while
 *    waiting. The prompt comes back one loop iteration later (see
 *    line_finished for why).
 *  - Ctrl-C reaches us through md_engine_on_interrupt. A line waiting in a
 *    primitive is cancelled; a line busy in pure Lua is stopped by the
 *    engine's signal hook ("interrupted by INT"), which eval_line reports.
 *    While editing, Ctrl-C drops the line and any pending multi-line
 *    statement. Ctrl-C never leaves the REPL; Ctrl-D on an empty line does.
 *
 * Threads: everything runs on the loop thread.
 *
 * Ownership. The REPL state is one static struct: a process has one terminal,
 * and libedit's callbacks carry no user data. It holds registry refs to the
 * Lua session and to the task wrapper for the whole run, and to the running
 * line's task only while that line runs. md_repl_run drops all of them
 * before it returns. Completion candidates are malloc'd here and freed on
 * the next completion or at exit; libedit frees the copies it is given.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "repl.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lua.h>

#include "lineedit.h"

#ifndef MD_VERSION
#define MD_VERSION "0.0.0"
#endif

#define READ_CHUNK 4096

/* Runs each line as a task: the guard's __close fires however the task ends. */
static const char runner_src[] =
    "local sess, line, done = ...\n"
    "local guard <close> = setmetatable({}, {__close = done})\n"
    "sess:eval_line(line)\n";

typedef enum {
    R_READING,  /* waiting for a line: prompt shown, or fd 0 watched */
    R_RUNNING,  /* a line's task is alive; input paused */
    R_SETTLING, /* the line ended; input resumes on the next iteration */
    R_DONE,     /* leaving */
} repl_state;

static struct {
    md_engine *E;
    lua_State *L;
    md_loop *loop;
    bool active;     /* between setup and teardown of md_repl_run */
    bool tty;        /* libedit line editing on a terminal */
    bool handler_on; /* libedit's callback handler is installed */
    bool eof;        /* pipe mode: fd 0 reached its end */
    repl_state state;
    md_watch *watch; /* fd 0; NULL when epoll cannot watch it (a regular file) */
    int sess_ref, runner_ref, task_ref;
    lua_Integer line_id;
    char *buf; /* pipe mode: bytes read but not yet evaluated */
    size_t len, cap;
} R;

static void resume_input(md_loop *loop, void *ud);
static void pump_pipe(void);
static void line_finished(void);

/* {===== Lua side ===== */

/* session.write: results and errors go to stdout. After md.exit() the line
 * unwinds through eval_line, which would print the exit's internal error
 * object; the engine is leaving, so nothing more is written. */
static int repl_write(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    md_engine *E = md_engine_of(L);
    if (!md_loop_stopped(md_engine_loop(E)) && !md_engine_stopping(E)) {
        fwrite(s, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

/* stack: - ; builds the session and the runner, refs both. */
static int open_session(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "moondog.repl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "session"); /* stack: repl, session */
    lua_createtable(L, 0, 3);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "env");
    lua_pushcfunction(L, repl_write);
    lua_setfield(L, -2, "write");
    lua_pushliteral(L, "=stdin");
    lua_setfield(L, -2, "chunkname");
    lua_call(L, 1, 1); /* stack: repl, sess */
    if (luaL_loadbuffer(L, runner_src, sizeof runner_src - 1, "=repl") != LUA_OK)
        return lua_error(L);
    R.runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    R.sess_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Call a method of the session in protected mode: sess:name(arg or nothing).
 * Leaves one result (or the error message) on the stack; returns the status. */
static int call_session(const char *name, const char *arg)
{
    lua_State *L = R.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, R.sess_ref);
    lua_getfield(L, -1, name);
    lua_insert(L, -2); /* stack: method, sess */
    if (arg)
        lua_pushstring(L, arg);
    return lua_pcall(L, arg ? 2 : 1, 1, 0);
}

/* The task of a line calls this from its guard's __close; upvalue 1 is the
 * line's id, so that a stale call never ends a later line. */
static int line_done(lua_State *L)
{
    lua_Integer id = lua_tointeger(L, lua_upvalueindex(1));
    if (R.active && R.state == R_RUNNING && id == R.line_id)
        line_finished();
    return 0;
}

/* stack: line -> task. Spawns the line's task and refs it. */
static int spawn_line(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, R.runner_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, R.sess_ref);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, R.line_id);
    lua_pushcclosure(L, line_done, 1); /* stack: line, runner, sess, line, done */
    md_task_spawn(L, 2, 3);            /* stack: line, task */
    lua_getfield(L, -1, "name");
    lua_pushvalue(L, -2);
    lua_pushliteral(L, "repl line");
    lua_call(L, 2, 0);
    R.task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* }===== */

/* {===== running lines ===== */

/* The prompt of the session: "> " or ">> ". */
static void current_prompt(char *buf, size_t len)
{
    snprintf(buf, len, "> ");
    if (call_session("prompt", NULL) == LUA_OK && lua_type(R.L, -1) == LUA_TSTRING)
        snprintf(buf, len, "%s", lua_tostring(R.L, -1));
    lua_pop(R.L, 1);
}

static void pause_input(void)
{
    if (R.watch)
        md_loop_watch_set(R.loop, R.watch, 0);
}

static void leave(int code)
{
    R.state = R_DONE;
    pause_input();
    md_engine_exit(R.E, code);
}

static void start_line(const char *line, size_t len)
{
    lua_State *L = R.L;
    R.line_id++;
    lua_pushcfunction(L, spawn_line);
    lua_pushlstring(L, line, len);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "moondog: cannot run the line: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        /* Deferred: pump_pipe has not consumed this line yet. */
        R.state = R_SETTLING;
        if (md_loop_defer(R.loop, resume_input, NULL) < 0)
            leave(1);
        return;
    }
    R.state = R_RUNNING;
    pause_input();
}

/*
 * The line's task ended. The prompt comes back on the next loop iteration,
 * not now: when Ctrl-C stops a line busy in Lua, the engine's signal hook
 * ends the line at once, but the SIGINT itself reaches on_interrupt later in
 * this same iteration. By then we are R_SETTLING, so that Ctrl-C is known to
 * be spent and does not also wipe the fresh prompt.
 */
static void line_finished(void)
{
    luaL_unref(R.L, LUA_REGISTRYINDEX, R.task_ref);
    R.task_ref = LUA_NOREF;
    R.state = R_SETTLING;
    if (md_loop_stopped(R.loop) || md_engine_stopping(R.E))
        return; /* md.exit() in the line: leaving (shutdown handlers first) */
    if (md_loop_defer(R.loop, resume_input, NULL) < 0)
        resume_input(R.loop, NULL);
}

static void on_line(char *line);

static void show_prompt(void)
{
    char prompt[64];
    current_prompt(prompt, sizeof prompt);
    md_lineedit_prompt(prompt, on_line);
    R.handler_on = true;
}

static void resume_input(md_loop *loop, void *ud)
{
    (void)loop, (void)ud;
    if (!R.active || R.state != R_SETTLING)
        return;
    R.state = R_READING;
    if (R.tty) {
        show_prompt();
        md_loop_watch_set(R.loop, R.watch, MD_LOOP_READ);
    } else {
        pump_pipe();
    }
}

/* }===== */

/* {===== terminal: libedit ===== */

/*
 * Completion runs Lua right here, inside the stdin watch, and does not go
 * through a task: libedit needs the candidates before rl_callback_read_char
 * returns. session:complete only reads tables (and __complete lists), so it
 * is short and never waits; protected mode keeps any error away from libedit.
 */
static void load_matches(const char *text)
{
    lua_State *L = R.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, R.sess_ref);
    lua_getfield(L, -1, "complete_lines");
    lua_insert(L, -2);
    lua_pushstring(L, text);
    size_t n;
    if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_tolstring(L, -1, &n))
        md_lineedit_offer(lua_tostring(L, -1), n);
    lua_pop(L, 1);
}

/* false: no libedit, lines are read plainly */
static bool setup_editline(void)
{
    char err[256];
    if (md_lineedit_setup("moondog", ".moondog_history", load_matches, err, sizeof err) ==
        0)
        return true;
    fprintf(stderr, "moondog: no line editing: %s\n", err);
    return false;
}

/* A line from libedit (malloc'd), or NULL for Ctrl-D on an empty line. */
static void on_line(char *line)
{
    md_lineedit_unprompt();
    R.handler_on = false;
    if (!line) {
        fputs("\n", stdout);
        fflush(stdout);
        leave(0);
        return;
    }
    md_lineedit_history_add(line);
    start_line(line, strlen(line));
    free(line);
}

/* libedit reads nothing from a terminal that hung up and calls no handler,
 * so a level-triggered watch would spin: check for the hang-up first. */
static bool tty_hung_up(void)
{
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

/* }===== */

/* {===== pipe: plain lines from fd 0 ===== */

static void read_some(void)
{
    if (R.cap - R.len < READ_CHUNK) {
        size_t cap = R.cap ? R.cap * 2 : READ_CHUNK * 2;
        char *buf = realloc(R.buf, cap);
        if (!buf) {
            R.eof = true;
            return;
        }
        R.buf = buf;
        R.cap = cap;
    }
    ssize_t n = read(STDIN_FILENO, R.buf + R.len, READ_CHUNK);
    if (n > 0)
        R.len += (size_t)n;
    else if (n == 0 || (errno != EINTR && errno != EAGAIN))
        R.eof = true;
}

static void on_read_deferred(md_loop *loop, void *ud)
{
    (void)loop, (void)ud;
    if (!R.active || R.state != R_READING)
        return;
    read_some();
    pump_pipe();
}

/* Evaluate the next complete line, or ask for more input, or leave at EOF. */
static void pump_pipe(void)
{
    if (R.state != R_READING)
        return;
    char *nl = R.len ? memchr(R.buf, '\n', R.len) : NULL;
    if (nl || (R.eof && R.len)) {
        size_t n = nl ? (size_t)(nl - R.buf) : R.len;
        size_t used = nl ? n + 1 : n;
        start_line(R.buf, n);
        memmove(R.buf, R.buf + used, R.len - used);
        R.len -= used;
    } else if (R.eof) {
        leave(0);
    } else if (R.watch) {
        md_loop_watch_set(R.loop, R.watch, MD_LOOP_READ);
    } else if (md_loop_defer(R.loop, on_read_deferred, NULL) < 0) {
        leave(1);
    }
}

/* }===== */

static void on_stdin(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)fd, (void)events, (void)ud;
    if (R.state != R_READING)
        return;
    if (!R.tty) {
        read_some();
        pump_pipe();
    } else if (tty_hung_up()) {
        leave(0);
    } else {
        md_lineedit_read_char();
    }
}

/* Ctrl-C, on the loop thread (the engine routes SIGINT here). */
static void on_interrupt(md_engine *E, void *ud)
{
    (void)E, (void)ud;
    lua_State *L = R.L;
    switch (R.state) {
    case R_RUNNING:
        fputs(R.tty ? "\ninterrupted\n" : "interrupted\n", stdout);
        fflush(stdout);
        lua_rawgeti(L, LUA_REGISTRYINDEX, R.task_ref);
        md_task_cancel_at(L, -1);
        /* A task cancelled before its first resume never ran its guard. */
        if (md_task_finished(L, -1) && R.state == R_RUNNING)
            line_finished();
        lua_pop(L, 1);
        break;
    case R_READING:
        call_session("reset", NULL);
        lua_pop(L, 1);
        if (R.tty) {
            md_lineedit_unprompt();
            fputs("^C\n", stdout);
            fflush(stdout);
            show_prompt();
        }
        break;
    default: /* R_SETTLING: the line already took this Ctrl-C */ break;
    }
}

/* The terminal was resized: libedit redraws long lines for the new width. */
static void on_winch(md_loop *loop, void *ud)
{
    (void)loop, (void)ud;
    if (R.active && R.handler_on)
        md_lineedit_resize();
}

static void teardown(void)
{
    lua_State *L = R.L;
    if (R.handler_on)
        md_lineedit_unprompt(); /* restores the terminal */
    R.handler_on = false;
    R.state = R_DONE;
    if (R.task_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, R.task_ref);
        md_task_cancel_at(L, -1);
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, R.task_ref);
    }
    R.active = false;
    md_engine_on_interrupt(R.E, NULL, NULL);
    if (R.watch)
        md_loop_unwatch(R.loop, R.watch);
    md_loop_release(R.loop);
    luaL_unref(L, LUA_REGISTRYINDEX, R.sess_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, R.runner_ref);
    md_lineedit_teardown();
    free(R.buf);
    fflush(stdout);
}

int md_repl_run(md_engine *E)
{
    memset(&R, 0, sizeof R);
    R.E = E;
    R.L = md_engine_lua(E);
    R.loop = md_engine_loop(E);
    R.sess_ref = R.runner_ref = R.task_ref = LUA_NOREF;
    lua_pushcfunction(R.L, open_session);
    if (lua_pcall(R.L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "moondog: cannot start the REPL: %s\n", lua_tostring(R.L, -1));
        lua_pop(R.L, 1);
        return 1;
    }
    R.tty = isatty(STDIN_FILENO);
    R.watch = md_loop_watch(R.loop, STDIN_FILENO, MD_LOOP_READ, on_stdin, NULL);
    if (R.watch)
        md_loop_watch_set(R.loop, R.watch, 0); /* until the first prompt */
    else if (R.tty || errno != EPERM) {
        fprintf(stderr, "moondog: cannot watch stdin: %s\n", strerror(errno));
        luaL_unref(R.L, LUA_REGISTRYINDEX, R.sess_ref);
        luaL_unref(R.L, LUA_REGISTRYINDEX, R.runner_ref);
        return 1;
    }
    /* EPERM: a regular file or /dev/null, always readable: read_some() is
     * then called from deferred calls instead of the watch. */
    R.active = true;
    md_loop_hold(R.loop); /* the REPL keeps the engine up until Ctrl-D */
    md_engine_on_interrupt(E, on_interrupt, NULL);
    if (R.tty && !setup_editline())
        R.tty = false;
    if (R.tty) {
        md_loop_signal(R.loop, SIGWINCH, on_winch, NULL, NULL);
        printf("moondog %s (%s) — md is loaded; Ctrl-D to leave\n", MD_VERSION,
               LUA_RELEASE);
        fflush(stdout);
    }
    R.state = R_SETTLING;
    resume_input(R.loop, NULL);
    int code = md_engine_run(E);
    teardown();
    return code;
}
