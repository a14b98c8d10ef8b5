/*
 * mbus_lua.c - moondog.modbus.core: Modbus client buses for Lua.
 *
 *   local bus = core.open{transport = "tcp", host = "127.0.0.1", port = 502,
 *                         timeout = 1.5, delay = 0, backoff = 0.5,
 *                         backoff_max = 5, url = "tcp://..."}
 *   bus:read(unit, "holding", addr, count [, {timeout = s, raw = true}])
 *   bus:write_coil / write_register / write_coils / write_registers /
 *       mask_write / write_read / report_server_id / read_device_id
 *   bus:stats([unit]), bus:timeout(), bus:closed(), bus:close()
 *
 * lua/moondog/modbus/init.lua builds the user-facing API on top (address
 * parsing, unit handles, typed values). Every call follows the engine's
 * async pattern: argument errors raise at once; device and I/O failures
 * return nil, message, code.
 *
 * Ownership: a request is allocated here, owned by the bus while queued or
 * running, and given back on the loop thread, either to the results
 * function (normal case: it becomes the bus's spare for the next call, or
 * is freed) or to the completion, which frees it when the waiting task went
 * away. A socket bus may complete a request inside md_mbus_submit(); the
 * engine's fast path then returns the results without yielding.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "conn.h"
#include "engine.h"
#include "err_lua.h"
#include "mbcodec.h"
#include "mblink_lua.h"
#include "mbus.h"

#define BUS_MT "moondog.modbus.bus"

typedef struct lreq lreq;

typedef struct lbus {
    md_mbus *bus; /* NULL once closed */
    md_engine *E;
    bool rtu_framing; /* unit 0 is a broadcast: writes only, no answer */
    char url[300];
    char device[256]; /* serial line (rtu), for messages; "" for sockets */
    lreq *spare;      /* a finished request kept for the next call; owned here */
} lbus;

struct lreq {
    md_mbus_req req;
    md_wait *wait;
    md_loop *loop;
    lbus *lb; /* alive while results are pushed: the call's argument 1 */
    int timeout_ms;
    bool raw;
    bool completed; /* md_task_done was called: results would free it */
    bool local;     /* a socket bus: the loop carries it (md_loop_hold_local) */
};

/* {===== requests ===== */

static void on_request_done(md_loop *loop, void *ud)
{
    lreq *q = ud;
    if (q->local)
        md_loop_release_local(loop);
    else
        md_loop_release(loop);
    if (q->req.abandoned) {
        free(q);
        return;
    }
    q->completed = true;
    md_task_done(q->wait);
}

static void request_cancel(void *op)
{
    lreq *q = op;
    if (q->completed) { /* its task was cancelled before it took the results */
        free(q);
        return;
    }
    q->req.abandoned = true; /* the bus still owns it; freed on completion */
}

/* What the request did, for messages: built only when one is needed. */
static void describe(const md_mbus_req *r, char *buf, size_t size)
{
    static const char *const kinds[] = {"", "coil", "discrete", "holding", "input"};
    switch (r->fc) {
    case 1:
    case 2:
    case 3:
    case 4:
        snprintf(buf, size, "read %s %d+%d from unit %d", kinds[r->fc], r->addr, r->count,
                 r->unit);
        break;
    case 5: snprintf(buf, size, "write coil %d on unit %d", r->addr, r->unit); break;
    case 6: snprintf(buf, size, "write register %d on unit %d", r->addr, r->unit); break;
    case 15:
        snprintf(buf, size, "write coils %d+%d on unit %d", r->addr, r->count, r->unit);
        break;
    case 16:
        snprintf(buf, size, "write registers %d+%d on unit %d", r->addr, r->count,
                 r->unit);
        break;
    case 22:
        snprintf(buf, size, "mask write register %d on unit %d", r->addr, r->unit);
        break;
    case 23: snprintf(buf, size, "write/read registers on unit %d", r->unit); break;
    case 17: snprintf(buf, size, "report server id of unit %d", r->unit); break;
    default: snprintf(buf, size, "read device identification of unit %d", r->unit); break;
    }
}

/* Keep one finished request per bus for its next call: back-to-back calls
 * then skip a malloc and free of 3.3 KB, which glibc serves from its
 * general bins, not its per-thread cache. Only the results function
 * recycles: the bus userdata is still on the caller's stack then. */
