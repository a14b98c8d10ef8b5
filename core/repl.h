/*
 * repl.h - the interactive REPL (`moondog repl`) on a terminal.
 */
#ifndef MD_REPL_H
#define MD_REPL_H

#include "engine.h"

/* Run the REPL on stdin/stdout inside the engine's loop until EOF (Ctrl-D)
 * or md.exit(). Returns the process exit code. */
int md_repl_run(md_engine *E);

#endif
