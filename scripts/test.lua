-- moondog test FILE...: run test files written with moondog.testing.
-- Prints one line per test and a closing "N passed, N failed, N skipped";
-- exits 1 when any test failed.
local testing = require "moondog.testing"

local files = { ... }
if #files == 0 or files[1] == "--help" then
  io.stderr:write("usage: moondog test FILE.lua...\n",
    "Runs tests registered with require('moondog.testing').test(name, fn).\n")
  md.exit(#files == 0 and 2 or 0)
end

local passed, failed, skipped = testing.run_files(files)
print(string.format("%d passed, %d failed, %d skipped", passed, failed, skipped))
md.exit(failed > 0 and 1 or 0)
