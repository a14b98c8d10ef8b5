/*
 * mbcodec_lua.h - moondog.modbus.codec, the Modbus codec (mbcodec.h) for
 * Lua. The engine registers it in package.preload.
 */
#ifndef MD_MBCODEC_LUA_H
#define MD_MBCODEC_LUA_H

#include <lua.h>

int luaopen_moondog_modbus_codec(lua_State *L);

#endif
