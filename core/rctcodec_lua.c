/*
 * rctcodec_lua.c - moondog.rct.codec: the RCT Power codec (rctcodec.h) for Lua.
 *
 *   local codec = require "moondog.rct.codec"
 *   codec.build("read", 0x959930BF)                  --> "+\1\4\149\153\48\191\13\101"
 *   codec.build("write", oid, payload)               -- "long_write" above 251 bytes
 *   codec.build("plant_read", oid, "", 0x12345678)   -- plant commands take an address
 *   codec.build(0x3C, 0, "\xE1")                     -- commands by number too
 *   codec.crc(body)                                  --> CRC-16 with the odd-length pad
 *
 *   local p = codec.parser()
 *   p:push(bytes)                                    -- chunks of any size
 *   local command, oid, payload, address = p:next()  -- one frame; address only on
 *                                                    -- plant frames
 *   -- or: nil (needs more bytes), or false, message, code for a dropped frame
 *   -- (code "crc", "length", "escape" or "command"); then call next() again.
 *   p:pending(), p:noise(), p:reset()
 *   codec.parse(bytes) --> {{command=, name=, oid=, address=, payload=} or
 *                           {error=, code=}, ...}, bytes pending
 *
 *   codec.decode("FLOAT", payload)        --> 0.8478..., or nil, message, "malformed"
 *   codec.encode("FLOAT", 0.5)            --> "\63\0\0\0"
 *   codec.encode("STRING", "abc", 64)     -- NUL padded to 64 bytes
 *
 * Values in Lua: BOOL a boolean; the integer types and ENUM integers; FLOAT
 * a number; STRING a string (cut at the first NUL); UNKNOWN the raw bytes;
 *   TIMESERIES  {query = t, {time = t1, value = v1}, ...}
 *   EVENT_TABLE {query = t, {type = 0x31, time = t1, data = {w3, w4, w5}}, ...}
 *   BATTERY_MODULE_STATUS     {{temp = C, mv = mV, status = s}, ... 24 cells}
 *   BATTERY_MODULE_STATISTICS {u_min = {cell =, time =, value =}, u_max =, t_min =, t_max
 * =} BATTERY_MODULE_RESISTANCE {mOhm, ... 24 cells} (multiples of 1/256)
 *
 * Errors: a wrong argument (unknown type or command, a value that does not
 * fit its type, a payload too long for the command) raises. Bytes from a
 * device that do not decode return nil, message, "malformed": they are
 * the outside world's fault, not the caller's.
 *
 * The parser's buffer is part of its userdata; frames up to the protocol's
 * maximum fit. Pushed input is kept as the parser's user value until it is
 * consumed.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "err_lua.h"
#include "rctcodec.h"

#define PARSER_MT "moondog.rct.codec.parser"

/* {===== arguments ===== */

static int check_type(lua_State *L, int arg)
{
    const char *s = luaL_checkstring(L, arg);
    int t = md_rct_type_from_name(s);
    if (t < 0)
        luaL_argerror(L, arg,
                      lua_pushfstring(L,
                                      "unknown data type '%s' (expected FLOAT, "
                                      "UINT8, STRING, ... as in codec.types)",
                                      s));
    return t;
}

static int check_command(lua_State *L, int arg)
{
    if (lua_type(L, arg) == LUA_TNUMBER) {
        lua_Integer c = luaL_checkinteger(L, arg);
        if (!md_rct_command_valid((int)c) || c < 0 || c > 0xFF)
            luaL_argerror(L, arg, lua_pushfstring(L, "%I is not an RCT command", c));
        return (int)c;
    }
    const char *s = luaL_checkstring(L, arg);
    int c = md_rct_command_from_name(s);
    if (c < 0)
        luaL_argerror(L, arg,
                      lua_pushfstring(L,
                                      "unknown command '%s' (expected read, write, "
                                      "response, plant_read, ... as in codec.commands)",
                                      s));
    return c;
}

static uint32_t check_u32(lua_State *L, int arg, const char *what)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < 0 || v > 0xFFFFFFFF)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be 0..0xFFFFFFFF", what));
    return (uint32_t)v;
}

/* }===== */

/* {===== frames ===== */

