-- moondog.site.status: site:status() as data, printed as aligned tables.
--
-- site:status() returns a plain table (fields below) whose tostring is the
-- text the REPL and `moondog attach` print: one row per device, one per
-- bus, one per supervised task, and the health with its reasons. Pure Lua.

local md = require "moondog"

local M = {}

local format = string.format

local function ms(v)
  return v and format("%.1f", v) or "-"
end

local function ago(wall)
  if not wall then return "never" end
  local s = md.time() - wall
  if s < 0 then s = 0 end
  if s < 120 then return format("%.0fs ago", s) end
  if s < 7200 then return format("%.0fm ago", s / 60) end
  return format("%.1fh ago", s / 3600)
end

local function errors_text(errors)
  local keys = {}
  for k in pairs(errors or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = format("%s=%d", k, errors[k]) end
  return #parts > 0 and table.concat(parts, " ") or "-"
end

-- Printable: control characters from a device never reach the terminal.
local function clean(s)
  return (tostring(s):gsub("[%c\127]", "?"))
end

--- status.table(header, rows) -> text with columns padded to their widest cell.
function M.table(header, rows)
  local widths = {}
  for i, h in ipairs(header) do widths[i] = #h end
  for _, r in ipairs(rows) do
    for i = 1, #header do
      r[i] = clean(r[i] == nil and "-" or r[i])
      widths[i] = math.max(widths[i], utf8.len(r[i]) or #r[i])
    end
  end
  local lines = {}
  local function line(cells)
    local out = {}
    for i = 1, #header do
      local c = cells[i]
      out[i] = c .. string.rep(" ", widths[i] - (utf8.len(c) or #c))
    end
    lines[#lines + 1] = (table.concat(out, "  "):gsub("%s+$", ""))
  end
  line(header)
  for _, r in ipairs(rows) do line(r) end
  return table.concat(lines, "\n")
end

local function render(st)
  local parts = { format("site %s: %s", st.name, st.health) }
  for _, r in ipairs(st.reasons) do parts[#parts + 1] = "  - " .. r end
  local rows = {}
  for _, d in ipairs(st.devices) do
    rows[#rows + 1] = {
      d.id, d.profile, d.state, tostring(d.polls), tostring(d.transactions), tostring(d.skipped),
      ms(d.latency_mean_ms), ms(d.latency_max_ms), ago(d.last_good), errors_text(d.errors),
      d.last_error and d.last_error:sub(1, 60) or "-",
    }
  end
  parts[#parts + 1] = ""
  parts[#parts + 1] = M.table({ "device", "profile", "state", "polls", "trans", "skipped", "lat ms",
    "max ms", "last good", "errors", "last error" }, rows)
  if #st.buses > 0 then
    rows = {}
    for _, b in ipairs(st.buses) do
      rows[#rows + 1] = {
        b.endpoint, tostring(b.devices), tostring(b.transactions or "-"), tostring(b.failed or "-"),
        ms(b.latency_mean_ms), ms(b.latency_max_ms),
      }
    end
    parts[#parts + 1] = ""
    parts[#parts + 1] = M.table({ "bus", "devices", "trans", "failed", "lat ms", "max ms" }, rows)
  end
  if st.gateways and #st.gateways > 0 then
    rows = {}
    for _, g in ipairs(st.gateways) do
      rows[#rows + 1] = {
        g.listen, tostring(g.clients or "-"), tostring(g.reads), tostring(g.hits), tostring(g.forwarded),
        tostring(g.merged), tostring(g.writes), tostring(g.refused), tostring(g.failed),
      }
    end
    parts[#parts + 1] = ""
    parts[#parts + 1] = M.table({ "gateway", "clients", "reads", "hits", "forwarded", "merged", "writes",
      "refused", "failed" }, rows)
    rows = {}
    for _, g in ipairs(st.gateways) do
      for _, c in ipairs(g.per_client or {}) do
        rows[#rows + 1] = {
          g.listen, c.client, tostring(c.reads), tostring(c.hits), tostring(c.forwarded), tostring(c.writes),
          tostring(c.refused), tostring(c.failed),
        }
      end
    end
    if #rows > 0 then
      parts[#parts + 1] = ""
      parts[#parts + 1] = M.table({ "gateway", "client", "reads", "hits", "forwarded", "writes", "refused",
        "failed" }, rows)
    end
  end
  if #st.tasks > 0 then
    rows = {}
    for _, t in ipairs(st.tasks) do
      rows[#rows + 1] = {
        t.name, t.critical and "yes" or "no", t.state, tostring(t.failures),
        t.last_error and tostring(t.last_error):match("^[^\n]*"):sub(1, 60) or "-",
      }
    end
    parts[#parts + 1] = ""
    parts[#parts + 1] = M.table({ "task", "critical", "state", "failures", "last error" }, rows)
  end
  for _, sec in ipairs(st.sections or {}) do
    parts[#parts + 1] = ""
    parts[#parts + 1] = M.table(sec.header, sec.rows)
  end
  return table.concat(parts, "\n")
end

M.meta = { __tostring = render }

--- status.make(fields) -> the status table with its printed form.
function M.make(fields)
  return setmetatable(fields, M.meta)
end

return M
