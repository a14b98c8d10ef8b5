/*
 * sscodec_lua.c - moondog.sunspec.codec: the SunSpec point codec
 * (sscodec.h) for Lua.
 *
 *   local codec = require "moondog.sunspec.codec"
 *   local layout = codec.compile({
 *     { type = "uint16", offset = 2, sf = { index = 2 } },   -- A, scaled by A_SF
 *     { type = "sunssf", offset = 6 },                       -- A_SF
 *     { type = "string", size = 8, offset = 9 },
 *   })
 *   local values, n, bad_sf = codec.decode(layout, regs, first)
 *   codec.encode("uint16", 1, 12.4, -1)        --> "\0\124" (raw 124)
 *   codec.encode("uint16", 1, 70000)           --> nil, message, "range"
 *   codec.sentinel("int16", 1)                 --> "\128\0"
 *   codec.types                                --> { int16 = 1, ..., string = 0 }
 *
 * compile(points): points[i] = {type =, size =, offset =, sf =}; size
 * defaults to the type's (strings need one); offset counts registers from
 * the start of the block decode() will see; sf is nil, a constant -10..10,
 * or {index = j}: the value of points[j], a sunssf point of this layout, so
 * a value and its scale factor always come from the same bytes. Mistakes
 * raise. Other fields of the point tables are ignored.
 *
 * decode(layout, regs [, first]): regs is a string of register bytes (as a
 * Modbus read returns them) that starts at register `first` (default 0) of
 * the block. Returns values, n, bad: values[i] for points[i]; n = #points;
 * bad = nil, or the array of indexes whose scale factor was unusable (n/i,
 * outside -10..10, or not in regs). values[i] is nil (a hole) when the
 * point is not implemented, lies outside regs, or is listed in bad.
 * Integers come as Lua integers, except uint64/acc64/bitfield64 values
 * above math.maxinteger, which come as floats. A scaled value is a float,
 * unless its scale factor is 0 (then the raw value as it is). float32/64
 * give floats, string text without trailing NULs and spaces, ipaddr
 * "a.b.c.d", eui48 "aa:bb:cc:dd:ee:ff", ipv6addr RFC 5952 text.
 *
 * encode(type, size, value [, sf]): size nil means the type's. Returns the
 * register bytes, or nil, message, code for a value the type cannot carry:
 * "type" (a number where text is wanted or the reverse), "range" (out of
 * range, the type's not-implemented value, NaN, a string too long, text
 * that is no address, a fraction for an enum/bitfield/count/sunssf/pad/
 * raw16, or a scale factor outside -10..10). A scaled value is divided by
 * 10^sf and rounded to the nearest raw integer (halves away from zero);
 * unscaled fractions for measured integer types are rounded the same way.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "err_lua.h"
#include "sscodec.h"

#define LAYOUT "moondog.sunspec.layout"

/* 2^63 and 2^64, written out (cppcheck misreads hex float literals). */
#define TWO_63 9223372036854775808.0
#define TWO_64 18446744073709551616.0

/* A compiled layout: a userdata owned by Lua. */
struct layout {
    size_t n;
    struct md_ss_point pts[];
};

/* {===== arguments ===== */

static int check_type(lua_State *L, int arg)
{
    const char *s = luaL_checkstring(L, arg);
    int t = md_ss_type_from_name(s);
    if (t < 0)
        luaL_argerror(L, arg, lua_pushfstring(L, "unknown SunSpec type '%s'", s));
    return t;
}

/* The size at index idx (nil: the type's own), checked against the type;
 * what names the point in messages. */
static unsigned check_size(lua_State *L, int idx, int type, const char *what)
{
    lua_Integer size = md_ss_type_regs(type);
    if (!lua_isnoneornil(L, idx)) {
        int isint;
        size = lua_tointegerx(L, idx, &isint);
        if (!isint)
            luaL_error(L, "%s: size must be an integer", what);
    }
    if (size < 0 || size > 0xFFFF || md_ss_check_size(type, (unsigned)size) < 0) {
        if (md_ss_type_regs(type) == 0)
            luaL_error(L, "%s: a string needs a size of 1..32767 registers", what);
        luaL_error(L, "%s: %s takes %d register(s), not %I", what, md_ss_type_name(type),
                   (int)md_ss_type_regs(type), size);
    }
    return (unsigned)size;
}

