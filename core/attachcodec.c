/*
 * attachcodec.c - frames of the attach protocol; see attachcodec.h. The
 * length is decoded with shifts, never a struct cast, and checked against
 * the caller's limit before anything trusts it.
 */
#include "attachcodec.h"

_Static_assert(MD_ATTACH_HEADER == sizeof(char) + sizeof(uint32_t),
               "type byte, then a 32-bit length");

void md_attach_header(uint8_t head[MD_ATTACH_HEADER], char type, uint32_t len)
{
    head[0] = (uint8_t)type;
    head[1] = (uint8_t)(len >> 24);
    head[2] = (uint8_t)(len >> 16);
    head[3] = (uint8_t)(len >> 8);
    head[4] = (uint8_t)len;
}

int md_attach_next(const uint8_t *buf, size_t len, uint32_t max, char *type,
                   uint32_t *plen)
{
    if (len < MD_ATTACH_HEADER)
        return 0;
    uint32_t n = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 |
                 (uint32_t)buf[4];
    if (n > max)
        return -1;
    if (len - MD_ATTACH_HEADER < (size_t)n)
        return 0;
    *type = (char)buf[0];
    *plen = n;
    return 1;
}
