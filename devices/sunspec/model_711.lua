-- SunSpec model 711 (DERFreqDroop): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 711,
  group = {
    name = "DERFreqDroop",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 711 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "Ena", "enum16", 1, access = "RW", mandatory = true, symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 3, "AdptCtlReq", "uint16", 1, access = "RW", mandatory = true },
      { 4, "AdptCtlRslt", "enum16", 1, mandatory = true, symbols = {
          { "IN_PROGRESS", 0 }, { "COMPLETED", 1 }, { "FAILED", 2 },
      } },
      { 5, "NCtl", "uint16", 1, mandatory = true, static = true },
      { 6, "RvrtTms", "uint32", 2, units = "Secs", access = "RW" },
      { 8, "RvrtRem", "uint32", 2, units = "Secs" },
      { 10, "RvrtCtl", "uint16", 1, access = "RW" },
      { 11, "Db_SF", "sunssf", 1, mandatory = true, static = true },
      { 12, "K_SF", "sunssf", 1, mandatory = true, static = true },
      { 13, "RspTms_SF", "sunssf", 1, mandatory = true, static = true },
    },
    groups = {
      {
        name = "Ctl",
        count = "NCtl",
        points = {
          { 0, "DbOf", "uint32", 2, sf = "Db_SF", units = "Hz", access = "RW", mandatory = true },
          { 2, "DbUf", "uint32", 2, sf = "Db_SF", units = "Hz", access = "RW", mandatory = true },
          { 4, "KOf", "uint16", 1, sf = "K_SF", access = "RW", mandatory = true },
          { 5, "KUf", "uint16", 1, sf = "K_SF", access = "RW", mandatory = true },
          { 6, "RspTms", "uint32", 2,
              sf = "RspTms_SF", units = "Secs", access = "RW", mandatory = true },
          { 8, "PMin", "int16", 1, units = "Pct", access = "RW" },
          { 9, "ReadOnly", "enum16", 1, mandatory = true, static = true, symbols = {
              { "RW", 0 }, { "R", 1 },
          } },
        },
      },
    },
  },
}
