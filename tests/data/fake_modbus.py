#!/usr/bin/python3
"""A fake Modbus device for moondog's client tests: faults on demand.

    fake_modbus.py tcp|udp mbap|rtu [--log FILE]

Listens on 127.0.0.1, port chosen by the kernel, prints "PORT <n>" when
ready. Serves FC 3 reads (register i holds i) and FC 6 writes. It checks
the exact request bytes (length, CRC) and injects a fault when a read
starts at one of these magic addresses:

    9001 never answer                   9005 answer as unit id + 1
    9002 answer twice: an old           9006 answer after 300 ms
         transaction id, then this one  9007 close the connection
    9003 answer with a bad CRC (rtu)    9008 answer exception 2
    9004 answer with a truncated frame  9009 answer only with an old tid
    9010 (tcp) send the first 3 bytes of the answer now and the rest just
         before the answer to the next request on this connection: a
         late tail after the client's timeout

Every request received is appended to the log file (hex, one per line) so
tests can check what was sent, e.g. that writes overtook queued reads.
"""
import socket
import struct
import sys
import threading
import time


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class Fake:
    def __init__(self, framing, log):
        self.framing = framing
        self.log = log
        self.lock = threading.Lock()

    def record(self, adu):
        if self.log:
            with self.lock, open(self.log, "a") as f:
                f.write(adu.hex() + "\n")

    def frame(self, tid, unit, pdu):
        if self.framing == "rtu":
            body = bytes([unit]) + pdu
            return body + struct.pack("<H", crc16(body))
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    def parse(self, adu):
        """Return (tid, unit, pdu) or raise ValueError on a bad request."""
        if self.framing == "rtu":
            if len(adu) < 4 or struct.unpack("<H", adu[-2:])[0] != crc16(adu[:-2]):
                raise ValueError("bad CRC in request " + adu.hex())
            return 0, adu[0], adu[1:-2]
        tid, proto, length, unit = struct.unpack(">HHHB", adu[:7])
        if proto != 0 or length != len(adu) - 6:
            raise ValueError("bad MBAP header in request " + adu.hex())
        return tid, unit, adu[7:]

    def answer(self, adu):
        """Responses (list of byte strings) and whether to close."""
        self.record(adu)
        tid, unit, pdu = self.parse(adu)
        fc = pdu[0]
        if fc == 6 and len(pdu) == 5:
            return [self.frame(tid, unit, pdu)], False
        if fc != 3 or len(pdu) != 5:
            return [self.frame(tid, unit, bytes([fc | 0x80, 1]))], False
        addr, count = struct.unpack(">HH", pdu[1:5])
        data = b"".join(struct.pack(">H", (addr + i) & 0xFFFF) for i in range(count))
        ok = bytes([3, 2 * count]) + data
        if addr == 9001:
            return [], False
        if addr == 9002:
            return [self.frame((tid - 1) & 0xFFFF, unit, ok), self.frame(tid, unit, ok)], False
        if addr == 9003:
            f = bytearray(self.frame(tid, unit, ok))
            f[-1] ^= 0xFF
            return [bytes(f)], False
        if addr == 9004:
            f = self.frame(tid, unit, ok)
            if self.framing == "rtu":  # a byte count that promises more than comes
                body = bytes([unit, 3, 2 * count + 2]) + data
                return [body + struct.pack("<H", crc16(body))], False
            return [f[:7] + bytes([3, 2 * count + 2]) + data], False
        if addr == 9005:
            return [self.frame(tid, (unit + 1) & 0xFF, ok)], False
        if addr == 9006:
            time.sleep(0.3)
        if addr == 9007:
            return [], True
        if addr == 9008:
            return [self.frame(tid, unit, bytes([0x83, 2]))], False
        if addr == 9009:
            return [self.frame((tid + 100) & 0xFFFF, unit, ok)], False
        if addr == 9010:
            f = self.frame(tid, unit, ok)
            return [f[:3], ("hold", f[3:])], False
        return [self.frame(tid, unit, ok)], False


def request_len(framing, buf):
    """Length of the first complete request in buf, or 0."""
    if framing == "mbap":
        return 6 + struct.unpack(">H", buf[4:6])[0] if len(buf) >= 7 else 0
    if len(buf) < 2:
        return 0
    return 8 if buf[1] in (3, 6) else len(buf)  # the fake only knows FC 3 and 6


def serve_stream(conn, fake):
    buf, held = b"", b""
    with conn:
        while True:
            chunk = conn.recv(512)
            if not chunk:
                return
            buf += chunk
            while True:
                n = request_len(fake.framing, buf)
                if n == 0 or len(buf) < n:
                    break
                adu, buf = buf[:n], buf[n:]
                replies, close = fake.answer(adu)
                if held:
                    conn.sendall(held)
                    held = b""
                for r in replies:
                    if isinstance(r, tuple):
                        held = r[1]
                    else:
                        conn.sendall(r)
                if close:
                    return


def main():
    transport, framing = sys.argv[1], sys.argv[2]
    log = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--log" else None
    fake = Fake(framing, log)
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    if transport == "tcp":
        s.listen(16)  # before announcing the port: a client may connect at once
    print("PORT", s.getsockname()[1], flush=True)
    if transport == "udp":
        while True:
            adu, peer = s.recvfrom(512)
            for r in fake.answer(adu)[0]:
                if not isinstance(r, tuple):
                    s.sendto(r, peer)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve_stream, args=(conn, fake), daemon=True).start()


if __name__ == "__main__":
    main()
