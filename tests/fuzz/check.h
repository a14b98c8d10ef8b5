/*
 * check.h - the contract check every fuzz target uses: a broken contract
 * (a decoder that accepts what it must refuse, a round trip that differs)
 * aborts with the condition's text, so libFuzzer keeps the input as a crash.
 */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: broken contract: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif
