/*
 * main.c - the moondog command line.
 *
 *   moondog [options] SCRIPT.lua [args...]   run a script (service mode)
 *   moondog [options] -e CODE                run a chunk of Lua
 *   moondog [options] repl                   interactive Lua
 *   moondog [options] attach [SITE|SOCKET]   REPL into a running engine
 *   moondog [options] check SITE.lua         check a site without running it
 *   moondog [options] TOOL [args...]         run scripts/TOOL.lua
 *
 * It finds its Lua library, scripts and device profiles next to the binary
 * (a source tree: ./lua, ./scripts, ./devices) or in ../share/moondog (an
 * installed tree); $MOONDOG_HOME overrides both.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "attach.h"
#include "engine.h"
#include "log.h"
#include "repl.h"
#include "sdnotify.h"

#ifndef MD_VERSION
#define MD_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: moondog [options] SCRIPT.lua [args...]   run a script\n"
    "       moondog [options] -e CODE                run a chunk of Lua\n"
    "       moondog [options] repl                   interactive Lua with moondog "
    "loaded\n"
    "       moondog [options] attach [SITE|SOCKET]   REPL into a running engine\n"
    "       moondog [options] check SITE.lua         every mistake of a site, devices\n"
    "                                                and broker untouched\n"
    "       moondog [options] TOOL [args...]         run a tool (see below)\n"
    "\n"
    "options:\n"
    "  -e CODE             run CODE (may be repeated; runs before a script)\n"
    "  --log-level LEVEL   error, warn, info (default), debug or trace\n"
    "  --log-file FILE     append the log to FILE instead of stderr\n"
    "  --name SITE         the site's name (default: the script's name without\n"
    "                      .lua); names the attach socket SITE.sock\n"
    "  --simulated-time    run on a virtual clock that jumps to the next timer\n"
    "                      whenever nothing can run (see md.clock)\n"
    "  --version           print the version and exit\n"
    "  --help              print this help and exit\n"
    "\n"
    "A script runs as a task; moondog exits when no task, timer, server or\n"
    "connection is left, on md.exit(code), or on SIGINT/SIGTERM. SIGHUP\n"
    "reloads a site script (moondog SITE.lua): what did not change keeps\n"
    "running, a script that fails to load changes nothing (docs/site.md).\n"
    "\n"
    "attach: an engine whose script calls md.attach.listen() listens on\n"
    "$RUNTIME_DIRECTORY/SITE.sock, else $XDG_RUNTIME_DIR/moondog/SITE.sock, else\n"
    "${TMPDIR:-/tmp}/moondog-UID/SITE.sock. `moondog attach` alone attaches to\n"
    "the only engine there, or lists them (site, pid, socket) when several run;\n"
    "`moondog attach SITE` picks one by name, a path (with a /) any socket.\n";

static bool file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* A script is a regular file, readable or not (an unreadable one is
 * reported as such, not as an unknown tool), never a folder: `moondog
 * devices` run in a source tree names both the tool and the devices/ folder. */
static bool is_script_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Where lua/, scripts/ and devices/ live. */
static void find_home(char *home, size_t len)
{
    const char *env = getenv("MOONDOG_HOME");
    if (env && *env) {
        snprintf(home, len, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        n = 0;
    exe[n] = '\0';
    char *dir = dirname(exe);
    char probe[PATH_MAX + 64];
    snprintf(probe, sizeof probe, "%s/lua/moondog/init.lua", dir);
    if (file_exists(probe)) {
        snprintf(home, len, "%s", dir);
        return;
    }
    snprintf(probe, sizeof probe, "%s/../share/moondog", dir);
    char real[PATH_MAX];
    const char *found = realpath(probe, real) ? real : probe;
    if (strlen(found) >= len)
        found = "/usr/local/share/moondog";
    memcpy(home, found, strlen(found) + 1);
}

static void list_tools(FILE *out, const char *home)
{
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/scripts", home);
    DIR *d = opendir(dir);
    fprintf(out, "\ntools (moondog TOOL --help for each):");
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".lua") == 0 && e->d_name[0] != '_')
            fprintf(out, " %.*s", (int)(l - 4), e->d_name);
    }
    if (d)
        closedir(d);
    fprintf(out, "\n");
}

