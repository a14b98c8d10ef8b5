/*
 * lineedit.h - libedit set-up shared by `moondog repl` and `moondog attach`:
 * word breaks that keep "md.sl" and "bus:re" whole, tab completion from a
 * caller-supplied list, and a capped history file in $HOME. No Lua here.
 */
#ifndef MD_LINEEDIT_H
#define MD_LINEEDIT_H

#include <stddef.h>

/* Called on Tab with the word before the cursor; it answers by calling
 * md_lineedit_offer() (or not at all: no candidates). */
typedef void (*md_lineedit_provider)(const char *word);

/* Initialise libedit for program name (for ~/.editrc), with history in
 * $HOME/history_name (none without $HOME) and completion from provider.
 * Signals are left to the caller. */
void md_lineedit_setup(const char *name, const char *history_name,
                       md_lineedit_provider provider);
/* The candidates for the current Tab: "a\nb\n", each ended by a newline. */
void md_lineedit_offer(const char *list, size_t len);
/* Remember a line that is not blank and rewrite the history file. */
void md_lineedit_history_add(const char *line);
/* Free what completion still holds. */
void md_lineedit_teardown(void);

#endif
