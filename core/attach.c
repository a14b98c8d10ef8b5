/*
 * attach.c - `moondog attach [SOCKET]`: the client of a REPL into a running
 * engine. No Lua here; the server is the Lua module moondog.attach
 * (attach_lua.c, which also documents the wire protocol).
 *
 * Design. A small separate process with its own poll() loop over three fds:
 * the socket, stdin and a self-pipe for SIGINT and SIGWINCH. It is always in one of three
 * states: waiting for the engine's prompt, editing a line, or waiting for a
 * line to finish (RUNNING).
 *  - On a terminal, libedit's readline-compatible callback interface edits
 *    lines, with history in ~/.moondog_attach_history. Tab completion asks
 *    the engine: a 'C' frame out, then a blocking wait (at most 2 s) for the
 *    'C' answer, since libedit wants the candidates before it returns.
 *  - On a pipe or a file there is no editing and no prompt: each 'P' frame
 *    sends the next line of stdin; the end of stdin ends the session.
 *  - Ctrl-C sends 'I'. The engine cancels a running line, or drops the
 *    line being edited (and any pending multi-line statement) and answers
 *    with a fresh 'P'. On a pipe, SIGINT keeps its default action.
 *  - Ctrl-D on an empty line, or the end of piped input, leaves with 0.
 *    A connection that cannot be made, or that the engine drops, leaves
 *    with 1 after one line on stderr.
 *
 * Threads: one. Ownership: the client state is one static struct (libedit's
 * callbacks carry no user data); its buffers are freed on every exit path,
 * and the terminal is restored (rl_callback_handler_remove) on every exit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "attach.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <editline/readline.h>

#include "attachcodec.h"
#include "lineedit.h"

/* Wire format: see attach_lua.c; frames: attachcodec.h. */
#define FRAME_HEADER MD_ATTACH_HEADER
#define FRAME_MAX (64u << 20) /* larger frames from the engine are a broken stream */
#define COMPLETE_WAIT_MS 2000

typedef enum { C_WAIT_PROMPT, C_EDITING, C_RUNNING } client_state;

static struct {
    int sock;
    bool tty;
    bool handler_on;
    bool lost;             /* the engine closed the connection */
    bool stdin_eof;        /* pipe mode */
    int exit_code;         /* -1 while running */
    unsigned late_answers; /* 'C' answers owed for requests we gave up on */
    client_state state;
    char *in; /* bytes from the engine not yet parsed into frames */
    size_t in_len, in_cap;
    char *line; /* pipe mode: stdin bytes not yet sent */
    size_t line_len, line_cap;
} C = {.sock = -1, .exit_code = -1};

static int sig_pipe[2] = {-1, -1};
static char C_default[PATH_MAX]; /* the default path, when no path was given */

static char site_name[128] = "repl";

void md_attach_set_site(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < sizeof site_name; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || (ch == '.' && n);
        site_name[n++] = ok ? ch : '_';
    }
    site_name[n] = '\0';
    if (n == 0)
        snprintf(site_name, sizeof site_name, "repl");
}

const char *md_attach_site(void)
{
    return site_name;
}

const char *md_attach_socket_dir(char *buf, size_t len)
{
    const char *sysd = getenv("RUNTIME_DIRECTORY");
    const char *run = getenv("XDG_RUNTIME_DIR");
    const char *tmp = getenv("TMPDIR");
    if (sysd && *sysd) {
        /* systemd may list several directories, separated by ':' */
        size_t n = strcspn(sysd, ":");
        snprintf(buf, len, "%.*s", (int)n, sysd);
    } else if (run && *run) {
        snprintf(buf, len, "%s/moondog", run);
    } else {
        snprintf(buf, len, "%s/moondog-%u", tmp && *tmp ? tmp : "/tmp",
                 (unsigned)getuid());
    }
    return buf;
}

const char *md_attach_site_path(const char *site, char *buf, size_t len)
{
    const char *env = getenv("MOONDOG_ATTACH");
    if (!site && env && *env) {
        snprintf(buf, len, "%s", env);
        return buf;
    }
    char dir[PATH_MAX];
    snprintf(buf, len, "%s/%s.sock", md_attach_socket_dir(dir, sizeof dir),
             site ? site : site_name);
    return buf;
}

bool md_attach_default_in_private_dir(void)
{
    const char *env = getenv("MOONDOG_ATTACH");
    return !(env && *env);
}

