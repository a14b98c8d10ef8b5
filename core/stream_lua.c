/*
 * stream_lua.c - moondog.stream: TCP connections and listeners for Lua
 * code on the event loop, for protocols whose framing lives in Lua or in
 * a codec (RCT Power, simulators, test peers).
 *
 *   local stream = require "moondog.stream"
 *   local conn, err, code = stream.connect("192.168.1.60", 8899, { timeout = 5 })
 *   conn:write(bytes [, timeout])     --> true, or nil, err, code
 *   conn:read([max [, timeout]])      --> 1..max bytes as they arrive, or nil, err, code
 *   conn:peer()                       --> "192.168.1.60:8899"
 *   conn:keepalive(false)             -- its waits no longer keep the engine running
 *   conn:close()                      -- also <close> and __gc
 *
 *   local l = assert(stream.listen("127.0.0.1", 0))   -- port 0: any free port
 *   l:port()                          --> the port
 *   local c, err, code = l:accept([timeout])
 *   l:close()
 *
 * Codes (docs/errors.md): "timeout" (the engine's wait timed out),
 * "connection_lost" (the peer closed the connection or it broke), "closed"
 * (closed here while a task waited), "connect_timeout", "dns", "refused",
 * "unreachable", "connect" (other connect failures), "in_use" and "permission" (listen),
 * "busy" (a write while more than 4 MB wait to be sent); any other system error
 * of listen or accept is err.h's token for its errno ("io", ...). Timeouts are
 * seconds; none by default, except 10 s for connect. A listener on a host name
 * looks it up while only the calling task waits (resolve_lua.h).
 *
 * Design. Everything runs on the loop thread with non-blocking sockets and
 * THE async pattern of engine.h. A connection's state machine (connect over
 * the addresses, reads that try recv() at once, an ordered output queue so
 * writes from several tasks never interleave, lazy read interest) is
 * Lua-free, in stream_conn.c, and so is a listener's (accept only while a
 * task waits: stream_listener.c), each with its own cmocka tests; this file
 * turns their callbacks into finished waits and results into Lua values.
 *
 * Liveness: a connection or listener keeps the engine alive only while a
 * task waits on it (an idle connection must not stop a script's exit);
 * conn:keepalive(false) turns that off for background readers.
 *
 * Ownership and lifetimes. A connection and a listener are userdata, and
 * a task waiting on one holds it on its stack, so neither can be collected
 * under a wait. One reader and one acceptor may wait at a time (a second
 * raises). Each waiting writer has a small record, a userdata on its own
 * stack, linked into the connection: when the task dies the record dies
 * with it, after the engine's cancel callback unlinked it. A result that
 * completed but was never collected (the task was cancelled in between)
 * stays with the object: received bytes go to the next read, an accepted
 * socket to the next accept, or is closed with the object.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "conn.h"
#include "engine.h"
#include "err_lua.h"
#include "resolve_lua.h"
#include "stream.h"
#include "stream_conn.h"
#include "stream_listener.h"

#define CONN_MT "moondog.stream.conn"
#define LISTENER_MT "moondog.stream.listener"

enum {
    READ_DEFAULT = 64 * 1024,
    READ_MAX = 16 * 1024 * 1024,
    CONNECT_TIMEOUT_MS = 10000,
};

typedef struct conn conn;

/* A task waiting until its bytes went out; a userdata on that task's stack. */
typedef struct writer {
    md_wait *wait;
    conn *c;
    struct writer *prev, *next;
    uint64_t end; /* done once md_stream_conn_sent reaches it */
    int err;      /* 0, or errno of a broken connection */
} writer;

/* The userdata of a connection: the state machine (stream_conn.c) and the
 * waits on it. */
struct conn {
    md_stream_conn *sc; /* NULL once closed */
    bool closed;        /* closed by close() or __gc (or never opened) */
    char peer[80];      /* for messages */
    md_wait *cwait;     /* connecting (only inside stream.connect) */
    md_conn *pending;   /* conn.c's attempt (only inside stream.connect) */
    int connect_err;
    md_wait *rwait; /* the waiting reader */
    writer *writers;
};

/* The userdata of a listener: the socket on the loop (stream_listener.c)
 * and the task waiting in accept(). */
