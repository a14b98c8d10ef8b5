-- tests/bench/rct.lua: RCT figures measured from Lua, for tests/bench/rct.sh.
--
--   moondog tests/bench/rct.lua codec N
--     frames built, parsed and decoded per second through moondog.rct.codec
--     from Lua (CPU time): the Lua-level twin of tests/bench/rct_codec.c
--   moondog tests/bench/rct.lua pipeline HOST:PORT ROUNDS
--     100 FLOAT objects read from a simulator, ROUNDS times with read_many
--     (all 100 requests in flight) and ROUNDS times one request at a time;
--     prints "pipelined_ms sequential_ms" per 100 objects (wall clock)
--
-- Loops are bounded by N and ROUNDS.

local rct = require "moondog.rct"
local codec = rct.codec

local mode = ...

local function bench_codec(n)
  local oids = { 0x959930BF, 0xDB2D69AE, 0x91617C58, 0x1AC87AA0, 0xDB11855B, 0x0CB5D21B, 0x400F015B,
    0x3AFEF139 }
  local p = codec.parser()
  local build, decode, encode = codec.build, codec.decode, codec.encode
  local sum = 0
  local t0 = os.clock()
  for i = 1, n do
    p:push(build(0x05, oids[(i & 7) + 1], encode("FLOAT", (i & 0xFFFF) * 0.25)))
    local _, oid, payload = p:next()
    sum = sum + decode("FLOAT", payload) + oid
  end
  local t = os.clock() - t0
  print(string.format("%d %.0f", math.floor(n / t), sum))
end

local function bench_pipeline(target, rounds)
  local c <close> = rct.client(target, { timeout = 5 })
  local names = {}
  for _, e in ipairs(rct.search("")) do
    if e.type == "FLOAT" and #names < 100 then names[#names + 1] = e.name end
  end
  assert(c:read(names[1]), "the simulator does not answer")
  local t0 = md.now()
  for _ = 1, rounds do
    local _, errors = c:read_many(names)
    assert(errors == nil, "read_many failed")
  end
  local pipelined = (md.now() - t0) / rounds
  t0 = md.now()
  for _ = 1, rounds do
    for _, name in ipairs(names) do
      assert(c:read(name))
    end
  end
  local sequential = (md.now() - t0) / rounds
  print(string.format("%.3f %.3f", pipelined * 1000, sequential * 1000))
end

if mode == "codec" then
  bench_codec(math.tointeger(tonumber(select(2, ...))) or 1000000)
elseif mode == "pipeline" then
  bench_pipeline(select(2, ...), math.tointeger(tonumber(select(3, ...))) or 50)
else
  io.stderr:write("usage: moondog tests/bench/rct.lua codec N | pipeline HOST:PORT ROUNDS\n")
  md.exit(2)
end
