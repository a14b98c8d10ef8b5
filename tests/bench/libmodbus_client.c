/*
 * libmodbus_client.c - the C reference client for tests/bench/modbus.sh.
 *
 *   libmodbus_client PORT COUNT NREGS
 *
 * One connection to 127.0.0.1:PORT, COUNT reads of NREGS holding registers
 * from address 0, back to back. Prints "REQUESTS_PER_S CPU_US_PER_REQUEST"
 * (wall clock from CLOCK_MONOTONIC, CPU from getrusage) for the loop only.
 * Exits 1 on the first failed read: a benchmark of failures means nothing.
 */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: libmodbus_client PORT COUNT NREGS\n");
        return 2;
    }
    int port = atoi(argv[1]), count = atoi(argv[2]), nregs = atoi(argv[3]);
    if (port <= 0 || count <= 0 || nregs < 1 || nregs > MODBUS_MAX_READ_REGISTERS) {
        fprintf(stderr, "libmodbus_client: bad arguments\n");
        return 2;
    }
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    if (!ctx || modbus_connect(ctx) < 0) {
        fprintf(stderr, "libmodbus_client: cannot connect: %s\n", modbus_strerror(errno));
        return 1;
    }
    modbus_set_slave(ctx, 1);
    modbus_set_response_timeout(ctx, 1, 0);
    uint16_t regs[MODBUS_MAX_READ_REGISTERS];
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < count; i++) {
        if (modbus_read_registers(ctx, 0, nregs, regs) != nregs) {
            fprintf(stderr, "libmodbus_client: read %d failed: %s\n", i, modbus_strerror(errno));
            return 1;
        }
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    printf("%.0f %.2f\n", count / wall, cpu / count * 1e6);
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
