/*
 * attachcodec.h - the frames of the attach protocol (see attach_lua.c for
 * the protocol): 1 type byte, a 4-byte big-endian payload length, the
 * payload. Shared by the client (attach.c) and the engine's sessions
 * (attach_lua.c); no Lua, no I/O, so a fuzzer can drive it alone
 * (tests/fuzz/fuzz_attachcodec.c).
 */
#ifndef MD_ATTACHCODEC_H
#define MD_ATTACHCODEC_H

#include <stddef.h>
#include <stdint.h>

#define MD_ATTACH_HEADER 5

/* Write the header of a frame of type with a payload of len bytes. */
void md_attach_header(uint8_t head[MD_ATTACH_HEADER], char type, uint32_t len);

/* The first frame of buf[0..len): returns 1 and sets *type and *plen (the
 * payload starts at buf + MD_ATTACH_HEADER), 0 when more bytes are needed,
 * or -1 when the header announces a payload longer than max (the stream
 * cannot be resynchronised: close it). */
int md_attach_next(const uint8_t *buf, size_t len, uint32_t max, char *type,
                   uint32_t *plen);

#endif
