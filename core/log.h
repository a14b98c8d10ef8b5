/*
 * log.h - leveled, timestamped log lines to stderr or a file.
 *
 * Thread-safe: each line is formatted into a local buffer and written with
 * one write(2), so lines from worker threads never interleave.
 */
#ifndef MD_LOG_H
#define MD_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum md_log_level {
    MD_LOG_ERROR,
    MD_LOG_WARN,
    MD_LOG_INFO,
    MD_LOG_DEBUG,
    MD_LOG_TRACE,
};

/* Returns the level for a name ("error" ... "trace"), or -1. */
int md_log_level_from_name(const char *name);
const char *md_log_level_name(int level);

void md_log_set_level(int level);
int md_log_get_level(void);
/* Log to this file (appending) instead of stderr. Returns 0 or -errno. */
int md_log_open(const char *path);
/* The clock of the timestamps: wall-clock ms since the epoch (simulated
 * time gives its own); NULL: the real clock. Loop thread only. */
void md_log_set_clock(int64_t (*wall_ms)(void *ud), void *ud);
void md_log_close(void);
/* Whether log lines go to stderr (no md_log_open, or it failed). */
int md_log_on_stderr(void);

int md_log_enabled(int level);
void md_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void md_logv(int level, const char *fmt, va_list ap);
/* Never write this string to the log: every occurrence in a line becomes
 * "***" (so do URL passwords, mqtt://user:PASSWORD@host, always). Strings
 * shorter than 3 bytes are ignored. Returns 0, -ENOSPC (32 secrets are kept)
 * or -ENOMEM. Thread-safe. */
int md_log_secret(const char *secret);

/* Log a message that is already text (no formatting). */
void md_log_text(int level, const char *text);

#define md_log_error(...) md_log(MD_LOG_ERROR, __VA_ARGS__)
#define md_log_warn(...) md_log(MD_LOG_WARN, __VA_ARGS__)
#define md_log_info(...) md_log(MD_LOG_INFO, __VA_ARGS__)
#define md_log_debug(...) md_log(MD_LOG_DEBUG, __VA_ARGS__)

#endif