/* codec.build(command, oid [, payload [, address]]) -> frame bytes */
static int codec_build(lua_State *L)
{
    int command = check_command(L, 1);
    uint32_t oid = command == MD_RCT_EXTENSION && lua_isnoneornil(L, 2)
                       ? 0
                       : check_u32(L, 2, "object id");
    size_t len = 0;
    const char *payload = luaL_optlstring(L, 3, "", &len);
    uint32_t address = lua_isnoneornil(L, 4) ? 0 : check_u32(L, 4, "address");
    if (command & MD_RCT_PLANT && command != MD_RCT_EXTENSION)
        luaL_argcheck(L, !lua_isnoneornil(L, 4), 4, "plant commands need an address");
    else
        luaL_argcheck(L, lua_isnoneornil(L, 4), 4, "only plant commands take an address");
    size_t max = md_rct_build_max(len);
    luaL_Buffer b;
    uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, max);
    int n = md_rct_build(out, max, command, address, oid, (const uint8_t *)payload, len);
    if (n == MD_RCT_ELENGTH) {
        const char *name = md_rct_command_name(command);
        if (command == MD_RCT_EXTENSION)
            return luaL_argerror(L, 3, "an extension frame carries exactly one byte");
        if (len > 0 && (command & 0x0F) != MD_RCT_WRITE &&
            (command & 0x0F) != MD_RCT_RESPONSE && !md_rct_command_long(command))
            return luaL_argerror(L, 3, lua_pushfstring(L, "%s carries no payload", name));
        return luaL_argerror(
            L, 3,
            lua_pushfstring(L, "payload of %I bytes is too long for %s%s",
                            (lua_Integer)len, name,
                            md_rct_command_long(command) ? "" : " (use the long_ form)"));
    }
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* codec.crc(body) -> CRC over command .. payload, with the odd-length pad */
static int codec_crc(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushinteger(L, md_rct_crc((const uint8_t *)s, len));
    return 1;
}

/* The parser and its buffer in one userdata. Input waits in user value 1:
 * a string, of which bytes from `off` on are not consumed yet. */
typedef struct parser {
    md_rct_parser p;
    size_t off;
    uint8_t buf[];
} parser;

static parser *new_parser(lua_State *L, size_t cap)
{
    parser *ps = lua_newuserdatauv(L, sizeof *ps + cap, 1);
    md_rct_parser_init(&ps->p, ps->buf, cap);
    ps->off = 0;
    luaL_setmetatable(L, PARSER_MT);
    return ps;
}

/* codec.parser() -> a streaming parser that takes frames of any length */
static int codec_parser(lua_State *L)
{
    new_parser(L, MD_RCT_MAX_WIRE);
    return 1;
}

/* Push the message for a dropped frame (lua_pushfstring has no %X). */
static void push_parse_error(lua_State *L, const md_rct_parser *p, int rc)
{
    char msg[160];
    switch (rc) {
    case MD_RCT_ECRC:
        snprintf(msg, sizeof msg,
                 "CRC mismatch: the frame says 0x%04X, its bytes give 0x%04X",
                 (unsigned)p->err_crc_rx, (unsigned)p->err_crc_calc);
        break;
    case MD_RCT_ELENGTH:
        snprintf(msg, sizeof msg, "impossible length %u in a frame",
                 (unsigned)p->err_length);
        break;
    case MD_RCT_EESCAPE:
        if (p->err_byte == MD_RCT_START)
            snprintf(msg, sizeof msg,
                     "bad escape: a start byte inside a frame (the frame was "
                     "cut short, or its sender did not escape a 0x2B)");
        else
            snprintf(msg, sizeof msg, "bad escape: byte 0x%02X after an escape byte",
                     (unsigned)p->err_byte);
        break;
    default:
        snprintf(msg, sizeof msg, "invalid command 0x%02X", (unsigned)p->err_byte);
        break;
    }
    lua_pushstring(L, msg);
}

/* Run the parser on the waiting input; pushes the results of next(). */
static int parser_step(lua_State *L, parser *ps, int input_idx)
{
    size_t len = 0;
    const char *in = lua_isstring(L, input_idx) ? lua_tolstring(L, input_idx, &len) : "";
    size_t used;
    md_rct_frame f;
    int rc =
        md_rct_parse(&ps->p, (const uint8_t *)in + ps->off, len - ps->off, &used, &f);
    ps->off += used;
    if (rc == 0)
        return 0;
    if (rc < 0) {
        lua_pushboolean(L, 0);
        push_parse_error(L, &ps->p, rc);
        lua_pushstring(L, md_err_token(rc));
        return 3;
    }
    lua_pushinteger(L, f.command);
    lua_pushinteger(L, f.oid);
    lua_pushlstring(L, (const char *)f.payload, f.payload_len);
    if (!(f.command & MD_RCT_PLANT) || f.command == MD_RCT_EXTENSION)
        return 3;
    lua_pushinteger(L, f.address);
    return 4;
}

