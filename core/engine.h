/*
 * engine.h - the Lua state, its tasks, and the one async pattern.
 *
 * An engine owns one lua_State and one md_loop. Lua work runs in tasks:
 * coroutines resumed only by the engine (engine.c holds the only
 * lua_resume). A task that raises is logged with its traceback; the engine
 * keeps running.
 *
 * THE ASYNC PATTERN. Every I/O primitive written in C looks like this:
 *
 *     static int bus_read(lua_State *L)
 *     {
 *         ... check every argument first (errors raise) ...
 *         struct req *r = calloc(1, sizeof *r);          // owned by the module
 *         r->wait = md_task_wait(L, r, req_cancel);      // raises if L cannot wait
 *         md_wait_timeout(r->wait, timeout_ms, "modbus read");   // optional
 *         submit(r);                                     // worker thread, fd watch...
 *         return md_task_yield(L, r->wait, req_results);
 *     }
 *
 *  - When the operation completes, the loop thread calls md_task_done(wait).
 *    The task resumes later from the loop's dispatch, and req_results(L, r)
 *    pushes what the primitive returns (values, or nil, message, code) and
 *    frees r if the module no longer needs it.
 *  - If the timeout fires first, or the task is cancelled, the engine calls
 *    req_cancel(r) on the loop thread. From then on the module must never
 *    touch the wait again (mark r abandoned if a worker still has it). On
 *    timeout the task gets nil, "<what> timed out after N s", "timeout"
 *    (md_wait_timeout_rc picks another err.h code: "connect_timeout").
 *    A task cancelled after md_task_done but before it resumed never runs
 *    req_results: req_cancel(r) is called then too and must free what
 *    req_results would have freed.
 *  - Called from a task, md_task_yield yields. Called on the main thread
 *    (a script's top level, the REPL) it runs the loop until the operation
 *    completes, so the same primitive works there too.
 *  - Where a yield is impossible (a __gc handler, a table.sort comparator,
 *    a metamethod called from C) md_task_wait raises "cannot wait for I/O
 *    here": running the loop there would run every other task inside it,
 *    with the collector stopped in a finalizer (issue 16).
 *  - Called from a plain coroutine that is not a task, md_task_wait raises:
 *    a yield would go to that coroutine's resumer instead of the loop.
 */
#ifndef MD_ENGINE_H
#define MD_ENGINE_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "loop.h"

typedef struct md_engine md_engine;
typedef struct md_wait md_wait;

typedef void (*md_cancel_fn)(void *op);
typedef int (*md_results_fn)(lua_State *L, void *op);

/* {===== engine life cycle (main.c, tests) ===== */

/* Create the engine: Lua state with the standard libraries, the moondog
 * modules in package.preload, package.path pointing at home/lua (home holds
 * lua/, scripts/ and devices/), signals routed to the loop.
 * Returns NULL with a message in err (size errlen) on failure. */
md_engine *md_engine_new(const char *home, char *err, size_t errlen);
/* Cancel every task, run pending to-be-closed variables and __gc
 * metamethods (lua_close), then free the loop. */
void md_engine_free(md_engine *E);

lua_State *md_engine_lua(md_engine *E);
md_loop *md_engine_loop(md_engine *E);
/* Simulated time from now on, log timestamps included (see loop.h). */
void md_engine_simulate_time(md_engine *E, int64_t wall_ms, int quiet_ms);
/* The engine of any thread of its Lua state. */
md_engine *md_engine_of(lua_State *L);

/*
 * Start the function on top of L's stack (with nargs arguments above it) as
 * a task marked as the main chunk: if it raises, the engine's exit code
 * becomes 1. Pops the function and arguments.
 */
void md_engine_spawn_main(md_engine *E, int nargs);
/* Run the loop until nothing is left alive, md.exit() or a shutdown signal.
 * Returns the process exit code. */
int md_engine_run(md_engine *E);
/* Ask the engine to stop with this exit code (md.exit): sends STOPPING=1
 * and runs the shutdown handlers (moondog.shutdown) as a task first; the
 * loop stops when they are done. In that phase only the code changes. */
void md_engine_exit(md_engine *E, int code);
/* True once a stop was requested (signal, md.exit): STOPPING=1 is sent. */
bool md_engine_stopping(md_engine *E);

/* True while md_engine_free runs: the loop no longer runs, so a __gc
 * that would wait for a worker must join it directly. */
bool md_engine_closing(md_engine *E);

/* SIGINT normally shuts the engine down; the REPL routes it here instead. */
void md_engine_on_interrupt(md_engine *E, void (*fn)(md_engine *E, void *ud), void *ud);

/* fn(E, ok, ud) once the main chunk has finished: ok when it returned, false
 * when it failed or was cancelled (main.c tells systemd the site is up). */
void md_engine_on_main_done(md_engine *E, void (*fn)(md_engine *E, bool ok, void *ud),
                            void *ud);

/* }===== */

/* {===== tasks ===== */

/*
 * Spawn the function at stack index idx of L with the nargs values above it
 * (popped) as a new task; pushes the task object onto L and returns it.
 * The task first runs on the next loop iteration.
 */
void md_task_spawn(lua_State *L, int idx, int nargs);
/* True if the task object at idx has finished (ok, failed or cancelled). */
bool md_task_finished(lua_State *L, int idx);
/* Cancel the task object at idx (see md_task_cancel in the Lua API). */
void md_task_cancel_at(lua_State *L, int idx);

/* }===== */

/* {===== the async pattern ===== */

/* Raise unless L may wait (a task, or the main thread). Call it before
 * allocating anything that md_task_wait would otherwise leak by raising. */
void md_task_check(lua_State *L);
/* Record that the running task waits for op. Raises if L is a plain
 * coroutine. cancel may be NULL when nothing needs undoing. */
md_wait *md_task_wait(lua_State *L, void *op, md_cancel_fn cancel);
/* Give up after ms milliseconds; what names the operation in the message. */
void md_wait_timeout(md_wait *w, int64_t ms, const char *what);
/* The same, with the err.h code the timeout returns (md_wait_timeout's is
 * -MD_ETIMEOUT, "timeout"): a connect uses -MD_ECONNTIMEOUT. */
void md_wait_timeout_rc(md_wait *w, int64_t ms, const char *what, int rc);
/* Yield (or run the loop) until the wait ends; the return value of the
 * calling lua_CFunction. */
int md_task_yield(lua_State *L, md_wait *w, md_results_fn results);
/* Loop thread: the operation completed; results will be pushed. */
void md_task_done(md_wait *w);

/* }===== */

/* The moondog modules implemented in C, opened through package.preload. */
int luaopen_moondog_core(lua_State *L);
int luaopen_moondog_log(lua_State *L);
int luaopen_moondog_modbus_core(lua_State *L);
int luaopen_moondog_modbus_server_core(lua_State *L);
int luaopen_moondog_attach(lua_State *L);
int luaopen_moondog_mqtt_core(lua_State *L);
int luaopen_moondog_rct_codec(lua_State *L);
int luaopen_moondog_growatt_core(lua_State *L);
int luaopen_moondog_jsonfmt(lua_State *L);
int luaopen_moondog_stream(lua_State *L);
int luaopen_moondog_event(lua_State *L);
int luaopen_moondog_signal(lua_State *L);
int luaopen_moondog_sunspec_codec(lua_State *L);
int luaopen_moondog_process_core(lua_State *L);
int luaopen_moondog_service_core(lua_State *L);

#endif