static void recycle(lreq *q)
{
    if (q->lb->spare)
        free(q);
    else
        q->lb->spare = q;
}

static const char *exception_text(int code)
{
    const char *text = md_mb_exception_text(code);
    return text ? text : "unknown exception";
}

/* Push nil, message, code of a failed connect: a serial line that another
 * opener holds, or a bus that backs off after a failed attempt (then when
 * it tries again, and what the last attempt got). The code is err.h's for
 * a connect (md_err_connect), the same as from a stream or MQTT. */
static void push_connect_failure(lua_State *L, lreq *q, const char *what)
{
    md_mbus_req *r = &q->req;
    int top = lua_gettop(L);
    lua_pushfstring(L, "%s at %s: ", what, q->lb->url);
    bool busy = r->sys_errno == EBUSY && q->lb->device[0];
    if (busy)
        md_mb_push_busy_message(L, q->lb->device);
    if (r->retry_in_ms) {
        char in[32]; /* tenths of a second, rounded up: never "in 0.0 s" */
        snprintf(in, sizeof in, "%.1f", ceil(r->retry_in_ms / 100.0) / 10.0);
        if (busy)
            lua_pushfstring(L, "; next attempt in %s s", in);
        else
            lua_pushfstring(
                L, "not connected; next connect attempt in %s s (last attempt: %s)", in,
                r->sys_errno ? md_strerror(r->sys_errno) : "failed");
    }
    lua_concat(L, lua_gettop(L) - top);
    md_err_pushf(L, md_err_connect(r->sys_errno), "%s", lua_tostring(L, -1));
    lua_remove(L, -4); /* the message built above: nil, message, code remain */
}

/* Push nil, message, code for a failed request (err_lua.h). */
static int push_failure(lua_State *L, lreq *q)
{
    md_mbus_req *r = &q->req;
    char what[64];
    describe(r, what, sizeof what);
    const char *url = q->lb->url;
    switch (-r->status) {
    case MD_MBUS_EEXCEPTION: {
        /* The code is the exception's name: moondog.err.is_exception(code). */
        const char *token = md_mb_exception_name(r->exception);
        return md_err_pusht(L, token ? token : "exception",
                            "%s at %s: %s (Modbus exception %d)", what, url,
                            exception_text(r->exception), r->exception);
    }
    case MD_MBUS_ETIMEOUT:
        return md_err_pushf(L, r->status, "%s at %s: no response within %f s", what, url,
                            (lua_Number)q->timeout_ms / 1000.0);
    case MD_MBUS_ECONNECT:
        if (r->sys_errno == EBUSY || r->retry_in_ms) {
            push_connect_failure(L, q, what);
            return 3;
        }
        return md_err_pushf(L, md_err_connect(r->sys_errno), "%s at %s: %s: %s", what,
                            url, md_strerror(r->status),
                            r->sys_errno ? md_strerror(r->sys_errno)
                                         : "closed by the peer");
    case MD_MBUS_ECONNLOST:
        return md_err_pushf(
            L, r->status, "%s at %s: %s: %s", what, url, md_strerror(r->status),
            r->sys_errno ? md_strerror(r->sys_errno) : "closed by the peer");
    default:
        return md_err_pushf(L, r->status, "%s at %s: %s", what, url,
                            md_strerror(r->status));
    }
}

static void push_registers(lua_State *L, const uint8_t *data, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, md_mb_get_u16(data + 2 * i));
        lua_rawseti(L, -2, i + 1);
    }
}

static void push_bits(lua_State *L, const uint8_t *data, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushboolean(L, (data[i / 8] >> (i % 8)) & 1);
        lua_rawseti(L, -2, i + 1);
    }
}

/* FC 43/14 response: MEI, code, conformity, more follows, next id, count,
 * then (id, length, bytes) objects. */
static int push_device_id(lua_State *L, const uint8_t *d, size_t n)
{
    if (n < 6)
        return -1;
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, d[2]);
    lua_setfield(L, -2, "conformity");
    lua_pushboolean(L, d[3] == 0xff);
    lua_setfield(L, -2, "more");
    lua_pushinteger(L, d[4]);
    lua_setfield(L, -2, "next_object");
    lua_newtable(L);
    size_t pos = 6;
    for (int i = 0; i < d[5]; i++) {
        if (pos + 2 > n || pos + 2 + d[pos + 1] > n)
            return -1;
        lua_pushlstring(L, (const char *)d + pos + 2, d[pos + 1]);
        lua_rawseti(L, -2, d[pos]);
        pos += 2u + d[pos + 1];
    }
    lua_setfield(L, -2, "objects");
    return 0;
}