/* p:push(bytes): queue input behind whatever is not consumed yet */
static int parser_push(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    size_t len;
    luaL_checklstring(L, 2, &len);
    lua_getiuservalue(L, 1, 1); /* stack: p, bytes, waiting */
    size_t have = lua_isstring(L, 3) ? lua_rawlen(L, 3) : 0;
    if (have > ps->off) {
        lua_pushlstring(L, lua_tostring(L, 3) + ps->off, have - ps->off);
        lua_pushvalue(L, 2);
        lua_concat(L, 2);
    } else {
        lua_pushvalue(L, 2);
    }
    lua_setiuservalue(L, 1, 1);
    ps->off = 0;
    return 0;
}

/* p:next() -> command, oid, payload [, address] | false, message, code | nil */
static int parser_next(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 1); /* stack: p, waiting */
    int n = parser_step(L, ps, 2);
    if (n == 0) {
        lua_pushnil(L); /* all input taken: drop it */
        lua_setiuservalue(L, 1, 1);
        ps->off = 0;
        lua_pushnil(L);
        return 1;
    }
    return n;
}

/* p:pending() -> bytes held for a frame not complete yet */
static int parser_pending(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    lua_getiuservalue(L, 1, 1);
    size_t waiting = lua_isstring(L, -1) ? lua_rawlen(L, -1) - ps->off : 0;
    lua_pushinteger(L, (lua_Integer)(md_rct_parser_pending(&ps->p) + waiting));
    return 1;
}

/* p:noise() -> bytes skipped so far while looking for a start byte */
static int parser_noise(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    lua_pushinteger(L, (lua_Integer)ps->p.noise);
    return 1;
}

/* p:reset(): drop a partial frame and all waiting input (after a reconnect) */
static int parser_reset(lua_State *L)
{
    parser *ps = luaL_checkudata(L, 1, PARSER_MT);
    md_rct_parser_reset(&ps->p);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    ps->off = 0;
    return 0;
}

/* codec.parse(bytes) -> list of frames and errors, bytes pending at the end */
static int codec_parse(lua_State *L)
{
    size_t len;
    luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    /* A frame cannot be longer than the input it came in. */
    parser *ps = new_parser(L, len + 16 < MD_RCT_MAX_WIRE ? len + 16 : MD_RCT_MAX_WIRE);
    lua_newtable(L); /* stack: bytes, parser, list */
    for (lua_Integer i = 1;; i++) {
        int top = lua_gettop(L);
        int n = parser_step(L, ps, 1);
        if (n == 0)
            break;
        lua_createtable(L, 0, 5);
        if (lua_toboolean(L, top + 1)) {
            const char *name = md_rct_command_name((int)lua_tointeger(L, top + 1));
            lua_pushstring(L, name);
            lua_setfield(L, -2, "name");
            const char *keys[] = {"command", "oid", "payload", "address"};
            for (int k = 0; k < n; k++) {
                lua_pushvalue(L, top + 1 + k);
                lua_setfield(L, -2, keys[k]);
            }
        } else {
            lua_pushvalue(L, top + 2);
            lua_setfield(L, -2, "error");
            lua_pushvalue(L, top + 3);
            lua_setfield(L, -2, "code");
        }
        lua_rawseti(L, top, i);
        lua_settop(L, top);
    }
    lua_pushinteger(L, (lua_Integer)md_rct_parser_pending(&ps->p));
    return 2;
}

/* }===== */

/* {===== decoding values ===== */

static void set_int(lua_State *L, const char *key, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, key);
}

static void set_num(lua_State *L, const char *key, lua_Number v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, key);
}

/* nil, message, "malformed" for a payload whose size does not fit type. */
static int bad_size(lua_State *L, int type, size_t n, const char *want)
{
    if (n == 0)
        return md_err_pushf(L, -MD_EMALFORMED,
                            "empty payload where a %s value was expected",
                            md_rct_type_name(type));
    return md_err_pushf(L, -MD_EMALFORMED, "payload of %I bytes does not fit %s (%s)",
                        (lua_Integer)n, md_rct_type_name(type), want);
}

