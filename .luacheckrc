std = "lua54"
max_line_length = 110
-- to-be-closed guards are named _x on purpose: they are used by going out of scope
ignore = { "211/_.*" }
-- scripts and tests run with the global `md` set by the engine
files["scripts"] = { read_globals = { "md" }, globals = { "site", "plant" } }
files["tests"] = { read_globals = { "md" }, globals = { "n", "x", "site" } }
