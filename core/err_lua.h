/*
 * err_lua.h - pushing a failure to Lua the one way: `nil, message, code`,
 * like luaL_fileresult, where code is md_err_token() of a return value
 * (err.h). Also moondog.err, the vocabulary for Lua code (strerror,
 * token, is_exception). The engine registers it in package.preload.
 */
#ifndef MD_ERR_LUA_H
#define MD_ERR_LUA_H

#include <stdarg.h>

#include <lua.h>

#include "err.h"

/* Push nil, "<what>: <md_strerror(rc)>" (just the message when what is
 * NULL), md_err_token(rc). Returns 3, for `return md_err_push(L, rc, w)`. */
int md_err_push(lua_State *L, int rc, const char *what);

/* Push nil, the formatted message (lua_pushfstring's formats),
 * md_err_token(rc). Returns 3. */
int md_err_pushf(lua_State *L, int rc, const char *fmt, ...);

/* md_err_pushf with a va_list, for helpers that take a format. */
int md_err_pushv(lua_State *L, int rc, const char *fmt, va_list ap);

/* Push nil, the formatted message and token itself, for the few results
 * whose token is not a code of err.h (a Modbus exception's name). */
int md_err_pusht(lua_State *L, const char *token, const char *fmt, ...);

int luaopen_moondog_err(lua_State *L);

#endif