static int request_results(lua_State *L, void *op)
{
    lreq *q = op;
    md_mbus_req *r = &q->req;
    int nret = 1;
    if (r->status != 0) {
        nret = push_failure(L, q);
    } else if (q->raw || r->fc == 17) {
        lua_pushlstring(L, (const char *)r->data, r->data_len);
    } else if (r->fc == 1 || r->fc == 2) {
        push_bits(L, r->data, r->count);
    } else if (r->fc == 3 || r->fc == 4 || r->fc == 23) {
        push_registers(L, r->data, r->count);
    } else if (r->fc == 43) {
        int top = lua_gettop(L);
        if (push_device_id(L, r->data, r->data_len) < 0) {
            lua_settop(L, top);
            r->status = -MD_MBUS_EMALFORMED;
            nret = push_failure(L, q);
        }
    } else {
        lua_pushboolean(L, 1);
    }
    recycle(q);
    return nret;
}

/* }===== */

/* {===== arguments ===== */

static lbus *check_bus(lua_State *L)
{
    lbus *b = luaL_checkudata(L, 1, BUS_MT);
    if (!b->bus)
        luaL_error(L, "attempt to use a closed Modbus bus");
    return b;
}

static int check_range(lua_State *L, int arg, lua_Integer lo, lua_Integer hi,
                       const char *what)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < lo || v > hi)
        luaL_error(L, "bad argument #%d (%s): %d is outside %d..%d", arg, what, (int)v,
                   (int)lo, (int)hi);
    return (int)v;
}

static void check_span(lua_State *L, int addr, int count)
{
    if (addr + count > 65536)
        luaL_error(L, "address %d + count %d goes past register 65535", addr, count);
}

#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
_Static_assert(END_OF(md_mbus_req, wregs) <= offsetof(md_mbus_req, wbits) &&
                   END_OF(md_mbus_req, wbits) <= offsetof(md_mbus_req, data),
               "clear_request expects wregs, wbits, data in this order");

/* Zero a request but for its big buffers (wregs, wbits and data, 2.5 KB):
 * the bus reads each only as far as the request fills it, and zeroing them
 * cost more than the rest of a call on loopback. */
static void clear_request(lreq *q)
{
    char *p = (char *)q;
    memset(p, 0, offsetof(lreq, req.wregs));
    memset(p + END_OF(lreq, req.wbits), 0,
           offsetof(lreq, req.data) - END_OF(lreq, req.wbits));
    memset(p + END_OF(lreq, req.data), 0, sizeof *q - END_OF(lreq, req.data));
}

static bool is_read(int fc)
{
    return fc <= 4 || fc == 17 || fc == 23 || fc == 43;
}

/* Allocate a request after every argument was checked; nothing may raise
 * between this and submit() except running out of memory. */
static lreq *new_request(lua_State *L, lbus *b, int unit, int fc)
{
    if (unit == 0 && b->rtu_framing && is_read(fc))
        luaL_error(L, "unit 0 is the RTU broadcast address: devices act on writes to it "
                      "but never answer, so it cannot be read");
    md_task_check(L);
    lreq *q = b->spare;
    b->spare = NULL;
    if (!q && !(q = malloc(sizeof *q))) {
        luaL_error(L, "out of memory");
        return NULL; /* not reached */
    }
    clear_request(q);
    q->req.unit = (uint8_t)unit;
    q->req.fc = (uint8_t)fc;
    q->lb = b;
    return q;
}

/* Options table at arg: {timeout = seconds, raw = bool}. Raises on misuse;
 * must run before the request is allocated. */
