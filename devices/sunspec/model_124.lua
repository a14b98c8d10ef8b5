-- SunSpec model 124 (storage_basic): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 124,
  group = {
    name = "storage_basic",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 124 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "WChaMax", "uint16", 1, sf = "WChaMax_SF", units = "W", access = "RW", mandatory = true },
      { 3, "WChaGra", "uint16", 1,
          sf = "WChaDisChaGra_SF", units = "% WChaMax/sec", access = "RW", mandatory = true },
      { 4, "WDisChaGra", "uint16", 1,
          sf = "WChaDisChaGra_SF", units = "% WChaMax/sec", access = "RW", mandatory = true },
      { 5, "StorCtl_Mod", "bitfield16", 1, access = "RW", mandatory = true, symbols = {
          { "CHARGE", 0 }, { "DiSCHARGE", 1 },
      } },
      { 6, "VAChaMax", "uint16", 1, sf = "VAChaMax_SF", units = "VA", access = "RW" },
      { 7, "MinRsvPct", "uint16", 1, sf = "MinRsvPct_SF", units = "% WChaMax", access = "RW" },
      { 8, "ChaState", "uint16", 1, sf = "ChaState_SF", units = "% AhrRtg" },
      { 9, "StorAval", "uint16", 1, sf = "StorAval_SF", units = "AH" },
      { 10, "InBatV", "uint16", 1, sf = "InBatV_SF", units = "V" },
      { 11, "ChaSt", "enum16", 1, symbols = {
          { "OFF", 1 }, { "EMPTY", 2 }, { "DISCHARGING", 3 }, { "CHARGING", 4 }, { "FULL", 5 },
          { "HOLDING", 6 }, { "TESTING", 7 },
      } },
      { 12, "OutWRte", "int16", 1, sf = "InOutWRte_SF", units = "% WDisChaMax", access = "RW" },
      { 13, "InWRte", "int16", 1, sf = "InOutWRte_SF", units = " % WChaMax", access = "RW" },
      { 14, "InOutWRte_WinTms", "uint16", 1, units = "Secs", access = "RW" },
      { 15, "InOutWRte_RvrtTms", "uint16", 1, units = "Secs", access = "RW" },
      { 16, "InOutWRte_RmpTms", "uint16", 1, units = "Secs", access = "RW" },
      { 17, "ChaGriSet", "enum16", 1, access = "RW", symbols = {
          { "PV", 0 }, { "GRID", 1 },
      } },
      { 18, "WChaMax_SF", "sunssf", 1, mandatory = true },
      { 19, "WChaDisChaGra_SF", "sunssf", 1, mandatory = true },
      { 20, "VAChaMax_SF", "sunssf", 1 },
      { 21, "MinRsvPct_SF", "sunssf", 1 },
      { 22, "ChaState_SF", "sunssf", 1 },
      { 23, "StorAval_SF", "sunssf", 1 },
      { 24, "InBatV_SF", "sunssf", 1 },
      { 25, "InOutWRte_SF", "sunssf", 1 },
    },
  },
}
