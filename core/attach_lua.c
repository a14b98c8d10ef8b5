/*
 * attach_lua.c - moondog.attach: REPL sessions into this engine for
 * `moondog attach` clients, over a unix socket.
 *
 *   local l = md.attach.listen([path])  -- listener, or nil, message, code
 *   l:path()       -- the socket path
 *   l:sessions()   -- number of clients connected through l
 *   l:close()      -- stop listening and remove the socket file
 *   md.attach.site()               -- this engine's site name (--name, script)
 *   md.attach.default_path([site]) -- where the site's engine listens
 *
 * Each engine listens on its own socket, named after its site:
 * $RUNTIME_DIRECTORY/<site>.sock, else $XDG_RUNTIME_DIR/moondog/<site>.sock,
 * else ${TMPDIR:-/tmp}/moondog-<uid>/<site>.sock ($MOONDOG_ATTACH overrides
 * the default). A symbolic link or another user's file at the path is never
 * followed or reused; a stale socket of our own is replaced. A listen that
 * fails is also logged (and printed on stderr when the log goes to a file).
 *
 * One call in a script is enough: the listener stays open until closed or
 * until the engine exits, whether or not the script keeps the object. It
 * does not keep the engine alive; a connected session does. Codes: "in_use"
 * (another engine listens there), "exists" (a file that is not a socket),
 * "unsafe" (the directory is not private to this user, or the path is a
 * symbolic link or another user's file),
 * "io" (anything else).
 *
 * WIRE PROTOCOL. A byte stream of frames, each 1 type byte, a 4-byte
 * big-endian payload length, then the payload (UTF-8 text, no terminator).
 *   client -> engine
 *     'L' line      one line typed by the user, without its newline
 *     'C' text      completion request for the word before the cursor
 *     'I' (empty)   Ctrl-C: cancel the running line, or, when none runs,
 *                   drop the pending multi-line statement; answered by 'P'
 *   engine -> client
 *     'O' text      output: results, errors, print and io.write of the session
 *     'P' prompt    ready for the next line; the payload is the prompt
 *                   ("> ", or ">> " inside a multi-line statement)
 *     'C' list      completion candidates, each followed by '\n'
 * The engine sends 'P' when a session opens and after every line. The client
 * sends 'L' only after a 'P'; an 'L' that arrives while a line runs is
 * answered with an 'O' notice and dropped. Frames from a client may carry at
 * most 1 MiB; a larger one ends the session.
 *
 * Design. Each session has its own moondog.repl session whose env is a proxy
 * table: reads fall through to _G and new globals go to _G, so state
 * persists in the engine, but `print` and `io.write` are the session's own
 * and send 'O' frames (code that names _G.print, io.stdout or io.read still
 * gets the engine's own). Each line runs as a task calling
 * session:eval_line(line); a to-be-closed guard in the task calls
 * line_done() however the task ends, which sends the next 'P'. A busy line
 * blocks the whole engine, as any task does, until the watchdog stops it.
 * Output to a slow client is queued, with a write watch, up to 1 MiB; past
 * that the session is dropped. A client that goes away, even mid-line,
 * closes its session: the line's task is cancelled and one info line logged.
 * The socket, framing and output queue are Lua-free, in attach_server.c
 * (with cmocka tests); this file binds them to REPL sessions.
 *
 * Threads: everything runs on the loop thread.
 *
 * Ownership. Listener and session state live in their userdata, which hold
 * the md_attach_server and md_attach_conn they opened. An open listener and
 * a connected session each anchor their userdata in the registry (the C
 * objects' callbacks point into it), and drop the anchor on close;
 * __gc closes what is still open. A session holds a registry ref to its
 * running line's task while the line runs. The listener lists the sessions
 * it accepted only to count them; closing it detaches them, and they go on
 * until their clients leave.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "attach.h"
#include "attach_server.h"
#include "engine.h"
#include "err_lua.h"
#include "log.h"

#define LISTENER_MT "moondog.attach.listener"
#define SESSION_MT "moondog.attach.session"
#define RUNNER_KEY "moondog.attach.runner"

#define PATH_LEN sizeof(((struct sockaddr_un *)0)->sun_path)

/* Runs each line as a task: the guard's __close fires however the task ends. */
static const char runner_src[] =
    "local sess, line, done = ...\n"
    "local guard <close> = setmetatable({}, {__close = done})\n"
    "sess:eval_line(line)\n";

