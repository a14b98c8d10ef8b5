/*
 * jsonfmt_lua.c - moondog.jsonfmt: a flat Lua table as one JSON object,
 * byte for byte what lua-cjson 2.1 writes with encode_number_precision(14)
 * and encode_invalid_numbers("null"), a few times faster (jsonfmt.h says
 * why: no printf for the usual numbers).
 *
 *   local jsonfmt = require "moondog.jsonfmt"
 *   jsonfmt.object{ a = 1.5, b = "x", c = true }  --> '{"a":1.5,"b":"x","c":true}'
 *   jsonfmt.object{ a = {} }                       --> nil: not flat, use cjson
 *   jsonfmt.pick(keys, values, seen)  --> the object of values[k] for each key
 *                                         k of keys, noting them in seen
 *
 * The keys come in lua_next's order, as cjson takes them. A table whose
 * keys are not all strings or whose values are not all numbers, strings
 * or booleans gives nil (and no error): the caller encodes it with cjson.
 * The text is built in a scratch buffer reused from call to call.
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "jsonfmt.h"

/* The text grows in a scratch userdata kept as the function's upvalue
 * (reused from call to call), not a luaL_Buffer: lua_next keeps a key on
 * the stack, above where a luaL_Buffer's box must stay on top. */
typedef struct {
    char *p;
    size_t len, cap;
} scratch;

static void reserve(lua_State *L, scratch *s, size_t more)
{
    if (s->len + more <= s->cap)
        return;
    size_t cap = s->cap * 2 > s->len + more ? s->cap * 2 : s->len + more;
    char *p = lua_newuserdatauv(L, cap, 0);
    memcpy(p, s->p, s->len);
    lua_replace(L, lua_upvalueindex(1)); /* the old one is garbage now */
    s->p = p;
    s->cap = cap;
}

static void add(lua_State *L, scratch *s, const char *b, size_t n)
{
    reserve(L, s, n);
    memcpy(s->p + s->len, b, n);
    s->len += n;
}

static void add_string(lua_State *L, scratch *s, const char *str, size_t len)
{
    reserve(L, s, len + 2); /* most strings need no escape */
    s->p[s->len++] = '"';
    size_t run = 0; /* bytes since the last escape, added in one go */
    for (size_t i = 0; i < len; i++) {
        if (md_jsonfmt_plain((unsigned char)str[i]))
            continue;
        const char *esc = md_jsonfmt_escape((unsigned char)str[i]);
        add(L, s, str + run, i - run);
        add(L, s, esc, strlen(esc));
        run = i + 1;
    }
    add(L, s, str + run, len - run);
    add(L, s, "\"", 1);
}

/* Add "key":value for the key and value on the stack's top two slots;
 * 0 (nothing added) when the value is of no type this module writes. */
static int add_pair(lua_State *L, scratch *s, int kidx, int vidx)
{
    size_t len;
    const char *str;
    int vt = lua_type(L, vidx);
    if (vt != LUA_TNUMBER && vt != LUA_TBOOLEAN && vt != LUA_TSTRING)
        return 0;
    if (s->len > 1)
        add(L, s, ",", 1);
    str = lua_tolstring(L, kidx, &len);
    add_string(L, s, str, len);
    add(L, s, ":", 1);
    switch (vt) {
    case LUA_TNUMBER:
        reserve(L, s, MD_JSONFMT_NUMBER_MAX);
        s->len += lua_isinteger(L, vidx)
                      ? md_jsonfmt_integer(s->p + s->len, lua_tointeger(L, vidx))
                      : md_jsonfmt_number(s->p + s->len, lua_tonumber(L, vidx));
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, vidx))
            add(L, s, "true", 4);
        else
            add(L, s, "false", 5);
        break;
    default:
        str = lua_tolstring(L, vidx, &len);
        add_string(L, s, str, len);
        break;
    }
    return 1;
}

static scratch scratch_of(lua_State *L)
{
    scratch s = {lua_touserdata(L, lua_upvalueindex(1)), 0,
                 lua_rawlen(L, lua_upvalueindex(1))};
    return s;
}

/* jsonfmt.object(t) -> text, or nil when t is not flat (see above) */
static int jf_object(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    scratch s = scratch_of(L);
    add(L, &s, "{", 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) { /* stack: t, key, value */
        if (lua_type(L, -2) != LUA_TSTRING || !add_pair(L, &s, -2, -1))
            return 0;
        lua_pop(L, 1); /* pop value */
    }
    add(L, &s, "}", 1);
    lua_pushlstring(L, s.p, s.len);
    return 1;
}

/* jsonfmt.pick(keys, values, seen) -> text, or nil: the JSON object of
 * values[k] for every key k of the table keys (its values do not matter)
 * that has a value there, noting each values[k] (nil too) in seen[k]. nil
 * when a key is no string or a value is neither a number nor a string:
 * the caller then builds the object itself (seen may be partly written). */
static int jf_pick(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    scratch s = scratch_of(L);
    add(L, &s, "{", 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) { /* stack: keys, values, seen, key, _ */
        lua_pop(L, 1);
        if (lua_type(L, 4) != LUA_TSTRING)
            return 0;
        lua_pushvalue(L, 4);
        lua_pushvalue(L, 4);
        lua_rawget(L, 2); /* stack: ..., key, key, value */
        int vt = lua_type(L, 6);
        if (vt != LUA_TNIL && vt != LUA_TNUMBER && vt != LUA_TSTRING)
            return 0;
        if (vt != LUA_TNIL)
            add_pair(L, &s, 4, 6);
        lua_rawset(L, 3); /* seen[key] = value; stack: ..., key */
    }
    add(L, &s, "}", 1);
    lua_pushlstring(L, s.p, s.len);
    return 1;
}

int luaopen_moondog_jsonfmt(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"object", jf_object},
        {"pick", jf_pick},
        {NULL, NULL},
    };
    luaL_newlibtable(L, funcs);
    lua_newuserdatauv(L, 1024, 0); /* the scratch text (see reserve) */
    luaL_setfuncs(L, funcs, 1);
    return 1;
}
