/*
 * mbcodec_lua.c - moondog.modbus.codec: the Modbus codec (mbcodec.h) for Lua.
 *
 *   local codec = require "moondog.modbus.codec"
 *   codec.decode({0x3F59, 0x0F86}, "float32")        --> 0.84788...
 *   codec.decode(raw, "uint32", "CDAB", 3)           -- raw: string of register bytes
 *   codec.decode(regs, "string", "ABCD", 1, 8)       -- 8 registers of text (default:
 *                                                    -- all from the offset on)
 *   codec.encode(230.5, "float32")                   --> {0x4366, 0x8000}
 *   codec.encode("SN123", "string", "ABCD", 8)       --> 8 registers, NUL padded
 *   codec.crc16("\1\3\0\0\0\10")                     --> 0xCDC5 (sent C5 CD)
 *   codec.bits(0xABCD, 4, 8)                         --> 0xBC (n defaults to 1)
 *   codec.scale(2305, -1)                            --> 230.5 (always a float)
 *   codec.types, codec.orders                        -- arrays of names
 *
 * Registers come either as a Lua array of integers 0..65535 or as a binary
 * string of raw Modbus data (two big-endian bytes per register), the form
 * a read returns; offsets count registers from 1 in both. Types are the
 * names in codec.types, orders "ABCD" (default), "CDAB", "BADC", "DCBA"
 * (case-insensitive), defined in mbcodec.h.
 *
 * Results: integer types give Lua integers, except uint64 values above
 * math.maxinteger, which cannot be integers and come back as floats
 * (rounded to 53 bits). float types give numbers (NaN stays NaN, -0.0
 * stays -0.0). Strings end at the first NUL, without trailing spaces.
 * encode accepts such a float for uint64, so decode/encode round-trip
 * except for the rounding.
 *
 * Every failure here is a programmer error (a bad type name, a value that
 * does not fit, too few registers), so it raises with a message that says
 * what to fix; nothing returns nil, message.
 *
 * Temporary register arrays for strings live in a userdata, which the
 * collector frees even when an error unwinds the C function.
 */
#include <assert.h>
#include <math.h>

#include <lauxlib.h>
#include <lua.h>

#include "err_lua.h"
#include "mbcodec.h"
#include "mbcodec_lua.h"

_Static_assert(LUA_MAXINTEGER == INT64_MAX, "moondog needs 64-bit Lua integers");

/* {===== arguments ===== */

/* "a, b, c" of a name table, for error messages. */
static const char *name_list(lua_State *L, const char *(*name)(int), int n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            luaL_addstring(&b, ", ");
        luaL_addstring(&b, name(i));
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static enum md_mb_type check_type(lua_State *L, int arg)
{
    const char *s = luaL_checkstring(L, arg);
    int t = md_mb_type_from_name(s);
    if (t < 0) {
        const char *names = name_list(L, md_mb_type_name, MD_MB_T_COUNT);
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "unknown type '%s' (expected %s)", s, names));
    }
    return (enum md_mb_type)t;
}

static enum md_mb_order opt_order(lua_State *L, int arg)
{
    const char *s = luaL_optstring(L, arg, "ABCD");
    int o = md_mb_order_from_name(s);
    if (o < 0) {
        const char *names = name_list(L, md_mb_order_name, MD_MB_ORDER_COUNT);
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "unknown order '%s' (expected %s)", s, names));
    }
    return (enum md_mb_order)o;
}

/* How many registers argument 1 holds: an array or a raw byte string. */
static lua_Integer reg_count(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t len = lua_rawlen(L, 1);
        const char *fmt = "register string has odd length %I (2 bytes per register)";
        if (len % 2)
            luaL_argerror(L, 1, lua_pushfstring(L, fmt, (lua_Integer)len));
        return (lua_Integer)(len / 2);
    }
    luaL_argexpected(L, lua_type(L, 1) == LUA_TTABLE, 1, "table or string");
    return (lua_Integer)lua_rawlen(L, 1);
}

/* Raise for a register that is not an integer 0..65535; what describes it. */
static void bad_register(lua_State *L, lua_Integer at, const char *what)
{
    const char *fmt = "register %I is %s, expected an integer 0..65535";
    luaL_argerror(L, 1, lua_pushfstring(L, fmt, at, what));
}

/* Copy n registers from argument 1, starting at register first (0-based). */
static void get_regs(lua_State *L, lua_Integer first, size_t n, uint16_t *regs)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        const uint8_t *bytes = (const uint8_t *)lua_tostring(L, 1);
        md_mb_get_regs(bytes + 2 * first, n, regs);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        lua_Integer at = first + (lua_Integer)i + 1;
        if (lua_rawgeti(L, 1, at) != LUA_TNUMBER) /* push register */
            bad_register(L, at, luaL_typename(L, -1));
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 0 || v > 0xFFFF)
            bad_register(L, at, luaL_tolstring(L, -1, NULL));
        regs[i] = (uint16_t)v;
        lua_pop(L, 1); /* pop register */
    }
}