typedef struct session session;

typedef struct listener {
    md_engine *E;
    md_loop *loop;
    md_attach_server *srv; /* NULL: closed */
    int self_ref;          /* registry anchor while open */
    session *sessions;
    int nsessions;
    char path[PATH_LEN];
} listener;

struct session {
    md_engine *E;
    md_loop *loop;
    md_attach_conn *conn; /* NULL: closed */
    int self_ref;         /* registry anchor while connected */
    int task_ref;         /* the running line's task, or LUA_NOREF */
    lua_Integer line_id;
    unsigned long long id;
    listener *owner; /* NULL once that listener closed */
    session *prev, *next;
};

static unsigned long long last_session_id;

/* {===== sessions: output ===== */

static void session_close(lua_State *L, session *s, const char *why);

/* Send a frame, or queue it for a slow client (attach_server.c). A client
 * that went away or is too slow is dropped: the connection closes itself
 * and on_conn_closed closes the session. */
static void session_send(lua_State *L, session *s, char type, const char *data,
                         size_t len)
{
    (void)L;
    if (s->conn)
        md_attach_conn_send(s->conn, type, data, len);
}

static void send_text(lua_State *L, session *s, const char *text)
{
    session_send(L, s, 'O', text, strlen(text));
}

/* Send 'P' with the prompt of the repl session; idx is the session userdata. */
static void send_prompt(lua_State *L, session *s, int idx)
{
    if (!s->conn)
        return;
    idx = lua_absindex(L, idx);
    const char *prompt = "> ";
    lua_getiuservalue(L, idx, 1); /* stack: sess */
    lua_getfield(L, -1, "prompt");
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
        prompt = lua_tostring(L, -1);
    session_send(L, s, 'P', prompt, strlen(prompt));
    lua_pop(L, 1);
}

/* }===== */

/* {===== sessions: Lua functions of the proxy env ===== */

/* print(...) of the session: to the client, like print would format it. */
static int session_print(lua_State *L)
{
    session *s = lua_touserdata(L, lua_upvalueindex(1));
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    session_send(L, s, 'O', text, len);
    return 0;
}

/* io.write(...) of the session; upvalue 2 is its io table, which it returns
 * like io.write returns the file, so io.write("a"):write("b") works. */
static int session_io_write(lua_State *L)
{
    session *s = lua_touserdata(L, lua_upvalueindex(1));
    int first = lua_rawequal(L, 1, lua_upvalueindex(2)) ? 2 : 1;
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = first; i <= n; i++) {
        size_t len;
        const char *part = luaL_checklstring(L, i, &len);
        luaL_addlstring(&b, part, len);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    session_send(L, s, 'O', text, len);
    lua_pushvalue(L, lua_upvalueindex(2));
    return 1;
}

/* session.write of the repl session: results and error messages. After
 * md.exit() the line unwinds through eval_line, which would report the
 * exit's internal error object; the engine is leaving, so it is dropped. */
static int session_write(lua_State *L)
{
    session *s = lua_touserdata(L, lua_upvalueindex(1));
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    if (!md_loop_stopped(s->loop))
        session_send(L, s, 'O', text, len);
    return 0;
}

/* The proxy env of the session at idx: _G behind it, print and io in front. */
static void push_env(lua_State *L, int idx)
{
    lua_createtable(L, 0, 2); /* stack: env */
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, session_print, 1);
    lua_setfield(L, -2, "print");
    lua_createtable(L, 0, 1); /* stack: env, io */
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, session_io_write, 2);
    lua_setfield(L, -2, "write");
    lua_createtable(L, 0, 1);
    lua_getglobal(L, "io");
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "io");
    lua_createtable(L, 0, 2); /* stack: env, mt */
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
}

/* }===== */

/* {===== sessions: lines, completion, interrupts ===== */

/* The guard of a line's task calls this when the task ends. Upvalues: the
 * session userdata and the line's id. */
