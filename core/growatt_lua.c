/*
 * growatt_lua.c - moondog.growatt.core: the Growatt datalogger codec
 * (growatt.h) for Lua.
 *
 *   local core = require "moondog.growatt.core"
 *   core.build(seq, protocol, unit, type, body)   -- body plain; scrambled + CRC for 5/6
 *   core.ack(seq, protocol, unit, type)           -- the server's ACK of a record
 *   core.ping(seq, protocol, unit, serial)
 *   core.read_holding(seq, protocol, unit, serial, first, last)      -- 0x05
 *   core.write_holding(seq, protocol, unit, serial, reg, value)      -- 0x06
 *   core.write_multiple(seq, protocol, unit, serial, first, {v, ...}) -- 0x10
 *   core.config_get(seq, protocol, unit, serial, first, last)        -- 0x19
 *   core.config_set(seq, protocol, unit, serial, reg, "value")       -- 0x18
 *   core.crc(bytes), core.scramble(bytes [, key_offset])
 *   core.header(bytes) --> seq, protocol, length, unit, type (of a frame's first
 *                          8 bytes), or nil when fewer
 *
 *   local p = core.parser()
 *   p:push(bytes)                      -- chunks of any size
 *   local f = p:next()                 -- {seq=, protocol=, length=, unit=, type=,
 *                                      --  name=, body= (unscrambled), raw=}
 *                                      -- (raw made from the fields when first read)
 *   -- or nil (needs more bytes), or false, message, code when it lost step
 *   -- (code "crc", "length" or "protocol"); then call next() again.
 *   p:pending(), p:noise(), p:reset()
 *   core.parse(bytes) --> {frame or {error=, code=}, ...}, bytes pending
 *   core.types        --> {announce = 3, data = 4, ..., [3] = "announce", ...}
 *
 * Arguments out of range (a protocol other than 2/5/6, a serial longer
 * than 10 bytes, first > last) raise: they are the caller's mistake.
 *
 * The parser's buffer is part of its userdata (MD_GW_MAX_FRAME bytes);
 * pushed input the buffer has no room for yet waits in its user value.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "growatt.h"

#define PARSER_MT "moondog.growatt.core.parser"
#define FRAME_MT "moondog.growatt.core.frame"

/* {===== arguments ===== */

static int check_range(lua_State *L, int arg, lua_Integer max, const char *what)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < 0 || v > max)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be 0..%I", what, max));
    return (int)v;
}

typedef struct head {
    uint16_t seq;
    int protocol;
    uint8_t unit;
} head;

/* seq, protocol, unit at 1..3 */
static head check_head(lua_State *L)
{
    head h;
    h.seq = (uint16_t)check_range(L, 1, 0xFFFF, "sequence");
    h.protocol = (int)luaL_checkinteger(L, 2);
    luaL_argcheck(L, md_gw_protocol_valid(h.protocol), 2, "protocol must be 2, 5 or 6");
    h.unit = (uint8_t)check_range(L, 3, 0xFF, "unit");
    return h;
}

static const char *check_serial(lua_State *L, int arg, size_t *len)
{
    const char *s = luaL_checklstring(L, arg, len);
    luaL_argcheck(L, *len <= MD_GW_SERIAL, arg,
                  "a datalogger serial has at most 10 bytes");
    return s;
}

/* Push the frame out[0..n) or raise for a build error. */
static int push_built(lua_State *L, luaL_Buffer *b, int n)
{
    if (n < 0)
        return luaL_error(L, "growatt: cannot build the frame: %s", md_strerror(n));
    luaL_pushresultsize(b, (size_t)n);
    return 1;
}

/* }===== */

/* {===== building ===== */

static int core_build(lua_State *L)
{
    head h = check_head(L);
    int type = check_range(L, 4, 0xFF, "record type");
    size_t len;
    const char *body = luaL_optlstring(L, 5, "", &len);
    luaL_argcheck(L, len <= MD_GW_MAX_LENGTH - 2, 5, "body too long for one frame");
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, MD_GW_HEADER + len + 2);
    int n = md_gw_build(out, MD_GW_HEADER + len + 2, h.seq, h.protocol, h.unit,
                        (uint8_t)type, (const uint8_t *)body, len);
    return push_built(L, &b, n);
}

static int core_ack(lua_State *L)
{
    head h = check_head(L);
    int type = check_range(L, 4, 0xFF, "record type");
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, 16);
    return push_built(L, &b,
                      md_gw_build_ack(out, 16, h.seq, h.protocol, h.unit, (uint8_t)type));
}

