/*
 * resolve_lua.c - md_lua_resolve_passive (resolve_lua.h): conn.h's resolver
 * put into the engine's async pattern (engine.h), so a name lookup for a
 * listener suspends only the task that opens it.
 */
#include "resolve_lua.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "conn.h"
#include "engine.h"

typedef struct lookup {
    md_wait *wait;
    md_resolve *r; /* NULL once it answered */
    struct addrinfo *res;
    int err;
    md_resolved_fn then;
    _Alignas(max_align_t) unsigned char arg[]; /* the caller's copy */
} lookup;

static void lookup_free(lookup *o)
{
    if (o->r)
        md_resolve_cancel(o->r);
    if (o->res)
        freeaddrinfo(o->res);
    free(o);
}

static void on_resolved(md_loop *loop, struct addrinfo *res, int err, void *ud)
{
    (void)loop;
    lookup *o = ud;
    o->r = NULL;
    o->res = res;
    o->err = err;
    md_task_done(o->wait);
}

static void lookup_cancel(void *op)
{
    lookup_free(op);
}

static int lookup_results(lua_State *L, void *op)
{
    lookup *o = op;
    int n = o->then(L, o->err < 0 ? NULL : o->res, o->err, o->arg);
    lookup_free(o);
    return n;
}

int md_lua_resolve_passive(lua_State *L, const char *host, int port, int socktype,
                           md_resolved_fn then, const void *arg, size_t size)
{
    struct addrinfo *res = NULL;
    int rc = md_conn_resolve_literal(host, port, socktype, true, &res);
    if (rc != -EAGAIN) { /* a literal address, every address, or nothing */
        int n = then(L, rc < 0 ? NULL : res, rc, (void *)arg);
        if (rc == 0)
            freeaddrinfo(res);
        return n;
    }
    md_task_check(L);
    lookup *o = calloc(1, sizeof *o + size);
    if (!o)
        return luaL_error(L, "out of memory");
    o->then = then;
    memcpy(o->arg, arg, size);
    o->r = md_resolve_start(md_engine_loop(md_engine_of(L)), host, port, socktype, true,
                            on_resolved, o);
    if (!o->r) {
        rc = -errno;
        int n = then(L, NULL, rc, o->arg);
        free(o);
        return n;
    }
    o->wait = md_task_wait(L, o, lookup_cancel);
    return md_task_yield(L, o->wait, lookup_results);
}