static void push_series(lua_State *L, const uint8_t *p, int n)
{
    lua_createtable(L, n, 1);
    set_int(L, "query", md_rct_get_u32(p));
    for (int i = 0; i < n; i++) {
        uint32_t t;
        float v;
        md_rct_series_get(p, (size_t)i, &t, &v);
        lua_createtable(L, 0, 2);
        set_int(L, "time", t);
        set_num(L, "value", v);
        lua_rawseti(L, -2, i + 1);
    }
}

static void push_events(lua_State *L, const uint8_t *p, int n)
{
    lua_createtable(L, n, 1);
    set_int(L, "query", md_rct_get_u32(p));
    for (int i = 0; i < n; i++) {
        uint32_t w[5];
        md_rct_event_get(p, (size_t)i, w);
        lua_createtable(L, 0, 3);
        set_int(L, "type", w[0]);
        set_int(L, "time", w[1]);
        lua_createtable(L, 3, 0);
        for (int k = 0; k < 3; k++) {
            lua_pushinteger(L, w[2 + k]);
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, i + 1);
    }
}

static const char *const stat_names[MD_RCT_STAT_RECORDS] = {"u_min", "u_max", "t_min",
                                                            "t_max"};

static void push_module(lua_State *L, int type, const uint8_t *p)
{
    if (type == MD_RCT_T_BATTERY_MODULE_STATISTICS) {
        lua_createtable(L, 0, MD_RCT_STAT_RECORDS);
        for (int i = 0; i < MD_RCT_STAT_RECORDS; i++) {
            md_rct_stat s;
            md_rct_stat_get(p, (size_t)i, &s);
            lua_createtable(L, 0, 3);
            set_int(L, "cell", s.cell);
            set_int(L, "time", s.time);
            set_num(L, "value", s.value);
            lua_setfield(L, -2, stat_names[i]);
        }
        return;
    }
    lua_createtable(L, MD_RCT_CELLS, 0);
    for (int i = 0; i < MD_RCT_CELLS; i++) {
        if (type == MD_RCT_T_BATTERY_MODULE_STATUS) {
            md_rct_cell c;
            md_rct_cell_get(p, (size_t)i, &c);
            lua_createtable(L, 0, 3);
            set_int(L, "temp", c.temp);
            set_int(L, "mv", c.mv);
            set_int(L, "status", c.status);
        } else {
            lua_pushnumber(L, md_rct_resistance_get(p, (size_t)i) / 256.0);
        }
        lua_rawseti(L, -2, i + 1);
    }
}

/* codec.decode(type, payload) -> value | nil, message, "malformed" */
static int codec_decode(lua_State *L)
{
    int type = check_type(L, 1);
    size_t n;
    const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 2, &n);
    switch (type) {
    case MD_RCT_T_FLOAT: {
        float f;
        if (md_rct_decode_float(p, n, &f) < 0)
            return bad_size(L, type, n, "4 bytes");
        lua_pushnumber(L, f);
        return 1;
    }
    case MD_RCT_T_STRING:
        lua_pushlstring(L, (const char *)p, md_rct_string_len(p, n));
        return 1;
    case MD_RCT_T_UNKNOWN: lua_pushvalue(L, 2); return 1;
    case MD_RCT_T_TIMESERIES: {
        int count = md_rct_series_count(n);
        if (count < 0)
            return bad_size(L, type, n, "4 + 8 bytes per entry");
        push_series(L, p, count);
        return 1;
    }
    case MD_RCT_T_EVENT_TABLE: {
        int count = md_rct_events_count(n);
        if (count < 0)
            return bad_size(L, type, n, "4 + 20 bytes per row");
        push_events(L, p, count);
        return 1;
    }
    case MD_RCT_T_BATTERY_MODULE_STATUS:
    case MD_RCT_T_BATTERY_MODULE_STATISTICS:
    case MD_RCT_T_BATTERY_MODULE_RESISTANCE:
        if (n != md_rct_type_size(type))
            return bad_size(
                L, type, n,
                lua_pushfstring(L, "%I bytes", (lua_Integer)md_rct_type_size(type)));
        push_module(L, type, p);
        return 1;
    default: {
        int64_t v;
        if (md_rct_decode_int(type, p, n, &v) < 0)
            return bad_size(
                L, type, n,
                lua_pushfstring(L, "%I byte(s)", (lua_Integer)md_rct_type_size(type)));
        if (type == MD_RCT_T_BOOL)
            lua_pushboolean(L, v != 0);
        else
            lua_pushinteger(L, v);
        return 1;
    }
    }
}