static void check_opts(lua_State *L, int arg, int *timeout_ms, bool *raw)
{
    *timeout_ms = 0;
    *raw = false;
    if (lua_isnoneornil(L, arg))
        return;
    luaL_checktype(L, arg, LUA_TTABLE);
    if (lua_getfield(L, arg, "timeout") != LUA_TNIL) {
        lua_Number t = luaL_checknumber(L, -1);
        if (!(t > 0 && t <= 3600))
            luaL_error(L, "bad option timeout: %f (expected seconds, 0 < t <= 3600)", t);
        *timeout_ms = (int)ceil(t * 1000.0);
    }
    if (lua_getfield(L, arg, "raw") != LUA_TNIL)
        *raw = lua_toboolean(L, -1);
    lua_pop(L, 2);
}

static int submit(lua_State *L, lbus *b, lreq *q, int timeout_ms, bool raw)
{
    md_engine *E = b->E;
    md_loop *loop = md_engine_loop(E);
    q->raw = raw;
    q->req.timeout_ms = timeout_ms;
    q->timeout_ms = timeout_ms ? timeout_ms : md_mbus_current_timeout(b->bus);
    q->req.priority = q->req.fc != 1 && q->req.fc != 2 && q->req.fc != 3 &&
                      q->req.fc != 4 && q->req.fc != 43 && q->req.fc != 17;
    /* A request may wait behind others; past this it fails without being sent. */
    int64_t queue_limit = 10LL * q->timeout_ms;
    q->req.deadline_ms = md_loop_now(loop) + (queue_limit > 30000 ? queue_limit : 30000);
    q->req.done = (md_completion){.fn = on_request_done, .ud = q};
    q->loop = loop;
    q->wait = md_task_wait(L, q, request_cancel);
    q->local =
        b->device[0] == '\0'; /* sockets run on the loop, serial lines on a worker */
    if (q->local)
        md_loop_hold_local(loop);
    else
        md_loop_hold(loop);
    md_mbus_submit(b->bus, &q->req);
    return md_task_yield(L, q->wait, request_results);
}

/* }===== */

/* {===== methods ===== */

static const struct {
    const char *name;
    int fc, max;
} read_kinds[] = {
    {"coil", 1, MD_MBUS_MAX_BITS},
    {"discrete", 2, MD_MBUS_MAX_BITS},
    {"holding", 3, MD_MBUS_MAX_REGS},
    {"input", 4, MD_MBUS_MAX_REGS},
};

/* bus:read(unit, kind, addr, count [, opts]) */
static int bus_read(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    const char *kind = luaL_checkstring(L, 3);
    int k = -1;
    for (int i = 0; i < 4 && k < 0; i++)
        if (strcmp(kind, read_kinds[i].name) == 0)
            k = i;
    if (k < 0)
        return luaL_error(L,
                          "bad argument #3: unknown kind '%s' (expected holding, input, "
                          "coil or discrete)",
                          kind);
    int addr = check_range(L, 4, 0, 65535, "address");
    int count = check_range(L, 5, 1, read_kinds[k].max, "count");
    check_span(L, addr, count);
    int timeout_ms;
    bool raw;
    check_opts(L, 6, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, read_kinds[k].fc);
    q->req.addr = (uint16_t)addr;
    q->req.count = (uint16_t)count;
    return submit(L, b, q, timeout_ms, raw);
}

/* bus:write_coil(unit, addr, bool [, opts]) */
static int bus_write_coil(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int addr = check_range(L, 3, 0, 65535, "address");
    luaL_checktype(L, 4, LUA_TBOOLEAN);
    int timeout_ms;
    bool raw;
    check_opts(L, 5, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, 5);
    q->req.addr = (uint16_t)addr;
    q->req.wbits[0] = (uint8_t)lua_toboolean(L, 4);
    return submit(L, b, q, timeout_ms, false);
}

/* bus:write_register(unit, addr, value [, opts]) */
static int bus_write_register(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int addr = check_range(L, 3, 0, 65535, "address");
    int value = check_range(L, 4, -32768, 65535, "register value");
    int timeout_ms;
    bool raw;
    check_opts(L, 5, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, 6);
    q->req.addr = (uint16_t)addr;
    q->req.wregs[0] = (uint16_t)value;
    return submit(L, b, q, timeout_ms, false);
}

/* Read an array argument of n values (1..max) with a checker per item. */
static int check_array(lua_State *L, int arg, int max, const char *what)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    int n = (int)luaL_len(L, arg);
    if (n < 1 || n > max)
        luaL_error(L, "bad argument #%d: %d %s (expected 1..%d)", arg, n, what, max);
    return n;
}

