/*
 * mbserver_lua.c - moondog.modbus.server_core: Modbus servers (mbserver.h)
 * for Lua.
 *
 *   local srv = core.open{transport = "tcp", host = "127.0.0.1", port = 0,
 *                         units = {1, 2} | nil, strict = false,
 *                         hook_reads = false, hook_writes = false, url = "..."}
 *   srv:port(), srv:units(), srv:stats(), srv:close()
 *   srv:set(unit, kind, addr, values), srv:get(unit, kind, addr [, count])
 *   srv:set_object(unit, id, text | nil), srv:set_server_id(unit, bytes)
 *   srv:next_request() -> request table | nil    (waits; nil once closed)
 *   srv:reply(id [, exception])
 *
 * lua/moondog/modbus/server.lua builds the user-facing API on top: URL
 * parsing, options, typed values, files, and the hook task.
 *
 * Hooks. The server never calls Lua: a request that needs a hook is queued
 * in C, and the notify callback only wakes the one task that waits in
 * next_request() (the engine's async pattern). That task runs the hooks
 * and answers with reply(); C then applies the request and sends the
 * response.
 *
 * Ownership: the userdata owns its md_mbsrv and frees it on close (also
 * __gc and __close), keeping the final port and statistics for later
 * questions. A task waiting in next_request() holds the userdata on its
 * stack, so the op pointer of its wait (the userdata) stays valid.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "err_lua.h"
#include "mblink_lua.h"
#include "mbserver.h"
#include "resolve_lua.h"

#define SRV_MT "moondog.modbus.server"

typedef struct lsrv {
    md_mbsrv *srv; /* NULL once closed */
    md_engine *E;
    md_wait *waiter; /* the task waiting in next_request, or NULL */
    int port;
    md_mbsrv_stats last; /* statistics at close */
    char url[300];
} lsrv;

/* {===== helpers ===== */

static lsrv *check_srv(lua_State *L)
{
    lsrv *ls = luaL_checkudata(L, 1, SRV_MT);
    if (!ls->srv)
        luaL_error(L, "attempt to use a closed Modbus server");
    return ls;
}

static int check_kind(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    int kind = md_mbsrv_kind_from_name(name);
    if (kind == MD_MBSRV_NO_KIND)
        luaL_argerror(L, arg,
                      lua_pushfstring(L,
                                      "unknown kind '%s' (expected holding, input, "
                                      "coil or discrete)",
                                      name));
    return kind;
}

static bool is_bits(int kind)
{
    return kind == MD_MBSRV_COIL || kind == MD_MBSRV_DISCRETE;
}

/* "1, 2, 5" for messages: the units a server serves. */
static const char *unit_list(lua_State *L, md_mbsrv *s)
{
    uint8_t units[255];
    int n = md_mbsrv_units(s, units);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < n; i++) {
        if (i)
            luaL_addstring(&b, ", ");
        lua_pushinteger(L, units[i]);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* The map of the unit at arg. A server with one shared map takes nil or any
 * number there. */
static md_mbsrv_map *check_map(lua_State *L, lsrv *ls, int arg)
{
    if (md_mbsrv_any_unit(ls->srv)) {
        if (!lua_isnoneornil(L, arg))
            luaL_checknumber(L, arg);
        return md_mbsrv_unit_map(ls->srv, -1);
    }
    if (lua_isnoneornil(L, arg))
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "unit id expected (this server serves units %s)",
                                      unit_list(L, ls->srv)));
    lua_Integer unit = luaL_checkinteger(L, arg);
    md_mbsrv_map *map =
        unit >= 0 && unit <= 255 ? md_mbsrv_unit_map(ls->srv, (int)unit) : NULL;
    if (!map)
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "unit %I is not served here (units: %s)", unit,
                                      unit_list(L, ls->srv)));
    return map;
}

static unsigned check_addr(lua_State *L, int arg)
{
    lua_Integer a = luaL_checkinteger(L, arg);
    if (a < 0 || a > 65535)
        luaL_argerror(L, arg, lua_pushfstring(L, "address %I is outside 0..65535", a));
    return (unsigned)a;
}

/* One value for a table of kind: registers are integers -32768..65535
 * (negative ones stored as two's complement), bits booleans or 0/1. */
