/*
 * mblink.h - the link part of a Modbus address (see
 * lua/moondog/modbus/address.lua): where the bytes go, shared by client
 * buses (mbus) and servers (mbserver). No Lua here.
 */
#ifndef MD_MBLINK_H
#define MD_MBLINK_H

#include <stdbool.h>

/* In the order of the address schemes; md_mbus_transport and
 * md_mbsrv_transport follow it. */
enum {
    MD_MB_LINK_TCP,
    MD_MB_LINK_UDP,
    MD_MB_LINK_RTU,
    MD_MB_LINK_RTU_TCP,
    MD_MB_LINK_RTU_UDP
};

typedef struct md_mb_link {
    char host[256]; /* network transports; a server binds here ("" or "*": all) */
    int port;
    char device[256]; /* serial device (rtu) */
    int baud;
    char parity; /* 'N', 'E' or 'O' */
    int data_bits, stop_bits;
    bool rs485;
} md_mb_link;

#endif
