-- SunSpec model 122 (status): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 122,
  group = {
    name = "status",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 122 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "PVConn", "bitfield16", 1, mandatory = true, symbols = {
          { "CONNECTED", 0 }, { "AVAILABLE", 1 }, { "OPERATING", 2 }, { "TEST", 3 },
      } },
      { 3, "StorConn", "bitfield16", 1, mandatory = true, symbols = {
          { "CONNECTED", 0 }, { "AVAILABLE", 1 }, { "OPERATING", 2 }, { "TEST", 3 },
      } },
      { 4, "ECPConn", "bitfield16", 1, mandatory = true, symbols = {
          { "DISCONNECTED", 0 }, { "CONNECTED", 1 },
      } },
      { 5, "ActWh", "acc64", 4, units = "Wh" },
      { 9, "ActVAh", "acc64", 4, units = "VAh" },
      { 13, "ActVArhQ1", "acc64", 4, units = "varh" },
      { 17, "ActVArhQ2", "acc64", 4, units = "varh" },
      { 21, "ActVArhQ3", "acc64", 4, units = "varh" },
      { 25, "ActVArhQ4", "acc64", 4, units = "varh" },
      { 29, "VArAval", "int16", 1, sf = "VArAval_SF", units = "var" },
      { 30, "VArAval_SF", "sunssf", 1 },
      { 31, "WAval", "uint16", 1, sf = "WAval_SF", units = "var" },
      { 32, "WAval_SF", "sunssf", 1 },
      { 33, "StSetLimMsk", "bitfield32", 2, symbols = {
          { "WMax", 0 }, { "VAMax", 1 }, { "VArAval", 2 }, { "VArMaxQ1", 3 }, { "VArMaxQ2", 4 },
          { "VArMaxQ3", 5 }, { "VArMaxQ4", 6 }, { "PFMinQ1", 7 }, { "PFMinQ2", 8 },
          { "PFMinQ3", 9 }, { "PFMinQ4", 10 },
      } },
      { 35, "StActCtl", "bitfield32", 2, symbols = {
          { "FixedW", 0 }, { "FixedVAR", 1 }, { "FixedPF", 2 }, { "Volt-VAr", 3 },
          { "Freq-Watt-Param", 4 }, { "Freq-Watt-Curve", 5 }, { "Dyn-Reactive-Current", 6 },
          { "LVRT", 7 }, { "HVRT", 8 }, { "Watt-PF", 9 }, { "Volt-Watt", 10 },
          { "Scheduled", 12 }, { "LFRT", 13 }, { "HFRT", 14 },
      } },
      { 37, "TmSrc", "string", 4 },
      { 41, "Tms", "uint32", 2, units = "Secs" },
      { 43, "RtSt", "bitfield16", 1, symbols = {
          { "LVRT_ACTIVE", 0 }, { "HVRT_ACTIVE", 1 }, { "LFRT_ACTIVE", 2 }, { "HFRT_ACTIVE", 3 },
      } },
      { 44, "Ris", "uint16", 1, sf = "Ris_SF", units = "ohms" },
      { 45, "Ris_SF", "sunssf", 1 },
    },
  },
}
