-- Helpers for the RCT tests: the reference files of ../shared/reference/rct
-- and hex text. Loaded with dofile by tests/lua/test_rct_*.lua (it is not a
-- test file itself).

local T = require "moondog.testing"

local M = {}

M.unhex, M.hex = T.unhex, T.hex

--- Rows of ../shared/reference/rct/FILE; skips the running test when
--- ../shared is absent.
function M.rows(file)
  local dir = T.shared_dir()
  if not dir then
    T.skip("../shared is absent")
  end
  return T.read_tsv(dir .. "/reference/rct/" .. file)
end

return M