/* }===== */

/* {===== encoding values ===== */

/* The value cannot be encoded as type; why has one %s for the type. The
 * encoders below run protected (codec_encode), so this error becomes
 * nil, message, "range", like every other raise about the value. */
static int bad_value(lua_State *L, int arg, int type, const char *why)
{
    (void)arg;
    return luaL_error(L, why, md_rct_type_name(type));
}

/* An integer at stack index idx (3.0 counts), else raise. */
static lua_Integer get_integer(lua_State *L, int idx, int type, const char *what)
{
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (!isint)
        luaL_error(L, "bad value for %s: %s must be an integer, got %s",
                   md_rct_type_name(type), what, luaL_tolstring(L, idx, NULL));
    return v;
}

/* Integer field key of the table at idx. */
static lua_Integer field_int(lua_State *L, int idx, const char *key, int type)
{
    lua_getfield(L, idx, key);
    lua_Integer v = get_integer(L, -1, type, key);
    lua_pop(L, 1);
    return v;
}

static lua_Number field_num(lua_State *L, int idx, const char *key, int type)
{
    lua_getfield(L, idx, key);
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "bad value for %s: %s must be a number, got %s",
                   md_rct_type_name(type), key, luaL_typename(L, -1));
    lua_Number v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static uint32_t field_u32(lua_State *L, int idx, const char *key, int type)
{
    lua_Integer v = field_int(L, idx, key, type);
    if (v < 0 || v > 0xFFFFFFFF)
        luaL_error(L, "bad value for %s: %s must be 0..0xFFFFFFFF",
                   md_rct_type_name(type), key);
    return (uint32_t)v;
}

static float field_float(lua_State *L, int idx, const char *key, int type)
{
    uint8_t tmp[4];
    lua_Number v = field_num(L, idx, key, type);
    if (md_rct_encode_float(v, tmp) < 0)
        luaL_error(L, "bad value for %s: %s is out of the float range",
                   md_rct_type_name(type), key);
    return (float)v;
}

/* Element i (1-based) of the table at idx must be a table: push it. */
static int push_row(lua_State *L, int idx, lua_Integer i, int type)
{
    if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
        luaL_error(L, "bad value for %s: entry %I must be a table, got %s",
                   md_rct_type_name(type), i, luaL_typename(L, -1));
    return lua_gettop(L);
}

static void encode_series(lua_State *L, int type, luaL_Buffer *b)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = lua_rawlen(L, 2);
    size_t entry = type == MD_RCT_T_TIMESERIES ? MD_RCT_SERIES_ENTRY : MD_RCT_EVENT_ENTRY;
    if (n > (MD_RCT_MAX_LENGTH - 8 - MD_RCT_SERIES_HEAD) / entry)
        bad_value(L, 2, type, "too many entries for one %s frame");
    size_t size = MD_RCT_SERIES_HEAD + n * entry;
    uint8_t *p = (uint8_t *)luaL_buffinitsize(L, b, size);
    md_rct_put_u32(p, field_u32(L, 2, "query", type));
    for (size_t i = 0; i < n; i++) {
        int row = push_row(L, 2, (lua_Integer)i + 1, type);
        if (type == MD_RCT_T_TIMESERIES) {
            md_rct_series_put(p, i, field_u32(L, row, "time", type),
                              field_float(L, row, "value", type));
        } else {
            uint32_t w[5] = {field_u32(L, row, "type", type),
                             field_u32(L, row, "time", type)};
            lua_getfield(L, row, "data");
            int data = lua_gettop(L);
            if (!lua_istable(L, data))
                bad_value(L, 2, type, "each %s row needs data = {w1, w2, w3}");
            for (int k = 0; k < 3; k++) {
                lua_rawgeti(L, data, k + 1);
                lua_Integer v = lua_isnil(L, -1) ? 0 : get_integer(L, -1, type, "data");
                if (v < 0 || v > 0xFFFFFFFF)
                    bad_value(L, 2, type, "%s data words must be 0..0xFFFFFFFF");
                w[2 + k] = (uint32_t)v;
                lua_pop(L, 1);
            }
            md_rct_event_put(p, i, w);
        }
        lua_settop(L, row - 1);
    }
    luaL_pushresultsize(b, size);
}

