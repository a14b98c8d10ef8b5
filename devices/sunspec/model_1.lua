-- SunSpec model 1 (common): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 1,
  group = {
    name = "common",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 1 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "Mn", "string", 16, mandatory = true, static = true },
      { 18, "Md", "string", 16, mandatory = true, static = true },
      { 34, "Opt", "string", 8, static = true },
      { 42, "Vr", "string", 8, static = true },
      { 50, "SN", "string", 16, mandatory = true, static = true },
      { 66, "DA", "uint16", 1, access = "RW" },
      { 67, "Pad", "pad", 1, static = true },
    },
  },
}