/* }===== */

/* {===== compile ===== */

/* Field `key` of the table at the top as an integer (absent: def), else raise. */
static lua_Integer int_field(lua_State *L, const char *key, lua_Integer def, int i)
{
    int isint;
    lua_getfield(L, -1, key); /* push field */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return def;
    }
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint)
        luaL_error(L, "point %d: %s must be an integer, not %s", i, key,
                   luaL_typename(L, -1));
    lua_pop(L, 1); /* pop field */
    return v;
}

/* The sf field of the point table at the top into p. */
static void read_sf(lua_State *L, struct md_ss_point *p, int i, size_t n)
{
    int t = lua_getfield(L, -1, "sf"); /* push sf */
    if (t == LUA_TNIL) {
        p->sf_mode = MD_SS_SF_NO;
    } else if (lua_isinteger(L, -1)) {
        lua_Integer sf = lua_tointeger(L, -1);
        if (sf < MD_SS_SF_MIN || sf > MD_SS_SF_MAX)
            luaL_error(L, "point %d: scale factor %I is outside -10..10", i, sf);
        p->sf_mode = MD_SS_SF_CONST;
        p->sf = (int32_t)sf;
    } else if (t == LUA_TTABLE) {
        lua_Integer j = int_field(L, "index", 0, i);
        if (j < 1 || (size_t)j > n)
            luaL_error(L, "point %d: sf.index %I is not a point of the layout (1..%I)", i,
                       j, (lua_Integer)n);
        p->sf_mode = MD_SS_SF_POINT;
        p->sf = (int32_t)(j - 1);
    } else {
        luaL_error(L,
                   "point %d: sf must be nil, an integer or {index = i} (resolve scale "
                   "factor names first), not %s",
                   i, luaL_typename(L, -1));
    }
    lua_pop(L, 1); /* pop sf */
}

static void read_point(lua_State *L, struct md_ss_point *p, int i, size_t n)
{
    /* stack: point */
    lua_getfield(L, -1, "type"); /* push type */
    const char *name = lua_tostring(L, -1);
    int type = name ? md_ss_type_from_name(name) : MD_SS_ETYPE;
    if (type < 0)
        luaL_error(L, "point %d: unknown SunSpec type '%s'", i, name ? name : "nil");
    lua_pop(L, 1);                                        /* pop type */
    const char *what = lua_pushfstring(L, "point %d", i); /* push what */
    lua_getfield(L, -2, "size");                          /* push size */
    p->type = (uint8_t)type;
    p->size = (uint16_t)check_size(L, -1, type, what);
    lua_pop(L, 2); /* pop size, what */
    lua_Integer offset = int_field(L, "offset", -1, i);
    if (offset < 0 || offset > INT32_MAX)
        luaL_error(L, "point %d: offset must be an integer 0 or more (registers)", i);
    p->offset = (uint32_t)offset;
    read_sf(L, p, i, n);
}

/* codec.compile(points) -> layout */
static int codec_compile(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_rawlen(L, 1);
    struct layout *lay = lua_newuserdatauv(L, sizeof *lay + n * sizeof lay->pts[0], 0);
    lay->n = n;
    luaL_setmetatable(L, LAYOUT);
    /* stack: points, layout */
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, 1, (lua_Integer)i + 1) != LUA_TTABLE) /* push point */
            luaL_error(L, "point %d is a %s, not a table", (int)i + 1,
                       luaL_typename(L, -1));
        read_point(L, &lay->pts[i], (int)i + 1, n);
        lua_pop(L, 1); /* pop point */
    }
    size_t bad;
    if (md_ss_check_layout(lay->pts, n, &bad) < 0) {
        const struct md_ss_point *p = &lay->pts[bad];
        if (p->sf_mode == MD_SS_SF_POINT)
            luaL_error(L, "point %d: its sf.index %d is not a sunssf point", (int)bad + 1,
                       (int)p->sf + 1);
        luaL_error(L, "point %d: a %s cannot have a scale factor", (int)bad + 1,
                   md_ss_type_name(p->type));
    }
    return 1;
}

