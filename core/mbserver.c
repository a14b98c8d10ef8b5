/*
 * mbserver.c - Modbus server, pure half: register maps, request processing
 * and request framing (see mbserver.h; the I/O lives in mbserver_io.c).
 *
 * Why our own server instead of libmodbus's server API: modbus_receive()
 * blocks until a whole frame has arrived, so one slow client would stall
 * the event loop; libmodbus has one context per connection and a flat
 * mapping per server; and 3.1.6 has no UDP, no RTU over a socket and no
 * FC 43 (it even misreads FC 43 requests). Framing, CRCs and MBAP headers
 * come from mbcodec.c, the transports are a few hundred lines on md_loop.
 *
 * Storage. Each of the four tables of a map is a directory of 256 pages of
 * 256 addresses, allocated on first write, so a unit with registers at
 * 40000..40200 holds one or two pages (about 1 KiB) instead of 128 KiB.
 * Bits use the same 16-bit slots as registers: simpler, and bit tables are
 * small. Every page also has a bitmap of the addresses that exist, which
 * only matters for strict maps (unset addresses answer exception 2).
 *
 * Processing. md_mbsrv_parse checks a PDU and describes it (what it reads
 * and writes); md_mbsrv_execute applies it and builds the response. The
 * server calls a Lua hook in between when one is installed; without hooks
 * md_mbsrv_process does both at once. Exceptions follow the order of the
 * spec's state diagrams: function code (01), quantity and values (03),
 * address range (02), then execution (02 for strict maps, 04).
 *
 * Ownership: a map owns its pages and object strings. Nothing here keeps
 * global state; callers serialise access to a map.
 */
#include "mbserver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    PAGE_SIZE = 256, /* addresses per page */
    NPAGES = 65536 / PAGE_SIZE,
    NOBJECTS = 256,
    MAX_WRITE_BITS = 1968,
    MAX_WRITE_REGS = 123,
    MAX_RW_WRITE_REGS = 121,
};

_Static_assert(MD_MBSRV_MAX_OBJECT + 2 + 7 <= MD_MB_MAX_PDU, "one object fits a PDU");

typedef struct page {
    uint16_t v[PAGE_SIZE];
    uint8_t exists[PAGE_SIZE / 8]; /* strict maps: address was set */
} page;

/* Owns pages and objects; freed by md_mbsrv_map_free. */
struct md_mbsrv_map {
    page *pages[MD_MBSRV_KINDS][NPAGES];
    bool strict;
    char *objects[NOBJECTS]; /* device identification; NULL: absent */
    uint8_t object_len[NOBJECTS];
    uint8_t server_id[MD_MBSRV_MAX_SERVER_ID];
    size_t server_id_len;
};

static const char *const kind_names[MD_MBSRV_KINDS] = {"coil", "discrete", "holding",
                                                       "input"};

/* {===== maps ===== */

md_mbsrv_map *md_mbsrv_map_new(bool strict)
{
    md_mbsrv_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->strict = strict;
    static const char id[] = "moondog\xff"; /* server id and run indicator "on" */
    memcpy(m->server_id, id, sizeof id - 1);
    m->server_id_len = sizeof id - 1;
    return m;
}

void md_mbsrv_map_free(md_mbsrv_map *m)
{
    if (!m)
        return;
    for (int k = 0; k < MD_MBSRV_KINDS; k++)
        for (int p = 0; p < NPAGES; p++)
            free(m->pages[k][p]);
    for (int i = 0; i < NOBJECTS; i++)
        free(m->objects[i]);
    free(m);
}

bool md_mbsrv_map_strict(const md_mbsrv_map *m)
{
    return m->strict;
}

const char *md_mbsrv_kind_name(int kind)
{
    return kind >= 0 && kind < MD_MBSRV_KINDS ? kind_names[kind] : NULL;
}

int md_mbsrv_kind_from_name(const char *name)
{
    for (int k = 0; name && k < MD_MBSRV_KINDS; k++)
        if (strcmp(name, kind_names[k]) == 0)
            return k;
    return MD_MBSRV_NO_KIND;
}

