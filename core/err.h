/*
 * err.h - moondog's one error vocabulary.
 *
 * C functions return 0 (or a count) on success and a negative number on
 * failure: -errno for what the system reported, or -MD_E<name> for
 * moondog's own conditions. moondog's codes lie above MD_EBASE, far from
 * every errno value (Linux keeps errno below 4096), so one int carries
 * either kind and one function explains it:
 *
 *   md_strerror(rc)   a static message for a person (thread-safe: it
 *                     never calls strerror(), whose buffer is shared)
 *   md_err_token(rc)  the stable lowercase token Lua code tests, the
 *                     third value of `nil, message, code`
 *
 * Both take the negative return value or its absolute value. The codes
 * are one table (MD_ERR_LIST below); each module's own names
 * (MD_MB_ECRC, MD_MBUS_ETIMEOUT, MD_MQTT_ENOTCONN, ...) are aliases of
 * entries in it, so no two modules can give the same number two meanings
 * and the same failure gets the same token from every module.
 *
 * docs/errors.md lists every token with what a user should do about it;
 * keep it in step with this table. The Lua side pushes results through
 * err_lua.h (md_err_push*), never by hand.
 */
#ifndef MD_ERR_H
#define MD_ERR_H

#include <stdbool.h>

#define MD_EBASE 10000

/*
 * X(NAME, token, message): MD_E<NAME> = MD_EBASE + its position. Numbers
 * are never stored or sent (the tokens are the stable interface), so a new
 * code goes where it belongs. Several codes may share a token when they
 * are the same failure to a user (QUEUED is a "timeout"); a token is in
 * docs/errors.md with what to do about it.
 */
#define MD_ERR_LIST(X)                                                                   \
    /* transactions and connections */                                                   \
    X(TIMEOUT, "timeout", "no response in time")                                         \
    X(CONNTIMEOUT, "connect_timeout", "the connection was not made in time")             \
    X(DNS, "dns", "the host name does not resolve")                                      \
    X(CONNECT, "connect", "cannot connect")                                              \
    X(CONNLOST, "connection_lost", "the connection was lost")                            \
    X(CLOSED, "closed", "closed while waiting")                                          \
    X(QUEUED, "timeout", "waited too long for the bus")                                  \
    X(NOTCONN, "not_connected", "not connected")                                         \
    X(FULL, "queue_full", "the outgoing queue is full")                                  \
    X(BAUD, "bad_address", "a baud rate the serial port cannot use")                     \
    X(LIB, "error", "a library call failed")                                             \
    /* Modbus responses */                                                               \
    X(EXCEPTION, "exception", "the device answered with a Modbus exception")             \
    X(BADTID, "wrong_transaction", "only responses to other transactions arrived")       \
    X(BADUNIT, "wrong_unit", "response from another unit id")                            \
    X(MALFORMED, "malformed", "short or malformed response")                             \
    /* frames (codecs) */                                                                \
    X(CRC, "crc", "CRC mismatch")                                                        \
    X(SHORT, "short", "frame too short")                                                 \
    X(LENGTH, "length", "impossible length field")                                       \
    X(TOOLONG, "too_long", "frame longer than the protocol allows")                      \
    X(PROTO, "protocol", "unknown protocol id")                                          \
    X(BADMBAP, "malformed", "MBAP header with a wrong protocol id or length")            \
    X(FUNC, "function", "unknown function code")                                         \
    X(MEI, "mei", "unsupported MEI type (only 0x0E, read device identification)")        \
    X(COUNT, "count", "byte count inconsistent with function code or quantity")          \
    X(ESCAPE, "escape", "bad escape sequence")                                           \
    X(COMMAND, "command", "not a command of the protocol")                               \
    X(SPACE, "space", "output buffer too small")                                         \
    /* values (codecs) */                                                                \
    X(RANGE, "range", "value out of range for its type")                                 \
    X(TYPE, "type", "unknown type, or a value of the wrong kind for it")                 \
    X(ORDER, "order", "unknown word/byte order")                                         \
    X(REGS, "registers", "too few registers for the type")                               \
    X(SIZE, "size", "size does not suit the type")                                       \
    X(SYNTAX, "syntax", "text that is not a value of the type")                          \
    X(SF, "scale_factor", "scale factor outside -10..10")                                \
    /* MQTT */                                                                           \
    X(TOPIC, "topic", "not a valid MQTT topic")                                          \
    X(TOOLARGE, "too_large", "payload too large")

#define MD_ERR_ENUM_(name, token, text) MD_E##name,
enum { MD_ERR_FIRST_ = MD_EBASE, MD_ERR_LIST(MD_ERR_ENUM_) MD_ERR_END_ };
#undef MD_ERR_ENUM_

/* A static message for rc (-errno, -MD_E*, or their absolute value); 0 is
 * "success", an unknown number "unknown error". Thread-safe. */
const char *md_strerror(int rc);

/* The Lua token for rc (as md_strerror). -errno values map onto the same
 * tokens where moondog has one (ETIMEDOUT "timeout", ECONNREFUSED
 * "refused", EHOSTUNREACH/ENETUNREACH "unreachable", ENOENT "no_device",
 * EACCES/EPERM "permission", EBUSY "busy", ECONNRESET/EPIPE
 * "connection_lost", ...); any other errno is "io". 0 is "ok". */
const char *md_err_token(int rc);

/* The code of a failed connect whose errno (either sign) is err: a
 * timeout becomes -MD_ECONNTIMEOUT, an errno without a token of its own
 * -MD_ECONNECT; moondog's codes and named errno values stay as they are
 * (negative). Use md_strerror(err) for the message. */
int md_err_connect(int err);

/* True for moondog's own codes (either sign), false for errno values. */
bool md_err_is_own(int rc);

#endif
