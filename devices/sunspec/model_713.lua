-- SunSpec model 713 (DERStorageCapacity): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 713,
  group = {
    name = "DERStorageCapacity",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 713 },
      { 1, "L", "uint16", 1, mandatory = true, static = true, value = 7 },
      { 2, "WHRtg", "uint16", 1, sf = "WH_SF", units = "WH" },
      { 3, "WHAvail", "uint16", 1, sf = "WH_SF", units = "WH" },
      { 4, "SoC", "uint16", 1, sf = "Pct_SF", units = "Pct" },
      { 5, "SoH", "uint16", 1, sf = "Pct_SF", units = "Pct" },
      { 6, "Sta", "enum16", 1, symbols = {
          { "OK", 0 }, { "WARNING", 1 }, { "ERROR", 2 },
      } },
      { 7, "WH_SF", "sunssf", 1, static = true },
      { 8, "Pct_SF", "sunssf", 1, static = true },
    },
  },
}