/* arg table as lua.c builds it: arg[0] is the script, arg[1..] its
 * arguments, negative indices the interpreter and its options. */
static void set_arg_table(lua_State *L, char **argv, int argc, int script)
{
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

/* md.paths.script: the file of the site script being run (not a tool, not
 * stdin), so that the library finds the files kept next to it, such as
 * device profiles (moondog.devices). */
static void set_script_path(lua_State *L, const char *script)
{
    lua_getglobal(L, "md");        /* stack: md */
    lua_getfield(L, -1, "paths");  /* stack: md, paths */
    lua_pushstring(L, script);     /* stack: md, paths, script */
    lua_setfield(L, -2, "script"); /* stack: md, paths */
    lua_pop(L, 2);
}

/* Compile and spawn a main-chunk task. Returns 0, 1 after printing a
 * compile error, or 2 when the arguments do not fit on a Lua stack. */
static int spawn_chunk(md_engine *E, int status, char **args, int nargs)
{
    lua_State *L = md_engine_lua(E);
    if (status != LUA_OK) {
        fprintf(stderr, "moondog: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    /* One stack slot per argument: a tool such as `modbus write` takes up to
     * 123 values, and the C stack guarantees only LUA_MINSTACK (20) slots;
     * md_engine_spawn_main copies them once more. */
    if (nargs > INT_MAX / 2 - LUA_MINSTACK ||
        !lua_checkstack(L, 2 * nargs + LUA_MINSTACK)) {
        fprintf(stderr, "moondog: too many arguments (%d)\n", nargs);
        lua_pop(L, 1);
        return 2;
    }
    for (int i = 0; i < nargs; i++)
        lua_pushstring(L, args[i]);
    md_engine_spawn_main(E, nargs);
    return 0;
}

/* Under systemd (Type=notify) the site is up once its main chunk has run:
 * devices are added and tasks spawned. A script whose main chunk never
 * returns says so itself with md.service.ready(). A main chunk that fails
 * under systemd ends the engine (exit code 1): a half-built site must not
 * run on, and Restart=on-failure then tries again, instead of systemd
 * waiting TimeoutStartSec for a READY=1 that never comes. */
static void main_done(md_engine *E, bool ok, void *ud)
{
    char state[PATH_MAX + 96];
    if (ok)
        snprintf(state, sizeof state, "READY=1\nSTATUS=running %s", (const char *)ud);
    else
        snprintf(state, sizeof state, "STATUS=the main chunk of %s failed (see the log)",
                 (const char *)ud);
    if (md_sdnotify(state) > 0 && !ok)
        md_engine_exit(E, 1);
}

static int make_md_global(md_engine *E)
{
    lua_State *L = md_engine_lua(E);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "moondog");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "moondog: cannot load the moondog library: %s\n",
                lua_tostring(L, -1));
        return 1;
    }
    lua_setglobal(L, "md");
    return 0;
}

/* The site name, which names the attach socket: --name, else the script's
 * (or tool's) basename without .lua, else "repl" (the REPL, -e chunks). */
static void set_site(const char *name, const char *command, bool repl)
{
    char buf[PATH_MAX];
    if (!name && command && !repl && strcmp(command, "-") != 0) {
        snprintf(buf, sizeof buf, "%s", command);
        name = basename(buf);
        size_t n = strlen(name);
        if (n > 4 && strcmp(name + n - 4, ".lua") == 0)
            ((char *)name)[n - 4] = '\0'; /* name points into buf */
    }
    md_attach_set_site(name ? name : "repl");
}

