/*
 * serial.c - open and set up a serial line for Modbus RTU; see serial.h.
 *
 * The settings are the ones libmodbus's RTU backend applies (raw mode,
 * CLOCAL | CREAD, no flow control, VMIN = VTIME = 0 for non-blocking
 * reads), written once here for both the client and the server. A pty
 * takes them and ignores the speed, which is how the tests run real
 * traffic without hardware.
 *
 * Threads: any; no state.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "serial.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/serial.h>
#include <stddef.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static const struct {
    int baud;
    speed_t speed;
} speeds[] = {
    {50, B50},           {75, B75},           {110, B110},         {134, B134},
    {150, B150},         {200, B200},         {300, B300},         {600, B600},
    {1200, B1200},       {1800, B1800},       {2400, B2400},       {4800, B4800},
    {9600, B9600},       {19200, B19200},     {38400, B38400},     {57600, B57600},
    {115200, B115200},   {230400, B230400},   {460800, B460800},   {500000, B500000},
    {576000, B576000},   {921600, B921600},   {1000000, B1000000}, {1152000, B1152000},
    {1500000, B1500000}, {2000000, B2000000}, {2500000, B2500000}, {3000000, B3000000},
};

static int find_speed(int baud, speed_t *out)
{
    for (size_t i = 0; i < sizeof speeds / sizeof *speeds; i++)
        if (speeds[i].baud == baud) {
            *out = speeds[i].speed;
            return 0;
        }
    return -EINVAL;
}

bool md_serial_baud_ok(int baud)
{
    speed_t s;
    return find_speed(baud, &s) == 0;
}

/* Raw 8-bit line with the link's settings. */
static int setup_line(int fd, const md_mb_link *link, speed_t speed)
{
    struct termios tio;
    if (tcgetattr(fd, &tio) < 0)
        return -errno;
    cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    static const tcflag_t sizes[] = {CS5, CS6, CS7, CS8};
    tio.c_cflag |=
        sizes[link->data_bits >= 5 && link->data_bits <= 8 ? link->data_bits - 5 : 3];
    if (link->parity == 'E' || link->parity == 'O')
        tio.c_cflag |= PARENB | (link->parity == 'O' ? PARODD : 0);
    if (link->stop_bits == 2)
        tio.c_cflag |= CSTOPB;
    tio.c_cc[VMIN] = 0;
    tio.c_cc[VTIME] = 0;
    cfsetispeed(&tio, speed);
    cfsetospeed(&tio, speed);
    if (tcsetattr(fd, TCSANOW, &tio) < 0)
        return -errno;
    tcflush(fd, TCIOFLUSH); /* what came before we opened answers nothing of ours */
    ioctl(fd, TIOCEXCL);    /* best effort: not a tty, or root */
    if (link->rs485) {
        struct serial_rs485 rs = {.flags = SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND};
        if (ioctl(fd, TIOCSRS485, &rs) < 0)
            return -errno;
    }
    return 0;
}

int md_serial_open(const md_mb_link *link)
{
    speed_t speed;
    if (find_speed(link->baud, &speed) < 0)
        return -EINVAL;
    int fd = open(link->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == EBUSY ? -EBUSY : -errno; /* EBUSY: TIOCEXCL, not root */
    /* Only a held lock refuses the line: where locks are not supported the
     * line still opens. Locked before setup_line changes any setting. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
        close(fd);
        return -EBUSY;
    }
    int rc = setup_line(fd, link, speed);
    if (rc < 0) {
        md_serial_close(fd);
        return rc;
    }
    return fd;
}

void md_serial_close(int fd)
{
    if (fd < 0)
        return;
    ioctl(fd, TIOCNXCL);
    close(fd);
}
