/*
 * mbcodec.h - the Modbus codec: CRC, MBAP header, RTU framing by function
 * code, typed register values, strings and bit fields.
 *
 * Every transport (RTU on a serial port, RTU over TCP, Modbus TCP and UDP)
 * and the server use these functions to find frame ends, to check frames
 * and to turn registers into values. Nothing here knows Lua or libmodbus,
 * so a test or a fuzzer can link this file alone.
 *
 * Design: pure functions over caller-owned buffers. Nothing allocates,
 * nothing keeps state, the only static data is const (the CRC table and
 * names), so every function is thread-safe and may run on a bus worker.
 *
 * Errors: functions return 0 (or a length) on success and a negative
 * MD_MB_E* code on failure. The codes are aliases of err.h's one table;
 * md_strerror() turns one into a static message, md_err_token() a token.
 *
 * Byte order on the wire: Modbus sends 16-bit fields (addresses,
 * quantities, register values, MBAP fields) big-endian, except the RTU CRC,
 * which goes low byte first. Coils and discrete inputs are packed eight per
 * byte, the first bit in the least significant bit of the first byte.
 */
#ifndef MD_MBCODEC_H
#define MD_MBCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* {===== limits and codes ===== */

enum {
    MD_MB_MAX_PDU = 253, /* function code + data */
    MD_MB_MAX_RTU = 256, /* address + PDU + CRC */
    MD_MB_MBAP_LEN = 7,  /* transaction id, protocol id, length, unit id */
    MD_MB_MAX_TCP = 260, /* MBAP + PDU */
    MD_MB_MAX_READ_REGS = 125,
    MD_MB_MAX_READ_BITS = 2000,
};

/* The function codes this codec can frame. */
enum md_mb_fc {
    MD_MB_FC_READ_COILS = 0x01,
    MD_MB_FC_READ_DISCRETE_INPUTS = 0x02,
    MD_MB_FC_READ_HOLDING_REGISTERS = 0x03,
    MD_MB_FC_READ_INPUT_REGISTERS = 0x04,
    MD_MB_FC_WRITE_SINGLE_COIL = 0x05,
    MD_MB_FC_WRITE_SINGLE_REGISTER = 0x06,
    MD_MB_FC_WRITE_MULTIPLE_COILS = 0x0F,
    MD_MB_FC_WRITE_MULTIPLE_REGISTERS = 0x10,
    MD_MB_FC_REPORT_SERVER_ID = 0x11,
    MD_MB_FC_MASK_WRITE_REGISTER = 0x16,
    MD_MB_FC_READ_WRITE_REGISTERS = 0x17,
    MD_MB_FC_ENCAPSULATED = 0x2B, /* only MEI type 0x0E is framed */
    MD_MB_MEI_DEVICE_ID = 0x0E,   /* Read Device Identification */
    MD_MB_FC_EXCEPTION = 0x80,    /* set in the FC of an exception response */
};

/* Exception codes, the byte after FC|0x80. */
enum md_mb_exception {
    MD_MB_EX_ILLEGAL_FUNCTION = 0x01,
    MD_MB_EX_ILLEGAL_DATA_ADDRESS = 0x02,
    MD_MB_EX_ILLEGAL_DATA_VALUE = 0x03,
    MD_MB_EX_SERVER_DEVICE_FAILURE = 0x04,
    MD_MB_EX_ACKNOWLEDGE = 0x05,
    MD_MB_EX_SERVER_DEVICE_BUSY = 0x06,
    MD_MB_EX_NEGATIVE_ACKNOWLEDGE = 0x07,
    MD_MB_EX_MEMORY_PARITY_ERROR = 0x08,
    MD_MB_EX_GATEWAY_PATH_UNAVAILABLE = 0x0A,
    MD_MB_EX_GATEWAY_TARGET_FAILED = 0x0B,
};

