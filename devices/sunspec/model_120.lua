-- SunSpec model 120 (nameplate): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 120,
  group = {
    name = "nameplate",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 120 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "DERTyp", "enum16", 1, mandatory = true, symbols = {
          { "PV", 4 }, { "PV_STOR", 82 },
      } },
      { 3, "WRtg", "uint16", 1, sf = "WRtg_SF", units = "W", mandatory = true },
      { 4, "WRtg_SF", "sunssf", 1, mandatory = true },
      { 5, "VARtg", "uint16", 1, sf = "VARtg_SF", units = "VA", mandatory = true },
      { 6, "VARtg_SF", "sunssf", 1, mandatory = true },
      { 7, "VArRtgQ1", "int16", 1, sf = "VArRtg_SF", units = "var", mandatory = true },
      { 8, "VArRtgQ2", "int16", 1, sf = "VArRtg_SF", units = "var", mandatory = true },
      { 9, "VArRtgQ3", "int16", 1, sf = "VArRtg_SF", units = "var", mandatory = true },
      { 10, "VArRtgQ4", "int16", 1, sf = "VArRtg_SF", units = "var", mandatory = true },
      { 11, "VArRtg_SF", "sunssf", 1, mandatory = true },
      { 12, "ARtg", "uint16", 1, sf = "ARtg_SF", units = "A", mandatory = true },
      { 13, "ARtg_SF", "sunssf", 1, mandatory = true },
      { 14, "PFRtgQ1", "int16", 1, sf = "PFRtg_SF", units = "cos()", mandatory = true },
      { 15, "PFRtgQ2", "int16", 1, sf = "PFRtg_SF", units = "cos()", mandatory = true },
      { 16, "PFRtgQ3", "int16", 1, sf = "PFRtg_SF", units = "cos()", mandatory = true },
      { 17, "PFRtgQ4", "int16", 1, sf = "PFRtg_SF", units = "cos()", mandatory = true },
      { 18, "PFRtg_SF", "sunssf", 1, mandatory = true },
      { 19, "WHRtg", "uint16", 1, sf = "WHRtg_SF", units = "Wh" },
      { 20, "WHRtg_SF", "sunssf", 1 },
      { 21, "AhrRtg", "uint16", 1, sf = "AhrRtg_SF", units = "AH" },
      { 22, "AhrRtg_SF", "sunssf", 1 },
      { 23, "MaxChaRte", "uint16", 1, sf = "MaxChaRte_SF", units = "W" },
      { 24, "MaxChaRte_SF", "sunssf", 1 },
      { 25, "MaxDisChaRte", "uint16", 1, sf = "MaxDisChaRte_SF", units = "W" },
      { 26, "MaxDisChaRte_SF", "sunssf", 1 },
      { 27, "Pad", "pad", 1 },
    },
  },
}
