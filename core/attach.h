/*
 * attach.h - `moondog attach`: a REPL into a running engine over a unix
 * socket, one per engine, named after its site. The server side is the Lua
 * module moondog.attach (attach_lua.c, with attach_server.c); this is the
 * client side and what both share (paths, checks). No Lua here.
 */
#ifndef MD_ATTACH_H
#define MD_ATTACH_H

#include <stdbool.h>
#include <stddef.h>

/* The largest frame a client may send (a typed line); the engine ends a
 * session that sends more. */
#define MD_ATTACH_LINE_MAX (1u << 20)

/* The site this engine runs, which names its socket: set by main.c from
 * --name, else the script's basename without .lua, else the tool's name,
 * else "repl". Characters outside [A-Za-z0-9._-] become '_', and a leading
 * '.' too, so the name never leaves the socket directory. */
void md_attach_set_site(const char *name);
const char *md_attach_site(void);

/* The directory of the engines' sockets: $RUNTIME_DIRECTORY (systemd's
 * RuntimeDirectory=), else $XDG_RUNTIME_DIR/moondog, else
 * ${TMPDIR:-/tmp}/moondog-<uid>. */
const char *md_attach_socket_dir(char *buf, size_t len);

/* The socket of site (NULL: this engine's site): $MOONDOG_ATTACH when set
 * and site is NULL, else <md_attach_socket_dir>/<site>.sock. */
const char *md_attach_site_path(const char *site, char *buf, size_t len);
#define md_attach_default_path(buf, len) md_attach_site_path(NULL, buf, len)

/* Whether the default path is in md_attach_socket_dir (no $MOONDOG_ATTACH),
 * which then must pass md_attach_private_dir. */
bool md_attach_default_in_private_dir(void);

/* Check (with create: make, mode 0700) the directory that holds path: it
 * must be a directory (not a symlink) owned by this user that nobody else
 * may write to. Returns 0, or -errno with a message in err: -EPERM when
 * it is not private, -EINVAL when path has no directory part. */
int md_attach_private_dir(const char *path, bool create, char *err, size_t errlen);

/* `moondog attach [SITE|PATH]`: connect to the engine of a site (a name),
 * at a path (an argument with a '/' or ending in .sock), or, with NULL, to
 * the only engine listening in md_attach_socket_dir ($MOONDOG_ATTACH when
 * set); when several listen, list them (site, pid, path) and ask for a
 * name on a terminal, or exit 2. Then run an interactive session on the
 * terminal. Returns the process exit code. */
int md_attach_client(const char *target);

#endif