typedef struct listener {
    md_stream_listener *sl; /* NULL when closed */
    int port;
    md_wait *await;
} listener;

/* {===== connections: events from the state machine ===== */

static void done(md_wait **slot)
{
    md_wait *w = *slot;
    *slot = NULL;
    if (w)
        md_task_done(w);
}

/* Wake waiting writers with err (0: their bytes went out): all, or those
 * whose bytes went out. */
static void wake_writers(conn *c, int err, bool all)
{
    uint64_t sent = c->sc ? md_stream_conn_sent(c->sc) : 0;
    writer *w = c->writers;
    while (w) {
        writer *next = w->next;
        if (all || w->end <= sent) {
            if (w->prev)
                w->prev->next = w->next;
            else
                c->writers = w->next;
            if (w->next)
                w->next->prev = w->prev;
            w->prev = w->next = NULL;
            w->err = err;
            done(&w->wait);
        }
        w = next;
    }
    if (c->sc)
        md_stream_conn_set_writers(c->sc, c->writers != NULL);
}

static void on_input(void *ud)
{
    conn *c = ud;
    done(&c->rwait);
}

static void on_progress(void *ud)
{
    conn *c = ud;
    int lost = md_stream_conn_lost(c->sc);
    wake_writers(c, lost, lost != 0);
}

static const md_stream_conn_fns conn_fns = {on_input, on_progress};

/* Idempotent: wake what waits (their results say "closed") and free the
 * state machine. */
static void conn_shutdown(conn *c)
{
    c->closed = true;
    if (c->pending) {
        md_conn_cancel(c->pending);
        c->pending = NULL;
    }
    wake_writers(c, 0, true);
    done(&c->rwait);
    md_stream_conn_close(c->sc);
    c->sc = NULL;
}

/* }===== */

/* {===== connections: Lua ===== */

/* A connection userdata, created closed, then with its state machine. */
static conn *new_conn(lua_State *L, md_engine *E)
{
    conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->closed = true;
    luaL_setmetatable(L, CONN_MT);
    c->sc = md_stream_conn_new(md_engine_loop(E), &conn_fns, c);
    if (!c->sc)
        luaL_error(L, "out of memory");
    c->closed = false;
    return c;
}

static conn *check_conn(lua_State *L)
{
    conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->closed)
        luaL_error(L, "attempt to use a closed connection");
    return c;
}

/* nil, message, "connection_lost" for a connection that broke. */
static int push_lost(lua_State *L, conn *c)
{
    int lost = c->sc ? md_stream_conn_lost(c->sc) : -1;
    if (lost == -1)
        return md_err_pushf(L, -MD_ECONNLOST, "%s closed the connection", c->peer);
    return md_err_pushf(L, -MD_ECONNLOST, "connection to %s lost: %s", c->peer,
                        md_strerror(lost));
}

static int push_closed(lua_State *L, conn *c)
{
    return md_err_pushf(L, -MD_ECLOSED, "connection to %s was closed while waiting",
                        c->peer);
}

/* Seconds at idx (nil: none) as milliseconds, -1 for none. */
static int64_t opt_timeout_ms(lua_State *L, int idx, int64_t dflt)
{
    if (lua_isnoneornil(L, idx))
        return dflt;
    lua_Number s = luaL_checknumber(L, idx);
    luaL_argcheck(L, s >= 0 && s <= 1e6, idx, "timeout must be 0..1e6 seconds");
    return (int64_t)(s * 1000 + 0.5);
}

/* Hand out up to max of the kept bytes. */
static int push_kept(lua_State *L, conn *c, size_t max)
{
    size_t kept = md_stream_conn_kept(c->sc);
    size_t n = kept < max ? kept : max;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n);
    md_stream_conn_take(c->sc, p, n);
    luaL_pushresultsize(&b, n);
    return 1;
}

static int read_results(lua_State *L, void *op)
{
    conn *c = op;
    if (c->sc && md_stream_conn_kept(c->sc) > 0)
        return push_kept(L, c, READ_MAX);
    if (c->closed)
        return push_closed(L, c);
    return push_lost(L, c);
}

static void read_cancel(void *op)
{
    conn *c = op;
    c->rwait = NULL;
    if (c->sc)
        md_stream_conn_cancel_read(c->sc);
}

