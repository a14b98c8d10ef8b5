/*
 * attach.h - `moondog attach`: a REPL into a running engine over a unix
 * socket. The server side is the Lua module moondog.attach (attach_lua.c);
 * this is the client side and what both share. No Lua here.
 */
#ifndef MD_ATTACH_H
#define MD_ATTACH_H

#include <stdbool.h>
#include <stddef.h>

/* The largest frame a client may send (a typed line); the engine ends a
 * session that sends more. */
#define MD_ATTACH_LINE_MAX (1u << 20)

/* The socket path used when none is given: $MOONDOG_ATTACH, else
 * $XDG_RUNTIME_DIR/moondog.sock, else ${TMPDIR:-/tmp}/moondog-<uid>/attach.sock,
 * in a directory only that user may write (md_attach_private_dir). */
const char *md_attach_default_path(char *buf, size_t len);

/* Whether the default path is the one in ${TMPDIR:-/tmp}/moondog-<uid>/. */
bool md_attach_default_in_private_dir(void);

/* Check (with create: make, mode 0700) the directory that holds path: it
 * must be a directory (not a symlink) owned by this user and closed to
 * everybody else. Returns 0, or -errno with a message in err: -EPERM when
 * it is not private, -EINVAL when path has no directory part. */
int md_attach_private_dir(const char *path, bool create, char *err, size_t errlen);

/* Connect to the engine at path (NULL: the default) and run an interactive
 * session on the terminal. Returns the process exit code. */
int md_attach_client(const char *path);

#endif
