/*
 * resolve_lua.h - resolving an address to bind from a task, without
 * blocking the loop: a listener on a host name (stream.listen, the Modbus
 * server) waits for conn.c's resolver thread the way every other I/O call
 * waits, while the other tasks run.
 */
#ifndef MD_RESOLVE_LUA_H
#define MD_RESOLVE_LUA_H

#include <stddef.h>

#include <lua.h>

struct addrinfo;

/* What to do with the addresses: res (NULL when err < 0) is freed after it
 * returns; err is 0, -errno or -MD_EDNS (err.h). arg is the caller's copy.
 * Returns the number of results it pushed, like a lua_CFunction. */
typedef int (*md_resolved_fn)(lua_State *L, const struct addrinfo *res, int err,
                              void *arg);

/*
 * Resolve host:port for bind() (passive: NULL, "" and "*" are every local
 * address) on sockets of socktype, then return then(L, res, err, arg). A
 * literal address resolves at once. A host name is looked up through
 * md_resolve_start while the calling task waits (on the main thread the
 * loop runs meanwhile); arg (size bytes) is copied and kept for then.
 * Raises for a host name where L cannot wait (engine.h).
 */
int md_lua_resolve_passive(lua_State *L, const char *host, int port, int socktype,
                           md_resolved_fn then, const void *arg, size_t size);

#endif