/* }===== */

/* {===== decode and encode ===== */

/* Push a uint64: an integer when it fits, else the nearest float. */
static void push_u64(lua_State *L, uint64_t v)
{
    if (v <= (uint64_t)LUA_MAXINTEGER)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, (lua_Number)v);
}

static void push_value(lua_State *L, const uint16_t *regs, enum md_mb_type type,
                       enum md_mb_order order)
{
    int rc;
    if (type == MD_MB_T_FLOAT32 || type == MD_MB_T_FLOAT64) {
        double d = 0;
        rc = md_mb_decode_float(regs, 4, type, order, &d);
        lua_pushnumber(L, d);
    } else if (type == MD_MB_T_UINT64) {
        uint64_t u = 0;
        rc = md_mb_decode_uint(regs, 4, type, order, &u);
        push_u64(L, u);
    } else {
        int64_t i = 0;
        rc = md_mb_decode_int(regs, 4, type, order, &i);
        lua_pushinteger(L, i);
    }
    /* type and order are checked and regs holds 4: nothing can fail */
    assert(rc == 0);
    (void)rc;
}

/* codec.decode(regs, type [, order [, offset [, nregs]]]) -> value */
static int codec_decode(lua_State *L)
{
    enum md_mb_type type = check_type(L, 2);
    enum md_mb_order order = opt_order(L, 3);
    lua_Integer offset = luaL_optinteger(L, 4, 1);
    lua_Integer have = reg_count(L);
    luaL_argcheck(L, offset >= 1, 4, "offset counts registers from 1");
    luaL_argcheck(L, offset - 1 <= have, 4, "offset is past the last register");
    lua_Integer avail = have - (offset - 1);
    lua_Integer n = md_mb_type_regs(type);
    if (type == MD_MB_T_STRING) {
        n = luaL_optinteger(L, 5, avail);
        luaL_argcheck(L, n >= 0, 5, "register count must be 0 or more");
    } else {
        luaL_argcheck(L, lua_isnoneornil(L, 5), 5,
                      "a register count applies only to strings");
    }
    if (n > avail) {
        const char *fmt = "%I register(s) needed from offset %I, %I given";
        return luaL_argerror(L, 1, lua_pushfstring(L, fmt, n, offset, have));
    }
    if (type != MD_MB_T_STRING) {
        uint16_t regs[4] = {0};
        get_regs(L, offset - 1, (size_t)n, regs);
        push_value(L, regs, type, order);
        return 1;
    }
    /* stack: regs, ..., scratch */
    size_t nregs = (size_t)n;
    uint16_t *regs = lua_newuserdatauv(L, nregs * sizeof *regs + 2 * nregs + 1, 0);
    char *text = (char *)(regs + nregs);
    get_regs(L, offset - 1, nregs, regs);
    int len = md_mb_decode_string(regs, nregs, order, text, 2 * nregs + 1);
    assert(len >= 0);
    lua_pushlstring(L, text, (size_t)len);
    return 1;
}

/* The value at argument 1 does not fit type (why says how): push nil,
 * message, "range" and return 3. A value is data, not a bug: the SunSpec
 * and RCT codecs answer the same way (docs/errors.md). */
static int bad_value(lua_State *L, enum md_mb_type type, const char *why)
{
    const char *v = luaL_tolstring(L, 1, NULL);
    const char *t = md_mb_type_name(type);
    return md_err_pushf(L, -MD_ERANGE, why, v, t);
}

/* Encode the number at argument 1 into regs[0..3]: 0, or 3 when it pushed
 * nil, message, "range". */
static int encode_number(lua_State *L, enum md_mb_type type, enum md_mb_order order,
                         uint16_t *regs)
{
    if (lua_type(L, 1) != LUA_TNUMBER) /* the wrong kind: "type", as from SunSpec */
        return md_err_pushf(L, -MD_ETYPE, "value %s is not a number (type %s)",
                            luaL_tolstring(L, 1, NULL), md_mb_type_name(type));
    int rc = 0;
    int isint;
    lua_Integer i = lua_tointegerx(L, 1, &isint); /* also 3.0, but not 3.5 */
    lua_Number x = lua_tonumber(L, 1);
    if (type == MD_MB_T_FLOAT32 || type == MD_MB_T_FLOAT64)
        rc = md_mb_encode_float(x, type, order, regs, 4);
    else if (isint)
        rc = md_mb_encode_int(i, type, order, regs, 4);
    else if (type == MD_MB_T_UINT64 && x >= 0x1p63 && x < 0x1p64)
        rc = md_mb_encode_uint((uint64_t)x, type, order, regs, 4);
    else if (fabs(x) >= 0x1p63) /* floats this large are all integral */
        rc = MD_MB_ERANGE;
    else /* a fraction, or NaN */
        return bad_value(L, type, "value %s is not an integer (type %s)");
    if (rc == MD_MB_ERANGE)
        return bad_value(L, type, "value %s out of range for %s");
    assert(rc == 0); /* type and order are checked */
    return 0;
}

