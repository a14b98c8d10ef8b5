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

/* Load libedit (dlopen, on first use) and initialise it for program name
 * (for ~/.editrc), with history in $HOME/history_name (none without $HOME)
 * and completion from provider. Signals are left to the caller. Returns 0,
 * or -1 with a message in err when libedit cannot be loaded: the caller
 * then reads plain lines. The functions below need a successful set-up. */
int md_lineedit_setup(const char *name, const char *history_name,
                      md_lineedit_provider provider, char *err, size_t errlen);
/* libedit's callback interface: show prompt and edit a line, handing it
 * (malloc'd; NULL for Ctrl-D on an empty line) to on_line; stop editing
 * and restore the terminal; feed it the character waiting on stdin;
 * redraw the line being edited; take a new terminal size. */
void md_lineedit_prompt(const char *prompt, void (*on_line)(char *line));
void md_lineedit_unprompt(void);
void md_lineedit_read_char(void);
void md_lineedit_redisplay(void);
void md_lineedit_resize(void);
/* The candidates for the current Tab: "a\nb\n", each ended by a newline. */
void md_lineedit_offer(const char *list, size_t len);
/* Remember a line that is not blank and rewrite the history file. */
void md_lineedit_history_add(const char *line);
/* Free what completion still holds. */
void md_lineedit_teardown(void);

#endif