static lua_Integer check_byte_field(lua_State *L, int row, const char *key,
                                    lua_Integer max, int type)
{
    lua_Integer v = field_int(L, row, key, type);
    if (v < 0 || v > max)
        luaL_error(L, "bad value for %s: %s must be 0..%I", md_rct_type_name(type), key,
                   max);
    return v;
}

static void encode_module(lua_State *L, int type, luaL_Buffer *b)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t size = md_rct_type_size(type);
    uint8_t *p = (uint8_t *)luaL_buffinitsize(L, b, size);
    if (type == MD_RCT_T_BATTERY_MODULE_STATISTICS) {
        for (int i = 0; i < MD_RCT_STAT_RECORDS; i++) {
            if (lua_getfield(L, 2, stat_names[i]) != LUA_TTABLE)
                luaL_error(L, "bad value for %s: %s must be a table",
                           md_rct_type_name(type), stat_names[i]);
            int row = lua_gettop(L);
            md_rct_stat s = {field_u32(L, row, "cell", type),
                             field_u32(L, row, "time", type),
                             field_float(L, row, "value", type)};
            md_rct_stat_put(p, (size_t)i, &s);
            lua_settop(L, row - 1);
        }
    } else {
        if (lua_rawlen(L, 2) != MD_RCT_CELLS)
            bad_value(L, 2, type, "%s needs exactly 24 cells");
        for (int i = 0; i < MD_RCT_CELLS; i++) {
            if (type == MD_RCT_T_BATTERY_MODULE_STATUS) {
                int row = push_row(L, 2, i + 1, type);
                md_rct_cell c = {
                    (uint8_t)check_byte_field(L, row, "temp", 0xFF, type),
                    (uint16_t)check_byte_field(L, row, "mv", 0xFFFF, type),
                    (uint8_t)check_byte_field(L, row, "status", 0xFF, type),
                };
                md_rct_cell_put(p, (size_t)i, &c);
                lua_settop(L, row - 1);
            } else {
                lua_rawgeti(L, 2, i + 1);
                lua_Number mohm = lua_tonumber(L, -1);
                if (lua_type(L, -1) != LUA_TNUMBER ||
                    !(mohm >= 0 && mohm * 256 <= 0xFFFF))
                    bad_value(L, 2, type, "%s cells must be numbers 0..255.99 (mOhm)");
                md_rct_resistance_put(p, (size_t)i, (uint16_t)lrint(mohm * 256));
                lua_pop(L, 1);
            }
        }
    }
    luaL_pushresultsize(b, size);
}

static void encode_scalar(lua_State *L, int type, luaL_Buffer *b)
{
    uint8_t tmp[4];
    int n;
    if (type == MD_RCT_T_FLOAT) {
        if (lua_type(L, 2) != LUA_TNUMBER)
            bad_value(L, 2, type, "%s needs a number");
        n = md_rct_encode_float(lua_tonumber(L, 2), tmp);
        if (n < 0)
            bad_value(L, 2, type, "value is out of the %s range");
    } else if (type == MD_RCT_T_BOOL && lua_isboolean(L, 2)) {
        n = md_rct_encode_int(type, lua_toboolean(L, 2), tmp);
    } else {
        if (lua_type(L, 2) != LUA_TNUMBER)
            bad_value(L, 2, type,
                      type == MD_RCT_T_BOOL ? "%s needs true, false, 1 or 0"
                                            : "%s needs an integer");
        lua_Integer v = get_integer(L, 2, type, "the value");
        n = md_rct_encode_int(type, v, tmp);
        if (n < 0)
            luaL_error(L, "%I is out of range for %s", v, md_rct_type_name(type));
    }
    luaL_buffinit(L, b);
    luaL_addlstring(b, (const char *)tmp, (size_t)n);
    luaL_pushresult(b);
}

/* stack: type (integer), value, size -> payload bytes; raises about the
 * value, which codec_encode turns into nil, message, "range". */