/* Error codes (negative): aliases of err.h's codes. */
enum md_mb_error {
    MD_MB_ESHORT = -MD_ESHORT,     /* frame too short */
    MD_MB_ECRC = -MD_ECRC,         /* CRC mismatch */
    MD_MB_EFUNC = -MD_EFUNC,       /* unknown function code */
    MD_MB_EMEI = -MD_EMEI,         /* FC 43 with a MEI type other than 14 */
    MD_MB_ECOUNT = -MD_ECOUNT,     /* byte count inconsistent with the FC/quantity */
    MD_MB_ETOOLONG = -MD_ETOOLONG, /* PDU > 253 bytes (RTU frame > 256) */
    MD_MB_EPROTO = -MD_EPROTO,     /* MBAP protocol id is not 0 */
    MD_MB_ELENGTH = -MD_ELENGTH,   /* MBAP length outside 2..254 */
    MD_MB_ETYPE = -MD_ETYPE,       /* unknown type, or wrong type for the call */
    MD_MB_EORDER = -MD_EORDER,     /* unknown word/byte order */
    MD_MB_ERANGE = -MD_ERANGE,     /* value out of range for the type */
    MD_MB_EREGS = -MD_EREGS,       /* too few registers for the type */
    MD_MB_ESPACE = -MD_ESPACE,     /* output buffer too small */
};

/* The stable lowercase token for an exception code ("illegal_data_address"),
 * for Lua's `nil, message, code` returns; NULL for codes not listed above. */
const char *md_mb_exception_name(int code);
/* The text of an exception code for people ("illegal data address"); NULL
 * for codes not listed above. */
const char *md_mb_exception_text(int code);

/* }===== */

/* {===== byte and bit helpers ===== */

/* Big-endian 16-bit field at p. */
static inline uint16_t md_mb_get_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline void md_mb_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* n registers from 2n big-endian bytes (raw Modbus data), and back. */
void md_mb_get_regs(const uint8_t *in, size_t n, uint16_t *regs);
void md_mb_put_regs(const uint16_t *regs, size_t n, uint8_t *out);

/* Coils: bits[i] (0 or non-zero) into (n + 7) / 8 bytes, bit i in bit i % 8
 * of byte i / 8; unused high bits of the last byte are 0. */
void md_mb_pack_bits(const uint8_t *bits, size_t n, uint8_t *out);
/* Coils: n packed bits into bits[i] = 0 or 1. */
void md_mb_unpack_bits(const uint8_t *in, size_t n, uint8_t *bits);

/*
 * Bit field: nbits bits of value starting at first_bit (0 = least
 * significant), shifted down. Bits above bit 63 read as 0; nbits 0 gives 0.
 * Example: md_mb_bits(0xABCD, 4, 8) == 0xBC.
 */
uint64_t md_mb_bits(uint64_t value, unsigned first_bit, unsigned nbits);

/* }===== */

/* {===== CRC and headers ===== */

/* CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF, no final xor). The RTU
 * frame carries it low byte first: 01 03 00 00 00 0A -> 0xCDC5 -> C5 CD. */
uint16_t md_mb_crc16(const uint8_t *p, size_t n);

/* Check the CRC in the last two bytes of an RTU frame of len bytes.
 * Returns 0, MD_MB_ESHORT (len < 4) or MD_MB_ECRC. */
int md_mb_rtu_check_crc(const uint8_t *frame, size_t len);
/* Append the CRC of frame[0..len) at frame[len]; returns len + 2. */
size_t md_mb_rtu_put_crc(uint8_t *frame, size_t len);

struct md_mb_mbap {
    uint16_t tid;     /* transaction id, echoed by the server */
    uint16_t pdu_len; /* PDU bytes after the header: the length field - 1 */
    uint8_t unit;     /* unit id */
};

/* Write the 7-byte MBAP header for a PDU of pdu_len bytes (1..253).
 * Returns 0 or MD_MB_ELENGTH. */
int md_mb_mbap_encode(uint8_t out[7], uint16_t tid, uint16_t pdu_len, uint8_t unit);
/* Read and check a 7-byte MBAP header. Returns 0, MD_MB_EPROTO (protocol
 * id not 0) or MD_MB_ELENGTH (length field, unit id + PDU, not 2..254). */