static bool bad_range(int kind, unsigned addr, size_t n)
{
    return kind < 0 || kind >= MD_MBSRV_KINDS || addr > 65535 || n > 65536 - addr;
}

/* Make sure every page of the range exists; on failure the pages that were
 * added stay (empty pages change nothing a client can see). */
static int alloc_pages(md_mbsrv_map *m, int kind, unsigned addr, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t p = addr / PAGE_SIZE; p <= (addr + n - 1) / PAGE_SIZE; p++)
        if (!m->pages[kind][p] && !(m->pages[kind][p] = calloc(1, sizeof(page))))
            return -ENOMEM;
    return 0;
}

/* Write into pages that exist (alloc_pages ran); mark: make them exist. */
static void store(md_mbsrv_map *m, int kind, unsigned addr, const uint16_t *v, size_t n,
                  bool mark)
{
    bool bits = kind == MD_MBSRV_COIL || kind == MD_MBSRV_DISCRETE;
    for (size_t i = 0; i < n; i++) {
        unsigned a = addr + (unsigned)i;
        page *pg = m->pages[kind][a / PAGE_SIZE];
        unsigned o = a % PAGE_SIZE;
        pg->v[o] = bits ? (v[i] != 0) : v[i];
        if (mark)
            pg->exists[o / 8] |= (uint8_t)(1u << (o % 8));
    }
}

int md_mbsrv_map_set(md_mbsrv_map *m, int kind, unsigned addr, const uint16_t *values,
                     size_t n)
{
    if (bad_range(kind, addr, n))
        return -EINVAL;
    int rc = alloc_pages(m, kind, addr, n);
    if (rc < 0)
        return rc;
    store(m, kind, addr, values, n, true);
    return 0;
}

int md_mbsrv_map_get(const md_mbsrv_map *m, int kind, unsigned addr, uint16_t *out,
                     size_t n)
{
    if (bad_range(kind, addr, n))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned a = addr + (unsigned)i;
        const page *pg = m->pages[kind][a / PAGE_SIZE];
        out[i] = pg ? pg->v[a % PAGE_SIZE] : 0;
    }
    return 0;
}

bool md_mbsrv_map_exists(const md_mbsrv_map *m, int kind, unsigned addr, size_t n)
{
    if (bad_range(kind, addr, n))
        return false;
    if (!m->strict)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned a = addr + (unsigned)i;
        const page *pg = m->pages[kind][a / PAGE_SIZE];
        unsigned o = a % PAGE_SIZE;
        if (!pg || !(pg->exists[o / 8] & (1u << (o % 8))))
            return false;
    }
    return true;
}