/* conn:read([max [, timeout]]) -> bytes | nil, err, code */
static int conn_read(lua_State *L)
{
    conn *c = check_conn(L);
    lua_Integer max = luaL_optinteger(L, 2, READ_DEFAULT);
    luaL_argcheck(L, max >= 1 && max <= READ_MAX, 2, "max must be 1..16777216 bytes");
    int64_t ms = opt_timeout_ms(L, 3, -1);
    if (c->rwait)
        return luaL_error(L, "another task is already reading from this connection");
    md_task_check(L);
    int n = ms < 0 ? md_stream_conn_read_lazy(c->sc, (size_t)max)
                   : md_stream_conn_read(c->sc, (size_t)max);
    if (n > 0)
        return push_kept(L, c, (size_t)max);
    if (n == MD_STREAM_LOST)
        return push_lost(L, c);
    if (n < 0)
        return luaL_error(L, "out of memory");
    c->rwait = md_task_wait(L, c, read_cancel);
    if (ms >= 0) { /* the text only for a timeout (a read per record waits without) */
        char what[128];
        snprintf(what, sizeof what, "reading from %s", c->peer);
        md_wait_timeout(c->rwait, ms, what);
    }
    return md_task_yield(L, c->rwait, read_results);
}

static int write_results(lua_State *L, void *op)
{
    writer *w = op;
    if (w->c->closed)
        return push_closed(L, w->c);
    if (w->err)
        return push_lost(L, w->c);
    lua_pushboolean(L, 1);
    return 1;
}

static void write_cancel(void *op)
{
    writer *w = op;
    conn *c = w->c;
    if (w->prev)
        w->prev->next = w->next;
    else if (c->writers == w)
        c->writers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->wait = NULL;
    if (c->sc)
        md_stream_conn_set_writers(c->sc, c->writers != NULL);
}

/* conn:write(bytes [, timeout]) -> true | nil, err, code */
static int conn_write(lua_State *L)
{
    conn *c = check_conn(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int64_t ms = opt_timeout_ms(L, 3, -1);
    md_task_check(L);
    uint64_t end = 0;
    int rc = md_stream_conn_write(c->sc, s, len, &end);
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == MD_STREAM_LOST)
        return push_lost(L, c);
    if (rc == -EBUSY)
        return md_err_pushf(L, rc,
                            "more than %d bytes wait to be sent to %s: it does not read",
                            (int)MD_STREAM_OUT_MAX, c->peer);
    if (rc < 0)
        return luaL_error(L, "out of memory");
    writer *w = lua_newuserdatauv(L, sizeof *w, 0); /* lives on this task's stack */
    *w = (writer){.c = c, .end = end};
    w->wait = md_task_wait(L, w, write_cancel);
    w->next = c->writers; /* linked only once the wait exists: nothing raises after */
    if (c->writers)
        c->writers->prev = w;
    c->writers = w;
    md_stream_conn_set_writers(c->sc, true);
    if (ms >= 0) {
        char what[128];
        snprintf(what, sizeof what, "writing to %s", c->peer);
        md_wait_timeout(w->wait, ms, what);
    }
    return md_task_yield(L, w->wait, write_results);
}

static int conn_close(lua_State *L)
{
    conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (!c->closed || c->sc)
        conn_shutdown(c);
    return 0;
}

static int conn_peer(lua_State *L)
{
    conn *c = luaL_checkudata(L, 1, CONN_MT);
    lua_pushstring(L, c->peer);
    return 1;
}

/* conn:keepalive(on): whether a task waiting here keeps the engine running */
static int conn_keepalive(lua_State *L)
{
    conn *c = check_conn(L);
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    md_stream_conn_keepalive(c->sc, lua_toboolean(L, 2));
    return 0;
}

static int conn_closed(lua_State *L)
{
    conn *c = luaL_checkudata(L, 1, CONN_MT);
    lua_pushboolean(L, c->closed);
    return 1;
}

static int conn_tostring(lua_State *L)
{
    conn *c = luaL_checkudata(L, 1, CONN_MT);
    lua_pushfstring(L, "stream connection %s%s", c->peer, c->closed ? " (closed)" : "");
    return 1;
}

/* }===== */

/* {===== connect ===== */

