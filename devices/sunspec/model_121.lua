-- SunSpec model 121 (settings): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 121,
  group = {
    name = "settings",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 121 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "WMax", "uint16", 1, sf = "WMax_SF", units = "W", access = "RW", mandatory = true },
      { 3, "VRef", "uint16", 1, sf = "VRef_SF", units = "V", access = "RW", mandatory = true },
      { 4, "VRefOfs", "int16", 1, sf = "VRefOfs_SF", units = "V", access = "RW", mandatory = true },
      { 5, "VMax", "uint16", 1, sf = "VMinMax_SF", units = "V", access = "RW" },
      { 6, "VMin", "uint16", 1, sf = "VMinMax_SF", units = "V", access = "RW" },
      { 7, "VAMax", "uint16", 1, sf = "VAMax_SF", units = "VA", access = "RW" },
      { 8, "VArMaxQ1", "int16", 1, sf = "VArMax_SF", units = "var", access = "RW" },
      { 9, "VArMaxQ2", "int16", 1, sf = "VArMax_SF", units = "var", access = "RW" },
      { 10, "VArMaxQ3", "int16", 1, sf = "VArMax_SF", units = "var", access = "RW" },
      { 11, "VArMaxQ4", "int16", 1, sf = "VArMax_SF", units = "var", access = "RW" },
      { 12, "WGra", "uint16", 1, sf = "WGra_SF", units = "% WMax/sec", access = "RW" },
      { 13, "PFMinQ1", "int16", 1, sf = "PFMin_SF", units = "cos()", access = "RW" },
      { 14, "PFMinQ2", "int16", 1, sf = "PFMin_SF", units = "cos()", access = "RW" },
      { 15, "PFMinQ3", "int16", 1, sf = "PFMin_SF", units = "cos()", access = "RW" },
      { 16, "PFMinQ4", "int16", 1, sf = "PFMin_SF", units = "cos()", access = "RW" },
      { 17, "VArAct", "enum16", 1, access = "RW", symbols = {
          { "SWITCH", 1 }, { "MAINTAIN", 2 },
      } },
      { 18, "ClcTotVA", "enum16", 1, access = "RW", symbols = {
          { "VECTOR", 1 }, { "ARITHMETIC", 2 },
      } },
      { 19, "MaxRmpRte", "uint16", 1, sf = "MaxRmpRte_SF", units = "% WGra", access = "RW" },
      { 20, "ECPNomHz", "uint16", 1, sf = "ECPNomHz_SF", units = "Hz", access = "RW" },
      { 21, "ConnPh", "enum16", 1, access = "RW", symbols = {
          { "A", 1 }, { "B", 2 }, { "C", 3 },
      } },
      { 22, "WMax_SF", "sunssf", 1, mandatory = true },
      { 23, "VRef_SF", "sunssf", 1, mandatory = true },
      { 24, "VRefOfs_SF", "sunssf", 1, mandatory = true },
      { 25, "VMinMax_SF", "sunssf", 1 },
      { 26, "VAMax_SF", "sunssf", 1 },
      { 27, "VArMax_SF", "sunssf", 1 },
      { 28, "WGra_SF", "sunssf", 1 },
      { 29, "PFMin_SF", "sunssf", 1 },
      { 30, "MaxRmpRte_SF", "sunssf", 1 },
      { 31, "ECPNomHz_SF", "sunssf", 1 },
    },
  },
}