int main(int argc, char **argv)
{
    const char *log_file = NULL;
    int first_e = 0, i;
    bool simulated = false;
    const char *site = NULL;
    char home[PATH_MAX];
    find_home(home, sizeof home);

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            list_tools(stdout, home);
            return 0;
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) {
            printf("moondog %s (%s)\n", MD_VERSION, LUA_RELEASE);
            return 0;
        } else if (strcmp(a, "--log-level") == 0 && i + 1 < argc) {
            int level = md_log_level_from_name(argv[++i]);
            if (level < 0) {
                fprintf(stderr,
                        "moondog: unknown log level '%s' (use error, warn, info, "
                        "debug or trace)\n",
                        argv[i]);
                return 2;
            }
            md_log_set_level(level);
        } else if (strcmp(a, "--log-file") == 0 && i + 1 < argc) {
            log_file = argv[++i];
        } else if (strcmp(a, "--name") == 0 && i + 1 < argc) {
            site = argv[++i];
        } else if (strcmp(a, "--simulated-time") == 0) {
            simulated = true;
        } else if (strcmp(a, "-e") == 0 && i + 1 < argc) {
            if (!first_e)
                first_e = i;
            i++;
        } else if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "moondog: unknown option '%s' (see moondog --help)\n", a);
            return 2;
        } else {
            break;
        }
    }
    const char *command = i < argc ? argv[i] : NULL;

    if (command && strcmp(command, "attach") == 0)
        return md_attach_client(i + 1 < argc ? argv[i + 1] : NULL);

    if (log_file) {
        int rc = md_log_open(log_file);
        if (rc < 0) {
            fprintf(stderr, "moondog: cannot open log file %s: %s\n", log_file,
                    strerror(-rc));
            return 2;
        }
    }

    /* A script path, or a tool name when no such file exists. */
    char script[PATH_MAX + 64] = "";
    bool repl = command && strcmp(command, "repl") == 0;
    bool user_script = false;
    if (command && !repl) {
        if (strcmp(command, "-") == 0 || is_script_file(command)) {
            snprintf(script, sizeof script, "%s", command);
            user_script = strcmp(command, "-") != 0;
        } else {
            snprintf(script, sizeof script, "%s/scripts/%s.lua", home, command);
            if (strchr(command, '/') || strstr(command, ".lua") || !file_exists(script)) {
                fprintf(stderr,
                        "moondog: no such script or tool: '%s' (see moondog --help)\n",
                        command);
                return 2;
            }
        }
    }
    if (!command && !first_e) {
        fputs(usage, stderr);
        return 2;
    }
    set_site(site, command, repl);

    char err[256];
    md_engine *E = md_engine_new(home, err, sizeof err);
    if (!E) {
        fprintf(stderr, "moondog: %s\n", err);
        return 1;
    }
    if (simulated)
        md_engine_simulate_time(E, md_loop_wall_ms(md_engine_loop(E)), 0);
    lua_State *L = md_engine_lua(E);
    int rc = make_md_global(E);
    set_arg_table(L, argv, argc, command && !repl ? i : argc - 1);
    if (rc == 0 && user_script)
        set_script_path(L, script);

    /* -e chunks first, in order, then the script; each is a task. */
    for (int k = first_e; rc == 0 && k && k < (command ? i : argc); k++) {
        if (strcmp(argv[k], "-e") == 0 && k + 1 < argc) {
            k++;
            rc = spawn_chunk(
                E, luaL_loadbuffer(L, argv[k], strlen(argv[k]), "=(command line)"), NULL,
                0);
        } else if (strcmp(argv[k], "--log-level") == 0 ||
                   strcmp(argv[k], "--log-file") == 0 || strcmp(argv[k], "--name") == 0) {
            k++;
        }
    }
    if (rc == 0 && script[0]) {
        const char *path = strcmp(script, "-") == 0 ? NULL : script;
        rc = spawn_chunk(E, luaL_loadfile(L, path), argv + i + 1, argc - i - 1);
    }
    if (rc == 0 && script[0]) {
        md_engine_on_main_done(E, main_done, script);
        if (!simulated)
            md_sdnotify_watchdog_start(md_engine_loop(E));
    }
    int code = rc;
    if (rc == 0)
        code = repl ? md_repl_run(E) : md_engine_run(E);
    md_engine_on_main_done(E, NULL, NULL); /* shutdown cancels it: no failure */
    if (!md_engine_stopping(E))            /* else sent when the shutdown phase began */
        md_sdnotify("STOPPING=1");
    md_engine_free(E);
    md_log_close();
    return code;
}