/* Encode the string at argument 1 into n registers (a scratch userdata);
 * NULL when it pushed nil, message, "range" (the string does not fit). */
static uint16_t *encode_string(lua_State *L, enum md_mb_order order, size_t *n)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer want = luaL_optinteger(L, 4, (lua_Integer)(len / 2 + len % 2));
    luaL_argcheck(L, want >= 0 && want <= 65536, 4, "register count must be 0..65536");
    *n = (size_t)want;
    uint16_t *regs = lua_newuserdatauv(L, *n * sizeof *regs + 1, 0); /* push scratch */
    if (md_mb_encode_string(s, len, order, regs, *n) == MD_MB_ERANGE) {
        md_err_pushf(L, -MD_ERANGE, "string of %I bytes does not fit in %I register(s)",
                     (lua_Integer)len, want);
        return NULL;
    }
    return regs;
}

/* codec.encode(value, type [, order [, nregs]]) -> {register, ...}, or
 * nil, message, "range" for a value that does not fit the type ("type" for
 * a value of the wrong kind) */
static int codec_encode(lua_State *L)
{
    enum md_mb_type type = check_type(L, 2);
    enum md_mb_order order = opt_order(L, 3);
    uint16_t small[4] = {0};
    uint16_t *regs = small;
    size_t n = md_mb_type_regs(type);
    if (type == MD_MB_T_STRING) {
        regs = encode_string(L, order, &n);
        if (!regs)
            return 3;
    } else {
        luaL_argcheck(L, lua_isnoneornil(L, 4), 4,
                      "a register count applies only to strings");
        if (encode_number(L, type, order, regs))
            return 3;
    }
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, regs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* }===== */

/* {===== helpers ===== */

/* codec.crc16(bytes) -> CRC-16/MODBUS; the frame carries it low byte first */
static int codec_crc16(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushinteger(L, md_mb_crc16((const uint8_t *)s, len));
    return 1;
}

/* codec.bits(value, first [, n=1]) -> n bits of value from bit first (0 = LSB) */
static int codec_bits(lua_State *L)
{
    lua_Integer v = luaL_checkinteger(L, 1);
    lua_Integer first = luaL_checkinteger(L, 2);
    lua_Integer n = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, first >= 0 && first <= 63, 2, "first bit must be 0..63");
    luaL_argcheck(L, n >= 1 && n <= 64 - first, 3, "bit count must be 1..64 - first");
    uint64_t r = md_mb_bits((uint64_t)v, (unsigned)first, (unsigned)n);
    /* only n == 64 can set bit 63: hand back the same two's complement integer */
    lua_pushinteger(L, r <= (uint64_t)LUA_MAXINTEGER ? (lua_Integer)r : v);
    return 1;
}

/* codec.scale(raw, sf) -> raw * 10^sf, a float (SunSpec scale factors) */
static int codec_scale(lua_State *L)
{
    lua_Number raw = luaL_checknumber(L, 1);
    lua_Integer sf = luaL_checkinteger(L, 2);
    if (sf < -10 || sf > 10)
        return luaL_argerror(
            L, 2,
            lua_pushfstring(L, "scale factor %I out of range -10..10%s", sf,
                            sf == -32768 ? " (0x8000: not implemented)" : ""));
    lua_Number p = 1;
    for (lua_Integer i = 0; i < (sf < 0 ? -sf : sf); i++)
        p *= 10; /* exact: powers of ten up to 1e22 are doubles */
    /* dividing by 10^k rounds once; multiplying by 0.1^k would round twice */
    lua_pushnumber(L, sf < 0 ? raw / p : raw * p);
    return 1;
}

/* }===== */

static void push_names(lua_State *L, const char *(*name)(int), int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, name(i));
        lua_rawseti(L, -2, i + 1);
    }
}

/* codec.exceptions: token -> code, e.g. illegal_data_address = 2. */
static void push_exceptions(lua_State *L)
{
    lua_newtable(L);
    for (int code = 1; code < 256; code++) {
        const char *token = md_mb_exception_name(code);
        if (token) {
            lua_pushinteger(L, code);
            lua_setfield(L, -2, token);
        }
    }
}

int luaopen_moondog_modbus_codec(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"decode", codec_decode}, {"encode", codec_encode}, {"crc16", codec_crc16},
        {"bits", codec_bits},     {"scale", codec_scale},   {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    push_names(L, md_mb_type_name, MD_MB_T_COUNT);
    lua_setfield(L, -2, "types");
    push_names(L, md_mb_order_name, MD_MB_ORDER_COUNT);
    lua_setfield(L, -2, "orders");
    push_exceptions(L);
    lua_setfield(L, -2, "exceptions");
    return 1;
}
