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

/*
 * Ownership. then() allocates (a userdata, a message) and so can raise out
 * of memory; whatever holds the address list or the lookup while it runs
 * must not depend on code after it. A to-be-closed box on the calling C
 * function's stack holds them: it is pushed first (while it is empty, a
 * failed allocation loses nothing), takes the literal address list, or
 * takes the lookup once its results are handed to then(), and frees what
 * it holds when the function returns or raises. The box stays on the stack
 * across the task's wait; a lookup that is cancelled (the task went away)
 * is freed by lookup_cancel and never reaches the box.
 */
#define BOX_MT "moondog.resolve.box"

typedef struct lookup lookup;

typedef struct box {
    struct addrinfo *res; /* a literal address's list; owned, or NULL */
    lookup *o;            /* owned once lookup_results runs, or NULL */
} box;

struct lookup {
    md_wait *wait;
    md_resolve *r; /* NULL once it answered */
    struct addrinfo *res;
    int err;
    md_resolved_fn then;
    box *box;                                  /* on the waiting function's stack */
    _Alignas(max_align_t) unsigned char arg[]; /* the caller's copy */
};

static void lookup_free(lookup *o)
{
    if (o->r)
        md_resolve_cancel(o->r);
    if (o->res)
        freeaddrinfo(o->res);
    free(o);
}

static int box_close(lua_State *L)
{
    box *b = luaL_checkudata(L, 1, BOX_MT);
    if (b->res)
        freeaddrinfo(b->res);
    if (b->o)
        lookup_free(b->o);
    *b = (box){0};
    return 0;
}

/* Pushes an empty box, closed when the calling C function returns. */
static box *push_box(lua_State *L)
{
    box *b = lua_newuserdatauv(L, sizeof *b, 0); /* stack: box */
    *b = (box){0};
    if (luaL_newmetatable(L, BOX_MT)) { /* stack: box, mt */
        lua_pushcfunction(L, box_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, box_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2); /* stack: box */
    lua_toclose(L, -1);
    return b;
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
    o->box->o = o; /* freed with the box, also when then() raises */
    return o->then(L, o->err < 0 ? NULL : o->res, o->err, o->arg);
}

int md_lua_resolve_passive(lua_State *L, const char *host, int port, int socktype,
                           md_resolved_fn then, const void *arg, size_t size)
{
    box *b = push_box(L);
    int rc = md_conn_resolve_literal(host, port, socktype, true, &b->res);
    if (rc != -EAGAIN) /* a literal address, every address, or nothing */
        return then(L, rc < 0 ? NULL : b->res, rc, (void *)arg);
    md_task_check(L);
    lookup *o = calloc(1, sizeof *o + size);
    if (!o)
        return luaL_error(L, "out of memory");
    o->then = then;
    o->box = b;
    memcpy(o->arg, arg, size);
    o->r = md_resolve_start(md_engine_loop(md_engine_of(L)), host, port, socktype, true,
                            on_resolved, o);
    if (!o->r) {
        rc = -errno;
        b->o = o;
        return then(L, NULL, rc, o->arg);
    }
    b->o = o; /* until the wait holds it: md_task_wait can raise */
    o->wait = md_task_wait(L, o, lookup_cancel);
    b->o = NULL;
    return md_task_yield(L, o->wait, lookup_results);
}