/* Only this user (or root) may own the socket, its directory or the engine,
 * and nobody else may write to them: otherwise another local user could
 * have put their own socket there first (issue 17). */
static bool trusted_owner(uid_t uid)
{
    return uid == getuid() || uid == 0;
}

int md_attach_private_dir(const char *path, bool create, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        snprintf(err, errlen, "%s is not in a directory of its own", path);
        return -EINVAL;
    }
    *slash = '\0';
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    struct stat st;
    if (lstat(dir, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot use %s: %s", dir, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) {
        snprintf(err, errlen,
                 "%s is not a private directory of user %u (owner %u, mode %03o): "
                 "another user may have made it; remove it or set MOONDOG_ATTACH",
                 dir, (unsigned)geteuid(), (unsigned)st.st_uid,
                 (unsigned)(st.st_mode & 0777));
        return -EPERM;
    }
    return 0;
}

/* {===== frames ===== */

/* Send one frame, blocking. Returns 0 or -errno. */
static int send_frame(char type, const char *data, size_t len)
{
    uint8_t head[MD_ATTACH_HEADER];
    md_attach_header(head, type, (uint32_t)len);
    struct iovec iov[2] = {{head, sizeof head}, {(void *)data, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    size_t left = sizeof head + len;
    while (left > 0) {
        ssize_t n = sendmsg(C.sock, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        left -= (size_t)n;
        while (n > 0 && msg.msg_iovlen > 0) { /* skip what was sent */
            size_t step =
                (size_t)n < msg.msg_iov->iov_len ? (size_t)n : msg.msg_iov->iov_len;
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + step;
            msg.msg_iov->iov_len -= step;
            n -= (ssize_t)step;
            if (msg.msg_iov->iov_len == 0) {
                msg.msg_iov++;
                msg.msg_iovlen--;
            }
        }
    }
    return 0;
}

/* Read what the socket has into C.in. Returns false when the engine is gone. */
static bool receive(void)
{
    if (C.in_cap - C.in_len < 4096) {
        size_t cap = C.in_cap ? C.in_cap * 2 : 16384;
        char *in = realloc(C.in, cap);
        if (!in)
            return false;
        C.in = in;
        C.in_cap = cap;
    }
    ssize_t n = recv(C.sock, C.in + C.in_len, C.in_cap - C.in_len, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    C.in_len += (size_t)n;
    return true;
}

/* The next complete frame in C.in: 1 and its parts, 0 if incomplete, -1 if
 * the stream is broken. The payload stays valid until consume(). */
static int next_frame(char *type, const char **data, size_t *len)
{
    uint32_t n;
    int rc = md_attach_next((const uint8_t *)C.in, C.in_len, FRAME_MAX, type, &n);
    if (rc == 1) {
        *data = C.in + FRAME_HEADER;
        *len = n;
    }
    return rc;
}

static void consume(size_t len)
{
    size_t used = FRAME_HEADER + len;
    memmove(C.in, C.in + used, C.in_len - used);
    C.in_len -= used;
}

/* }===== */

/* {===== output and leaving ===== */

static void write_out(const char *data, size_t len)
{
    fwrite(data, 1, len, stdout);
    fflush(stdout);
}

/* Output that arrives while a line is being edited (a task started from
 * this session printing later): clear the edit line, print, redraw it. */
static void write_over_prompt(const char *data, size_t len)
{
    fputs("\r\033[K", stdout);
    write_out(data, len);
    if (len && data[len - 1] != '\n')
        write_out("\n", 1);
    md_lineedit_redisplay();
}

static void stop_editing(void)
{
    if (C.handler_on)
        md_lineedit_unprompt();
    C.handler_on = false;
}

static void finish(int code)
{
    if (C.exit_code < 0)
        C.exit_code = code;
}

static void engine_gone(void)
{
    if (C.exit_code >= 0)
        return;
    bool editing = C.handler_on;
    stop_editing();
    if (editing)
        fputs("\n", stdout);
    fflush(stdout);
    fputs("moondog: the engine closed the connection\n", stderr);
    finish(1);
}

/* }===== */

/* {===== completion ===== */

/* Ask the engine and wait for its 'C' answer; other frames are handled on
 * the way. Gives up after COMPLETE_WAIT_MS: an engine busy in a long task
 * must not freeze the keyboard. The answer it then still owes is skipped
 * when it comes, so that it is not taken for the answer to a later Tab.
 * Frames after the answer stay in C.in for run() to handle. */
static void ask_matches(const char *text)
{
    if (C.lost || send_frame('C', text, strlen(text)) < 0) {
        C.lost = true;
        return;
    }
    for (int waited = 0; waited < COMPLETE_WAIT_MS; waited += 100) {
        char type;
        const char *data;
        size_t len;
        int rc;
        while ((rc = next_frame(&type, &data, &len)) == 1) {
            if (type == 'C' && C.late_answers > 0) {
                C.late_answers--;
            } else if (type == 'C') {
                md_lineedit_offer(data, len);
                consume(len);
                return;
            }
            if (type == 'O')
                write_over_prompt(data, len);
            consume(len);
        }
        struct pollfd p = {.fd = C.sock, .events = POLLIN};
        if (rc < 0 || (poll(&p, 1, 100) == 1 && !receive())) {
            C.lost = true;
            return;
        }
    }
    C.late_answers++;
}

static void send_line(const char *line, size_t len)
{
    if (len > MD_ATTACH_LINE_MAX) {
        /* The engine would end the session: say why, and send an empty line
         * instead, which the engine answers with its next prompt. */
        fprintf(stderr,
                "moondog: a line of %zu bytes is longer than the %u bytes the engine "
                "takes; it was not sent\n",
                len, MD_ATTACH_LINE_MAX);
        len = 0;
    }
    if (send_frame('L', line, len) < 0) {
        C.lost = true;
        return;
    }
    C.state = C_RUNNING;
}

static void on_line(char *line)
{
    stop_editing();
    if (!line) { /* Ctrl-D on an empty line */
        fputs("\n", stdout);
        fflush(stdout);
        finish(0);
        return;
    }
    md_lineedit_history_add(line);
    send_line(line, strlen(line));
    free(line);
}

/* Pipe mode: send the next line of stdin if there is one. */
static void pump_stdin(void)
{
    char *nl = C.line_len ? memchr(C.line, '\n', C.line_len) : NULL;
    if (!nl && !C.stdin_eof)
        return;
    if (!nl && C.line_len == 0) {
        finish(0);
        return;
    }
    size_t n = nl ? (size_t)(nl - C.line) : C.line_len;
    size_t used = nl ? n + 1 : n;
    send_line(C.line, n);
    memmove(C.line, C.line + used, C.line_len - used);
    C.line_len -= used;
}

static void read_stdin(void)
{
    if (C.line_cap - C.line_len < 4096) {
        size_t cap = C.line_cap ? C.line_cap * 2 : 8192;
        char *line = realloc(C.line, cap);
        if (!line) {
            C.stdin_eof = true;
            return;
        }
        C.line = line;
        C.line_cap = cap;
    }
    ssize_t n = read(STDIN_FILENO, C.line + C.line_len, C.line_cap - C.line_len);
    if (n > 0)
        C.line_len += (size_t)n;
    else if (n == 0 || errno != EINTR)
        C.stdin_eof = true;
}

/* }===== */

static void on_frame(char type, const char *data, size_t len)
{
    switch (type) {
    case 'O':
        if (C.handler_on)
            write_over_prompt(data, len);
        else
            write_out(data, len);
        break;
    case 'P':
        C.state = C_EDITING;
        if (C.tty) {
            char prompt[64];
            snprintf(prompt, sizeof prompt, "%.*s", (int)len, data);
            stop_editing();
            md_lineedit_prompt(prompt, on_line);
            C.handler_on = true;
        } else {
            pump_stdin();
        }
        break;
    case 'C': /* an answer ask_matches gave up waiting for */
        if (C.late_answers > 0)
            C.late_answers--;
        break;
    default: /* ignore the unknown */ break;
    }
}

/* Handle the complete frames in C.in: those just received, and those that
 * arrived with a completion answer, which poll() will not report again. */
static void handle_frames(void)
{
    char type;
    const char *data;
    size_t len;
    int rc = 0;
    while (C.exit_code < 0 && (rc = next_frame(&type, &data, &len)) == 1) {
        on_frame(type, data, len);
        consume(len);
    }
    if (rc < 0)
        C.lost = true;
}

static void on_socket(void)
{
    if (!receive()) {
        C.lost = true;
        return;
    }
    handle_frames();
}

static void on_signal(int signo)
{
    int saved = errno;
    char byte = signo == SIGINT ? 'i' : 'w';
    ssize_t n = write(sig_pipe[1], &byte, 1);
    (void)n;
    errno = saved;
}

/* Ctrl-C: the engine decides (cancel the line, or drop the edited one). */
static void on_interrupt(void)
{
    if (C.state == C_EDITING && C.handler_on) {
        stop_editing();
        fputs("^C\n", stdout);
        fflush(stdout);
        C.state = C_WAIT_PROMPT;
    } else if (C.state == C_EDITING) {
        return;
    } else if (C.state == C_RUNNING) {
        fputs("\n", stdout); /* after the terminal's own "^C" */
        fflush(stdout);
    }
    if (send_frame('I', NULL, 0) < 0)
        C.lost = true;
}

static void on_signals(void)
{
    char buf[16];
    bool interrupt = false, resize = false;
    for (ssize_t n; (n = read(sig_pipe[0], buf, sizeof buf)) > 0;)
        for (ssize_t i = 0; i < n; i++) {
            interrupt |= buf[i] == 'i';
            resize |= buf[i] == 'w';
        }
    if (resize && C.handler_on)
        md_lineedit_resize();
    if (interrupt)
        on_interrupt();
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Before a single byte goes out: is the socket file ours (or root's) and
 * closed to others, and is the process behind it ours (or root's)? A line
 * typed into a socket another user planted would hand them passwords. */
static bool check_engine(int fd, const char *path)
{
    struct stat st;
    struct ucred cred;
    socklen_t credlen = sizeof cred;
    char err[PATH_MAX + 200];
    if (lstat(path, &st) < 0) {
        snprintf(err, sizeof err, "cannot check %s: %s", path, strerror(errno));
    } else if (!S_ISSOCK(st.st_mode) || !trusted_owner(st.st_uid) || (st.st_mode & 022)) {
        snprintf(err, sizeof err,
                 "%s belongs to user %u with mode %03o, not to you: refusing to "
                 "send anything to it",
                 path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
    } else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) < 0) {
        snprintf(err, sizeof err, "cannot tell who listens on %s: %s", path,
                 strerror(errno));
    } else if (!trusted_owner(cred.uid)) {
        snprintf(err, sizeof err,
                 "the process listening on %s runs as user %u, not as you: refusing "
                 "to send anything to it",
                 path, (unsigned)cred.uid);
    } else if (md_attach_default_in_private_dir() && strcmp(path, C_default) == 0 &&
               md_attach_private_dir(path, false, err, sizeof err) < 0) {
        /* err says why */
    } else {
        return true;
    }
    fprintf(stderr, "moondog: %s\n", err);
    return false;
}

/* false: no libedit, lines are read plainly */
static bool setup_terminal(const char *path)
{
    char err[256];
    if (md_lineedit_setup("moondog-attach", ".moondog_attach_history", ask_matches, err,
                          sizeof err) < 0) {
        fprintf(stderr, "moondog: no line editing: %s\n", err);
        return false;
    }
    printf("moondog: attached to %s — Ctrl-D to leave\n", path);
    fflush(stdout);
    return true;
}

static bool setup_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!C.tty)
        return true; /* on a pipe, Ctrl-C simply ends the client */
    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return false;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(SIGINT, &sa, NULL) == 0 && sigaction(SIGWINCH, &sa, NULL) == 0;
}

static void run(void)
{
    while (C.exit_code < 0) {
        handle_frames();
        if (C.exit_code >= 0)
            break;
        if (C.lost) {
            engine_gone();
            break;
        }
        struct pollfd p[3] = {{.fd = C.sock, .events = POLLIN},
                              {.fd = sig_pipe[0], .events = POLLIN},
                              {.fd = -1}};
        if (C.state == C_EDITING)
            p[2] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            finish(1);
            break;
        }
        if (p[1].revents)
            on_signals();
        if (p[0].revents && C.exit_code < 0)
            on_socket();
        if (p[2].revents && C.state == C_EDITING && C.exit_code < 0 && !C.lost) {
            if (C.tty) {
                md_lineedit_read_char();
            } else {
                read_stdin();
                pump_stdin();
            }
        }
    }
}

/* {===== choosing an engine ===== */

typedef struct engine_entry {
    char site[128];
    char path[PATH_MAX];
    long pid; /* of the listening process, -1 when unknown */
} engine_entry;

enum { ENGINES_MAX = 64 };

/* The live engines in dir: sockets of this user that accept a connection.
 * Returns how many were put in out (at most max). */
static int find_engines(const char *dir, engine_entry *out, int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while (n < max && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".sock") != 0 ||
            len - 5 >= sizeof out->site)
            continue;
        engine_entry *en = &out[n];
        size_t dlen = strlen(dir);
        if (dlen + 1 + len >= sizeof en->path)
            continue;
        memcpy(en->path, dir, dlen);
        en->path[dlen] = '/';
        memcpy(en->path + dlen + 1, e->d_name, len + 1);
        struct stat st;
        if (lstat(en->path, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
            continue;
        int fd = connect_to(en->path);
        if (fd < 0)
            continue; /* stale: the engine is gone */
        struct ucred cred;
        socklen_t credlen = sizeof cred;
        en->pid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0
                      ? (long)cred.pid
                      : -1;
        close(fd);
        snprintf(en->site, sizeof en->site, "%.*s", (int)(len - 5), e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* Several engines: list them; on a terminal, ask for a site name. Returns
 * the chosen entry or NULL (the caller exits 2). */
static const engine_entry *ask_engine(const engine_entry *en, int n, const char *dir)
{
    printf("%d engines listen in %s:\n  %-20s %8s  %s\n", n, dir, "SITE", "PID",
           "SOCKET");
    for (int i = 0; i < n; i++)
        printf("  %-20s %8ld  %s\n", en[i].site, en[i].pid, en[i].path);
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr,
                "moondog: several engines run: choose one with moondog attach SITE\n");
        return NULL;
    }
    for (int tries = 0; tries < 3; tries++) {
        char line[256];
        printf("site to attach to: ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            return NULL;
        line[strcspn(line, "\r\n")] = '\0';
        for (int i = 0; i < n; i++)
            if (strcmp(line, en[i].site) == 0)
                return &en[i];
        printf("no engine named '%s'\n", line);
    }
    return NULL;
}

static bool is_path(const char *target)
{
    size_t len = strlen(target);
    return strchr(target, '/') || (len > 5 && strcmp(target + len - 5, ".sock") == 0);
}

/* Where to attach: fills path; returns -1 to go on, or an exit code. */
static int resolve_target(const char *target, char *path, size_t len)
{
    const char *env = getenv("MOONDOG_ATTACH");
    if (target && is_path(target)) {
        snprintf(path, len, "%s", target);
        return -1;
    }
    if (target || (env && *env)) {
        md_attach_site_path(target, path, len);
        if (target)
            snprintf(C_default, sizeof C_default, "%s", path);
        return -1;
    }
    char dir[PATH_MAX];
    md_attach_socket_dir(dir, sizeof dir);
    static engine_entry found[ENGINES_MAX];
    int n = find_engines(dir, found, ENGINES_MAX);
    if (n == 0) {
        fprintf(stderr,
                "moondog: no engine listens in %s — start a site (its script calls "
                "md.attach.listen()), or give its name or socket path\n",
                dir);
        return 1;
    }
    const engine_entry *en = n == 1 ? &found[0] : ask_engine(found, n, dir);
    if (!en)
        return 2;
    snprintf(path, len, "%s", en->path);
    snprintf(C_default, sizeof C_default, "%s", path);
    return -1;
}

/* }===== */

int md_attach_client(const char *target)
{
    char path[PATH_MAX];
    int rc = resolve_target(target, path, sizeof path);
    if (rc >= 0)
        return rc;
    C.sock = connect_to(path);
    if (C.sock < 0) {
        fprintf(stderr,
                "moondog: cannot attach to %s: %s — is an engine running with "
                "md.attach.listen()?\n",
                path, strerror(errno));
        return 1;
    }
    if (!check_engine(C.sock, path)) {
        close(C.sock);
        return 1;
    }
    C.tty = isatty(STDIN_FILENO) && setup_terminal(path);
    if (!setup_signals()) {
        fprintf(stderr, "moondog: cannot set up signals: %s\n", strerror(errno));
        close(C.sock);
        return 1;
    }
    run();
    stop_editing();
    fflush(stdout);
    close(C.sock);
    if (sig_pipe[0] >= 0) {
        close(sig_pipe[0]);
        close(sig_pipe[1]);
    }
    md_lineedit_teardown();
    free(C.in);
    free(C.line);
    return C.exit_code;
}