static int line_done(lua_State *L)
{
    session *s = lua_touserdata(L, lua_upvalueindex(1));
    if (lua_tointeger(L, lua_upvalueindex(2)) != s->line_id || s->task_ref == LUA_NOREF)
        return 0;
    luaL_unref(L, LUA_REGISTRYINDEX, s->task_ref);
    s->task_ref = LUA_NOREF;
    if (s->conn)
        send_prompt(L, s, lua_upvalueindex(1));
    return 0;
}

/* stack: session, line. Starts the line's task and refs it. */
static int spawn_line(lua_State *L)
{
    session *s = lua_touserdata(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, RUNNER_KEY);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, ++s->line_id);
    lua_pushcclosure(L, line_done, 2); /* stack: s, line, runner, sess, line, done */
    md_task_spawn(L, 3, 3);            /* stack: s, line, task */
    lua_getfield(L, -1, "name");
    lua_pushvalue(L, -2);
    lua_pushfstring(L, "attach session %I line", (lua_Integer)s->id);
    lua_call(L, 2, 0);
    s->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* idx: the session userdata, kept on the stack by on_conn_frame. */
static void start_line(lua_State *L, session *s, int idx, const char *line, size_t len)
{
    if (s->task_ref != LUA_NOREF) {
        send_text(L, s, "moondog: a line is still running; wait for the prompt\n");
        return;
    }
    lua_pushcfunction(L, spawn_line);
    lua_pushvalue(L, idx);
    lua_pushlstring(L, line, len);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        size_t n;
        const char *msg = lua_tolstring(L, -1, &n);
        session_send(L, s, 'O', msg, n);
        send_text(L, s, "\n");
        lua_pop(L, 1);
        send_prompt(L, s, idx);
    }
}

/* Completion runs right here in the socket's watch: it only reads tables and
 * never waits, and the client is blocked until it gets the answer. */
static void complete(lua_State *L, session *s, int idx, const char *text, size_t len)
{
    lua_getiuservalue(L, idx, 1);
    lua_getfield(L, -1, "complete_lines");
    lua_insert(L, -2);
    lua_pushlstring(L, text, len);
    size_t n = 0;
    const char *list = "";
    if (lua_pcall(L, 2, 1, 0) == LUA_OK)
        list = lua_tolstring(L, -1, &n);
    session_send(L, s, 'C', list, n);
    lua_pop(L, 1);
}

static void interrupt(lua_State *L, session *s, int idx)
{
    if (s->task_ref == LUA_NOREF) {
        lua_getiuservalue(L, idx, 1);
        lua_getfield(L, -1, "reset");
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK)
            lua_pop(L, 1);
        send_prompt(L, s, idx);
        return;
    }
    send_text(L, s, "interrupted\n");
    if (!s->conn)
        return; /* that send dropped the session, which cancelled the line */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->task_ref);
    md_task_cancel_at(L, -1); /* a waiting task ends now and sends 'P' */
    bool finished = md_task_finished(L, -1);
    lua_pop(L, 1);
    /* A task cancelled before its first resume never ran its guard. */
    if (finished && s->task_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->task_ref);
        s->task_ref = LUA_NOREF;
        send_prompt(L, s, idx);
    }
}

/* }===== */

/* {===== sessions: input and life cycle ===== */

static void on_frame(lua_State *L, session *s, int idx, char type, const char *data,
                     size_t len)
{
    switch (type) {
    case 'L': start_line(L, s, idx, data, len); break;
    case 'C': complete(L, s, idx, data, len); break;
    case 'I': interrupt(L, s, idx); break;
    default: /* unknown frames are ignored, for newer clients */ break;
    }
}

static void session_finish(lua_State *L, session *s, const char *why);

/* The userdata stays on the stack while a frame is handled: a handler may
 * close the session, which drops its anchor, and s must outlive that. */
static void on_conn_frame(void *ud, char type, const char *data, size_t len)
{
    session *s = ud;
    lua_State *L = md_engine_lua(s->E);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->self_ref); /* stack: s */
    int idx = lua_gettop(L);
    on_frame(L, s, idx, type, data, len);
    lua_settop(L, idx - 1);
}

/* The client left, sent a broken frame or is too slow. */
static void on_conn_closed(void *ud, const char *why)
{
    session *s = ud;
    lua_State *L = md_engine_lua(s->E);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->self_ref); /* stack: s */
    s->conn = NULL;
    session_finish(L, s, why);
    lua_pop(L, 1);
}