static int core_ping(lua_State *L)
{
    head h = check_head(L);
    size_t sl;
    const char *serial = check_serial(L, 4, &sl);
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, 64);
    return push_built(L, &b,
                      md_gw_build_ping(out, 64, h.seq, h.protocol, h.unit, serial, sl));
}

/* read_holding and config_get: (head, serial, first, last) */
static int range_request(lua_State *L, bool config)
{
    head h = check_head(L);
    size_t sl;
    const char *serial = check_serial(L, 4, &sl);
    int first = check_range(L, 5, 0xFFFF, "first register");
    int last = check_range(L, 6, 0xFFFF, "last register");
    luaL_argcheck(L, first <= last, 6, "the last register comes before the first");
    if (!config)
        luaL_argcheck(L, last - first < MD_GW_MAX_REGS, 6,
                      "at most 125 registers per read");
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, 64);
    int n = config ? md_gw_build_config_get(out, 64, h.seq, h.protocol, h.unit, serial,
                                            sl, (uint16_t)first, (uint16_t)last)
                   : md_gw_build_read_holding(out, 64, h.seq, h.protocol, h.unit, serial,
                                              sl, (uint16_t)first, (uint16_t)last);
    return push_built(L, &b, n);
}

static int core_read_holding(lua_State *L)
{
    return range_request(L, false);
}

static int core_config_get(lua_State *L)
{
    return range_request(L, true);
}

static int core_write_holding(lua_State *L)
{
    head h = check_head(L);
    size_t sl;
    const char *serial = check_serial(L, 4, &sl);
    int reg = check_range(L, 5, 0xFFFF, "register");
    int value = check_range(L, 6, 0xFFFF, "value");
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, 64);
    return push_built(L, &b,
                      md_gw_build_write_holding(out, 64, h.seq, h.protocol, h.unit,
                                                serial, sl, (uint16_t)reg,
                                                (uint16_t)value));
}

static int core_write_multiple(lua_State *L)
{
    head h = check_head(L);
    size_t sl;
    const char *serial = check_serial(L, 4, &sl);
    int first = check_range(L, 5, 0xFFFF, "first register");
    luaL_checktype(L, 6, LUA_TTABLE);
    size_t n = lua_rawlen(L, 6);
    luaL_argcheck(L, n >= 1 && n <= MD_GW_MAX_REGS, 6, "1 to 125 values");
    luaL_argcheck(L, (size_t)first + n - 1 <= 0xFFFF, 6, "registers past 65535");
    uint16_t values[MD_GW_MAX_REGS];
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 6, (lua_Integer)i + 1);
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 0 || v > 0xFFFF)
            return luaL_argerror(L, 6, "values must be integers 0..65535");
        values[i] = (uint16_t)v;
        lua_pop(L, 1);
    }
    luaL_Buffer b;
    size_t cap = MD_GW_HEADER + MD_GW_SERIAL + MD_GW_PAD6 + 4 + 2 * n + 2;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, cap);
    return push_built(L, &b,
                      md_gw_build_write_multiple(out, cap, h.seq, h.protocol, h.unit,
                                                 serial, sl, (uint16_t)first, values, n));
}

static int core_config_set(lua_State *L)
{
    head h = check_head(L);
    size_t sl, vl;
    const char *serial = check_serial(L, 4, &sl);
    int reg = check_range(L, 5, 0xFFFF, "register");
    const char *value = luaL_checklstring(L, 6, &vl);
    luaL_argcheck(L, vl <= 252, 6, "a config value has at most 252 bytes");
    luaL_Buffer b;
    size_t cap = MD_GW_HEADER + MD_GW_SERIAL + MD_GW_PAD6 + 4 + vl + 2;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, cap);
    return push_built(L, &b,
                      md_gw_build_config_set(out, cap, h.seq, h.protocol, h.unit, serial,
                                             sl, (uint16_t)reg, value, vl));
}

static int core_crc(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushinteger(L, md_gw_crc((const uint8_t *)s, len));
    return 1;
}

/* core.scramble(bytes [, key_offset]) -> bytes XOR "Growatt" */
static int core_scramble(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer off = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, off >= 0, 2, "key offset must be >= 0");
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, len);
    memcpy(out, s, len);
    md_gw_scramble(out, len, (size_t)off);
    luaL_pushresultsize(&b, len);
    return 1;
}

static int core_header(lua_State *L)
{
    size_t len;
    const uint8_t *s = (const uint8_t *)luaL_checklstring(L, 1, &len);
    if (len < MD_GW_HEADER) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, md_gw_get_u16(s));
    lua_pushinteger(L, md_gw_get_u16(s + 2));
    lua_pushinteger(L, md_gw_get_u16(s + 4));
    lua_pushinteger(L, s[6]);
    lua_pushinteger(L, s[7]);
    return 5;
}

