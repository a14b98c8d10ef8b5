/*
 * err_lua.c - the Lua face of err.h. Bindings report an expected failure
 * through md_err_push*(), so every module returns the same three values
 * with the same tokens: nil, a message for a person, and a code for
 * programs. moondog.err lets Lua code ask the same table:
 *
 *   err.strerror(n), err.token(n)   for a numeric code (either sign)
 *   err.is_exception(code)          true when code is a Modbus exception
 *                                   token ("illegal_data_address", ...,
 *                                   or "exception" for an unnamed one)
 *   err.exceptions                  { [token] = exception number }
 *
 * A Modbus exception is the device's answer, not a transport failure:
 * the code is the exception's name, and is_exception() is the documented
 * way to tell (docs/errors.md); no caller parses messages.
 */
#include "err_lua.h"

#include <stdarg.h>

#include <lauxlib.h>

#include "err.h"
#include "mbcodec.h"

int md_err_push(lua_State *L, int rc, const char *what)
{
    lua_pushnil(L);
    if (what)
        lua_pushfstring(L, "%s: %s", what, md_strerror(rc));
    else
        lua_pushstring(L, md_strerror(rc));
    lua_pushstring(L, md_err_token(rc));
    return 3;
}

int md_err_pushv(lua_State *L, int rc, const char *fmt, va_list ap)
{
    lua_pushnil(L);
    lua_pushvfstring(L, fmt, ap);
    lua_pushstring(L, md_err_token(rc));
    return 3;
}

int md_err_pushf(lua_State *L, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    md_err_pushv(L, rc, fmt, ap);
    va_end(ap);
    return 3;
}

int md_err_pusht(lua_State *L, const char *token, const char *fmt, ...)
{
    va_list ap;
    lua_pushnil(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushstring(L, token);
    return 3;
}

static int err_strerror(lua_State *L)
{
    lua_pushstring(L, md_strerror((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int err_token(lua_State *L)
{
    lua_pushstring(L, md_err_token((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* stack: code -> boolean; looks the token up in err.exceptions. */
static int err_is_exception(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushvalue(L, 1);
    lua_rawget(L, lua_upvalueindex(1));
    lua_pushboolean(L, !lua_isnil(L, -1));
    return 1;
}

int luaopen_moondog_err(lua_State *L)
{
    lua_newtable(L); /* stack: M */
    lua_newtable(L); /* stack: M, exceptions */
    for (int i = 1; i < 256; i++) {
        const char *name = md_mb_exception_name(i);
        if (name) {
            lua_pushinteger(L, i);
            lua_setfield(L, -2, name);
        }
    }
    lua_pushinteger(L, 0); /* an exception number moondog has no name for */
    lua_setfield(L, -2, "exception");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, err_is_exception, 1);
    lua_setfield(L, -3, "is_exception");
    lua_setfield(L, -2, "exceptions"); /* stack: M */
    lua_pushcfunction(L, err_strerror);
    lua_setfield(L, -2, "strerror");
    lua_pushcfunction(L, err_token);
    lua_setfield(L, -2, "token");
    return 1;
}