static void fill_regs(lua_State *L, int arg, int n, uint16_t *out)
{
    for (int i = 0; i < n; i++) {
        lua_geti(L, arg, i + 1);
        int isnum;
        lua_Integer v = lua_tointegerx(L, -1, &isnum);
        if (!isnum || v < -32768 || v > 65535)
            luaL_error(L,
                       "bad argument #%d: item %d is not a register value (an integer "
                       "-32768..65535)",
                       arg, i + 1);
        out[i] = (uint16_t)v;
        lua_pop(L, 1);
    }
}

/* bus:write_registers(unit, addr, {values} [, opts]) */
static int bus_write_registers(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int addr = check_range(L, 3, 0, 65535, "address");
    int n = check_array(L, 4, MD_MBUS_MAX_WRITE_REGS, "registers");
    check_span(L, addr, n);
    uint16_t regs[MD_MBUS_MAX_WRITE_REGS];
    fill_regs(L, 4, n, regs);
    int timeout_ms;
    bool raw;
    check_opts(L, 5, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, 16);
    q->req.addr = (uint16_t)addr;
    q->req.count = (uint16_t)n;
    memcpy(q->req.wregs, regs, sizeof regs[0] * (size_t)n);
    return submit(L, b, q, timeout_ms, false);
}

/* bus:write_coils(unit, addr, {bools} [, opts]) */
static int bus_write_coils(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int addr = check_range(L, 3, 0, 65535, "address");
    int n = check_array(L, 4, MD_MBUS_MAX_WRITE_BITS, "coils");
    check_span(L, addr, n);
    int timeout_ms;
    bool raw;
    check_opts(L, 5, &timeout_ms, &raw);
    for (int i = 0; i < n; i++) {
        int t = lua_geti(L, 4, i + 1);
        lua_pop(L, 1);
        if (t != LUA_TBOOLEAN)
            return luaL_error(L, "bad argument #4: item %d is a %s, expected a boolean",
                              i + 1, lua_typename(L, t));
    }
    lreq *q = new_request(L, b, unit, 15);
    q->req.addr = (uint16_t)addr;
    q->req.count = (uint16_t)n;
    for (int i = 0; i < n; i++) {
        lua_geti(L, 4, i + 1);
        q->req.wbits[i] = (uint8_t)lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return submit(L, b, q, timeout_ms, false);
}

/* bus:mask_write(unit, addr, and_mask, or_mask [, opts]) */
static int bus_mask_write(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int addr = check_range(L, 3, 0, 65535, "address");
    int and_mask = check_range(L, 4, 0, 65535, "AND mask");
    int or_mask = check_range(L, 5, 0, 65535, "OR mask");
    int timeout_ms;
    bool raw;
    check_opts(L, 6, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, 22);
    q->req.addr = (uint16_t)addr;
    q->req.wregs[0] = (uint16_t)and_mask;
    q->req.wregs[1] = (uint16_t)or_mask;
    return submit(L, b, q, timeout_ms, false);
}

/* bus:write_read(unit, waddr, {values}, raddr, rcount [, opts]) */
static int bus_write_read(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int waddr = check_range(L, 3, 0, 65535, "write address");
    int n = check_array(L, 4, MD_MBUS_MAX_RW_WRITE_REGS, "registers");
    check_span(L, waddr, n);
    int raddr = check_range(L, 5, 0, 65535, "read address");
    int rcount = check_range(L, 6, 1, MD_MBUS_MAX_REGS, "read count");
    check_span(L, raddr, rcount);
    uint16_t regs[MD_MBUS_MAX_RW_WRITE_REGS];
    fill_regs(L, 4, n, regs);
    int timeout_ms;
    bool raw;
    check_opts(L, 7, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, 23);
    q->req.waddr = (uint16_t)waddr;
    q->req.wcount = (uint16_t)n;
    q->req.addr = (uint16_t)raddr;
    q->req.count = (uint16_t)rcount;
    memcpy(q->req.wregs, regs, sizeof regs[0] * (size_t)n);
    return submit(L, b, q, timeout_ms, raw);
}

/* bus:report_server_id(unit [, opts]) -> raw bytes after the byte count */
static int bus_report_server_id(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int timeout_ms;
    bool raw;
    check_opts(L, 3, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, 17);
    return submit(L, b, q, timeout_ms, true);
}

/* bus:read_device_id(unit [, code = 1 [, object = 0]] [, opts]) -> one
 * response: {conformity, more, next_object, objects = {[id] = text}} */
static int bus_read_device_id(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = check_range(L, 2, 0, 255, "unit id");
    int code = lua_isnoneornil(L, 3) ? 1 : check_range(L, 3, 1, 4, "read device id code");
    int object = lua_isnoneornil(L, 4) ? 0 : check_range(L, 4, 0, 255, "object id");
    int timeout_ms;
    bool raw;
    check_opts(L, 5, &timeout_ms, &raw);
    lreq *q = new_request(L, b, unit, 43);
    q->req.mei_code = (uint8_t)code;
    q->req.object_id = (uint8_t)object;
    return submit(L, b, q, timeout_ms, raw);
}

static void push_stats(lua_State *L, const md_mbus_stats *s)
{
    lua_createtable(L, 0, 10);
    lua_pushinteger(L, (lua_Integer)s->requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, (lua_Integer)s->ok);
    lua_setfield(L, -2, "ok");
    lua_pushinteger(L, (lua_Integer)s->timeouts);
    lua_setfield(L, -2, "timeouts");
    lua_createtable(L, 0, 6);
    const struct {
        const char *name;
        uint64_t n;
    } errs[] = {{"timeout", s->timeouts},       {"exception", s->exceptions},
                {"crc", s->crc_errors},         {"malformed", s->bad_frames},
                {"connection", s->conn_errors}, {"other", s->other_errors}};
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof errs / sizeof *errs; i++) {
        lua_pushinteger(L, (lua_Integer)errs[i].n);
        lua_setfield(L, -2, errs[i].name);
        total += errs[i].n;
    }
    lua_setfield(L, -2, "errors");
    lua_pushinteger(L, (lua_Integer)total);
    lua_setfield(L, -2, "failed");
    lua_pushnumber(L, s->ok ? s->latency_sum_ms / (double)s->ok : 0);
    lua_setfield(L, -2, "latency_mean_ms");
    lua_pushnumber(L, s->latency_max_ms);
    lua_setfield(L, -2, "latency_max_ms");
}

