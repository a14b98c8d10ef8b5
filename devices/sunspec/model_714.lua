-- SunSpec model 714 (DERMeasureDC): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 714,
  group = {
    name = "DERMeasureDC",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 714 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "PrtAlrms", "bitfield32", 2 },
      { 4, "NPrt", "uint16", 1, static = true },
      { 5, "DCA", "int16", 1, sf = "DCA_SF", units = "A" },
      { 6, "DCW", "int16", 1, sf = "DCW_SF", units = "W" },
      { 7, "DCWhInj", "uint64", 4, sf = "DCWH_SF", units = "Wh" },
      { 11, "DCWhAbs", "uint64", 4, sf = "DCWH_SF", units = "Wh" },
      { 15, "DCA_SF", "sunssf", 1, static = true },
      { 16, "DCV_SF", "sunssf", 1, static = true },
      { 17, "DCW_SF", "sunssf", 1, static = true },
      { 18, "DCWH_SF", "sunssf", 1, static = true },
      { 19, "Tmp_SF", "sunssf", 1, static = true },
    },
    groups = {
      {
        name = "Prt",
        count = "NPrt",
        points = {
          { 0, "PrtTyp", "enum16", 1, symbols = {
              { "PV", 0 }, { "ESS", 1 }, { "EV", 2 }, { "INJ", 3 }, { "ABS", 4 }, { "BIDIR", 5 },
              { "DC_DC", 6 },
          } },
          { 1, "ID", "uint16", 1 },
          { 2, "IDStr", "string", 8 },
          { 10, "DCA", "int16", 1, sf = "DCA_SF", units = "A" },
          { 11, "DCV", "uint16", 1, sf = "DCV_SF", units = "V" },
          { 12, "DCW", "int16", 1, sf = "DCW_SF", units = "W" },
          { 13, "DCWhInj", "uint64", 4, sf = "DCWH_SF", units = "Wh" },
          { 17, "DCWhAbs", "uint64", 4, sf = "DCWH_SF", units = "Wh" },
          { 21, "Tmp", "int16", 1, sf = "Tmp_SF", units = "C" },
          { 22, "DCSta", "enum16", 1, symbols = {
              { "OFF", 0 }, { "ON", 1 }, { "WARNING", 2 }, { "ERROR", 3 },
          } },
          { 23, "DCAlrm", "bitfield32", 2, symbols = {
              { "GROUND_FAULT", 0 }, { "INPUT_OVER_VOLTAGE", 1 }, { "DC_DISCONNECT", 3 },
              { "CABINET_OPEN", 5 }, { "MANUAL_SHUTDOWN", 6 }, { "OVER_TEMP", 7 },
              { "BLOWN_FUSE", 12 }, { "UNDER_TEMP", 13 }, { "MEMORY_LOSS", 14 },
              { "ARC_DETECTION", 15 }, { "RESERVED", 19 }, { "TEST_FAILED", 20 },
              { "INPUT_UNDER_VOLTAGE", 21 }, { "INPUT_OVER_CURRENT", 22 },
          } },
        },
      },
    },
  },
}
