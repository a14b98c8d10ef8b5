/*
 * lineedit.c - see lineedit.h. Uses libedit's readline-compatible API
 * (BSD licence; GNU readline is GPL-3). The candidate list lives here from
 * one Tab to the next; libedit asks for it one entry at a time.
 *
 * Loading. libedit, with libtinfo, libbsd and libmd behind it, is opened
 * with dlopen when a terminal REPL or attach session starts, and called
 * through a table typed from <editline/readline.h> itself; it stays loaded
 * until exit. Linked into the binary it cost every moondog process 356 KiB
 * of RSS (a service never edits a line) and made every symbol look-up of
 * the dynamic linker search four more libraries.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lineedit.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#define HISTORY_MAX 1000

/* {===== libedit, loaded on first use ===== */

#define RL_FUNCS(X)                                                                      \
    X(rl_initialize)                                                                     \
    X(add_history)                                                                       \
    X(stifle_history)                                                                    \
    X(read_history)                                                                      \
    X(write_history)                                                                     \
    X(rl_completion_matches)                                                             \
    X(rl_callback_handler_install)                                                       \
    X(rl_callback_handler_remove)                                                        \
    X(rl_callback_read_char)                                                             \
    X(rl_forced_update_display)                                                          \
    X(rl_resize_terminal)                                                                \
    X(rl_readline_name)                                                                  \
    X(rl_catch_signals)                                                                  \
    X(rl_catch_sigwinch)                                                                 \
    X(rl_basic_word_break_characters)                                                    \
    X(rl_completer_word_break_characters)                                                \
    X(rl_completion_append_character)                                                    \
    X(rl_completion_query_items)                                                         \
    X(rl_attempted_completion_function)                                                  \
    X(rl_attempted_completion_over)

/* Functions as function pointers, variables as pointers to them. */
static struct {
#define X(f) __typeof__(f) *f;
    RL_FUNCS(X)
#undef X
} rl;
static bool rl_loaded;

static int load_libedit(char *err, size_t errlen)
{
    if (rl_loaded)
        return 0;
    void *lib = dlopen("libedit.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(err, errlen,
                 "line editing needs libedit, which is not installed (Debian package "
                 "libedit2): %s",
                 dlerror());
        return -1;
    }
#define X(f)                                                                             \
    if (!(*(void **)&rl.f = dlsym(lib, #f))) {                                           \
        snprintf(err, errlen, "libedit.so.2 lacks " #f);                                 \
        dlclose(lib);                                                                    \
        return -1;                                                                       \
    }
    RL_FUNCS(X)
#undef X
    rl_loaded = true;
    return 0;
}

void md_lineedit_prompt(const char *prompt, void (*on_line)(char *line))
{
    rl.rl_callback_handler_install(prompt, on_line);
}

void md_lineedit_unprompt(void)
{
    rl.rl_callback_handler_remove();
}

void md_lineedit_read_char(void)
{
    rl.rl_callback_read_char();
}

void md_lineedit_redisplay(void)
{
    rl.rl_forced_update_display();
}

void md_lineedit_resize(void)
{
    rl.rl_resize_terminal();
}

/* }===== */

/* Not '.' or ':', so that "md.sl" or "bus:re" reach the completer whole. */
static char word_breaks[] = " \t\n\"'`@$><=;|&{}()[],+-*/%^~#";

static struct {
    md_lineedit_provider provider;
    char history[PATH_MAX]; /* "" when there is no history file */
    char **matches;         /* completion candidates, owned here */
    size_t nmatches, next_match;
} E;

void md_lineedit_teardown(void)
{
    for (size_t i = 0; i < E.nmatches; i++)
        free(E.matches[i]);
    free(E.matches);
    E.matches = NULL;
    E.nmatches = E.next_match = 0;
}

void md_lineedit_offer(const char *s, size_t len)
{
    md_lineedit_teardown();
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    E.matches = calloc(n ? n : 1, sizeof *E.matches);
    if (!E.matches)
        return;
    const char *end = s + len;
    for (const char *p = s, *nl; p < end && (nl = memchr(p, '\n', (size_t)(end - p)));
         p = nl + 1) {
        char *m = strndup(p, (size_t)(nl - p));
        if (m)
            E.matches[E.nmatches++] = m;
    }
}

static char *next_match(const char *text, int state)
{
    if (state == 0) {
        md_lineedit_teardown();
        E.provider(text);
    }
    if (E.next_match < E.nmatches)
        return strdup(E.matches[E.next_match++]);
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)start, (void)end;
    *rl.rl_attempted_completion_over = 1; /* never fall back to file names */
    return rl.rl_completion_matches(text, next_match);
}

void md_lineedit_history_add(const char *line)
{
    if (line[strspn(line, " \t")] == '\0')
        return;
    rl.add_history(line);
    /* The whole (stifled) history, not append_history(): libedit 3.1's
     * append_history(n) writes n + 1 entries. */
    if (E.history[0])
        rl.write_history(E.history);
}

int md_lineedit_setup(const char *name, const char *history_name,
                      md_lineedit_provider provider, char *err, size_t errlen)
{
    if (load_libedit(err, errlen) < 0)
        return -1;
    E.provider = provider;
    *rl.rl_readline_name = name; /* for ~/.editrc: "moondog:bind ..." */
    *rl.rl_catch_signals = 0;    /* signals belong to the caller */
    *rl.rl_catch_sigwinch = 0;
    rl.rl_initialize();
    *rl.rl_basic_word_break_characters = word_breaks;
    *rl.rl_completer_word_break_characters = word_breaks;
    *rl.rl_completion_append_character = '\0';
    /* Never "Display all N possibilities? (y or n)": libedit reads that
     * answer with getc(stdin), a blocking read outside the caller's poll
     * loop whose stdio buffer keeps the keys typed after it from libedit
     * and poll alike: the line stopped answering Enter and Ctrl-D. A long
     * list is printed instead. */
    *rl.rl_completion_query_items = INT_MAX;
    *rl.rl_attempted_completion_function = complete;
    rl.stifle_history(HISTORY_MAX);
    const char *home = getenv("HOME");
    if (!home || !*home)
        return 0;
    snprintf(E.history, sizeof E.history, "%s/%s", home, history_name);
    rl.read_history(E.history); /* a missing or unreadable file is not an error */
    return 0;
}
