/*
 * jsonfmt.c - JSON text of numbers and string bytes as lua-cjson writes
 * them (jsonfmt.h says why). Lua-free: tests/c/test_jsonfmt.c drives it,
 * jsonfmt_lua.c binds it.
 *
 * A double v is written with integer arithmetic when it is the double
 * nearest to n / 10^k for an integer |n| < 10^14 and k <= 3: that decimal
 * has at most 14 significant digits and v lies within half an ulp of it,
 * so "%.14g" rounds v back to exactly that decimal, strips no digit of it
 * (the smallest such k leaves no trailing zero) and prints it in fixed
 * notation (its exponent is between -3 and 13). The check is exact: n is
 * taken as the rounded v * 10^k and kept only if n / 10^k, an IEEE
 * division of two exact values, gives v back. Everything else goes to
 * snprintf("%.14g").
 */
#include "jsonfmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define FIXED_LIMIT 1e14

/* |n| < 10^14 with k digits after the point. */
static size_t fixed(char *out, long long n, int k)
{
    char digits[24];
    int nd = 0;
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do {
        digits[nd++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (nd <= k) /* 5 with k = 3: 0.005 */
        digits[nd++] = '0';
    size_t len = 0;
    if (n < 0)
        out[len++] = '-';
    while (nd > k)
        out[len++] = digits[--nd];
    if (k > 0) {
        out[len++] = '.';
        while (nd > 0)
            out[len++] = digits[--nd];
    }
    return len;
}

static size_t g14(char *out, double v)
{
    int n = snprintf(out, MD_JSONFMT_NUMBER_MAX, "%.14g", v);
    return n > 0 ? (size_t)n : 0;
}

size_t md_jsonfmt_number(char *out, double v)
{
    static const double scale[] = {1, 10, 100, 1000};
    if (isnan(v) || isinf(v)) {
        memcpy(out, "null", 4);
        return 4;
    }
    if (v == 0) {
        if (signbit(v)) {
            memcpy(out, "-0", 2);
            return 2;
        }
        out[0] = '0';
        return 1;
    }
    for (int k = 0; k < 4; k++) {
        double s = nearbyint(v * scale[k]);
        if (!(fabs(s) < FIXED_LIMIT))
            break;
        long long n = (long long)s;
        if ((double)n / scale[k] == v)
            return fixed(out, n, k);
    }
    return g14(out, v);
}

size_t md_jsonfmt_integer(char *out, long long v)
{
    if (v > -(long long)FIXED_LIMIT && v < (long long)FIXED_LIMIT)
        return fixed(out, v, 0);
    return g14(out, (double)v);
}

const char *md_jsonfmt_escape(unsigned char c)
{
    static const char *const ctl[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006",
        "\\u0007", "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",
        "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014",
        "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b",
        "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    };
    if (c < 32)
        return ctl[c];
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '/': return "\\/";
    case 127: return "\\u007f";
    default: return NULL;
    }
}
