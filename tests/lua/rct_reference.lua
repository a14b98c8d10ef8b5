-- Helpers for the RCT tests: the reference files of ../shared/reference/rct
-- and hex text. Loaded with dofile by tests/lua/test_rct_*.lua (it is not a
-- test file itself).

local T = require "moondog.testing"

local M = {}

function M.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Rows of a TSV file with a header line, as tables keyed by column name
-- (empty columns stay "").
function M.read_tsv(path)
  local f = assert(io.open(path, "r"))
  local rows, header = {}, nil
  for line in f:lines() do
    local cols, pos = {}, 1
    while true do
      local tab = line:find("\t", pos, true)
      cols[#cols + 1] = line:sub(pos, (tab or 0) - 1)
      if not tab then break end
      pos = tab + 1
    end
    if header then
      local row = {}
      for i, name in ipairs(header) do row[name] = cols[i] or "" end
      rows[#rows + 1] = row
    else
      header = cols
    end
  end
  f:close()
  return rows
end

--- Rows of ../shared/reference/rct/FILE; skips the running test when
--- ../shared is absent.
function M.rows(file)
  local dir = T.shared_dir()
  if not dir then
    T.skip("../shared is absent")
  end
  return M.read_tsv(dir .. "/reference/rct/" .. file)
end

return M
