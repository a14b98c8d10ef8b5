/*
 * service_lua.c - moondog.service.core: systemd's notification protocol
 * for moondog.service (core/sdnotify.c does the work).
 *
 *   core.notify("STATUS=polling 3 devices")  -- true, false (not under systemd),
 *                                            -- or nil, msg, code
 *   core.watchdog_ms()                       -- systemd's WatchdogSec in ms, or 0
 */
#include <errno.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "err_lua.h"
#include "sdnotify.h"

static int l_notify(lua_State *L)
{
    const char *state = luaL_checkstring(L, 1);
    int rc = md_sdnotify(state);
    if (rc >= 0) {
        lua_pushboolean(L, rc > 0);
        return 1;
    }
    /* ENOENT: the socket is gone, the manager closed it ("closed"). */
    const char *code = rc == -ENOENT   ? "closed"
                       : rc == -EAGAIN ? "busy"
                                       : md_err_token(rc);
    return md_err_pusht(L, code, "cannot notify systemd through $NOTIFY_SOCKET: %s",
                        md_strerror(rc));
}

static int l_watchdog_ms(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)md_sdnotify_watchdog_ms());
    return 1;
}

int luaopen_moondog_service_core(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"notify", l_notify},
        {"watchdog_ms", l_watchdog_ms},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
