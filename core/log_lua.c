/*
 * log_lua.c - moondog.log: the engine's log from Lua.
 *
 *   md.log.info("polled %d devices", n)   -- string.format when there are
 *   md.log.warn("meter offline:", err)    -- ... else values joined by spaces
 *   md.log.level("debug")                 -- set; md.log.level() gets
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "err_lua.h"
#include "log.h"

/* Format the arguments as one message on top of the stack. */
static const char *message(lua_State *L)
{
    int n = lua_gettop(L);
    if (n >= 2 && lua_type(L, 1) == LUA_TSTRING) {
        const char *fmt = lua_tostring(L, 1);
        for (const char *p = fmt; *p; p++)
            if (*p == '%') {
                lua_getglobal(L, "string");
                lua_getfield(L, -1, "format");
                lua_remove(L, -2);
                lua_insert(L, 1);
                lua_call(L, n, 1);
                return lua_tostring(L, -1);
            }
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static int log_at(lua_State *L, int level)
{
    if (md_log_enabled(level))
        md_log_text(level, message(L));
    return 0;
}

static int log_error(lua_State *L)
{
    return log_at(L, MD_LOG_ERROR);
}
static int log_warn(lua_State *L)
{
    return log_at(L, MD_LOG_WARN);
}
static int log_info(lua_State *L)
{
    return log_at(L, MD_LOG_INFO);
}
static int log_debug(lua_State *L)
{
    return log_at(L, MD_LOG_DEBUG);
}
static int log_trace(lua_State *L)
{
    return log_at(L, MD_LOG_TRACE);
}

static int log_level(lua_State *L)
{
    lua_pushstring(L, md_log_level_name(md_log_get_level()));
    if (!lua_isnoneornil(L, 1)) {
        const char *name = luaL_checkstring(L, 1);
        int level = md_log_level_from_name(name);
        if (level < 0)
            return luaL_argerror(L, 1, "expected error, warn, info, debug or trace");
        md_log_set_level(level);
    }
    return 1;
}

static int log_file(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        md_log_close();
        return 0;
    }
    const char *path = luaL_checkstring(L, 1);
    int rc = md_log_open(path);
    if (rc < 0) {
        return md_err_pusht(L, "io", "cannot open log file %s: %s", path,
                            md_strerror(rc));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* md.log.secret(s): s never appears in the log from now on ("***" instead). */
static int log_secret(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    if (md_log_secret(s) < 0)
        return luaL_error(L, "md.log.secret: too many secrets (32 are kept)");
    return 0;
}

static const luaL_Reg funcs[] = {
    {"secret", log_secret}, {"error", log_error}, {"warn", log_warn},
    {"info", log_info},     {"debug", log_debug}, {"trace", log_trace},
    {"level", log_level},   {"file", log_file},   {NULL, NULL},
};

int luaopen_moondog_log(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