int md_mb_mbap_decode(const uint8_t in[7], struct md_mb_mbap *out);

/* }===== */

/* {===== frame lengths ===== */

/*
 * Frame lengths from function-code rules, for RTU where nothing else marks
 * a frame's end, and to check that a PDU inside MBAP is whole
 * (md_mb_pdu_response_len(pdu, n) == mbap.pdu_len).
 *
 * Each function looks at the `have` bytes received so far and returns
 *   > 0  the total length: the PDU from the function code on, or for RTU the
 *        whole frame incl. address and CRC; it may be more than `have`;
 *   0    more bytes are needed before the length is known;
 *   < 0  the bytes cannot start a valid frame: MD_MB_EFUNC (unknown function
 *        code), MD_MB_EMEI (FC 43 that is not MEI 14), MD_MB_ECOUNT (byte
 *        count inconsistent with the quantity or the function), or
 *        MD_MB_ETOOLONG (PDU beyond 253 bytes).
 * Once a length or an error is returned, more bytes never change it.
 *
 * Requests: FC 1-6, 17 (FC alone), 22 and 43/14 have a fixed length; FC 15,
 * 16 and 23 carry a byte count that must match the quantity (coils:
 * (qty + 7) / 8, registers: 2 * qty). Quantities are not range-checked
 * beyond that (a read of 0 or 126 registers frames fine): the server
 * answers them with exception 03, which needs the frame delimited first.
 * Responses: exceptions (FC | 0x80 for any FC 1..127) are FC + code. Read
 * responses carry a byte count: FC 1/2 1..250, FC 3/4/23 even 2..250, FC 17
 * 1..251. FC 43/14 lists objects (id, length, data) after FC and a 6-byte
 * header, so its length is known only once every object header is in.
 * RTU: the address byte is not checked (the caller filters on it).
 */
int md_mb_pdu_request_len(const uint8_t *pdu, size_t have);
int md_mb_pdu_response_len(const uint8_t *pdu, size_t have);
int md_mb_rtu_request_len(const uint8_t *buf, size_t have);
int md_mb_rtu_response_len(const uint8_t *buf, size_t have);

/* }===== */

/* {===== typed values ===== */

enum md_mb_type {
    MD_MB_T_INT16,
    MD_MB_T_UINT16,
    MD_MB_T_INT32,
    MD_MB_T_UINT32,
    MD_MB_T_INT64,
    MD_MB_T_UINT64,
    MD_MB_T_FLOAT32,
    MD_MB_T_FLOAT64,
    MD_MB_T_STRING,
    MD_MB_T_COUNT
};

/*
 * Word and byte order of a value spread over registers.
 *
 * Registers are uint16 values as they come off the wire (register i is wire
 * bytes 2i, 2i+1, high byte first). Name the value's bytes by significance,
 * A the most significant: A B C D for 32 bits, A B C D E F G H for 64. The
 * order names the sequence in which those bytes appear on the wire:
 *
 *   ABCD  big-endian: the most significant word first, high byte first.
 *   CDAB  the sequence of 16-bit words reversed (least significant word
 *         first), bytes inside each word still high first.
 *   BADC  words in big-endian sequence, the two bytes of each word swapped.
 *   DCBA  fully little-endian (CDAB and BADC together).
 *
 * Example, the 32-bit value 0x11223344 (A=11 B=22 C=33 D=44):
 *   ABCD 0x1122 0x3344   CDAB 0x3344 0x1122
 *   BADC 0x2211 0x4433   DCBA 0x4433 0x2211
 * and the 64-bit value 0x0102030405060708:
 *   ABCD 0x0102 0x0304 0x0506 0x0708   CDAB 0x0708 0x0506 0x0304 0x0102
 *   BADC 0x0201 0x0403 0x0605 0x0807   DCBA 0x0807 0x0605 0x0403 0x0201
 * A 16-bit value reads the same in ABCD and CDAB, byte-swapped in BADC and
 * DCBA. SunSpec and most inverters use ABCD; "float with swapped words"
 * in a manual means CDAB. float32 0.8479 is 0x3F59 0x0F86 in ABCD.
 *
 * Strings have no word significance: ABCD and CDAB put the first character
 * in the high byte of each register, BADC and DCBA in the low byte.
 */
