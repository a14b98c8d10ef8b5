/*
 * mblink_lua.h - reading a parsed Modbus address (the table that
 * moondog.modbus.address.parse returns) into C, for mbus_lua.c and
 * mbserver_lua.c.
 */
#ifndef MD_MBLINK_LUA_H
#define MD_MBLINK_LUA_H

#include <stddef.h>

#include <lua.h>

#include "mblink.h"

/* Fill link from the table at index t (fields transport, host, port, path,
 * baud, parity, data, stop, rs485; defaults port 502, 9600 8N1) and return
 * the transport (MD_MB_LINK_*). Raises on a missing transport or a field of
 * the wrong type. */
int md_mb_link_from_table(lua_State *L, int t, md_mb_link *link);

/* Push and return the message for a serial line that another opener holds
 * (EBUSY from the exclusive open), the same for clients and servers. */
const char *md_mb_push_busy_message(lua_State *L, const char *device);

/* Copy the string field k of the table at t into out, if there is one. */
void md_mb_opt_str(lua_State *L, int t, const char *k, char *out, size_t len);

#endif
