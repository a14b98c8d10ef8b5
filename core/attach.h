/*
 * attach.h - `moondog attach`: a REPL into a running engine over a unix
 * socket. The server side is the Lua module moondog.attach (attach_lua.c);
 * this is the client side and what both share. No Lua here.
 */
#ifndef MD_ATTACH_H
#define MD_ATTACH_H

#include <stddef.h>

/* The socket path used when none is given: $MOONDOG_ATTACH, else
 * $XDG_RUNTIME_DIR/moondog.sock, else /tmp/moondog-<uid>.sock. */
const char *md_attach_default_path(char *buf, size_t len);

/* Connect to the engine at path (NULL: the default) and run an interactive
 * session on the terminal. Returns the process exit code. */
int md_attach_client(const char *path);

#endif
