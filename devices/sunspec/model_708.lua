-- SunSpec model 708 (DERTripHV): facts from the SunSpec Alliance model definitions
-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.
-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.
return {
  id = 708,
  group = {
    name = "DERTripHV",
    points = {
      { 0, "ID", "uint16", 1, mandatory = true, static = true, value = 708 },
      { 1, "L", "uint16", 1, mandatory = true, static = true },
      { 2, "Ena", "enum16", 1, access = "RW", mandatory = true, symbols = {
          { "DISABLED", 0 }, { "ENABLED", 1 },
      } },
      { 3, "AdptCrvReq", "uint16", 1, access = "RW", mandatory = true },
      { 4, "AdptCrvRslt", "enum16", 1, mandatory = true, symbols = {
          { "IN_PROGRESS", 0 }, { "COMPLETED", 1 }, { "FAILED", 2 },
      } },
      { 5, "NPt", "uint16", 1, mandatory = true, static = true },
      { 6, "NCrvSet", "uint16", 1, mandatory = true, static = true },
      { 7, "V_SF", "sunssf", 1, mandatory = true, static = true },
      { 8, "Tms_SF", "sunssf", 1, mandatory = true, static = true },
    },
    groups = {
      {
        name = "Crv",
        count = "NCrvSet",
        points = {
          { 0, "ReadOnly", "enum16", 1, mandatory = true, static = true, symbols = {
              { "RW", 0 }, { "R", 1 },
          } },
        },
        groups = {
          {
            name = "MustTrip",
            count = 1,
            points = {
              { 0, "ActPt", "uint16", 1, access = "RW" },
            },
            groups = {
              {
                name = "Pt",
                count = "NPt",
                points = {
                  { 0, "V", "uint16", 1, sf = "V_SF", units = "VNomPct", access = "RW" },
                  { 1, "Tms", "uint32", 2, sf = "Tms_SF", units = "Secs", access = "RW" },
                },
              },
            },
          },
          {
            name = "MayTrip",
            count = 1,
            points = {
              { 0, "ActPt", "uint16", 1, access = "RW" },
            },
            groups = {
              {
                name = "Pt",
                count = "NPt",
                points = {
                  { 0, "V", "uint16", 1, sf = "V_SF", units = "VNomPct", access = "RW" },
                  { 1, "Tms", "uint32", 2, sf = "Tms_SF", units = "Secs", access = "RW" },
                },
              },
            },
          },
          {
            name = "MomCess",
            count = 1,
            points = {
              { 0, "ActPt", "uint16", 1, access = "RW" },
            },
            groups = {
              {
                name = "Pt",
                count = "NPt",
                points = {
                  { 0, "V", "uint16", 1, sf = "V_SF", units = "VNomPct", access = "RW" },
                  { 1, "Tms", "uint32", 2, sf = "Tms_SF", units = "Secs", access = "RW" },
                },
              },
            },
          },
        },
      },
    },
  },
}