static const md_attach_conn_fns conn_fns = {on_conn_frame, on_conn_closed};

static void unlink_session(session *s)
{
    listener *ls = s->owner;
    if (!ls)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        ls->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    ls->nsessions--;
    s->owner = NULL;
    s->prev = s->next = NULL;
}

/*
 * The Lua half of closing, once the connection is gone. why is logged at
 * info level; NULL (from __gc) logs nothing. The line's task is cancelled
 * last: its guard may run line_done now, which must already see the
 * session closed.
 */
static void session_finish(lua_State *L, session *s, const char *why)
{
    if (why)
        md_log(MD_LOG_INFO, "attach: session %llu closed: %s", s->id, why);
    unlink_session(s);
    if (s->task_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->task_ref);
        if (!md_task_finished(L, -1))
            md_task_cancel_at(L, -1);
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, s->task_ref); /* line_done may have dropped it */
        s->task_ref = LUA_NOREF;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
}

/* Idempotent. */
static void session_close(lua_State *L, session *s, const char *why)
{
    if (!s->conn)
        return;
    md_attach_conn_close(s->conn);
    s->conn = NULL;
    session_finish(L, s, why);
}

static int session_gc(lua_State *L)
{
    session_close(L, luaL_checkudata(L, 1, SESSION_MT), NULL);
    return 0;
}

/* Runs protected. stack: listener (light), &fd (light). Takes the fd once
 * the userdata can close it (*pfd = -1 from then on). */
static int session_open(lua_State *L)
{
    listener *ls = lua_touserdata(L, 1);
    int *pfd = lua_touserdata(L, 2);
    session *s = lua_newuserdatauv(L, sizeof *s, 1); /* stack: ls, pfd, s */
    memset(s, 0, sizeof *s);
    s->E = ls->E;
    s->loop = ls->loop;
    s->self_ref = s->task_ref = LUA_NOREF;
    luaL_setmetatable(L, SESSION_MT);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "moondog.repl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "session"); /* stack: ls, pfd, s, repl, session */
    lua_createtable(L, 0, 3);
    push_env(L, 3);
    lua_setfield(L, -2, "env");
    lua_pushvalue(L, 3);
    lua_pushcclosure(L, session_write, 1);
    lua_setfield(L, -2, "write");
    lua_pushliteral(L, "=attach");
    lua_setfield(L, -2, "chunkname");
    lua_call(L, 1, 1);
    lua_setiuservalue(L, 3, 1);

    s->conn = md_attach_conn_new(s->loop, *pfd, &conn_fns, s);
    if (!s->conn)
        return luaL_error(L, "cannot watch the connection: %s", strerror(errno));
    *pfd = -1;
    s->id = ++last_session_id;
    lua_pushvalue(L, 3);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->owner = ls;
    s->next = ls->sessions;
    if (s->next)
        s->next->prev = s;
    ls->sessions = s;
    ls->nsessions++;
    md_log(MD_LOG_INFO, "attach: session %llu opened on %s", s->id, ls->path);
    send_prompt(L, s, 3);
    return 0;
}

/* }===== */

/* {===== listener ===== */

/* A client connected to ls's server. */
static void open_session(void *ud, int fd)
{
    listener *ls = ud;
    lua_State *L = md_engine_lua(ls->E);
    lua_pushcfunction(L, session_open);
    lua_pushlightuserdata(L, ls);
    lua_pushlightuserdata(L, &fd);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        md_log(MD_LOG_WARN, "attach: cannot open a session: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    if (fd >= 0)
        close(fd);
}

static void listener_close(lua_State *L, listener *ls)
{
    if (!ls->srv)
        return;
    md_attach_server_close(ls->srv);
    ls->srv = NULL;
    while (ls->sessions)
        unlink_session(ls->sessions);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->self_ref);
    ls->self_ref = LUA_NOREF;
}

static listener *check_open(lua_State *L)
{
    listener *ls = luaL_checkudata(L, 1, LISTENER_MT);
    if (!ls->srv)
        luaL_error(L, "attempt to use a closed listener");
    return ls;
}

