-- moondog.accept: the accept loop of a stream listener, written once for
-- every server in the library (the Growatt proxy, its cloud simulator and
-- command socket, the RCT and VregLink simulators).
--
--   local accept = require "moondog.accept"
--   md.spawn(accept.loop, listener, "rct simulator", function(conn) ... end)
--
-- Each connection is served by its own task, named after the server and the
-- peer. The loop ends when the listener is closed. Any other accept failure
-- (EMFILE when the process is out of descriptors, ...) is logged once per
-- run of failures and the loop pauses before it tries again, instead of
-- spinning on an error that repeats until a connection ends.

local md = require "moondog"

local M = {}

--- accept.loop(listener, name, serve [, opts]): until the listener closes,
--- accept connections and run serve(conn) in a task of its own named
--- "<name> <peer>". opts.on_task(task, conn) runs before the task does (the
--- caller's bookkeeping); opts.pause: seconds to wait after a failed accept
--- (0.1).
function M.loop(listener, name, serve, opts)
  opts = opts or {}
  local pause, failing = opts.pause or 0.1, false
  while true do
    local conn, err, code = listener:accept()
    if conn then
      failing = false
      local task = md.spawn(serve, conn)
      task:name(name .. " " .. conn:peer())
      if opts.on_task then opts.on_task(task, conn) end
    elseif code == "closed" then
      return
    else
      if not failing then md.log.warn("%s: cannot accept a connection: %s; retrying", name, tostring(err)) end
      failing = true
      md.sleep(pause)
    end
  end
end

return M
