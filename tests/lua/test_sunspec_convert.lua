-- `moondog sunspec-convert` (scripts/sunspec-convert.lua) as a user runs
-- it: the command line follows moondog.cli's rules (unknown option,
-- missing argument: exit 2 with a pointer to --help), a conversion writes
-- model_<id>.lua and index.lua, and a folder it cannot write is exit 1
-- with the path and the reason.

local T = require "moondog.testing"

local format = string.format
local q = T.quote

local function convert(args)
  local dir <close> = T.tmpdir()
  local out, code = T.sh(format("%s sunspec-convert %s 2>%s", q(md.paths.exe), args, q(dir.path .. "/err")))
  return out, code, T.read_file(dir.path .. "/err")
end

T.test("command-line mistakes: unknown option, missing OUT_DIR, a bad id", function()
  for _, case in ipairs({
    { "--bogus a b", "unknown option '--bogus'" },
    { "--help=yes", "option --help takes no value" },
    { "a", "missing OUT_DIR" },
    { "a b 1-x", "'1-x' is not a model id or a range such as 701-713" },
  }) do
    local _, code, err = convert(case[1])
    T.eq(code, 2, case[1])
    T.usage_error(err, "moondog sunspec-convert", case[2], case[1])
  end
  local out, code = convert("--help")
  T.eq(code, 0, "--help")
  assert(out:find("^usage: moondog sunspec%-convert JSON_DIR OUT_DIR"), out)
end)

T.test("converts a model, and names the path it cannot write", function()
  local shared = T.shared_dir()
  if not shared then T.skip("../shared/reference is not there") end
  local json = shared .. "/reference/sunspec/models"
  local dir <close> = T.tmpdir()
  local out, code, err = convert(format("%s %s 1", q(json), q(dir.path)))
  T.eq(code, 0, err)
  assert(out:find("converted 1 model(s) into " .. dir.path, 1, true), out)
  assert(T.read_file(dir.path .. "/model_1.lua"), "model_1.lua written")
  assert(T.read_file(dir.path .. "/index.lua"):find("[1] = ", 1, true), "the index lists model 1")
  out, code, err = convert(format("%s %s 1", q(json), q(dir.path .. "/no/such")))
  T.eq(code, 1, err)
  T.eq(out, "", "nothing converted")
  T.eq(err, format("moondog sunspec-convert: cannot write %s/no/such/model_1.lua: "
    .. "No such file or directory\n", dir.path))
end)
