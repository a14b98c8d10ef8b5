/*
 * jsonfmt.h - JSON text for numbers and strings, byte for byte as lua-cjson
 * 2.1 writes them with encode_number_precision(14) and
 * encode_invalid_numbers("null"), without printf for the usual numbers.
 *
 * Why: a site device's state message (moondog.mqtt.publish, mode "state")
 * holds some 50 numbers per update, and cjson formats each with
 * snprintf("%.14g"), which was 85 % of the encode (glibc's float printing
 * is a multi-precision division per number). Most site values are integers
 * or a register scaled by 0.1, 0.01 or 0.001, whose shortest decimal text
 * integer arithmetic gives; only the others go through snprintf. The text
 * is the same, so a consumer sees no difference.
 */
#ifndef MD_JSONFMT_H
#define MD_JSONFMT_H

#include <stddef.h>

/* The longest text md_jsonfmt_number writes, with room to spare. */
#define MD_JSONFMT_NUMBER_MAX 32

/*
 * Write v as JSON into out (at least MD_JSONFMT_NUMBER_MAX bytes, not
 * NUL-terminated) and return its length: what "%.14g" prints, "null" for
 * NaN and the infinities.
 */
size_t md_jsonfmt_number(char *out, double v);

/*
 * Write an integer as JSON the way cjson does (it converts it to a double
 * first: 1e+14 and beyond in exponent form). Same contract as above.
 */
size_t md_jsonfmt_integer(char *out, long long v);

/*
 * The escape sequence of byte c inside a JSON string ("\\n", "\\u0001",
 * "\\/" as cjson writes it), or NULL when c stands for itself.
 */
const char *md_jsonfmt_escape(unsigned char c);

/* Whether byte c stands for itself in a JSON string (the quick test before
 * md_jsonfmt_escape). */
static inline int md_jsonfmt_plain(unsigned char c)
{
    return c >= 32 && c != '"' && c != '\\' && c != '/' && c != 127;
}

#endif
