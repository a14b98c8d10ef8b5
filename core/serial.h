/*
 * serial.h - a serial line set up for Modbus RTU, in one place for the
 * client (mbus_serial.c) and the server (mbserver_io.c): opened for this
 * process alone, raw 8-bit with the link's baud rate, parity, data and stop
 * bits, and the kernel's RS-485 mode when asked. No Lua, no loop, no state.
 *
 * One party per line. Two masters on one RS-485 line corrupt each other's
 * frames, so md_serial_open() takes an exclusive flock() on the device
 * before it changes any setting (a second opener fails with EBUSY before it
 * touches a line in use, not after), and sets TIOCEXCL for programs that do
 * not use flock() (root ignores TIOCEXCL; flock() holds for root too).
 * Where locks are not supported (ENOLCK, EINVAL) the line still opens.
 */
#ifndef MD_SERIAL_H
#define MD_SERIAL_H

#include <stdbool.h>

#include "mblink.h"

/* Whether termios can set this baud rate. */
bool md_serial_baud_ok(int baud);

/* Open link->device non-blocking and close-on-exec, lock it and set it up,
 * with any input already waiting flushed. Returns the fd, or -EBUSY (another
 * opener holds the line), -EINVAL (a baud rate termios cannot set), or
 * -errno of open/tcsetattr/the RS-485 ioctl. */
int md_serial_open(const md_mb_link *link);

/* Give the line back: clear TIOCEXCL (the tty may outlive us: a pty) and
 * close, which drops the lock. */
void md_serial_close(int fd);

#endif