static int layout_len(lua_State *L)
{
    struct layout *lay = luaL_checkudata(L, 1, LAYOUT);
    lua_pushinteger(L, (lua_Integer)lay->n);
    return 1;
}

static int layout_tostring(lua_State *L)
{
    struct layout *lay = luaL_checkudata(L, 1, LAYOUT);
    lua_pushfstring(L, "sunspec layout (%I points)", (lua_Integer)lay->n);
    return 1;
}

/* }===== */

/* {===== decode ===== */

static void push_value(lua_State *L, const struct md_ss_value *v)
{
    switch (v->kind) {
    case MD_SS_V_INT: lua_pushinteger(L, v->v.i); break;
    case MD_SS_V_UINT: lua_pushnumber(L, (lua_Number)v->v.u); break;
    case MD_SS_V_FLOAT: lua_pushnumber(L, v->v.f); break;
    case MD_SS_V_TEXT: lua_pushlstring(L, v->text, v->len); break;
    default: lua_pushnil(L); break;
    }
}

/* codec.decode(layout, regs [, first]) -> values, n, bad */
static int codec_decode(lua_State *L)
{
    struct layout *lay = luaL_checkudata(L, 1, LAYOUT);
    size_t len;
    const uint8_t *regs = (const uint8_t *)luaL_checklstring(L, 2, &len);
    lua_Integer first = luaL_optinteger(L, 3, 0);
    if (len % 2)
        luaL_argerror(
            L, 2,
            lua_pushfstring(L, "register bytes have odd length %I (2 per register)",
                            (lua_Integer)len));
    luaL_argcheck(L, first >= 0, 3, "first register must be 0 or more");
    lua_settop(L, 3);
    lua_createtable(L, lay->n > INT32_MAX ? INT32_MAX : (int)lay->n, 0); /* push values */
    int nbad = 0;
    for (size_t i = 0; i < lay->n; i++) {
        struct md_ss_value v;
        enum md_ss_status st =
            md_ss_decode_point(lay->pts, i, regs, (size_t)first, len / 2, &v);
        if (st == MD_SS_VALUE) {
            push_value(L, &v);
            lua_rawseti(L, 4, (lua_Integer)i + 1);
        } else if (st == MD_SS_BAD_SF) {
            if (nbad == 0)
                lua_createtable(L, 4, 0); /* push bad */
            lua_pushinteger(L, (lua_Integer)i + 1);
            lua_rawseti(L, 5, ++nbad);
        }
    }
    lua_pushinteger(L, (lua_Integer)lay->n);
    if (nbad > 0)
        lua_rotate(L, 5, 1); /* stack: ..., values, bad, n -> values, n, bad */
    else
        lua_pushnil(L);
    return 3;
}

/* }===== */

/* {===== encode ===== */

/* Push nil, the message, the code; returns 3 for the caller's return. */
static int refuse(lua_State *L, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    md_err_pushv(L, rc, fmt, ap);
    va_end(ap);
    return 3;
}

/* Refuse the number at argument 3 for an integer or float type; when it
 * was scaled, say to what. */
