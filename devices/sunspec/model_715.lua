-- SunSpec model 715 (DERCtl): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 715,
  group = {
    name = "DERCtl",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 715 },
      { 1, "L", "uint16", 1, mandatory = true, static = true, value = 7 },
      { 2, "LocRemCtl", "enum16", 1, symbols = {
          { "REMOTE", 0 }, { "LOCAL", 1 },
      } },
      { 3, "DERHb", "uint32", 2 },
      { 5, "ControllerHb", "uint32", 2, access = "RW" },
      { 7, "AlarmReset", "uint16", 1, access = "RW" },
      { 8, "OpCtl", "enum16", 1, access = "RW", symbols = {
          { "STOP", 0 }, { "START", 1 }, { "ENTER_STANDBY", 2 }, { "EXIT_STANDBY", 3 },
      } },
    },
  },
}
