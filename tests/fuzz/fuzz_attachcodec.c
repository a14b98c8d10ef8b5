/*
 * fuzz_attachcodec.c - libFuzzer target for core/attachcodec.c, the frames
 * of the attach protocol that both `moondog attach` and the engine's
 * sessions (attach_lua.c) read from a socket a hostile peer may hold.
 *
 * Input: byte 0 picks the chunk size the stream arrives in (0: all at
 * once), byte 1 the largest payload accepted (0: 1 MiB, as the engine
 * takes; else 0..254 bytes, so that "too large" occurs), the rest is the
 * stream. The receiver loop is the one of attach.c and attach_lua.c: append
 * a chunk, take every whole frame off the front, keep the rest.
 *
 * Contracts checked (abort on a broken one), besides crashes and sanitizer
 * reports:
 *   - the frames and the final verdict do not depend on the chunking;
 *   - a frame is exactly its bytes: its header re-encoded with
 *     md_attach_header and its payload are the bytes consumed;
 *   - -1 ("too large") comes exactly when a header announces more than the
 *     limit, and 0 exactly when a header or its payload is incomplete;
 *   - frames encoded with md_attach_header decode back to themselves.
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_attachcodec.c core/attachcodec.c -o /tmp/fuzz_attachcodec
 *   /tmp/fuzz_attachcodec tests/fuzz/corpus/attachcodec
 *
 * Seeds (tests/fuzz/corpus/attachcodec/): a session as the engine sends it
 * ('P' prompt, 'O' output, 'C' candidates), a client's 'L' lines, 'C'
 * request and 'I', a frame cut in its header and in its payload, and a
 * header announcing 4 GiB; each behind the two selector bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attachcodec.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_FRAMES = 4096 };

typedef struct frame {
    char type;
    size_t at; /* payload offset in the stream */
    uint32_t len;
} frame;

typedef struct run {
    frame f[MAX_FRAMES];
    int n;
    int verdict; /* -1: too large; 0: stream ended (maybe inside a frame) */
    size_t consumed;
} run;

/* Receive stream in chunks of `chunk` bytes (0: at once) the way the
 * client and the sessions do. The buffer is exactly as long as what has
 * arrived, so that ASan flags a read past it. */
static void receive(const uint8_t *stream, size_t size, size_t chunk, uint32_t max,
                    run *r)
{
    memset(r, 0, sizeof *r);
    size_t arrived = 0, off = 0;
    while (arrived < size && r->verdict == 0) {
        size_t step = chunk ? chunk : size;
        if (step > size - arrived)
            step = size - arrived;
        arrived += step;
        uint8_t *buf = malloc(arrived - off ? arrived - off : 1);
        CHECK(buf != NULL);
        memcpy(buf, stream + off, arrived - off);
        size_t pos = 0;
        for (;;) {
            char type;
            uint32_t len;
            int rc = md_attach_next(buf + pos, arrived - off - pos, max, &type, &len);
            CHECK(rc >= -1 && rc <= 1);
            if (rc < 0) {
                r->verdict = -1;
                break;
            }
            if (rc == 0)
                break;
            CHECK(r->n < MAX_FRAMES);
            r->f[r->n++] =
                (frame){.type = type, .at = off + pos + MD_ATTACH_HEADER, .len = len};
            pos += MD_ATTACH_HEADER + (size_t)len;
            CHECK(pos <= arrived - off);
        }
        free(buf);
        off += pos;
    }
    r->consumed = off;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static run whole, chunked;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = data[0];
    uint32_t max = data[1] ? (uint32_t)data[1] - 1 : 1u << 20;
    const uint8_t *stream = data + 2;
    size_t n = size - 2;

    receive(stream, n, 0, max, &whole);
    receive(stream, n, chunk, max, &chunked);
    CHECK(whole.n == chunked.n && whole.verdict == chunked.verdict);
    CHECK(whole.consumed == chunked.consumed);
    size_t pos = 0;
    for (int i = 0; i < whole.n; i++) {
        const frame *f = &whole.f[i];
        CHECK(f->type == chunked.f[i].type && f->at == chunked.f[i].at &&
              f->len == chunked.f[i].len);
        uint8_t head[MD_ATTACH_HEADER];
        md_attach_header(head, f->type, f->len);
        CHECK(f->at == pos + MD_ATTACH_HEADER);
        CHECK(memcmp(head, stream + pos, MD_ATTACH_HEADER) == 0);
        CHECK(f->len <= max && f->at + f->len <= n);
        pos = f->at + f->len;
    }
    CHECK(pos == whole.consumed);
    size_t rest = n - pos;
    if (whole.verdict < 0) /* exactly: the next header announces too much */
        CHECK(rest >= MD_ATTACH_HEADER && be32(stream + pos + 1) > max);
    else /* the rest is an unfinished frame */
        CHECK(rest < MD_ATTACH_HEADER || be32(stream + pos + 1) <= max);
    if (whole.verdict == 0 && rest >= MD_ATTACH_HEADER)
        CHECK(rest < MD_ATTACH_HEADER + (size_t)be32(stream + pos + 1));

    /* Encode the stream's bytes as frames of sizes taken from the stream
     * itself, then decode them back. */
    uint8_t *enc = malloc(n * (MD_ATTACH_HEADER + 1) + MD_ATTACH_HEADER);
    CHECK(enc != NULL);
    size_t elen = 0, src = 0;
    int frames = 0;
    while (src < n) {
        size_t len = stream[src] % 17;
        if (len > n - src)
            len = n - src;
        md_attach_header(enc + elen, (char)('A' + frames % 26), (uint32_t)len);
        memcpy(enc + elen + MD_ATTACH_HEADER, stream + src, len);
        elen += MD_ATTACH_HEADER + len;
        src += len ? len : 1;
        frames++;
    }
    size_t at = 0;
    for (int i = 0; i < frames; i++) {
        char type;
        uint32_t len;
        CHECK(md_attach_next(enc + at, elen - at, 16, &type, &len) == 1);
        CHECK(type == (char)('A' + i % 26));
        at += MD_ATTACH_HEADER + len;
    }
    CHECK(at == elen);
    free(enc);
    return 0;
}
