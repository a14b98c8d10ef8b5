"""A pymodbus server for moondog's interoperability tests.

Provenance: written for moondog's tests against python3-pymodbus 3.0.0rc1
(Debian); run with /usr/bin/python3.

    pymodbus_server.py TRANSPORT WHERE [--units 1,2] [--quiet-unit N]

TRANSPORT is tcp, udp, rtu+tcp, rtu+udp (WHERE: a port on 127.0.0.1, 0 picks
a free one) or rtu (WHERE: a serial device, e.g. one end of a socat pty pair).
Prints "ready PORT" (or "ready DEVICE") on stdout once it answers requests.
Units not listed get no answer at all, as on a real RS-485 line.

Every unit holds the same known data (addresses are 0-based on the wire):
  holding[i] = 1000 + i, input[i] = 2000 + i, coil[i] = (i % 3 == 0),
  discrete[i] = (i % 2 == 0), for i in 0..199; above 199: illegal data address.
  holding 100..101 = 230.5 as float32 ABCD (0x4366 0x8000)
  input 110..111   = -1.25 as float32 CDAB (0x0000 0xBFA0)
"""
import argparse
import asyncio
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.device import ModbusDeviceIdentification
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.framer.socket_framer import ModbusSocketFramer
from pymodbus.server.async_io import (ModbusSerialServer, ModbusTcpServer,
                                      ModbusUdpServer)

SIZE = 200


def unit_context():
    holding = [1000 + i for i in range(SIZE)]
    holding[100:102] = [0x4366, 0x8000]
    inputs = [2000 + i for i in range(SIZE)]
    inputs[110:112] = [0x0000, 0xBFA0]
    return ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(0, holding),
        ir=ModbusSequentialDataBlock(0, inputs),
        co=ModbusSequentialDataBlock(0, [i % 3 == 0 for i in range(SIZE)]),
        di=ModbusSequentialDataBlock(0, [i % 2 == 0 for i in range(SIZE)]),
        zero_mode=True)


def identity():
    ident = ModbusDeviceIdentification()
    ident.VendorName = "pymodbus-test"
    ident.ProductCode = "PMT"
    ident.MajorMinorRevision = "3.0.0"
    ident.ProductName = "moondog interop peer"
    return ident


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["tcp", "udp", "rtu", "rtu+tcp", "rtu+udp"])
    parser.add_argument("where")
    parser.add_argument("--units", default="1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # its errors are our tests' cases
    units = [int(u) for u in args.units.split(",")]
    context = ModbusServerContext(slaves={u: unit_context() for u in units}, single=False)
    framer = ModbusRtuFramer if args.transport.startswith("rtu") else ModbusSocketFramer
    common = dict(context=context, framer=framer, identity=identity(),
                  ignore_missing_slaves=True)
    if args.transport == "rtu":
        server = ModbusSerialServer(port=args.where, baudrate=9600, **common)
        await server.start()
        if server.transport is None:
            sys.exit(f"cannot open {args.where}")
        print("ready", args.where, flush=True)
        await asyncio.Event().wait()
    address = ("127.0.0.1", int(args.where))
    if args.transport in ("tcp", "rtu+tcp"):
        server = ModbusTcpServer(address=address, allow_reuse_address=True, **common)
        task = asyncio.create_task(server.serve_forever())
        await server.serving
        port = server.server.sockets[0].getsockname()[1]
    else:
        server = ModbusUdpServer(address=address, **common)
        task = asyncio.create_task(server.serve_forever())
        await server.serving
        port = server.protocol.get_extra_info("sockname")[1]
    print("ready", port, flush=True)
    await task


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