/* bus:stats([unit]) -> table (whole bus, or one unit; nil for an unused unit) */
static int bus_stats(lua_State *L)
{
    lbus *b = check_bus(L);
    int unit = lua_isnoneornil(L, 2) ? -1 : check_range(L, 2, 0, 255, "unit id");
    md_mbus_stats s;
    if (!md_mbus_get_stats(b->bus, unit, &s))
        return 0;
    push_stats(L, &s);
    lua_pushnumber(L, md_mbus_current_timeout(b->bus) / 1000.0);
    lua_setfield(L, -2, "timeout");
    if (unit < 0) {
        md_mbus_connect_stats c;
        md_mbus_get_connect_stats(b->bus, &c);
        lua_pushinteger(L, (lua_Integer)c.connects);
        lua_setfield(L, -2, "connects");
        lua_pushinteger(L, (lua_Integer)c.connect_failures);
        lua_setfield(L, -2, "connect_failures");
        if (c.reconnect_in_ms >= 0) {
            lua_pushnumber(L, c.reconnect_in_ms / 1000.0);
            lua_setfield(L, -2, "reconnect_in");
        }
    }
    return 1;
}

static int bus_timeout(lua_State *L)
{
    lbus *b = check_bus(L);
    lua_pushnumber(L, md_mbus_current_timeout(b->bus) / 1000.0);
    return 1;
}

/* bus:closed() -> true once the bus was closed (never raises) */
static int bus_closed(lua_State *L)
{
    lbus *b = luaL_checkudata(L, 1, BUS_MT);
    lua_pushboolean(L, b->bus == NULL);
    return 1;
}

static int bus_url(lua_State *L)
{
    lbus *b = luaL_checkudata(L, 1, BUS_MT);
    lua_pushstring(L, b->url);
    return 1;
}

/* Idempotent close; also __gc and __close. At engine shutdown the loop no
 * longer runs, so the worker is joined right here. */
