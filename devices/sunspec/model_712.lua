-- SunSpec model 712 (DERWattVar): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 712,
  group = {
    name = "DERWattVar",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 712 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "Ena", "enum16", 1, access = "RW", mandatory = true, symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 3, "AdptCrvReq", "uint16", 1, access = "RW", mandatory = true },
      { 4, "AdptCrvRslt", "enum16", 1, mandatory = true, symbols = {
          { "IN_PROGRESS", 0 }, { "COMPLETED", 1 }, { "FAILED", 2 },
      } },
      { 5, "NPt", "uint16", 1, mandatory = true, static = true },
      { 6, "NCrv", "uint16", 1, mandatory = true, static = true },
      { 7, "RvrtTms", "uint32", 2, units = "Secs", access = "RW" },
      { 9, "RvrtRem", "uint32", 2, units = "Secs" },
      { 11, "RvrtCrv", "uint16", 1, access = "RW" },
      { 12, "W_SF", "sunssf", 1, mandatory = true, static = true },
      { 13, "DeptRef_SF", "sunssf", 1, mandatory = true, static = true },
    },
    groups = {
      {
        name = "Crv",
        count = "NCrv",
        points = {
          { 0, "ActPt", "uint16", 1, access = "RW", mandatory = true },
          { 1, "DeptRef", "enum16", 1, access = "RW", mandatory = true, symbols = {
              { "W_MAX_PCT", 0 }, { "VAR_MAX_PCT", 1 }, { "VAR_AVAL_PCT", 2 },
              { "VA_MAX_PCT", 3 },
          } },
          { 2, "Pri", "enum16", 1, access = "RW", symbols = {
              { "ACTIVE", 0 }, { "REACTIVE", 1 },
          } },
          { 3, "ReadOnly", "enum16", 1, mandatory = true, static = true, symbols = {
              { "RW", 0 }, { "R", 1 },
          } },
        },
        groups = {
          {
            name = "Pt",
            count = "NPt",
            points = {
              { 0, "W", "int16", 1, sf = "W_SF", units = "WMaxPct", access = "RW" },
              { 1, "Var", "int16", 1, sf = "DeptRef_SF", units = "VarPct", access = "RW" },
            },
          },
        },
      },
    },
  },
}
