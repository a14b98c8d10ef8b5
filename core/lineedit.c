/*
 * lineedit.c - see lineedit.h. Uses libedit's readline-compatible API
 * (BSD licence; GNU readline is GPL-3). The candidate list lives here from
 * one Tab to the next; libedit asks for it one entry at a time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lineedit.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#define HISTORY_MAX 1000

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
    rl_attempted_completion_over = 1; /* never fall back to file names */
    return rl_completion_matches(text, next_match);
}

void md_lineedit_history_add(const char *line)
{
    if (line[strspn(line, " \t")] == '\0')
        return;
    add_history(line);
    /* The whole (stifled) history, not append_history(): libedit 3.1's
     * append_history(n) writes n + 1 entries. */
    if (E.history[0])
        write_history(E.history);
}

void md_lineedit_setup(const char *name, const char *history_name,
                       md_lineedit_provider provider)
{
    E.provider = provider;
    rl_readline_name = name; /* for ~/.editrc: "moondog:bind ..." */
    rl_catch_signals = 0;    /* signals belong to the caller */
    rl_catch_sigwinch = 0;
    rl_initialize();
    rl_basic_word_break_characters = word_breaks;
    rl_completer_word_break_characters = word_breaks;
    rl_completion_append_character = '\0';
    rl_attempted_completion_function = complete;
    stifle_history(HISTORY_MAX);
    const char *home = getenv("HOME");
    if (!home || !*home)
        return;
    snprintf(E.history, sizeof E.history, "%s/%s", home, history_name);
    read_history(E.history); /* a missing or unreadable file is not an error */
}
