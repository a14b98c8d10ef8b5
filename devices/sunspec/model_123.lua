-- SunSpec model 123 (controls): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 123,
  group = {
    name = "controls",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 123 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "Conn_WinTms", "uint16", 1, units = "Secs", access = "RW" },
      { 3, "Conn_RvrtTms", "uint16", 1, units = "Secs", access = "RW" },
      { 4, "Conn", "enum16", 1, access = "RW", mandatory = true, symbols = {
          { "DISCONNECT", 0 }, { "CONNECT", 1 },
      } },
      { 5, "WMaxLimPct", "uint16", 1,
          sf = "WMaxLimPct_SF", units = "% WMax", access = "RW", mandatory = true },
      { 6, "WMaxLimPct_WinTms", "uint16", 1, units = "Secs", access = "RW" },
      { 7, "WMaxLimPct_RvrtTms", "uint16", 1, units = "Secs", access = "RW" },
      { 8, "WMaxLimPct_RmpTms", "uint16", 1, units = "Secs", access = "RW" },
      { 9, "WMaxLim_Ena", "enum16", 1, access = "RW", mandatory = true, symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 10, "OutPFSet", "int16", 1,
          sf = "OutPFSet_SF", units = "cos()", access = "RW", mandatory = true },
      { 11, "OutPFSet_WinTms", "uint16", 1, units = "Secs", access = "RW" },
      { 12, "OutPFSet_RvrtTms", "uint16", 1, units = "Secs", access = "RW" },
      { 13, "OutPFSet_RmpTms", "uint16", 1, units = "Secs", access = "RW" },
      { 14, "OutPFSet_Ena", "enum16", 1, access = "RW", mandatory = true, symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 15, "VArWMaxPct", "int16", 1, sf = "VArPct_SF", units = "% WMax", access = "RW" },
      { 16, "VArMaxPct", "int16", 1, sf = "VArPct_SF", units = "% VArMax", access = "RW" },
      { 17, "VArAvalPct", "int16", 1, sf = "VArPct_SF", units = "% VArAval", access = "RW" },
      { 18, "VArPct_WinTms", "uint16", 1, units = "Secs", access = "RW" },
      { 19, "VArPct_RvrtTms", "uint16", 1, units = "Secs", access = "RW" },
      { 20, "VArPct_RmpTms", "uint16", 1, units = "Secs", access = "RW" },
      { 21, "VArPct_Mod", "enum16", 1, access = "RW", symbols = {
          { "NONE", 0 }, { "WMax", 1 }, { "VArMax", 2 }, { "VArAval", 3 },
      } },
      { 22, "VArPct_Ena", "enum16", 1, access = "RW", mandatory = true, symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 23, "WMaxLimPct_SF", "sunssf", 1, mandatory = true },
      { 24, "OutPFSet_SF", "sunssf", 1, mandatory = true },
      { 25, "VArPct_SF", "sunssf", 1 },
    },
  },
}