static int bus_close(lua_State *L)
{
    lbus *b = luaL_checkudata(L, 1, BUS_MT);
    if (b->bus) {
        md_mbus_close(b->bus, md_engine_closing(b->E));
        b->bus = NULL;
    }
    free(b->spare); /* a call still running may put one back: __gc frees it */
    b->spare = NULL;
    return 0;
}

static int bus_tostring(lua_State *L)
{
    lbus *b = luaL_checkudata(L, 1, BUS_MT);
    lua_pushfstring(L, "modbus bus %s%s", b->url, b->bus ? "" : " (closed)");
    return 1;
}

/* }===== */

/* {===== open ===== */

static int opt_ms(lua_State *L, int t, const char *k)
{
    int ty = lua_getfield(L, t, k);
    lua_Number s = ty == LUA_TNIL ? 0 : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(s >= 0 && s <= 3600))
        luaL_error(L, "bad field '%s': %f (expected seconds 0..3600)", k, s);
    return (int)ceil(s * 1000.0);
}

_Static_assert((int)MD_MBUS_TCP == MD_MB_LINK_TCP && (int)MD_MBUS_UDP == MD_MB_LINK_UDP &&
                   (int)MD_MBUS_RTU == MD_MB_LINK_RTU &&
                   (int)MD_MBUS_RTU_TCP == MD_MB_LINK_RTU_TCP &&
                   (int)MD_MBUS_RTU_UDP == MD_MB_LINK_RTU_UDP,
               "transports follow MD_MB_LINK_*");

/* core.open(cfg) -> bus, or nil, err, code */
static int mb_open(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    md_mbus_config cfg = {0};
    cfg.transport = (md_mbus_transport)md_mb_link_from_table(L, 1, &cfg.link);
    cfg.timeout_ms = opt_ms(L, 1, "timeout");
    cfg.delay_ms = opt_ms(L, 1, "delay");
    cfg.connect_timeout_ms = opt_ms(L, 1, "connect_timeout");
    cfg.backoff_ms = opt_ms(L, 1, "backoff");
    cfg.backoff_max_ms = opt_ms(L, 1, "backoff_max");
    char url[300] = "";
    md_mb_opt_str(L, 1, "url", url, sizeof url);

    lbus *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b); /* closed until the bus exists */
    luaL_setmetatable(L, BUS_MT);
    b->E = md_engine_of(L);
    b->rtu_framing = cfg.transport == MD_MBUS_RTU || cfg.transport == MD_MBUS_RTU_TCP ||
                     cfg.transport == MD_MBUS_RTU_UDP;
    memcpy(b->url, url, sizeof b->url);
    if (cfg.transport == MD_MBUS_RTU)
        memcpy(b->device, cfg.link.device, sizeof b->device);
    b->bus = md_mbus_open(md_engine_loop(b->E), &cfg);
    if (!b->bus) {
        return md_err_pusht(L, "invalid", "cannot open Modbus bus %s: %s", url,
                            md_strerror(errno));
    }
    return 1;
}

static const luaL_Reg bus_methods[] = {
    {"read", bus_read},
    {"write_coil", bus_write_coil},
    {"write_register", bus_write_register},
    {"write_coils", bus_write_coils},
    {"write_registers", bus_write_registers},
    {"mask_write", bus_mask_write},
    {"write_read", bus_write_read},
    {"report_server_id", bus_report_server_id},
    {"read_device_id", bus_read_device_id},
    {"stats", bus_stats},
    {"timeout", bus_timeout},
    {"url", bus_url},
    {"closed", bus_closed},
    {"close", bus_close},
    {NULL, NULL},
};

static const luaL_Reg bus_meta[] = {
    {"__gc", bus_close},
    {"__close", bus_close},
    {"__tostring", bus_tostring},
    {NULL, NULL},
};

int luaopen_moondog_modbus_core(lua_State *L)
{
    if (luaL_newmetatable(L, BUS_MT)) {
        luaL_setfuncs(L, bus_meta, 0);
        luaL_newlib(L, bus_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_getfield(L, -1, "__index"); /* stack: mt, methods */
    lua_newtable(L);
    lua_pushcfunction(L, mb_open);
    lua_setfield(L, -2, "open");
    /* moondog.modbus adds its Lua methods to the same table */
    lua_insert(L, -2);
    lua_setfield(L, -2, "bus_methods");
    lua_remove(L, -2); /* mt */
    return 1;
}

/* }===== */