static int encode_value(lua_State *L)
{
    int type = (int)lua_tointeger(L, 1);
    luaL_Buffer b;
    switch (type) {
    case MD_RCT_T_STRING:
    case MD_RCT_T_UNKNOWN: {
        size_t len;
        const char *s = lua_tolstring(L, 2, &len);
        if (!s)
            return luaL_error(L, "%s needs a string, got %s", md_rct_type_name(type),
                              luaL_typename(L, 2));
        lua_Integer size = luaL_optinteger(L, 3, (lua_Integer)len);
        if ((lua_Integer)len > size)
            return luaL_error(L, "%I bytes do not fit in %I", (lua_Integer)len, size);
        char *p = luaL_buffinitsize(L, &b, (size_t)size);
        memcpy(p, s, len);
        memset(p + len, 0, (size_t)size - len);
        luaL_pushresultsize(&b, (size_t)size);
        return 1;
    }
    case MD_RCT_T_TIMESERIES:
    case MD_RCT_T_EVENT_TABLE: encode_series(L, type, &b); break;
    case MD_RCT_T_BATTERY_MODULE_STATUS:
    case MD_RCT_T_BATTERY_MODULE_STATISTICS:
    case MD_RCT_T_BATTERY_MODULE_RESISTANCE: encode_module(L, type, &b); break;
    default: encode_scalar(L, type, &b); break;
    }
    return 1;
}

/* codec.encode(type, value [, size]) -> payload bytes, or nil, message,
 * "range" for a value that does not fit the type, "type" for a value of the
 * wrong kind (as the Modbus and SunSpec codecs answer; docs/errors.md). A
 * wrong type name or size raises. */
static int codec_encode(lua_State *L)
{
    int type = check_type(L, 1);
    luaL_checkany(L, 2);
    bool sized = type == MD_RCT_T_STRING || type == MD_RCT_T_UNKNOWN;
    luaL_argcheck(L, sized || lua_isnoneornil(L, 3), 3,
                  "a size applies only to STRING and UNKNOWN");
    if (sized && !lua_isnoneornil(L, 3)) {
        lua_Integer size = luaL_checkinteger(L, 3);
        luaL_argcheck(L, size >= 0 && size <= MD_RCT_MAX_LENGTH - 8, 3,
                      "size must be 0..65527");
    }
    /* A value of the wrong kind is "type", as from the SunSpec codec. */
    int vt = lua_type(L, 2);
    bool kind_ok = sized                         ? vt == LUA_TSTRING
                   : type >= MD_RCT_T_TIMESERIES ? vt == LUA_TTABLE
                   : type == MD_RCT_T_BOOL       ? vt == LUA_TBOOLEAN || vt == LUA_TNUMBER
                                                 : vt == LUA_TNUMBER;
    if (!kind_ok)
        return md_err_pushf(L, -MD_ETYPE, "%s takes %s, not a %s", md_rct_type_name(type),
                            sized                         ? "a string"
                            : type >= MD_RCT_T_TIMESERIES ? "a table"
                            : type == MD_RCT_T_BOOL       ? "true, false, 1 or 0"
                                                          : "a number",
                            luaL_typename(L, 2));
    lua_settop(L, 3);
    lua_pushcfunction(L, encode_value);
    lua_pushinteger(L, type);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3); /* stack: type, value, size, fn, type, value, size */
    int status = lua_pcall(L, 3, 1, 0);
    if (status == LUA_OK)
        return 1;
    if (status == LUA_ERRMEM)
        return lua_error(L);
    /* stack: ..., message */
    return md_err_pushf(L, -MD_ERANGE, "%s", lua_tostring(L, -1));
}

/* }===== */

int luaopen_moondog_rct_codec(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"build", codec_build}, {"crc", codec_crc},       {"parser", codec_parser},
        {"parse", codec_parse}, {"decode", codec_decode}, {"encode", codec_encode},
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

    luaL_newlib(L, funcs);
    lua_createtable(L, MD_RCT_T_COUNT, 0);
    for (int i = 0; i < MD_RCT_T_COUNT; i++) {
        lua_pushstring(L, md_rct_type_name(i));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "types");
    /* commands: name -> number and number -> name */
    lua_newtable(L);
    for (int c = 0; c < 0x80; c++) {
        const char *name = md_rct_command_name(c);
        if (!name)
            continue;
        lua_pushinteger(L, c);
        lua_setfield(L, -2, name);
        lua_pushstring(L, name);
        lua_rawseti(L, -2, c);
    }
    lua_setfield(L, -2, "commands");
    lua_pushinteger(L, MD_RCT_MAX_SHORT_PAYLOAD);
    lua_setfield(L, -2, "max_short_payload");
    return 1;
}
