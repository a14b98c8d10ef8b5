/*
 * test_jsonfmt.c - cmocka driver for core/jsonfmt.c, JSON text of numbers
 * and string bytes as lua-cjson writes them.
 *
 * What is checked: md_jsonfmt_number against snprintf("%.14g") (what cjson
 * calls) for fixed cases (zeros, one to three decimals, the 10^14 bound,
 * tiny and huge values, the invalid ones as null) and for a million
 * pseudo-random values of the shapes a site holds (registers scaled by 1,
 * 0.1, 0.01, 0.001) and of any shape; md_jsonfmt_integer against "%.14g"
 * of the integer as a double; every byte's escape. tests/lua/test_jsonfmt.lua
 * compares whole objects with cjson itself.
 *
 * Build and run (link with core/jsonfmt.c only):
 *   cc -std=c11 -D_GNU_SOURCE -Icore tests/c/test_jsonfmt.c core/jsonfmt.c \
 *      $(pkg-config --cflags --libs cmocka) -lm -o /tmp/t && /tmp/t
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jsonfmt.h"

static void check_number(double v)
{
    char got[MD_JSONFMT_NUMBER_MAX + 1], want[64];
    size_t n = md_jsonfmt_number(got, v);
    got[n] = '\0';
    if (isnan(v) || isinf(v))
        snprintf(want, sizeof want, "null");
    else
        snprintf(want, sizeof want, "%.14g", v);
    assert_string_equal(got, want);
}

static void check_integer(long long v)
{
    char got[MD_JSONFMT_NUMBER_MAX + 1], want[64];
    size_t n = md_jsonfmt_integer(got, v);
    got[n] = '\0';
    snprintf(want, sizeof want, "%.14g", (double)v);
    assert_string_equal(got, want);
}

static void numbers_fixed(void **state)
{
    (void)state;
    static const double cases[] = {
        0,
        -0.0,
        1,
        -1,
        0.5,
        0.1,
        0.01,
        0.001,
        0.0001,
        0.0012,
        1e-7,
        1e13,
        99999999999999.0,
        1e14,
        1e14 + 2,
        -1e14,
        9007199254740992.0,
        1e300,
        -1e300,
        5e-324,
        230.5,
        -230.5,
        0.995,
        12345678901.234,
        9999999999999.9,
        194207.97763889,
        1.0 / 3,
        140288502.9,
        NAN,
        INFINITY,
        -INFINITY,
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_number(cases[i]);
}

/* xorshift64: the same values on every run */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void numbers_random(void **state)
{
    (void)state;
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 200000; i++) {
        long long r = (long long)(rnd(&s) % 4000000001ULL) - 2000000000LL;
        check_number((double)r);
        check_number((double)r / 10);
        check_number((double)r / 100);
        check_number((double)r / 1000);
        check_number((double)r * 0.1);
        double u = (double)(rnd(&s) >> 11) / 9007199254740992.0; /* [0, 1) */
        check_number(u * pow(10, (double)(rnd(&s) % 23) - 6));
        check_number((double)(rnd(&s) >> 11) / pow(10, (double)(rnd(&s) % 5)));
    }
}

static void integers(void **state)
{
    (void)state;
    static const long long cases[] = {
        0,
        1,
        -1,
        255,
        65535,
        -32768,
        99999999999999LL,
        100000000000000LL,
        -99999999999999LL,
        -100000000000000LL,
        123456789012345LL,
        INT64_MAX,
        INT64_MIN,
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_integer(cases[i]);
}

static void escapes(void **state)
{
    (void)state;
    assert_string_equal(md_jsonfmt_escape('\n'), "\\n");
    assert_string_equal(md_jsonfmt_escape('\t'), "\\t");
    assert_string_equal(md_jsonfmt_escape('\b'), "\\b");
    assert_string_equal(md_jsonfmt_escape('\f'), "\\f");
    assert_string_equal(md_jsonfmt_escape('\r'), "\\r");
    assert_string_equal(md_jsonfmt_escape(0), "\\u0000");
    assert_string_equal(md_jsonfmt_escape(0x1f), "\\u001f");
    assert_string_equal(md_jsonfmt_escape('"'), "\\\"");
    assert_string_equal(md_jsonfmt_escape('\\'), "\\\\");
    assert_string_equal(md_jsonfmt_escape('/'), "\\/");
    assert_string_equal(md_jsonfmt_escape(127), "\\u007f");
    for (int c = 0; c < 256; c++) {
        int plain = md_jsonfmt_plain((unsigned char)c);
        if (plain)
            assert_null(md_jsonfmt_escape((unsigned char)c));
        else
            assert_non_null(md_jsonfmt_escape((unsigned char)c));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers_fixed),
        cmocka_unit_test(numbers_random),
        cmocka_unit_test(integers),
        cmocka_unit_test(escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
