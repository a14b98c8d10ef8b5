-- SunSpec model 703 (DEREnterService): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 703,
  group = {
    name = "DEREnterService",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 703 },
      { 1, "L", "uint16", 1, mandatory = true, static = true, value = 17 },
      { 2, "ES", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 3, "ESVHi", "uint16", 1, sf = "V_SF", units = "Pct", access = "RW" },
      { 4, "ESVLo", "uint16", 1, sf = "V_SF", units = "Pct", access = "RW" },
      { 5, "ESHzHi", "uint32", 2, sf = "Hz_SF", units = "Hz", access = "RW" },
      { 7, "ESHzLo", "uint32", 2, sf = "Hz_SF", units = "Hz", access = "RW" },
      { 9, "ESDlyTms", "uint32", 2, units = "Secs", access = "RW" },
      { 11, "ESRndTms", "uint32", 2, units = "Secs", access = "RW" },
      { 13, "ESRmpTms", "uint32", 2, units = "Secs", access = "RW" },
      { 15, "ESDlyRemTms", "uint32", 2, units = "Secs" },
      { 17, "V_SF", "sunssf", 1, static = true },
      { 18, "Hz_SF", "sunssf", 1, static = true },
    },
  },
}