static int out_of_range(lua_State *L, int type, int sf, double raw, const char *why)
{
    const char *value = luaL_tolstring(L, 3, NULL); /* push value text */
    const char *name = md_ss_type_name(type);
    char range[128] = "";
    int64_t min;
    uint64_t max;
    char none[32];
    if (md_ss_int_range(type, &min, &max) == 0) {
        int n = snprintf(range, sizeof range, " (%" PRId64 "..%" PRIu64, min, max);
        if (md_ss_none_text(type, none, sizeof none) == 0)
            snprintf(range + n, sizeof range - (size_t)n, "; %s means not implemented)",
                     none);
        else
            snprintf(range + n, sizeof range - (size_t)n, ")");
    }
    if (sf != 0 && fabs(raw) < TWO_63)
        return refuse(L, -MD_ERANGE, "value %s (raw %I with scale factor %d) %s %s%s",
                      value, (lua_Integer)raw, sf, why, name, range);
    if (sf != 0)
        return refuse(L, -MD_ERANGE, "value %s (raw %f with scale factor %d) %s %s%s",
                      value, raw, sf, why, name, range);
    return refuse(L, -MD_ERANGE, "value %s %s %s%s", value, why, name, range);
}

/* Types whose raw values count a quantity: a fraction rounds to the
 * nearest raw value. Enums, bitfields, counts and the rest need whole
 * numbers. */
static int is_measure(int type)
{
    return type == MD_SS_INT16 || type == MD_SS_UINT16 || type == MD_SS_ACC16 ||
           type == MD_SS_INT32 || type == MD_SS_UINT32 || type == MD_SS_ACC32 ||
           type == MD_SS_INT64 || type == MD_SS_UINT64 || type == MD_SS_ACC64;
}

/* An integer type: the number at argument 3, scaled by sf, into out.
 * Returns 0, or 3 with nil, message, code pushed. */
static int encode_integer(lua_State *L, int type, unsigned size, int sf, uint8_t *out)
{
    int isint;
    lua_Integer i = lua_tointegerx(L, 3, &isint);
    if (isint && sf == 0) {
        if (md_ss_encode_int(type, size, i, out) < 0)
            return out_of_range(L, type, 0, 0, "is out of range for");
        return 0;
    }
    double x = lua_tonumber(L, 3);
    if (isnan(x))
        return out_of_range(L, type, 0, 0, "is not a number: no raw value of");
    if (sf == 0 && !is_measure(type) && x != floor(x))
        return out_of_range(L, type, 0, 0, "is not a whole number, as needed by");
    double raw;
    if (md_ss_unscale(x, sf, &raw) < 0)
        return out_of_range(L, type, 0, 0, "is out of range for");
    int rc = MD_SS_ERANGE;
    if (raw >= -TWO_63 && raw < TWO_63)
        rc = md_ss_encode_int(type, size, (int64_t)raw, out);
    else if (raw >= TWO_63 && raw < TWO_64)
        rc = md_ss_encode_uint(type, size, (uint64_t)raw, out);
    if (rc < 0)
        return out_of_range(L, type, sf, raw, "is out of range for");
    return 0;
}

/* float32/float64: the number at argument 3, divided by 10^sf. */
static int encode_float(lua_State *L, int type, unsigned size, int sf, uint8_t *out)
{
    double x = md_ss_scale(lua_tonumber(L, 3), -sf);
    if (isnan(x))
        return refuse(L, -MD_ERANGE, "NaN means not implemented: it is no value for a %s",
                      md_ss_type_name(type));
    if (md_ss_encode_float(type, size, x, out) < 0)
        return out_of_range(L, type, 0, 0, "is out of range for");
    return 0;
}

static int is_text(int type)
{
    return type == MD_SS_STRING || type == MD_SS_IPADDR || type == MD_SS_EUI48 ||
           type == MD_SS_IPV6ADDR;
}