enum md_mb_order { MD_MB_ABCD, MD_MB_CDAB, MD_MB_BADC, MD_MB_DCBA, MD_MB_ORDER_COUNT };

/* Type from its name ("int16" ... "float64", "string"), case-insensitive;
 * the enum value or MD_MB_ETYPE. */
int md_mb_type_from_name(const char *name);
/* Order from "ABCD", "CDAB", "BADC", "DCBA", case-insensitive; or MD_MB_EORDER. */
int md_mb_order_from_name(const char *name);
/* Lowercase type name, uppercase order name; NULL when out of range. */
const char *md_mb_type_name(int type);
const char *md_mb_order_name(int order);
/* Registers a value of the type occupies: 1, 2 or 4; 0 for strings (their
 * length is the caller's) and for unknown types. */
unsigned md_mb_type_regs(enum md_mb_type type);

/*
 * Decode the first md_mb_type_regs(type) of nregs registers; more are
 * ignored. Integers: md_mb_decode_int takes every integer type but fails
 * for uint64 values above INT64_MAX, md_mb_decode_uint every integer type
 * but fails for negative values. md_mb_decode_float takes float32/float64
 * (float32 is widened exactly; NaN stays NaN).
 * Returns 0, MD_MB_ETYPE (unknown or wrong type), MD_MB_EORDER, MD_MB_EREGS
 * (nregs too small) or MD_MB_ERANGE (value does not fit *out).
 */
int md_mb_decode_int(const uint16_t *regs, size_t nregs, enum md_mb_type type,
                     enum md_mb_order order, int64_t *out);
int md_mb_decode_uint(const uint16_t *regs, size_t nregs, enum md_mb_type type,
                      enum md_mb_order order, uint64_t *out);
int md_mb_decode_float(const uint16_t *regs, size_t nregs, enum md_mb_type type,
                       enum md_mb_order order, double *out);

/*
 * Encode into the first md_mb_type_regs(type) of nregs registers; the rest
 * are left alone. Integers are range-checked against the type; float32
 * rejects finite values beyond FLT_MAX (inf and NaN pass, other values are
 * rounded to the nearest float).
 * Returns 0, MD_MB_ETYPE, MD_MB_EORDER, MD_MB_EREGS or MD_MB_ERANGE.
 */
int md_mb_encode_int(int64_t v, enum md_mb_type type, enum md_mb_order order,
                     uint16_t *regs, size_t nregs);
int md_mb_encode_uint(uint64_t v, enum md_mb_type type, enum md_mb_order order,
                      uint16_t *regs, size_t nregs);
int md_mb_encode_float(double v, enum md_mb_type type, enum md_mb_order order,
                       uint16_t *regs, size_t nregs);

/*
 * A string of nregs registers, two characters per register. The text ends
 * at the first NUL (devices pad with NUL and some leave garbage after it),
 * then trailing spaces are trimmed. out receives the text and a NUL; it must
 * hold 2 * nregs + 1 bytes. Returns the text's length, MD_MB_EORDER or
 * MD_MB_ESPACE.
 */
int md_mb_decode_string(const uint16_t *regs, size_t nregs, enum md_mb_order order,
                        char *out, size_t outsize);
/* len bytes of s into nregs registers, padded with NUL. Returns 0,
 * MD_MB_EORDER or MD_MB_ERANGE (more than 2 * nregs bytes). */
int md_mb_encode_string(const char *s, size_t len, enum md_mb_order order, uint16_t *regs,
                        size_t nregs);

/* }===== */

#endif