/* }===== */

/* {===== parsing ===== */

/* The parser and its buffer in one userdata. Input not fed yet waits in
 * user value 1: a string, of which bytes from `off` on are not fed. */
typedef struct parser {
    md_gw_parser p;
    size_t off;
    uint8_t buf[MD_GW_MAX_FRAME];
} parser;

static parser *new_parser(lua_State *L)
{
    parser *ps = lua_newuserdatauv(L, sizeof *ps, 1);
    md_gw_parser_init(&ps->p, ps->buf, sizeof ps->buf);
    ps->off = 0;
    luaL_setmetatable(L, PARSER_MT);
    return ps;
}

static int core_parser(lua_State *L)
{
    new_parser(L);
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* A frame's raw bytes, made on first use (frame_mt's __index) from the
 * fields, as core.build makes them: for a frame the parser returned this
 * gives back its bytes as on the wire (the length field is the body's
 * length + 2, protocols 5/6 scramble the body from key offset 0 and their
 * CRC was checked). A copy of every frame's bytes cost the parser half its
 * CPU and 610 of its 1479 bytes of garbage per Growatt record, and the
 * proxy needs them for few frames (a ping's echo, on_record hooks). */
static int frame_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "raw") != 0)
        return 0;
    lua_Integer v[4];
    static const char *const keys[] = {"seq", "protocol", "unit", "type"};
    for (int i = 0; i < 4; i++) {
        lua_pushstring(L, keys[i]);
        v[i] = lua_rawget(L, 1) == LUA_TNUMBER ? lua_tointeger(L, -1) : -1;
        lua_pop(L, 1);
    }
    lua_pushliteral(L, "body");
    if (lua_rawget(L, 1) != LUA_TSTRING)
        return 0;
    size_t len;
    const char *body = lua_tolstring(L, -1, &len);
    if (len > MD_GW_MAX_LENGTH - 2 || v[0] < 0 || v[0] > 0xFFFF || v[2] < 0 ||
        v[2] > 0xFF || v[3] < 0 || v[3] > 0xFF)
        return 0;
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, MD_GW_HEADER + len + 2);
    int n = md_gw_build(out, MD_GW_HEADER + len + 2, (uint16_t)v[0], (int)v[1],
                        (uint8_t)v[2], (uint8_t)v[3], (const uint8_t *)body, len);
    if (n < 0)
        return 0;
    luaL_pushresultsize(&b, (size_t)n);
    lua_pushliteral(L, "raw");
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* Push a frame as a table, its body unscrambled, raw made on first use. */
static void push_frame(lua_State *L, const md_gw_frame *f)
{
    lua_createtable(L, 0, 8);
    luaL_setmetatable(L, FRAME_MT);
    set_int(L, "seq", f->seq);
    set_int(L, "protocol", f->protocol);
    set_int(L, "length", f->length);
    set_int(L, "unit", f->unit);
    set_int(L, "type", f->type);
    const char *name = md_gw_type_name(f->type);
    if (name) {
        lua_pushstring(L, name);
        lua_setfield(L, -2, "name");
    }
    luaL_Buffer b;
    uint8_t *body = (uint8_t *)luaL_buffinitsize(L, &b, f->body_len);
    memcpy(body, f->body, f->body_len);
    if (f->protocol != 2)
        md_gw_scramble(body, f->body_len, 0);
    luaL_pushresultsize(&b, f->body_len);
    lua_setfield(L, -2, "body");
}

static void push_parse_error(lua_State *L, const md_gw_parser *p, int rc)
{
    char msg[200];
    switch (rc) {
    case MD_GW_ECRC:
        snprintf(msg, sizeof msg,
                 "Growatt frame with a bad CRC (it says 0x%04X, its bytes give 0x%04X): "
                 "dropped, looking for the next frame",
                 (unsigned)p->err_crc_rx, (unsigned)p->err_crc_calc);
        break;
    case MD_GW_ELENGTH:
        snprintf(msg, sizeof msg,
                 "Growatt frame with an impossible length %u (2..%d): looking for the "
                 "next frame",
                 (unsigned)p->err_length, MD_GW_MAX_LENGTH);
        break;
    default:
        snprintf(msg, sizeof msg,
                 "not a Growatt frame: protocol id 0x%04X (expected 2, 5 or 6); looking "
                 "for the next frame",
                 (unsigned)p->err_protocol);
        break;
    }
    lua_pushstring(L, msg);
}

/* Parse from the waiting input at input_idx; pushes the results of next()
 * (0 values when no frame is complete and all input is fed). */