/* string, ipaddr, eui48, ipv6addr: the text at argument 3. */
static int encode_text(lua_State *L, int type, unsigned size, uint8_t *out)
{
    size_t len;
    const char *s = lua_tolstring(L, 3, &len);
    int rc = md_ss_encode_text(type, size, s, len, out);
    if (rc == 0)
        return 0;
    if (type == MD_SS_STRING && (len == 0 || s[0] == '\0'))
        return refuse(L, -MD_ERANGE,
                      "an empty string (or one starting with NUL) means not implemented");
    if (type == MD_SS_STRING)
        return refuse(L, -MD_ERANGE,
                      "text of %I bytes does not fit a string of %d registers "
                      "(%d bytes)",
                      (lua_Integer)len, (int)size, 2 * (int)size);
    static const char *const forms[] = {
        [MD_SS_IPADDR] = "an IPv4 address a.b.c.d",
        [MD_SS_EUI48] = "a MAC address aa:bb:cc:dd:ee:ff",
        [MD_SS_IPV6ADDR] = "an IPv6 address",
    };
    if (rc == MD_SS_ESYNTAX)
        return refuse(L, -MD_ERANGE, "'%s' is not %s", s, forms[type]);
    return refuse(L, -MD_ERANGE, "'%s' is the value that means not implemented for %s", s,
                  md_ss_type_name(type));
}

/* codec.encode(type, size, value [, sf]) -> bytes, or nil, message, code */
static int codec_encode(lua_State *L)
{
    int type = check_type(L, 1);
    unsigned size = check_size(L, 2, type, "encode");
    luaL_checkany(L, 3);
    lua_Integer sf = 0;
    if (!lua_isnoneornil(L, 4)) {
        sf = luaL_checkinteger(L, 4);
        if (is_text(type))
            luaL_argerror(
                L, 4,
                lua_pushfstring(L, "a %s has no scale factor", md_ss_type_name(type)));
        if (sf < MD_SS_SF_MIN || sf > MD_SS_SF_MAX)
            return refuse(L, -MD_ERANGE,
                          "scale factor %I is outside -10..10: cannot scale %s", sf,
                          luaL_tolstring(L, 3, NULL));
    }
    lua_settop(L, 4);
    uint8_t *out = lua_newuserdatauv(L, 2 * (size_t)size, 0); /* push scratch */
    const char *name = md_ss_type_name(type);
    int ltype = lua_type(L, 3);
    int rc;
    if (is_text(type)) {
        if (ltype != LUA_TSTRING)
            return refuse(L, -MD_ETYPE, "a %s needs text, not a %s", name,
                          lua_typename(L, ltype));
        rc = encode_text(L, type, size, out);
    } else {
        if (ltype != LUA_TNUMBER)
            return refuse(L, -MD_ETYPE, "a %s needs a number, not a %s", name,
                          lua_typename(L, ltype));
        if (type == MD_SS_FLOAT32 || type == MD_SS_FLOAT64)
            rc = encode_float(L, type, size, (int)sf, out);
        else
            rc = encode_integer(L, type, size, (int)sf, out);
    }
    if (rc != 0)
        return rc;
    lua_pushlstring(L, (const char *)out, 2 * (size_t)size);
    return 1;
}

/* codec.sentinel(type [, size]) -> the not-implemented register bytes */
static int codec_sentinel(lua_State *L)
{
    int type = check_type(L, 1);
    unsigned size = check_size(L, 2, type, "sentinel");
    uint8_t *out = lua_newuserdatauv(L, 2 * (size_t)size, 0); /* push scratch */
    md_ss_sentinel(type, size, out);
    lua_pushlstring(L, (const char *)out, 2 * (size_t)size);
    return 1;
}

/* }===== */

int luaopen_moondog_sunspec_codec(lua_State *L)
{
    static const luaL_Reg layout_meta[] = {
        {"__len", layout_len},
        {"__tostring", layout_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg funcs[] = {
        {"compile", codec_compile},
        {"decode", codec_decode},
        {"encode", codec_encode},
        {"sentinel", codec_sentinel},
        {NULL, NULL},
    };
    luaL_newmetatable(L, LAYOUT);
    luaL_setfuncs(L, layout_meta, 0);
    lua_pushliteral(L, "protected");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    lua_createtable(L, 0, MD_SS_TYPE_COUNT);
    for (int t = 0; t < MD_SS_TYPE_COUNT; t++) {
        lua_pushinteger(L, md_ss_type_regs(t));
        lua_setfield(L, -2, md_ss_type_name(t));
    }
    lua_setfield(L, -2, "types");
    return 1;
}
