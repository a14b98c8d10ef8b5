/*
 * libmodbus_server.c - the reference Modbus TCP server for tests/bench/modbus.sh.
 *
 *   libmodbus_server PORT_FILE
 *
 * Listens on 127.0.0.1 at a free port, writes the port to PORT_FILE once it
 * accepts connections, and serves any number of clients at once from one
 * select() loop (libmodbus's own multi-client pattern) until SIGTERM. All
 * four tables hold 10,000 entries; holding[i] = input[i] = i.
 *
 * It is plain libmodbus so that every client in the benchmark (moondog,
 * a C program, pymodbus) talks to the same server, which none of them is.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define N_ENTRIES 10000

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: libmodbus_server PORT_FILE\n");
        return 2;
    }
    modbus_mapping_t *map = modbus_mapping_new(N_ENTRIES, N_ENTRIES, N_ENTRIES, N_ENTRIES);
    if (!map) {
        fprintf(stderr, "libmodbus_server: %s\n", modbus_strerror(errno));
        return 1;
    }
    for (int i = 0; i < N_ENTRIES; i++) {
        map->tab_registers[i] = (uint16_t)i;
        map->tab_input_registers[i] = (uint16_t)i;
    }
    /* The port is bound here, with port 0, so that the kernel picks a free one. */
    int server = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(server, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(server, 16) < 0 ||
        getsockname(server, (struct sockaddr *)&sa, &len) < 0) {
        perror("libmodbus_server");
        return 1;
    }
    FILE *pf = fopen(argv[1], "w");
    if (!pf) {
        perror(argv[1]);
        return 1;
    }
    fprintf(pf, "%d\n", ntohs(sa.sin_port));
    fclose(pf);

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", ntohs(sa.sin_port));
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    fd_set all;
    FD_ZERO(&all);
    FD_SET(server, &all);
    int max_fd = server;
    while (!stop) {
        fd_set ready = all;
        if (select(max_fd + 1, &ready, NULL, NULL, NULL) < 0) {
            if (errno == EINTR)
                continue;
            perror("select");
            break;
        }
        for (int fd = 0; fd <= max_fd; fd++) {
            if (!FD_ISSET(fd, &ready))
                continue;
            if (fd == server) {
                int c = accept(server, NULL, NULL);
                if (c >= 0 && c < FD_SETSIZE) {
                    FD_SET(c, &all);
                    if (c > max_fd)
                        max_fd = c;
                } else if (c >= 0) {
                    close(c);
                }
                continue;
            }
            modbus_set_socket(ctx, fd);
            int rc = modbus_receive(ctx, query);
            if (rc > 0) {
                modbus_reply(ctx, query, rc, map);
            } else if (rc < 0) {
                close(fd);
                FD_CLR(fd, &all);
            }
        }
    }
    modbus_free(ctx);
    modbus_mapping_free(map);
    close(server);
    return 0;
}
