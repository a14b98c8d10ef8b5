/*
 * mblink_lua.c - see mblink_lua.h. The address syntax itself is parsed in
 * Lua; this only moves its fields into C, the same way for clients and
 * servers.
 */
#include "mblink_lua.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

void md_mb_opt_str(lua_State *L, int t, const char *k, char *out, size_t len)
{
    if (lua_getfield(L, t, k) == LUA_TSTRING)
        snprintf(out, len, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
}

const char *md_mb_push_busy_message(lua_State *L, const char *device)
{
    return lua_pushfstring(L,
                           "serial line %s is in use by another program (moondog or "
                           "another Modbus master); two masters on one RS-485 line "
                           "corrupt each other's frames: stop the other program, or "
                           "share one bus in this one (md.modbus.shared)",
                           device);
}

static int opt_int(lua_State *L, int t, const char *k, int dflt)
{
    int v = dflt;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        int isnum;
        v = (int)lua_tointegerx(L, -1, &isnum);
        if (!isnum)
            luaL_error(L, "bad field '%s': expected an integer", k);
    }
    lua_pop(L, 1);
    return v;
}

int md_mb_link_from_table(lua_State *L, int t, md_mb_link *link)
{
    static const char *const transports[] = {"tcp",     "udp",     "rtu",
                                             "rtu+tcp", "rtu+udp", NULL};
    _Static_assert(MD_MB_LINK_RTU_UDP == 4, "transports[] follows MD_MB_LINK_*");
    t = lua_absindex(L, t);
    memset(link, 0, sizeof *link);
    lua_getfield(L, t, "transport");
    int transport = luaL_checkoption(L, -1, NULL, transports);
    lua_pop(L, 1);
    md_mb_opt_str(L, t, "host", link->host, sizeof link->host);
    md_mb_opt_str(L, t, "path", link->device, sizeof link->device);
    link->port = opt_int(L, t, "port", 502);
    link->baud = opt_int(L, t, "baud", 9600);
    char parity[4] = "N";
    md_mb_opt_str(L, t, "parity", parity, sizeof parity);
    link->parity = parity[0];
    link->data_bits = opt_int(L, t, "data", 8);
    link->stop_bits = opt_int(L, t, "stop", 1);
    lua_getfield(L, t, "rs485");
    link->rs485 = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return transport;
}