int md_mbsrv_map_set_object(md_mbsrv_map *m, unsigned id, const char *text, size_t len)
{
    if (id >= NOBJECTS || len > MD_MBSRV_MAX_OBJECT)
        return -EINVAL;
    char *copy = NULL;
    if (text) {
        copy = malloc(len + 1); /* never 0 bytes: NULL means "absent" */
        if (!copy)
            return -ENOMEM;
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    free(m->objects[id]);
    m->objects[id] = copy;
    m->object_len[id] = (uint8_t)len;
    return 0;
}

int md_mbsrv_map_set_server_id(md_mbsrv_map *m, const uint8_t *bytes, size_t len)
{
    if (len == 0 || len > MD_MBSRV_MAX_SERVER_ID)
        return -EINVAL;
    memcpy(m->server_id, bytes, len);
    m->server_id_len = len;
    return 0;
}

/* }===== */

/* {===== parsing ===== */

/* A read of qty addresses from addr: 03 for a quantity outside 1..max,
 * 02 for a range past 65535. */
static int check_span(unsigned addr, unsigned qty, unsigned max)
{
    if (qty < 1 || qty > max)
        return MD_MB_EX_ILLEGAL_DATA_VALUE;
    if (addr + qty > 65536)
        return MD_MB_EX_ILLEGAL_DATA_ADDRESS;
    return 0;
}

static void set_read(md_mbsrv_op *op, int kind, const uint8_t *p)
{
    op->rkind = kind;
    op->raddr = md_mb_get_u16(p);
    op->rcount = md_mb_get_u16(p + 2);
}

static void set_write(md_mbsrv_op *op, int kind, uint16_t addr, uint16_t count)
{
    op->wkind = kind;
    op->waddr = addr;
    op->wcount = count;
}

/* The checks of each function code once the PDU has the right length. */
static int parse_fields(const uint8_t *pdu, md_mbsrv_op *op)
{
    const uint8_t *p = pdu + 1;
    switch (op->fc) {
    case MD_MB_FC_READ_COILS:
    case MD_MB_FC_READ_DISCRETE_INPUTS:
        set_read(op, op->fc == 1 ? MD_MBSRV_COIL : MD_MBSRV_DISCRETE, p);
        return check_span(op->raddr, op->rcount, MD_MB_MAX_READ_BITS);
    case MD_MB_FC_READ_HOLDING_REGISTERS:
    case MD_MB_FC_READ_INPUT_REGISTERS:
        set_read(op, op->fc == 3 ? MD_MBSRV_HOLDING : MD_MBSRV_INPUT, p);
        return check_span(op->raddr, op->rcount, MD_MB_MAX_READ_REGS);
    case MD_MB_FC_WRITE_SINGLE_COIL: {
        uint16_t v = md_mb_get_u16(p + 2);
        set_write(op, MD_MBSRV_COIL, md_mb_get_u16(p), 1);
        return v == 0xFF00 || v == 0x0000 ? 0 : MD_MB_EX_ILLEGAL_DATA_VALUE;
    }
    case MD_MB_FC_WRITE_SINGLE_REGISTER:
    case MD_MB_FC_MASK_WRITE_REGISTER:
        set_write(op, MD_MBSRV_HOLDING, md_mb_get_u16(p), 1);
        return 0;
    case MD_MB_FC_WRITE_MULTIPLE_COILS:
        set_write(op, MD_MBSRV_COIL, md_mb_get_u16(p), md_mb_get_u16(p + 2));
        return check_span(op->waddr, op->wcount, MAX_WRITE_BITS);
    case MD_MB_FC_WRITE_MULTIPLE_REGISTERS:
        set_write(op, MD_MBSRV_HOLDING, md_mb_get_u16(p), md_mb_get_u16(p + 2));
        return check_span(op->waddr, op->wcount, MAX_WRITE_REGS);
    case MD_MB_FC_READ_WRITE_REGISTERS: {
        set_read(op, MD_MBSRV_HOLDING, p);
        set_write(op, MD_MBSRV_HOLDING, md_mb_get_u16(p + 4), md_mb_get_u16(p + 6));
        int rc = check_span(op->raddr, op->rcount, MD_MB_MAX_READ_REGS);
        int wrc = check_span(op->waddr, op->wcount, MAX_RW_WRITE_REGS);
        /* quantity errors (03) win over range errors (02) */
        if (rc == MD_MB_EX_ILLEGAL_DATA_VALUE || wrc == MD_MB_EX_ILLEGAL_DATA_VALUE)
            return MD_MB_EX_ILLEGAL_DATA_VALUE;
        return rc ? rc : wrc;
    }
    case MD_MB_FC_REPORT_SERVER_ID: return 0;
    case MD_MB_FC_ENCAPSULATED:
        op->mei_code = p[1];
        op->object_id = p[2];
        return op->mei_code >= 1 && op->mei_code <= 4 ? 0 : MD_MB_EX_ILLEGAL_DATA_VALUE;
    default: return MD_MB_EX_ILLEGAL_FUNCTION;
    }
}

int md_mbsrv_parse(const uint8_t *pdu, size_t len, md_mbsrv_op *op)
{
    *op = (md_mbsrv_op){.rkind = MD_MBSRV_NO_KIND, .wkind = MD_MBSRV_NO_KIND};
    if (len < 1 || pdu[0] == 0 || pdu[0] & MD_MB_FC_EXCEPTION)
        return MD_MBSRV_NOREPLY; /* not a request: nothing sensible to answer */
    op->fc = pdu[0];
    int want = md_mb_pdu_request_len(pdu, len);
    if (want == MD_MB_EFUNC || want == MD_MB_EMEI)
        return MD_MB_EX_ILLEGAL_FUNCTION;
    if (want <= 0 || (size_t)want != len) /* truncated, padded or miscounted */
        return MD_MB_EX_ILLEGAL_DATA_VALUE;
    int rc = parse_fields(pdu, op);
    if (rc != 0) /* keep the description to what is valid */
        op->rkind = op->wkind = MD_MBSRV_NO_KIND;
    return rc;
}

int md_mbsrv_check_write(const md_mbsrv_map *m, const md_mbsrv_op *op)
{
    if (op->wkind != MD_MBSRV_NO_KIND &&
        !md_mbsrv_map_exists(m, op->wkind, op->waddr, op->wcount))
        return MD_MB_EX_ILLEGAL_DATA_ADDRESS;
    return 0;
}

size_t md_mbsrv_write_values(const md_mbsrv_map *m, const md_mbsrv_op *op,
                             const uint8_t *pdu, uint16_t *out)
{
    switch (op->fc) {
    case MD_MB_FC_WRITE_SINGLE_COIL: out[0] = md_mb_get_u16(pdu + 3) == 0xFF00; return 1;
    case MD_MB_FC_WRITE_SINGLE_REGISTER: out[0] = md_mb_get_u16(pdu + 3); return 1;
    case MD_MB_FC_WRITE_MULTIPLE_COILS:
        for (unsigned i = 0; i < op->wcount; i++)
            out[i] = (pdu[6 + i / 8] >> (i % 8)) & 1;
        return op->wcount;
    case MD_MB_FC_WRITE_MULTIPLE_REGISTERS:
        for (unsigned i = 0; i < op->wcount; i++)
            out[i] = md_mb_get_u16(pdu + 6 + 2 * i);
        return op->wcount;
    case MD_MB_FC_READ_WRITE_REGISTERS:
        for (unsigned i = 0; i < op->wcount; i++)
            out[i] = md_mb_get_u16(pdu + 10 + 2 * i);
        return op->wcount;
    case MD_MB_FC_MASK_WRITE_REGISTER: {
        uint16_t cur = 0, and_mask = md_mb_get_u16(pdu + 3),
                 or_mask = md_mb_get_u16(pdu + 5);
        md_mbsrv_map_get(m, MD_MBSRV_HOLDING, op->waddr, &cur, 1);
        out[0] = (uint16_t)((cur & and_mask) | (or_mask & ~and_mask));
        return 1;
    }
    default: return 0;
    }
}

/* }===== */

/* {===== responses ===== */

void md_mbsrv_exception(uint8_t fc, int code, uint8_t *resp, size_t *resp_len)
{
    resp[0] = (uint8_t)(fc | MD_MB_FC_EXCEPTION);
    resp[1] = (uint8_t)code;
    *resp_len = 2;
}

static size_t read_bits(const md_mbsrv_map *m, const md_mbsrv_op *op, uint8_t *resp)
{
    uint16_t v[MD_MB_MAX_READ_BITS];
    md_mbsrv_map_get(m, op->rkind, op->raddr, v, op->rcount);
    size_t bytes = (op->rcount + 7u) / 8u;
    resp[1] = (uint8_t)bytes;
    memset(resp + 2, 0, bytes);
    for (unsigned i = 0; i < op->rcount; i++)
        if (v[i])
            resp[2 + i / 8] |= (uint8_t)(1u << (i % 8));
    return 2 + bytes;
}

static size_t read_regs(const md_mbsrv_map *m, const md_mbsrv_op *op, uint8_t *resp)
{
    uint16_t v[MD_MB_MAX_READ_REGS];
    md_mbsrv_map_get(m, op->rkind, op->raddr, v, op->rcount);
    resp[1] = (uint8_t)(2 * op->rcount);
    md_mb_put_regs(v, op->rcount, resp + 2);
    return 2 + 2u * op->rcount;
}

static bool has_object(const md_mbsrv_map *m, unsigned id)
{
    return id < NOBJECTS && (id <= 2 || m->objects[id] != NULL);
}

static bool has_extended(const md_mbsrv_map *m)
{
    for (unsigned id = 0x80; id < NOBJECTS; id++)
        if (m->objects[id])
            return true;
    return false;
}

static size_t put_object(const md_mbsrv_map *m, unsigned id, uint8_t *p)
{
    p[0] = (uint8_t)id;
    p[1] = m->object_len[id];
    if (m->object_len[id])
        memcpy(p + 2, m->objects[id], m->object_len[id]);
    return 2u + m->object_len[id];
}

/*
 * FC 43/14. Stream access (codes 1 basic: objects 0..2, 2 regular: ..0x7F,
 * 3 extended: ..0xFF) sends the objects from object_id on, restarting at 0
 * for an id outside the category or absent (as the spec asks), and sets
 * "more follows" with the next id when the rest does not fit one PDU.
 * Code 4 sends one object, exception 2 if it is absent.
 */
static int device_id(const md_mbsrv_map *m, const md_mbsrv_op *op, uint8_t *resp,
                     size_t *len)
{
    resp[1] = MD_MB_MEI_DEVICE_ID;
    resp[2] = op->mei_code;
    resp[3] = has_extended(m) ? 0x83 : 0x82; /* regular or extended + individual */
    resp[4] = 0x00;                          /* more follows */
    resp[5] = 0x00;                          /* next object id */
    size_t pos = 7;
    unsigned count = 0, id = op->object_id;
    if (op->mei_code == 4) {
        if (!has_object(m, id))
            return MD_MB_EX_ILLEGAL_DATA_ADDRESS;
        pos += put_object(m, id, resp + pos);
        count = 1;
    } else {
        unsigned last = op->mei_code == 1 ? 2 : op->mei_code == 2 ? 0x7F : 0xFF;
        if (id > last || !has_object(m, id))
            id = 0;
        for (; id <= last; id++) {
            if (!has_object(m, id))
                continue;
            if (pos + 2 + m->object_len[id] > MD_MB_MAX_PDU) {
                resp[4] = 0xFF;
                resp[5] = (uint8_t)id;
                break;
            }
            pos += put_object(m, id, resp + pos);
            count++;
        }
    }
    resp[6] = (uint8_t)count;
    *len = pos;
    return 0;
}

static size_t echo(const uint8_t *pdu, size_t n, uint8_t *resp)
{
    memcpy(resp, pdu, n);
    return n;
}

int md_mbsrv_execute(md_mbsrv_map *m, const md_mbsrv_op *op, const uint8_t *pdu,
                     uint8_t *resp, size_t *resp_len)
{
    /* Check everything before changing anything: FC 23 must not write when
     * its read part is out of the map. */
    if (md_mbsrv_check_write(m, op) ||
        (op->rkind != MD_MBSRV_NO_KIND &&
         !md_mbsrv_map_exists(m, op->rkind, op->raddr, op->rcount)))
        return MD_MB_EX_ILLEGAL_DATA_ADDRESS;
    if (op->wkind != MD_MBSRV_NO_KIND) {
        uint16_t v[MAX_WRITE_BITS];
        size_t n = md_mbsrv_write_values(m, op, pdu, v);
        if (alloc_pages(m, op->wkind, op->waddr, n) < 0)
            return MD_MB_EX_SERVER_DEVICE_FAILURE;
        store(m, op->wkind, op->waddr, v, n, false);
    }
    resp[0] = op->fc;
    switch (op->fc) {
    case MD_MB_FC_READ_COILS:
    case MD_MB_FC_READ_DISCRETE_INPUTS: *resp_len = read_bits(m, op, resp); return 0;
    case MD_MB_FC_READ_HOLDING_REGISTERS:
    case MD_MB_FC_READ_INPUT_REGISTERS:
    case MD_MB_FC_READ_WRITE_REGISTERS: *resp_len = read_regs(m, op, resp); return 0;
    case MD_MB_FC_WRITE_SINGLE_COIL:
    case MD_MB_FC_WRITE_SINGLE_REGISTER:
    case MD_MB_FC_WRITE_MULTIPLE_COILS: /* address and quantity */
    case MD_MB_FC_WRITE_MULTIPLE_REGISTERS: *resp_len = echo(pdu, 5, resp); return 0;
    case MD_MB_FC_MASK_WRITE_REGISTER: *resp_len = echo(pdu, 7, resp); return 0;
    case MD_MB_FC_REPORT_SERVER_ID:
        resp[1] = (uint8_t)m->server_id_len;
        memcpy(resp + 2, m->server_id, m->server_id_len);
        *resp_len = 2 + m->server_id_len;
        return 0;
    case MD_MB_FC_ENCAPSULATED: return device_id(m, op, resp, resp_len);
    default: return MD_MB_EX_ILLEGAL_FUNCTION; /* parse never lets one through */
    }
}

int md_mbsrv_process(md_mbsrv_map *m, const uint8_t *req, size_t len, uint8_t *resp,
                     size_t *resp_len)
{
    md_mbsrv_op op;
    int rc = md_mbsrv_parse(req, len, &op);
    if (rc == 0)
        rc = md_mbsrv_execute(m, &op, req, resp, resp_len);
    if (rc > 0)
        md_mbsrv_exception(req[0], rc, resp, resp_len);
    return rc;
}

/* }===== */

/* {===== framing ===== */

/*
 * An RTU frame with a function code the length rules do not know: only a
 * whole CRC-valid burst counts, so that it can get exception 1. Clients
 * write a frame at once, so it normally arrives as one read; checking only
 * the whole buffer keeps resynchronising through garbage linear.
 */
static int unknown_rtu_frame(const uint8_t *buf, size_t have)
{
    if (have >= 4 && have <= MD_MB_MAX_RTU && md_mb_rtu_check_crc(buf, have) == 0)
        return (int)have;
    return -1;
}

int md_mbsrv_frame(int framing, const uint8_t *buf, size_t have)
{
    if (framing == MD_MBSRV_MBAP) {
        struct md_mb_mbap h;
        if (have < MD_MB_MBAP_LEN)
            return 0;
        if (md_mb_mbap_decode(buf, &h) < 0)
            return MD_MBSRV_EBADMBAP;
        size_t n = MD_MB_MBAP_LEN + h.pdu_len;
        return have >= n ? (int)n : 0;
    }
    int n = md_mb_rtu_request_len(buf, have);
    if (n == MD_MB_EFUNC || n == MD_MB_EMEI)
        return unknown_rtu_frame(buf, have);
    if (n < 0)
        return -1;
    if (n == 0 || (size_t)n > have)
        return 0;
    return md_mb_rtu_check_crc(buf, (size_t)n) == 0 ? n : -1;
}

void md_mbsrv_unwrap(int framing, const uint8_t *adu, size_t len, md_mbsrv_adu *out)
{
    if (framing == MD_MBSRV_MBAP) {
        *out = (md_mbsrv_adu){.tid = md_mb_get_u16(adu),
                              .unit = adu[6],
                              .pdu = adu + MD_MB_MBAP_LEN,
                              .pdu_len = len - MD_MB_MBAP_LEN};
    } else {
        *out = (md_mbsrv_adu){.unit = adu[0], .pdu = adu + 1, .pdu_len = len - 3};
    }
}

size_t md_mbsrv_wrap(int framing, uint16_t tid, uint8_t unit, const uint8_t *pdu,
                     size_t pdu_len, uint8_t *out)
{
    if (framing == MD_MBSRV_MBAP) {
        md_mb_mbap_encode(out, tid, (uint16_t)pdu_len, unit);
        memcpy(out + MD_MB_MBAP_LEN, pdu, pdu_len);
        return MD_MB_MBAP_LEN + pdu_len;
    }
    out[0] = unit;
    memcpy(out + 1, pdu, pdu_len);
    return md_mb_rtu_put_crc(out, pdu_len + 1);
}

/* }===== */