/* nil, message, code for a failed connect: err.h's token, the same as
 * from a Modbus bus or the MQTT client (docs/errors.md). */
static int push_connect_error(lua_State *L, conn *c, int err)
{
    return md_err_pushf(L, md_err_connect(err), "cannot connect to %s: %s", c->peer,
                        md_strerror(err));
}

/* conn.c is done: hand the connected socket to the state machine, or keep
 * the last address's error. */
static void on_connected(md_loop *loop, int fd, int err, void *ud)
{
    (void)loop;
    conn *c = ud;
    c->pending = NULL;
    c->connect_err = -err;
    if (fd >= 0) {
        int rc = md_stream_conn_adopt(c->sc, fd); /* takes fd */
        if (rc < 0)
            c->connect_err = -rc;
    }
    done(&c->cwait);
}

static int connect_results(lua_State *L, void *op)
{
    conn *c = op;
    if (c->connect_err) {
        int err = c->connect_err;
        conn_shutdown(c);
        return push_connect_error(L, c, err);
    }
    lua_pushvalue(L, 4); /* the connection, pushed by stream_connect */
    return 1;
}

static void connect_cancel(void *op)
{
    conn *c = op;
    c->cwait = NULL;
    conn_shutdown(c);
}

/* stream.connect(host, port [, {timeout = 10}]) -> conn | nil, err, code */
static int stream_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port >= 1 && port <= 65535, 2, "port must be 1..65535");
    int64_t ms = CONNECT_TIMEOUT_MS;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "timeout");
        ms = opt_timeout_ms(L, -1, CONNECT_TIMEOUT_MS);
        lua_pop(L, 1);
    }
    lua_settop(L, 3);
    md_task_check(L);
    conn *c = new_conn(L, md_engine_of(L)); /* stack: host, port, opts, conn */
    snprintf(c->peer, sizeof c->peer, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
             (int)port);
    /* The whole connect waits at most ms (below), and so does each address. */
    md_conn_config cfg = {.host = host,
                          .port = (int)port,
                          .socktype = SOCK_STREAM,
                          .timeout_ms = ms > 0 ? (int)ms : 1};
    c->pending = md_conn_start(md_engine_loop(md_engine_of(L)), &cfg, on_connected, c);
    if (!c->pending) {
        int err = errno;
        conn_shutdown(c);
        return push_connect_error(L, c, err);
    }
    c->cwait = md_task_wait(L, c, connect_cancel);
    char what[128];
    snprintf(what, sizeof what, "connecting to %s", c->peer);
    md_wait_timeout_rc(c->cwait, ms, what, -MD_ECONNTIMEOUT);
    return md_task_yield(L, c->cwait, connect_results);
}

/* }===== */

/* {===== listeners ===== */

static listener *check_listener(lua_State *L)
{
    listener *l = luaL_checkudata(L, 1, LISTENER_MT);
    if (!l->sl)
        luaL_error(L, "attempt to use a closed listener");
    return l;
}

static void on_ready(void *ud)
{
    listener *l = ud;
    md_wait *w = l->await;
    l->await = NULL;
    if (w)
        md_task_done(w);
}

/* Wrap an accepted socket in a connection and push it; or the failure. */
static int push_accepted(lua_State *L, int fd)
{
    if (fd < 0)
        return md_err_pushf(L, fd, "cannot accept a connection: %s", md_strerror(fd));
    conn *c = new_conn(L, md_engine_of(L));
    md_stream_peer_name(fd, c->peer, sizeof c->peer);
    int rc = md_stream_conn_adopt(c->sc, fd); /* takes fd */
    if (rc < 0) {
        conn_shutdown(c);
        return md_err_pushf(L, rc, "cannot watch an accepted connection: %s",
                            md_strerror(rc));
    }
    return 1;
}

static int accept_results(lua_State *L, void *op)
{
    listener *l = op;
    if (!l->sl)
        return md_err_pushf(L, -MD_ECLOSED, "the listener was closed while waiting");
    return push_accepted(L, md_stream_listener_take(l->sl));
}

static void accept_cancel(void *op)
{
    listener *l = op;
    l->await = NULL;
    if (l->sl)
        md_stream_listener_unwant(l->sl);
}