static uint16_t check_value(lua_State *L, int arg, int kind, lua_Integer item)
{
    int t = lua_type(L, -1);
    if (is_bits(kind) && t == LUA_TBOOLEAN)
        return (uint16_t)lua_toboolean(L, -1);
    int isint = 0;
    lua_Integer v = t == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (is_bits(kind) ? !isint || v < 0 || v > 1 : !isint || v < -32768 || v > 65535) {
        const char *want =
            is_bits(kind) ? "a boolean (or 0/1)" : "an integer -32768..65535";
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "value %I is %s, expected %s", item,
                                      luaL_tolstring(L, -1, NULL), want));
    }
    return (uint16_t)v;
}

/* }===== */

/* {===== register access ===== */

/* srv:set(unit, kind, addr, values): values is an array or one value */
static int srv_set(lua_State *L)
{
    lsrv *ls = check_srv(L);
    md_mbsrv_map *map = check_map(L, ls, 2);
    int kind = check_kind(L, 3);
    unsigned addr = check_addr(L, 4);
    bool single = lua_type(L, 5) != LUA_TTABLE;
    luaL_argexpected(L, !lua_isnoneornil(L, 5), 5, "array of values");
    lua_Integer n = single ? 1 : (lua_Integer)luaL_len(L, 5);
    if (n < 1 || n > 65536 - (lua_Integer)addr)
        luaL_argerror(L, 5,
                      lua_pushfstring(L,
                                      "%I values from address %d go past 65535 (or none)",
                                      n, (int)addr));
    uint16_t *v = lua_newuserdatauv(L, (size_t)n * sizeof *v, 0); /* scratch */
    for (lua_Integer i = 0; i < n; i++) {
        if (single)
            lua_pushvalue(L, 5);
        else
            lua_geti(L, 5, i + 1);
        v[i] = check_value(L, 5, kind, i + 1);
        lua_pop(L, 1);
    }
    if (md_mbsrv_map_set(map, kind, addr, v, (size_t)n) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

/* srv:get(unit, kind, addr [, count = 1]) -> array (integers or booleans) */
static int srv_get(lua_State *L)
{
    lsrv *ls = check_srv(L);
    md_mbsrv_map *map = check_map(L, ls, 2);
    int kind = check_kind(L, 3);
    unsigned addr = check_addr(L, 4);
    lua_Integer n = luaL_optinteger(L, 5, 1);
    if (n < 1 || n > 65536 - (lua_Integer)addr)
        luaL_argerror(L, 5,
                      lua_pushfstring(L, "count %I from address %d: expected 1..%d", n,
                                      (int)addr, 65536 - (int)addr));
    uint16_t *v = lua_newuserdatauv(L, (size_t)n * sizeof *v, 0); /* scratch */
    md_mbsrv_map_get(map, kind, addr, v, (size_t)n);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        if (is_bits(kind))
            lua_pushboolean(L, v[i]);
        else
            lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* srv:set_object(unit, id, text | nil): device identification object */
static int srv_set_object(lua_State *L)
{
    lsrv *ls = check_srv(L);
    md_mbsrv_map *map = check_map(L, ls, 2);
    lua_Integer id = luaL_checkinteger(L, 3);
    luaL_argcheck(L, id >= 0 && id <= 255, 3, "object id must be 0..255");
    size_t len = 0;
    const char *text = luaL_optlstring(L, 4, NULL, &len);
    if (len > MD_MBSRV_MAX_OBJECT)
        luaL_argerror(L, 4,
                      lua_pushfstring(L, "%d bytes do not fit a response (at most %d)",
                                      (int)len, MD_MBSRV_MAX_OBJECT));
    if (md_mbsrv_map_set_object(map, (unsigned)id, text, len) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

/* srv:set_server_id(unit, bytes): the FC 17 payload incl. run indicator */
static int srv_set_server_id(lua_State *L)
{
    lsrv *ls = check_srv(L);
    md_mbsrv_map *map = check_map(L, ls, 2);
    size_t len;
    const char *s = luaL_checklstring(L, 3, &len);
    if (len < 1 || len > MD_MBSRV_MAX_SERVER_ID)
        luaL_argerror(L, 3,
                      lua_pushfstring(L, "server id of %d bytes: expected 1..%d",
                                      (int)len, MD_MBSRV_MAX_SERVER_ID));
    md_mbsrv_map_set_server_id(map, (const uint8_t *)s, len);
    return 0;
}

/* srv:units() -> array of unit ids, empty when one map serves every id */
static int srv_units(lua_State *L)
{
    lsrv *ls = check_srv(L);
    uint8_t units[255];
    int n = md_mbsrv_units(ls->srv, units);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, units[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* }===== */

/* {===== hooks ===== */

/* The server's notify callback: only wakes the waiting task. */
static void on_notify(md_mbsrv *s, void *ud)
{
    lsrv *ls = ud;
    if (ls->waiter && (md_mbsrv_closed(s) || md_mbsrv_has_queued(s))) {
        md_wait *w = ls->waiter;
        ls->waiter = NULL;
        md_task_done(w);
    }
}

static void next_cancel(void *op)
{
    lsrv *ls = op;
    ls->waiter = NULL;
}

static void push_request(lua_State *L, const md_mbsrv_req *r)
{
    const md_mbsrv_op *op = &r->op;
    lua_createtable(L, 0, 9);
    lua_pushinteger(L, (lua_Integer)r->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, r->unit);
    lua_setfield(L, -2, "unit");
    lua_pushstring(L, r->client);
    lua_setfield(L, -2, "client");
    lua_pushinteger(L, op->fc);
    lua_setfield(L, -2, "fc");
    if (op->wkind != MD_MBSRV_NO_KIND) {
        uint16_t v[2000];
        size_t n = md_mbsrv_write_values(r->map, op, r->pdu, v);
        lua_pushstring(L, md_mbsrv_kind_name(op->wkind));
        lua_setfield(L, -2, "write_kind");
        lua_pushinteger(L, op->waddr);
        lua_setfield(L, -2, "write_addr");
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            if (is_bits(op->wkind))
                lua_pushboolean(L, v[i]);
            else
                lua_pushinteger(L, v[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "values");
    }
    if (op->rkind != MD_MBSRV_NO_KIND) {
        lua_pushstring(L, md_mbsrv_kind_name(op->rkind));
        lua_setfield(L, -2, "read_kind");
        lua_pushinteger(L, op->raddr);
        lua_setfield(L, -2, "read_addr");
        lua_pushinteger(L, op->rcount);
        lua_setfield(L, -2, "read_count");
    }
}

static int next_results(lua_State *L, void *op)
{
    lsrv *ls = op;
    const md_mbsrv_req *r = ls->srv ? md_mbsrv_next(ls->srv) : NULL;
    if (!r) {
        lua_pushnil(L);
        return 1;
    }
    push_request(L, r);
    return 1;
}

/*
 * srv:next_request() -> {id, unit, fc, write_kind, write_addr, values,
 * read_kind, read_addr, read_count}, or nil once the server is closed.
 * Waits while nothing is queued. One task at a time.
 */
static int srv_next_request(lua_State *L)
{
    lsrv *ls = luaL_checkudata(L, 1, SRV_MT);
    if (ls->waiter)
        return luaL_error(L, "another task already waits for requests of this server");
    md_wait *w = md_task_wait(L, ls, next_cancel);
    if (!ls->srv || md_mbsrv_has_queued(ls->srv))
        md_task_done(w);
    else
        ls->waiter = w;
    return md_task_yield(L, w, next_results);
}

/* srv:reply(id [, exception]) -> true, or false when the request is gone
 * (closed server). exception nil or 0 applies the request. */
static int srv_reply(lua_State *L)
{
    lsrv *ls = luaL_checkudata(L, 1, SRV_MT);
    lua_Integer id = luaL_checkinteger(L, 2);
    lua_Integer ex = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, ex >= 0 && ex <= 255, 3, "exception code must be 1..255 (0: none)");
    bool ok = ls->srv && md_mbsrv_reply(ls->srv, (uint64_t)id, (int)ex);
    lua_pushboolean(L, ok);
    return 1;
}

/* }===== */

/* {===== life cycle ===== */

static int srv_port(lua_State *L)
{
    lsrv *ls = luaL_checkudata(L, 1, SRV_MT);
    if (ls->port <= 0)
        return 0;
    lua_pushinteger(L, ls->port);
    return 1;
}

static void set_int(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* srv:stats() -> {requests, exceptions, bad_frames, clients, accepted,
 * dropped}; still answers after close (with the final counts). */
static int srv_stats(lua_State *L)
{
    lsrv *ls = luaL_checkudata(L, 1, SRV_MT);
    md_mbsrv_stats s = ls->last;
    if (ls->srv)
        md_mbsrv_get_stats(ls->srv, &s);
    lua_createtable(L, 0, 6);
    set_int(L, "requests", s.requests);
    set_int(L, "exceptions", s.exceptions);
    set_int(L, "bad_frames", s.bad_frames);
    set_int(L, "clients", (uint64_t)s.clients);
    set_int(L, "accepted", s.accepted);
    set_int(L, "dropped", s.dropped);
    return 1;
}

/* Idempotent; also __gc and __close. Wakes a task in next_request. */
static int srv_close(lua_State *L)
{
    lsrv *ls = luaL_checkudata(L, 1, SRV_MT);
    md_mbsrv *s = ls->srv;
    if (s) {
        md_mbsrv_get_stats(s, &ls->last);
        ls->last.clients = 0;
        ls->srv = NULL; /* next_results must see it closed */
        md_mbsrv_free(s);
    }
    return 0;
}

static int srv_tostring(lua_State *L)
{
    lsrv *ls = luaL_checkudata(L, 1, SRV_MT);
    lua_pushfstring(L, "modbus server %s%s", ls->url, ls->srv ? "" : " (closed)");
    return 1;
}

static const char *open_code(int rc)
{
    switch (-rc) {
    case EADDRINUSE: return "in_use";
    case EBUSY: return "busy"; /* a serial line another opener holds */
    case EACCES:
    case EPERM: return "permission";
    case ENOENT:
    case ENODEV:
    case ENXIO:
    case ENOTTY:
    case EIO: return "no_device";
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT: return "bad_address";
    case MD_MBSRV_ERESOLVE: /* "dns" */
    case MD_MBSRV_EBAUD: return md_err_token(rc);
    default: return "open";
    }
}

static const char *open_message(lua_State *L, int rc, const md_mbsrv_config *cfg)
{
    if (rc == -MD_MBSRV_ERESOLVE)
        return lua_pushfstring(L, "cannot resolve host '%s'", cfg->link.host);
    if (rc == -MD_MBSRV_EBAUD)
        return lua_pushfstring(L, "unsupported baud rate %d", cfg->link.baud);
    if (rc == -ENOTTY)
        return lua_pushfstring(L, "%s is not a serial device", cfg->link.device);
    if (rc == -EBUSY && cfg->transport == MD_MBSRV_RTU)
        return md_mb_push_busy_message(L, cfg->link.device);
    return md_strerror(rc);
}

static bool opt_bool(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The units field: nil, or an array of ids 1..255. Returns the count. */
/* A timeout in seconds, as milliseconds; 0 when absent (the default). */
static int opt_ms(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    lua_Number v = luaL_optnumber(L, -1, 0);
    lua_pop(L, 1);
    if (!(v >= 0 && v <= 86400))
        luaL_error(L, "bad field '%s': a timeout of 0..86400 seconds", k);
    return v > 0 && v < 0.001 ? 1 : (int)(v * 1000);
}

static int opt_units(lua_State *L, int t, uint8_t *units)
{
    int n = 0;
    if (lua_getfield(L, t, "units") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_Integer len = luaL_len(L, -1);
        if (len < 1 || len > 255)
            luaL_error(L, "bad field 'units': expected 1..255 unit ids, got %I", len);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_geti(L, -1, i);
            int isint;
            lua_Integer u = lua_tointegerx(L, -1, &isint);
            if (!isint || u < 1 || u > 255)
                luaL_error(L, "bad field 'units': item %I is not a unit id 1..255", i);
            units[n++] = (uint8_t)u;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return n;
}

_Static_assert((int)MD_MBSRV_TCP == MD_MB_LINK_TCP &&
                   (int)MD_MBSRV_UDP == MD_MB_LINK_UDP &&
                   (int)MD_MBSRV_RTU == MD_MB_LINK_RTU &&
                   (int)MD_MBSRV_RTU_TCP == MD_MB_LINK_RTU_TCP &&
                   (int)MD_MBSRV_RTU_UDP == MD_MB_LINK_RTU_UDP,
               "transports follow MD_MB_LINK_*");

/* What core.open keeps while a host name is looked up. */
typedef struct open_args {
    md_mbsrv_config cfg;
    uint8_t units[255];
    int nunits;
    bool strict;
    char url[300];
} open_args;

static int srv_opened(lua_State *L, const struct addrinfo *res, int err, void *arg)
{
    open_args *a = arg;
    lsrv *ls = lua_newuserdatauv(L, sizeof *ls, 0);
    memset(ls, 0, sizeof *ls); /* closed until the server exists */
    luaL_setmetatable(L, SRV_MT);
    ls->E = md_engine_of(L);
    snprintf(ls->url, sizeof ls->url, "%s", a->url);
    a->cfg.addrs = res;
    md_mbsrv *s = NULL;
    int rc = err < 0 ? (err == -MD_EDNS ? -MD_MBSRV_ERESOLVE : err)
                     : md_mbsrv_open(md_engine_loop(ls->E), &a->cfg, a->units, a->nunits,
                                     a->strict, &s);
    if (rc < 0) {
        const char *why = open_message(L, rc, &a->cfg); /* may push a string */
        return md_err_pusht(L, open_code(rc), "cannot serve %s: %s", ls->url, why);
    }
    ls->srv = s;
    ls->port = md_mbsrv_port(s);
    md_mbsrv_set_notify(s, on_notify, ls);
    return 1;
}

/* core.open(conf) -> server, or nil, message, code. A host name to bind is
 * looked up while the task waits (resolve_lua.h). */
static int srv_open(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    open_args a = {0};
    md_mbsrv_config *cfg = &a.cfg;
    cfg->transport = (md_mbsrv_transport)md_mb_link_from_table(L, 1, &cfg->link);
    cfg->hook_reads = opt_bool(L, 1, "hook_reads");
    cfg->hook_writes = opt_bool(L, 1, "hook_writes");
    cfg->idle_ms = opt_ms(L, 1, "idle_timeout");
    cfg->frame_ms = opt_ms(L, 1, "frame_timeout");
    lua_getfield(L, 1, "max_clients");
    cfg->max_clients = (int)luaL_optinteger(L, -1, 0);
    luaL_argcheck(L, cfg->max_clients >= 0 && cfg->max_clients <= 65536, 1,
                  "max_clients must be 1..65536");
    lua_pop(L, 1);
    a.strict = opt_bool(L, 1, "strict");
    a.nunits = opt_units(L, 1, a.units);
    if (cfg->link.port < 0 || cfg->link.port > 65535)
        return luaL_error(L, "bad field 'port': %d is outside 0..65535", cfg->link.port);
    md_mb_opt_str(L, 1, "url", a.url, sizeof a.url);
    if (cfg->transport == MD_MBSRV_RTU)
        return srv_opened(L, NULL, 0, &a);
    bool dgram = cfg->transport == MD_MBSRV_UDP || cfg->transport == MD_MBSRV_RTU_UDP;
    return md_lua_resolve_passive(L, cfg->link.host, cfg->link.port,
                                  dgram ? SOCK_DGRAM : SOCK_STREAM, srv_opened, &a,
                                  sizeof a);
}

static const luaL_Reg srv_methods[] = {
    {"set", srv_set},
    {"get", srv_get},
    {"set_object", srv_set_object},
    {"set_server_id", srv_set_server_id},
    {"units", srv_units},
    {"next_request", srv_next_request},
    {"reply", srv_reply},
    {"port", srv_port},
    {"stats", srv_stats},
    {"close", srv_close},
    {NULL, NULL},
};

static const luaL_Reg srv_meta[] = {
    {"__gc", srv_close},
    {"__close", srv_close},
    {"__tostring", srv_tostring},
    {NULL, NULL},
};

int luaopen_moondog_modbus_server_core(lua_State *L)
{
    if (luaL_newmetatable(L, SRV_MT)) {
        luaL_setfuncs(L, srv_meta, 0);
        luaL_newlib(L, srv_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, srv_open);
    lua_setfield(L, -2, "open");
    return 1;
}

/* }===== */
