/*
 * err.c - the table behind err.h: one message and one Lua token per code,
 * and the tokens of the errno values moondog meets (connects, serial
 * lines, sockets). Everything here is static data, so both functions are
 * thread-safe: a worker thread may call md_strerror(), unlike strerror(),
 * whose buffer glibc may share.
 */
#include "err.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define ROW_(name, token, text) {token, text},
static const struct {
    const char *token, *text;
} own[] = {MD_ERR_LIST(ROW_)};
#undef ROW_

_Static_assert(sizeof own / sizeof own[0] == MD_ERR_END_ - MD_EBASE - 1,
               "one row per code");

static int magnitude(int rc)
{
    return rc < 0 ? -rc : rc;
}

bool md_err_is_own(int rc)
{
    int n = magnitude(rc);
    return n > MD_EBASE && n < MD_ERR_END_;
}

/* The tokens of the errno values moondog names. Their text comes from
 * strerrordesc_np(), glibc's constant table behind strerror(): the same
 * words, without strerror()'s shared buffer or the locale. */
static const struct {
    int no;
    const char *token;
} sys[] = {
    {ETIMEDOUT, "timeout"},
    {ECONNREFUSED, "refused"},
    {EHOSTUNREACH, "unreachable"},
    {ENETUNREACH, "unreachable"},
    {EADDRNOTAVAIL, "unreachable"},
    {ECONNRESET, "connection_lost"},
    {EPIPE, "connection_lost"},
    {ECONNABORTED, "connection_lost"},
    {ENOENT, "no_device"},
    {ENODEV, "no_device"},
    {ENXIO, "no_device"},
    {EACCES, "permission"},
    {EPERM, "permission"},
    {EBUSY, "busy"},
    {EADDRINUSE, "in_use"},
    {ENOTTY, "not_serial"},
    {ENOMEM, "nomem"},
    {EINVAL, "invalid"},
    {EIO, "io"},
    {EMFILE, "io"},
    {EAGAIN, "busy"},
};

static int sys_row(int n)
{
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
        if (sys[i].no == n)
            return (int)i;
    return -1;
}

const char *md_strerror(int rc)
{
    int n = magnitude(rc);
    if (n == 0)
        return "success";
    if (md_err_is_own(n))
        return own[n - MD_EBASE - 1].text;
    const char *d = strerrordesc_np(n);
    return d ? d : "unknown error";
}

const char *md_err_token(int rc)
{
    int n = magnitude(rc);
    if (n == 0)
        return "ok";
    if (md_err_is_own(n))
        return own[n - MD_EBASE - 1].token;
    int i = sys_row(n);
    return i >= 0 ? sys[i].token : "io";
}

int md_err_connect(int err)
{
    int n = magnitude(err);
    if (n == ETIMEDOUT)
        return -MD_ECONNTIMEOUT;
    if (md_err_is_own(n) || sys_row(n) >= 0)
        return -n;
    return -MD_ECONNECT;
}
