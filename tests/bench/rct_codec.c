/*
 * rct_codec.c - the RCT codec's C path for `make bench`: frames built,
 * parsed and decoded per second, as a client and a simulator do them.
 *
 * Each round builds a RESPONSE frame carrying a FLOAT (eight object ids in
 * turn, two of which need escaping, and a changing value), feeds it to a
 * streaming parser as one chunk, takes the frame out and decodes its
 * payload. Prints "frames_per_second checksum" (the checksum keeps the
 * work from being optimised away and is compared by nobody).
 *
 * usage: rct_codec N
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rctcodec.h"

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    static const uint32_t oids[8] = {0x959930BF, 0xDB2D69AE, 0x91617C58, 0x1AC87AA0,
                                     0xDB11855B, 0x0CB5D21B, 0x400F015B, 0x3AFEF139};
    static uint8_t parser_buf[MD_RCT_MAX_WIRE];
    md_rct_parser p;
    md_rct_parser_init(&p, parser_buf, sizeof parser_buf);
    uint8_t frame[64], payload[4];
    double sum = 0;
    double t0 = cpu_seconds();
    for (long i = 0; i < n; i++) {
        md_rct_encode_float((double)(i & 0xFFFF) * 0.25, payload);
        int len = md_rct_build(frame, sizeof frame, MD_RCT_RESPONSE, 0, oids[i & 7],
                               payload, sizeof payload);
        size_t used;
        md_rct_frame f;
        if (len < 0 || md_rct_parse(&p, frame, (size_t)len, &used, &f) != 1) {
            fprintf(stderr, "rct_codec: frame %ld did not come back\n", i);
            return 1;
        }
        float v;
        md_rct_decode_float(f.payload, f.payload_len, &v);
        sum += v + (double)f.oid;
    }
    double t = cpu_seconds() - t0;
    printf("%.0f %.0f\n", (double)n / t, sum);
    return 0;
}
