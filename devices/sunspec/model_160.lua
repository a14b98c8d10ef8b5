-- SunSpec model 160 (mppt): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 160,
  group = {
    name = "mppt",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 160 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "DCA_SF", "sunssf", 1 },
      { 3, "DCV_SF", "sunssf", 1 },
      { 4, "DCW_SF", "sunssf", 1 },
      { 5, "DCWH_SF", "sunssf", 1 },
      { 6, "Evt", "bitfield32", 2, symbols = {
          { "GROUND_FAULT", 0 }, { "INPUT_OVER_VOLTAGE", 1 }, { "RESERVED_2", 2 },
          { "DC_DISCONNECT", 3 }, { "RESERVED_4", 4 }, { "CABINET_OPEN", 5 },
          { "MANUAL_SHUTDOWN", 6 }, { "OVER_TEMP", 7 }, { "RESERVED_8", 8 }, { "RESERVED_9", 9 },
          { "RESERVED_10", 10 }, { "RESERVED_11", 11 }, { "BLOWN_FUSE", 12 },
          { "UNDER_TEMP", 13 }, { "MEMORY_LOSS", 14 }, { "ARC_DETECTION", 15 },
          { "RESERVED_16", 16 }, { "RESERVED_17", 17 }, { "RESERVED_18", 18 },
          { "RESERVED_19", 19 }, { "TEST_FAILED", 20 }, { "INPUT_UNDER_VOLTAGE", 21 },
          { "INPUT_OVER_CURRENT", 22 },
      } },
      { 8, "N", "count", 1 },
      { 9, "TmsPer", "uint16", 1 },
    },
    groups = {
      {
        name = "module",
        count = 0,
        points = {
          { 0, "ID", "uint16", 1 },
          { 1, "IDStr", "string", 8 },
          { 9, "DCA", "uint16", 1, sf = "DCA_SF", units = "A" },
          { 10, "DCV", "uint16", 1, sf = "DCV_SF", units = "V" },
          { 11, "DCW", "uint16", 1, sf = "DCW_SF", units = "W" },
          { 12, "DCWH", "acc32", 2, sf = "DCWH_SF", units = "Wh" },
          { 14, "Tms", "uint32", 2, units = "Secs" },
          { 16, "Tmp", "int16", 1, units = "C" },
          { 17, "DCSt", "enum16", 1, symbols = {
              { "OFF", 1 }, { "SLEEPING", 2 }, { "STARTING", 3 }, { "MPPT", 4 },
              { "THROTTLED", 5 }, { "SHUTTING_DOWN", 6 }, { "FAULT", 7 }, { "STANDBY", 8 },
              { "TEST", 9 }, { "RESERVED_10", 10 },
          } },
          { 18, "DCEvt", "bitfield32", 2, symbols = {
              { "GROUND_FAULT", 0 }, { "INPUT_OVER_VOLTAGE", 1 }, { "RESERVED_2", 2 },
              { "DC_DISCONNECT", 3 }, { "RESERVED_4", 4 }, { "CABINET_OPEN", 5 },
              { "MANUAL_SHUTDOWN", 6 }, { "OVER_TEMP", 7 }, { "RESERVED_8", 8 },
              { "RESERVED_9", 9 }, { "RESERVED_10", 10 }, { "RESERVED_11", 11 },
              { "BLOWN_FUSE", 12 }, { "UNDER_TEMP", 13 }, { "MEMORY_LOSS", 14 },
              { "ARC_DETECTION", 15 }, { "RESERVED_16", 16 }, { "RESERVED_17", 17 },
              { "RESERVED_18", 18 }, { "RESERVED_19", 19 }, { "TEST_FAILED", 20 },
              { "INPUT_UNDER_VOLTAGE", 21 }, { "INPUT_OVER_CURRENT", 22 },
          } },
        },
      },
    },
  },
}