/* l:accept([timeout]) -> conn | nil, err, code */
static int listener_accept(lua_State *L)
{
    listener *l = check_listener(L);
    int64_t ms = opt_timeout_ms(L, 2, -1);
    if (l->await)
        return luaL_error(L, "another task is already accepting on this listener");
    md_task_check(L);
    int fd = md_stream_listener_take(l->sl);
    if (fd != -EAGAIN)
        return push_accepted(L, fd);
    l->await = md_task_wait(L, l, accept_cancel);
    char what[64];
    snprintf(what, sizeof what, "accepting on port %d", l->port);
    md_wait_timeout(l->await, ms, what);
    return md_task_yield(L, l->await, accept_results);
}

static int listener_close(lua_State *L)
{
    listener *l = luaL_checkudata(L, 1, LISTENER_MT);
    md_stream_listener_close(l->sl);
    l->sl = NULL;
    on_ready(l); /* a waiting accept() ends with "closed" */
    return 0;
}

static int listener_port(lua_State *L)
{
    listener *l = luaL_checkudata(L, 1, LISTENER_MT);
    lua_pushinteger(L, l->port);
    return 1;
}

static int listener_tostring(lua_State *L)
{
    listener *l = luaL_checkudata(L, 1, LISTENER_MT);
    lua_pushfstring(L, "stream listener on port %d%s", l->port, l->sl ? "" : " (closed)");
    return 1;
}

/* What stream.listen keeps while a host name is looked up. */
typedef struct listen_args {
    char host[256];
    int port, backlog;
} listen_args;

static int listen_resolved(lua_State *L, const struct addrinfo *res, int err, void *arg)
{
    listen_args *a = arg;
    listener *l = lua_newuserdatauv(L, sizeof *l, 0);
    *l = (listener){0};
    luaL_setmetatable(L, LISTENER_MT);
    int fd = err < 0 ? err : md_stream_bind(res, SOCK_STREAM, a->backlog);
    if (fd < 0)
        return md_err_pushf(L, fd, "cannot listen on %s port %d: %s", a->host, a->port,
                            md_strerror(fd));
    l->sl = md_stream_listener_new(md_engine_loop(md_engine_of(L)), fd, on_ready, l);
    if (!l->sl) /* fd closed */
        return md_err_pushf(L, -errno, "cannot watch a listening socket: %s",
                            md_strerror(errno));
    l->port = md_stream_listener_port(l->sl);
    return 1;
}

/* stream.listen(host, port [, {backlog = 64}]) -> listener | nil, err, code.
 * A host name is looked up while the task waits (resolve_lua.h). */
static int stream_listen(lua_State *L)
{
    listen_args a = {.backlog = 64};
    size_t hlen;
    const char *host = luaL_optlstring(L, 1, "127.0.0.1", &hlen);
    luaL_argcheck(L, hlen < sizeof a.host, 1, "host name too long");
    memcpy(a.host, host, hlen + 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port must be 0..65535");
    a.port = (int)port;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "backlog");
        lua_Integer backlog = luaL_optinteger(L, -1, 64);
        luaL_argcheck(L, backlog >= 0 && backlog <= 65535, 3, "backlog must be 0..65535");
        a.backlog = (int)backlog;
        lua_pop(L, 1);
    }
    return md_lua_resolve_passive(L, a.host, a.port, SOCK_STREAM, listen_resolved, &a,
                                  sizeof a);
}

/* }===== */

/* A metatable: methods as __index, close as __gc and __close, __tostring. */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction close, lua_CFunction tostring)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

int luaopen_moondog_stream(lua_State *L)
{
    static const luaL_Reg conn_methods[] = {
        {"read", conn_read}, {"write", conn_write},         {"close", conn_close},
        {"peer", conn_peer}, {"keepalive", conn_keepalive}, {"closed", conn_closed},
        {NULL, NULL},
    };
    static const luaL_Reg listener_methods[] = {
        {"accept", listener_accept},
        {"port", listener_port},
        {"close", listener_close},
        {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"connect", stream_connect},
        {"listen", stream_listen},
        {NULL, NULL},
    };
    new_class(L, CONN_MT, conn_methods, conn_close, conn_tostring);
    new_class(L, LISTENER_MT, listener_methods, listener_close, listener_tostring);
    luaL_newlib(L, funcs);
    return 1;
}
