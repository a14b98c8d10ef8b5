/*
 * log.c - see log.h. The level is a plain int read without a lock: a
 * torn read is impossible for an int and a stale one only delays a change
 * of level by a line.
 *
 * Secrets never reach the log: every line, whoever formatted it (a Lua
 * md.log call, an error with its traceback, a C module), passes through
 * mask() before it is written. mask() hides the password of any URL with
 * user information (mqtt://user:PASSWORD@host) and every string registered
 * with md_log_secret() (passwords handed to the MQTT client, values read by
 * md.secret()). Masking here, at the one place lines are written, rather
 * than at each call site means a log line added later cannot leak one. The
 * secrets table is guarded by a mutex, since worker threads log too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};
static int current_level = MD_LOG_INFO;
static int log_fd = STDERR_FILENO;
static char log_path[256]; /* the file log_fd writes to, for the failure notice */

int md_log_level_from_name(const char *name)
{
    for (int i = 0; i <= MD_LOG_TRACE; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    if (strcmp(name, "warning") == 0)
        return MD_LOG_WARN;
    return -1;
}

const char *md_log_level_name(int level)
{
    return level >= 0 && level <= MD_LOG_TRACE ? level_names[level] : "?";
}

void md_log_set_level(int level)
{
    if (level >= MD_LOG_ERROR && level <= MD_LOG_TRACE)
        current_level = level;
}

int md_log_get_level(void)
{
    return current_level;
}

int md_log_on_stderr(void)
{
    return log_fd == STDERR_FILENO;
}

int md_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    md_log_close();
    log_fd = fd;
    snprintf(log_path, sizeof log_path, "%s", path);
    return 0;
}

void md_log_close(void)
{
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = STDERR_FILENO;
}

int md_log_enabled(int level)
{
    return level <= current_level;
}

static int64_t (*log_clock)(void *ud);
static void *log_clock_ud;

void md_log_set_clock(int64_t (*wall_ms)(void *ud), void *ud)
{
    log_clock = wall_ms;
    log_clock_ud = ud;
}

/* "2026-11-21 08:30:01.123 warn  " */
static size_t format_prefix(char *buf, size_t size, int level)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (log_clock) {
        int64_t ms = log_clock(log_clock_ud);
        tv.tv_sec = (time_t)(ms / 1000);
        tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    }
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, size - n, ".%03ld %-5s ", (long)(tv.tv_usec / 1000),
                          md_log_level_name(level));
    return n;
}

/* Control characters from devices (an escape sequence in a serial
 * number) must not act on the terminal that shows the log: each becomes
 * '?', except tab and newline (tracebacks); so do the UTF-8 C1 controls
 * U+0080..U+009F. */
static void defuse(char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
            p[i] = '?';
        } else if (c == 0xc2 && i + 1 < len && (unsigned char)p[i + 1] >= 0x80 &&
                   (unsigned char)p[i + 1] <= 0x9f) {
            p[i] = p[i + 1] = '?';
            i++;
        }
    }
}

/* {===== masking secrets ===== */

#define MAX_SECRETS 32
#define MIN_SECRET 3 /* shorter strings would mask ordinary words */
static char *secrets[MAX_SECRETS];
static int n_secrets;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;

int md_log_secret(const char *secret)
{
    if (!secret || strlen(secret) < MIN_SECRET)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < n_secrets; i++)
        if (strcmp(secrets[i], secret) == 0)
            goto done;
    if (n_secrets == MAX_SECRETS) {
        rc = -ENOSPC;
        goto done;
    }
    secrets[n_secrets] = strdup(secret);
    if (!secrets[n_secrets])
        rc = -ENOMEM;
    else
        n_secrets++;
done:
    pthread_mutex_unlock(&secrets_lock);
    return rc;
}

/* The length of the password in a URL's user information starting at p
 * (just after "://"): "user:PASSWORD@host" gives the offset of PASSWORD in
 * *at and its length; 0 when there is none. */
static size_t url_password(const char *p, size_t len, size_t *at)
{
    size_t colon = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '@')
            return colon ? (*at = colon + 1, i - colon - 1) : 0;
        if (c == '/' || c == ' ' || c == '\n' || c == '\t' || c == '"' || c == '\'')
            return 0;
        if (c == ':' && !colon)
            colon = i;
    }
    return 0;
}

/* Copy line[0..len) to out (size outsize) with secrets replaced by "***".
 * Returns the new length. */
static size_t mask(const char *line, size_t len, char *out, size_t outsize)
{
    size_t o = 0;
    pthread_mutex_lock(&secrets_lock);
    for (size_t i = 0; i < len && o + 4 < outsize;) {
        size_t skip = 0;
        if (i >= 3 && line[i - 1] == '/' && line[i - 2] == '/' && line[i - 3] == ':') {
            size_t at = 0, n = url_password(line + i, len - i, &at);
            if (n) {
                size_t keep = at < outsize - o - 4 ? at : outsize - o - 4;
                memcpy(out + o, line + i, keep);
                o += keep;
                i += at;
                skip = n;
            }
        }
        for (int k = 0; !skip && k < n_secrets; k++) {
            size_t sl = strlen(secrets[k]);
            if (sl <= len - i && memcmp(line + i, secrets[k], sl) == 0)
                skip = sl;
        }
        if (skip) {
            memcpy(out + o, "***", 3);
            o += 3;
            i += skip;
        } else {
            out[o++] = line[i++];
        }
    }
    pthread_mutex_unlock(&secrets_lock);
    return o;
}

/* }===== */

static void write_line(char *raw, size_t len, size_t size)
{
    char line[4096];
    bool cut = len >= size - 1; /* vsnprintf gave up, or the line fills the buffer */
    len = mask(raw, cut ? size - 1 : len, line, sizeof line);
    if (cut || len >= sizeof line - 1) {
        len = (len < sizeof line - 5 ? len : sizeof line - 5);
        memcpy(line + len, "...", 3);
        len += 3;
    }
    defuse(line, len);
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    if (w < 0 && log_fd != STDERR_FILENO) {
        /* A log file that cannot be written (a full disk, /dev/full) must
         * not swallow the log: say so once and go on on stderr. */
        int e = errno;
        md_log_close();
        char note[400];
        int n = snprintf(note, sizeof note,
                         "moondog: cannot write the log file %s: %s; logging to "
                         "stderr from now on\n",
                         log_path, strerror(e));
        w = write(STDERR_FILENO, note, n > 0 ? (size_t)n : 0);
        w = write(STDERR_FILENO, line, len);
    }
    (void)w;
}

void md_logv(int level, const char *fmt, va_list ap)
{
    if (!md_log_enabled(level))
        return;
    char line[4096];
    size_t n = format_prefix(line, sizeof line, level);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    write_line(line, m < 0 ? n : n + (size_t)m, sizeof line);
}

void md_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    md_logv(level, fmt, ap);
    va_end(ap);
}

void md_log_text(int level, const char *text)
{
    md_log(level, "%s", text);
}