/* md.attach.listen([path]) -> listener, or nil, message, code */
static int attach_listen(lua_State *L)
{
    char def[PATH_LEN + 64];
    const char *path = luaL_optstring(L, 1, NULL);
    bool private_dir = false;
    if (!path) {
        path = md_attach_default_path(def, sizeof def);
        private_dir = md_attach_default_in_private_dir();
    }
    luaL_argcheck(L, *path, 1, "empty socket path");
    if (strlen(path) >= PATH_LEN)
        return luaL_argerror(
            L, 1,
            lua_pushfstring(L, "socket path longer than %d bytes", (int)PATH_LEN - 1));
    listener *ls = lua_newuserdatauv(L, sizeof *ls, 0); /* created closed */
    memset(ls, 0, sizeof *ls);
    ls->E = md_engine_of(L);
    ls->loop = md_engine_loop(ls->E);
    ls->self_ref = LUA_NOREF;
    snprintf(ls->path, sizeof ls->path, "%s", path);
    luaL_setmetatable(L, LISTENER_MT);

    char err[2 * PATH_LEN + 200];
    const char *code = "unsafe";
    if (!private_dir || md_attach_private_dir(path, true, err, sizeof err) == 0)
        ls->srv = md_attach_server_open(ls->loop, path, open_session, ls, err, sizeof err,
                                        &code);
    if (!ls->srv) {
        /* Scripts often ignore the result: a session nobody can attach to
         * must not go unnoticed (issue 15). */
        md_log(MD_LOG_WARN, "attach: %s", err);
        if (!md_log_on_stderr())
            fprintf(stderr, "moondog: attach: %s\n", err);
        return md_err_pusht(L, code, "%s", err);
    }
    lua_pushvalue(L, -1);
    ls->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    md_log(MD_LOG_INFO, "attach: listening on %s", ls->path);
    return 1;
}

static int attach_default_path(lua_State *L)
{
    char buf[PATH_LEN + 64];
    const char *site = luaL_optstring(L, 1, NULL);
    lua_pushstring(L, md_attach_site_path(site, buf, sizeof buf));
    return 1;
}

/* md.attach.site() -> the name of this engine's site */
static int attach_site(lua_State *L)
{
    lua_pushstring(L, md_attach_site());
    return 1;
}

static int listener_close_lua(lua_State *L)
{
    listener_close(L, check_open(L));
    lua_pushboolean(L, 1);
    return 1;
}

static int listener_gc(lua_State *L)
{
    listener_close(L, luaL_checkudata(L, 1, LISTENER_MT));
    return 0;
}

static int listener_path(lua_State *L)
{
    lua_pushstring(L, check_open(L)->path);
    return 1;
}

static int listener_sessions(lua_State *L)
{
    lua_pushinteger(L, check_open(L)->nsessions);
    return 1;
}

static int listener_tostring(lua_State *L)
{
    listener *ls = luaL_checkudata(L, 1, LISTENER_MT);
    if (!ls->srv)
        lua_pushliteral(L, "attach listener (closed)");
    else
        lua_pushfstring(L, "attach listener (%s, %d sessions)", ls->path, ls->nsessions);
    return 1;
}

/* }===== */

static const luaL_Reg listener_methods[] = {
    {"close", listener_close_lua},
    {"path", listener_path},
    {"sessions", listener_sessions},
    {NULL, NULL},
};

static const luaL_Reg listener_meta[] = {
    {"__gc", listener_gc},
    {"__close", listener_gc},
    {"__tostring", listener_tostring},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"listen", attach_listen},
    {"default_path", attach_default_path},
    {"site", attach_site},
    {NULL, NULL},
};

int luaopen_moondog_attach(lua_State *L)
{
    if (luaL_newmetatable(L, LISTENER_MT)) {
        luaL_setfuncs(L, listener_meta, 0);
        luaL_newlib(L, listener_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SESSION_MT)) {
        lua_pushcfunction(L, session_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, runner_src, sizeof runner_src - 1, "=attach") != LUA_OK)
        return lua_error(L);
    lua_setfield(L, LUA_REGISTRYINDEX, RUNNER_KEY);
    luaL_newlib(L, funcs);
    return 1;
}
