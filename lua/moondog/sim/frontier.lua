-- moondog.sim.frontier: whether a pair of energy goals (exported over the
-- limit <= x Wh and curtailed beyond need <= y Wh) lies inside what the
-- oracle of moondog.sim.peers achieves when it aims `margin_w` under the
-- limit. A margin trades one figure for the other: the larger it is, the
-- less the oracle exports over the limit and the more it curtails (both
-- monotone; tests/lua/test_sim_oracle.lua checks it on a scenario). So:
--
--   - a margin that meets both goals: reachable, with its figures;
--   - a margin that misses both: unreachable. Less export than x takes a
--     larger margin (when it exports more than x), which curtails more
--     still; less curtailment than y a smaller one, which exports more;
--   - one that misses one goal only: try the next margin that way (up when
--     it exports too much, below the limit when it curtails too much), and
--     when two margins bracket the pair, halve the gap (`bisect` times).
--
-- The oracle's margin is constant: "unreachable" holds for controllers
-- that keep one, not for one that places its margin in time (an over-cut
-- after a step, a margin before a predicted change; docs/control.md).
--
-- Pure logic: at(m) runs the oracle (the benchmark passes a scenario run).
--
--   local frontier = require "moondog.sim.frontier"
--   local v = frontier.search(function(m) return over_wh, curtailed_wh end, x, y)
--   v.reachable   --> true, false, or nil (undecided)
--   v.point       --> {m =, over =, curt =}: the margin that meets both
--   v.min_curt    --> the least the oracle curtails at over <= x (unreachable)
--   v.points      --> every margin run, sorted by margin
--   frontier.curve_at(v.points, over) --> the curtailment at that over (or nil)

local M = {}

local UP = { 20, 40, 80, 160, 320 }
local DOWN = { -20, -40, -80, -160 }

--- frontier.search(at, x, y [, {up =, down =, bisect = 2, first = {over, curt}}])
--- -> verdict (see the header). first: the figures at margin 0 when
--- already run.
function M.search(at, x, y, opts)
  opts = opts or {}
  local pts = {}
  local function run(m)
    local over, curt = at(m)
    local p = { m = m, over = over, curt = curt }
    pts[#pts + 1] = p
    return p
  end
  local function ok_over(p) return p.over <= x + 1e-6 end
  local function ok_curt(p) return p.curt <= y + 1e-6 end
  local v = { x = x, y = y, points = pts }
  local function reachable(p) v.reachable, v.point = true, p end
  -- p misses both goals: every margin that exports no more than x curtails at least p.curt
  local function unreachable(p) v.reachable, v.min_curt = false, p.curt end
  local p
  if opts.first then
    p = { m = 0, over = opts.first[1], curt = opts.first[2] }
    pts[1] = p
  else
    p = run(0)
  end
  local lo, hi -- a bracket: lo meets the curtailment goal only, hi the over-limit goal only
  if ok_over(p) and ok_curt(p) then
    reachable(p)
  elseif not ok_over(p) and not ok_curt(p) then
    unreachable(p)
  elseif not ok_over(p) then -- more margin for less export
    lo = p
    for _, m in ipairs(opts.up or UP) do
      local q = run(m)
      if ok_over(q) and ok_curt(q) then reachable(q) break end
      if not ok_over(q) and not ok_curt(q) then unreachable(q) break end
      if ok_over(q) then hi = q break end
      lo = q
    end
  else -- over-limit to spare: aim above the limit for less curtailment
    hi = p
    for _, m in ipairs(opts.down or DOWN) do
      local q = run(m)
      if ok_over(q) and ok_curt(q) then reachable(q) break end
      if not ok_over(q) and not ok_curt(q) then unreachable(q) break end
      if ok_curt(q) then lo = q break end
      hi = q
    end
  end
  for _ = 1, opts.bisect or 2 do
    if v.reachable ~= nil or not (lo and hi) then break end
    local q = run((lo.m + hi.m) / 2)
    if ok_over(q) and ok_curt(q) then
      reachable(q)
    elseif not ok_over(q) and not ok_curt(q) then
      unreachable(q)
    elseif ok_over(q) then
      hi = q
    else
      lo = q
    end
  end
  if v.reachable == nil then v.lo, v.hi = lo, hi end
  table.sort(pts, function(a, b) return a.m < b.m end)
  return v
end

--- frontier.curve_at(points, over) -> the oracle's curtailment at that
--- over-limit, linear between the two margins run that bracket it; nil
--- outside them.
function M.curve_at(pts, over)
  for i = 1, #pts - 1 do
    local a, b = pts[i], pts[i + 1] -- a: the smaller margin, exporting more
    if over <= a.over and over >= b.over then
      if a.over - b.over < 1e-9 then return math.min(a.curt, b.curt) end
      return a.curt + (b.curt - a.curt) * (a.over - over) / (a.over - b.over)
    end
  end
end

--- frontier.describe(v) -> one line for a person.
function M.describe(v)
  if v.reachable then
    local p = v.point
    return string.format("reachable: the oracle at %g W gives %.2f Wh over, %.1f Wh curtailed", p.m, p.over,
      p.curt)
  elseif v.reachable == false then
    return string.format("at over-limit <= %.2f Wh the oracle itself curtails >= %.1f Wh (goal %.1f): the "
      .. "pair is unreachable for any controller that sees the meter samples and keeps a constant margin "
      .. "(not for one that times its margin: an over-cut after a step, a margin before a predicted "
      .. "change of the house)", v.x, v.min_curt, v.y)
  elseif v.lo and v.hi then
    return string.format("undecided: the oracle at %g W gives %.2f Wh over, %.1f Wh curtailed, at %g W "
      .. "%.2f and %.1f; the pair lies between", v.lo.m, v.lo.over, v.lo.curt, v.hi.m, v.hi.over, v.hi.curt)
  end
  return "undecided: no margin tried meets either goal alone"
end

return M