static int parser_step(lua_State *L, parser *ps, int input_idx)
{
    size_t len = 0;
    const char *in = lua_isstring(L, input_idx) ? lua_tolstring(L, input_idx, &len) : "";
    for (;;) {
        md_gw_frame f;
        int rc = md_gw_parse(&ps->p, &f);
        if (rc == 1) {
            push_frame(L, &f);
            return 1;
        }
        if (rc < 0) {
            lua_pushboolean(L, 0);
            push_parse_error(L, &ps->p, rc);
            lua_pushstring(L, md_err_token(rc));
            return 3;
        }
        if (ps->off >= len)
            return 0;
        ps->off +=
            md_gw_parser_feed(&ps->p, (const uint8_t *)in + ps->off, len - ps->off);
    }
}

static int parser_push(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    lua_getiuservalue(L, 1, 1); /* stack: p, bytes, waiting */
    size_t have = lua_isstring(L, 3) ? lua_rawlen(L, 3) : 0;
    if (have > ps->off) {
        lua_pushlstring(L, lua_tostring(L, 3) + ps->off, have - ps->off);
        lua_pushvalue(L, 2);
        lua_concat(L, 2);
        lua_setiuservalue(L, 1, 1);
        ps->off = 0;
        return 0;
    }
    /* Nothing waits: feed at once, keep only what did not fit. */
    size_t n = md_gw_parser_feed(&ps->p, (const uint8_t *)s, len);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 1, 1);
    ps->off = n;
    return 0;
}

static int parser_next(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1); /* stack: p, waiting */
    int n = parser_step(L, ps, 2);
    if (n == 0) {
        lua_pushnil(L); /* all input fed: drop it */
        lua_setiuservalue(L, 1, 1);
        ps->off = 0;
        lua_pushnil(L);
        return 1;
    }
    return n;
}

static int parser_pending(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    lua_getiuservalue(L, 1, 1);
    size_t waiting = lua_isstring(L, -1) ? lua_rawlen(L, -1) - ps->off : 0;
    lua_pushinteger(L, (lua_Integer)(md_gw_parser_pending(&ps->p) + waiting));
    return 1;
}

static int parser_noise(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    lua_pushinteger(L, (lua_Integer)ps->p.noise);
    return 1;
}

static int parser_reset(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    md_gw_parser_reset(&ps->p);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    ps->off = 0;
    return 0;
}

/* core.parse(bytes) -> list of frames and errors, bytes pending */
static int core_parse(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_settop(L, 1);
    parser *ps = new_parser(L);
    lua_newtable(L); /* stack: bytes, parser, list */
    for (lua_Integer i = 1;; i++) {
        int top = lua_gettop(L);
        int n = parser_step(L, ps, 1);
        if (n == 0)
            break;
        if (n == 3) {
            lua_createtable(L, 0, 2);
            lua_pushvalue(L, top + 2);
            lua_setfield(L, -2, "error");
            lua_pushvalue(L, top + 3);
            lua_setfield(L, -2, "code");
        }
        lua_rawseti(L, top, i);
        lua_settop(L, top);
    }
    size_t len = lua_rawlen(L, 1);
    lua_pushinteger(L, (lua_Integer)(md_gw_parser_pending(&ps->p) + (len - ps->off)));
    return 2;
}

/* }===== */

int luaopen_moondog_growatt_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"build", core_build},
        {"ack", core_ack},
        {"ping", core_ping},
        {"read_holding", core_read_holding},
        {"write_holding", core_write_holding},
        {"write_multiple", core_write_multiple},
        {"config_get", core_config_get},
        {"config_set", core_config_set},
        {"crc", core_crc},
        {"scramble", core_scramble},
        {"header", core_header},
        {"parser", core_parser},
        {"parse", core_parse},
        {NULL, NULL},
    };
    static const luaL_Reg parser_methods[] = {
        {"push", parser_push},   {"next", parser_next},   {"pending", parser_pending},
        {"noise", parser_noise}, {"reset", parser_reset}, {NULL, NULL},
    };
    luaL_newmetatable(L, PARSER_MT);
    luaL_newlib(L, parser_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, FRAME_MT);
    lua_pushcfunction(L, frame_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newlib(L, funcs);
    lua_newtable(L);
    for (int t = 0; t < 0x100; t++) {
        const char *name = md_gw_type_name(t);
        if (!name)
            continue;
        lua_pushinteger(L, t);
        lua_setfield(L, -2, name);
        lua_pushstring(L, name);
        lua_rawseti(L, -2, t);
    }
    lua_setfield(L, -2, "types");
    lua_pushinteger(L, MD_GW_MAX_LENGTH);
    lua_setfield(L, -2, "max_length");
    return 1;
}
