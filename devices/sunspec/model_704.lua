-- SunSpec model 704 (DERCtlAC): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 704,
  group = {
    name = "DERCtlAC",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 704 },
      { 1, "L", "uint16", 1, mandatory = true, static = true, value = 65 },
      { 2, "PFWInjEna", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 3, "PFWInjEnaRvrt", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 4, "PFWInjRvrtTms", "uint32", 2, units = "Secs", access = "RW" },
      { 6, "PFWInjRvrtRem", "uint32", 2, units = "Secs" },
      { 8, "PFWAbsEna", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 9, "PFWAbsEnaRvrt", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 10, "PFWAbsRvrtTms", "uint32", 2, units = "Secs", access = "RW" },
      { 12, "PFWAbsRvrtRem", "uint32", 2, units = "Secs" },
      { 14, "WMaxLimPctEna", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 15, "WMaxLimPct", "uint16", 1, sf = "WMaxLimPct_SF", units = "Pct", access = "RW" },
      { 16, "WMaxLimPctRvrt", "uint16", 1, sf = "WMaxLimPct_SF", units = "Pct", access = "RW" },
      { 17, "WMaxLimPctEnaRvrt", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 18, "WMaxLimPctRvrtTms", "uint32", 2, units = "Secs", access = "RW" },
      { 20, "WMaxLimPctRvrtRem", "uint32", 2, units = "Secs" },
      { 22, "WSetEna", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 23, "WSetMod", "enum16", 1, access = "RW", symbols = {
          { "W_MAX_PCT", 0 }, { "WATTS", 1 },
      } },
      { 24, "WSet", "int32", 2, sf = "WSet_SF", units = "W", access = "RW" },
      { 26, "WSetRvrt", "int32", 2, sf = "WSet_SF", units = "W", access = "RW" },
      { 28, "WSetPct", "int16", 1, sf = "WSetPct_SF", units = "Pct", access = "RW" },
      { 29, "WSetPctRvrt", "int16", 1, sf = "WSetPct_SF", units = "Pct", access = "RW" },
      { 30, "WSetEnaRvrt", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 31, "WSetRvrtTms", "uint32", 2, units = "Secs", access = "RW" },
      { 33, "WSetRvrtRem", "uint32", 2, units = "Secs" },
      { 35, "VarSetEna", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 36, "VarSetMod", "enum16", 1, access = "RW", symbols = {
          { "W_MAX_PCT", 0 }, { "VAR_MAX_PCT", 1 }, { "VAR_AVAIL_PCT", 2 }, { "VA_MAX_PCT", 3 },
          { "VARS", 4 },
      } },
      { 37, "VarSetPri", "enum16", 1, access = "RW", symbols = {
          { "ACTIVE", 0 }, { "REACTIVE", 1 }, { "VENDOR", 2 },
      } },
      { 38, "VarSet", "int32", 2, sf = "VarSet_SF", units = "Var", access = "RW" },
      { 40, "VarSetRvrt", "int32", 2, sf = "VarSet_SF", units = "Var", access = "RW" },
      { 42, "VarSetPct", "int16", 1, sf = "VarSetPct_SF", units = "Pct", access = "RW" },
      { 43, "VarSetPctRvrt", "int16", 1, sf = "VarSetPct_SF", units = "Pct", access = "RW" },
      { 44, "VarSetEnaRvrt", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 45, "VarSetRvrtTms", "uint32", 2, units = "Secs", access = "RW" },
      { 47, "VarSetRvrtRem", "uint32", 2, units = "Secs" },
      { 49, "WRmp", "uint16", 1, units = "%Max/Sec", access = "RW" },
      { 50, "WRmpRef", "enum16", 1, access = "RW", symbols = {
          { "A_MAX", 0 }, { "W_MAX", 1 },
      } },
      { 51, "VarRmp", "uint16", 1, units = "%Max/Sec", access = "RW" },
      { 52, "AntiIslEna", "enum16", 1, access = "RW", symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 53, "PF_SF", "sunssf", 1, static = true },
      { 54, "WMaxLimPct_SF", "sunssf", 1, static = true },
      { 55, "WSet_SF", "sunssf", 1, static = true },
      { 56, "WSetPct_SF", "sunssf", 1, static = true },
      { 57, "VarSet_SF", "sunssf", 1, static = true },
      { 58, "VarSetPct_SF", "sunssf", 1, static = true },
    },
    groups = {
      {
        name = "PFWInj",
        count = 1,
        sync = true,
        points = {
          { 0, "PF", "uint16", 1, sf = "PF_SF", access = "RW" },
          { 1, "Ext", "enum16", 1, access = "RW", symbols = {
              { "OVER_EXCITED", 0 }, { "UNDER_EXCITED", 1 },
          } },
        },
      },
      {
        name = "PFWInjRvrt",
        count = 1,
        sync = true,
        points = {
          { 0, "PF", "uint16", 1, sf = "PF_SF", access = "RW" },
          { 1, "Ext", "enum16", 1, access = "RW", symbols = {
              { "OVER_EXCITED", 0 }, { "UNDER_EXCITED", 1 },
          } },
        },
      },
      {
        name = "PFWAbs",
        count = 1,
        sync = true,
        points = {
          { 0, "PF", "uint16", 1, sf = "PF_SF", access = "RW" },
          { 1, "Ext", "enum16", 1, access = "RW", symbols = {
              { "OVER_EXCITED", 0 }, { "UNDER_EXCITED", 1 },
          } },
        },
      },
      {
        name = "PFWAbsRvrt",
        count = 1,
        sync = true,
        points = {
          { 0, "PF", "uint16", 1, sf = "PF_SF", access = "RW" },
          { 1, "Ext", "enum16", 1, access = "RW", symbols = {
              { "OVER_EXCITED", 0 }, { "UNDER_EXCITED", 1 },
          } },
        },
      },
    },
  },
}
