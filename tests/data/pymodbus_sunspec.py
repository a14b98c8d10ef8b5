"""A pymodbus server holding a SunSpec register image, for moondog's tests.

Provenance: written for moondog's tests against python3-pymodbus 3.0.0rc1
(Debian); run with /usr/bin/python3.

    pymodbus_sunspec.py IMAGE.regs.tsv [PORT]

IMAGE is a register dump with lines "ADDRESS COUNT WORDS..." (0-based
addresses, 16-bit words in hex), as in SunSpec device dumps. Serves those
holding registers over Modbus TCP on 127.0.0.1 (PORT, default 0: a free
one), for every unit id; registers outside the image answer "illegal data
address". Prints "ready PORT" once it answers requests.
"""
import asyncio
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.framer.socket_framer import ModbusSocketFramer
from pymodbus.server.async_io import ModbusTcpServer


def read_image(path):
    first, words = None, []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or not parts[0].isdigit():
                continue
            addr, count = int(parts[0]), int(parts[1])
            if first is None:
                first = addr
            if addr != first + len(words) or len(parts) - 2 != count:
                sys.exit(f"{path}: line for {addr} does not follow on")
            words += [int(w, 16) for w in parts[2:]]
    return first, words


async def main():
    logging.basicConfig(level=logging.CRITICAL)
    first, words = read_image(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    store = ModbusSlaveContext(hr=ModbusSequentialDataBlock(first, words), zero_mode=True)
    context = ModbusServerContext(slaves=store, single=True)
    server = ModbusTcpServer(context=context, framer=ModbusSocketFramer,
                             address=("127.0.0.1", port), allow_reuse_address=True)
    task = asyncio.create_task(server.serve_forever())
    await server.serving
    print("ready", server.server.sockets[0].getsockname()[1], flush=True)
    await task


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
