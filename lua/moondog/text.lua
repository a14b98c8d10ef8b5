-- moondog.text: text from devices made safe for a terminal.
--
--   local text = require "moondog.text"
--   text.printable("Fronius\27]0;owned\7")   --> "Fronius\x1B]0;owned\x07"
--
-- Device strings (a SunSpec manufacturer, an RCT name, a serial number) are
-- whatever the device sends: escape sequences in them would retitle the
-- window, clear the screen or fake output lines (issue 17). Every
-- human-readable output passes them through printable(): ASCII control
-- characters, DEL, the C1 controls U+0080..U+009F and bytes that are not
-- UTF-8 become \xHH (\u{HH} for C1); printable UTF-8 stays as it is.
-- JSON output does not need this: its encoder escapes control characters.

local M = {}

local format = string.format

-- The escape for the character at i, and the index after it; nil when it
-- is printable.
local function escape_at(s, i)
  local b = s:byte(i)
  if b < 0x20 or b == 0x7F then return format("\\x%02X", b), i + 1 end
  if b < 0x80 then return nil end
  if utf8.len(s, i, i) then
    local len = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
    local cp = utf8.codepoint(s, i)
    if cp < 0xA0 then return format("\\u{%X}", cp), i + len end
    return nil
  end
  return format("\\x%02X", b), i + 1
end

--- text.printable(s) -> s with every non-printable character escaped; a
--- non-string goes through tostring first.
function M.printable(s)
  s = tostring(s)
  if not s:find("[%c\127-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = s:find("[%c\127-\255]", i)
    if not j then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, j - 1)
    local esc, after = escape_at(s, j)
    if esc then
      out[#out + 1], i = esc, after
    else -- printable UTF-8: copy the whole character
      local b = s:byte(j)
      local len = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
      out[#out + 1], i = s:sub(j, j + len - 1), j + len
    end
  end
  return table.concat(out)
end

return M
