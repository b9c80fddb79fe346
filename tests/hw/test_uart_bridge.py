"""Tier 1: the UART receiver and transmitter, and the command bridge driven bit by bit through
its UART lines, against an interleaved AXI4 memory and an AXI4-Lite register file with random
latency and stalls; every response byte is checked against a Python model."""

import struct

import numpy as np
import pytest
from amaranth import Module
from amaranth.sim import Simulator

from hw.config import AccelConfig
from hw.uart_bridge import UARTBridge, UARTRx, UARTTx
from sim.axi_mem import AxiMemoryPort, InterleavedMemory

DIVISOR = 4


async def wait(ctx, cycles):
    for _ in range(cycles):
        await ctx.tick()


async def uart_send(ctx, line, data, divisor, rng=None, gap=0.0):
    """Drive ``data`` on ``line`` as 8N1 frames, ``divisor`` cycles per bit; with probability
    ``gap`` a random idle time between bytes."""
    for byte in data:
        if rng is not None and rng.random() < gap:
            await wait(ctx, int(rng.integers(1, 3 * divisor)))
        for bit in [0, *(byte >> i & 1 for i in range(8)), 1]:
            ctx.set(line, bit)
            await wait(ctx, divisor)


async def uart_recv(ctx, line, divisor, out):
    """Append every 8N1 byte seen on ``line`` to ``out``; a missing stop bit is an error."""
    while True:
        *_, level = await ctx.tick().sample(line)
        if level:
            continue
        await wait(ctx, divisor // 2)        # the middle of the start bit
        assert not ctx.get(line), "start bit too short"
        byte = 0
        for i in range(8):
            await wait(ctx, divisor)
            byte |= ctx.get(line) << i
        await wait(ctx, divisor)
        assert ctx.get(line), "no stop bit"
        out.append(byte)


def test_rx_and_tx_loop_back():
    rng = np.random.default_rng(1)
    data = [int(x) for x in rng.integers(0, 256, 40)]

    rx, tx = UARTRx(5), UARTTx(5)
    m = Module()
    m.submodules.rx, m.submodules.tx = rx, tx
    got, sent = [], []

    async def drive(ctx):
        await uart_send(ctx, rx.rx, data, 5, rng, gap=0.5)

    async def pass_through(ctx):
        # received bytes go straight back out through the transmitter, with random stalls
        ctx.set(rx.o.ready, 1)
        while len(sent) < len(data):
            ctx.set(tx.i.valid, 0)
            *_, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                sent.append(payload)
                ctx.set(tx.i.payload, payload)
                ctx.set(tx.i.valid, 1)
                await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)
        while len(got) < len(data):
            await ctx.tick()

    async def listen(ctx):
        await uart_recv(ctx, tx.tx, 5, got)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(drive, background=True)
    sim.add_testbench(listen, background=True)
    sim.add_testbench(pass_through)
    sim.run()
    assert sent == data and got == data


class Registers:
    """An AXI4-Lite subordinate: 64 words at 0x000-0x0FF; other offsets answer SLVERR."""

    def __init__(self, bus, rng, stall):
        self.bus, self.rng, self.stall = bus, rng, stall
        self.regs = {}

    async def run(self, ctx):
        b = self.bus
        aw = w = bresp = r = None
        while True:
            aw_ready = aw is None and self.rng.random() >= self.stall
            w_ready = w is None and self.rng.random() >= self.stall
            ar_ready = r is None and self.rng.random() >= self.stall
            ctx.set(b.awready, aw_ready)
            ctx.set(b.wready, w_ready)
            ctx.set(b.arready, ar_ready)
            ctx.set(b.bvalid, bresp is not None)
            ctx.set(b.bresp, bresp or 0)
            ctx.set(b.rvalid, r is not None)
            ctx.set(b.rdata, r[0] if r else 0)
            ctx.set(b.rresp, r[1] if r else 0)
            (awvalid, awaddr, wvalid, wdata, wstrb, bready, arvalid, araddr,
             rready) = (await ctx.tick().sample(
                 b.awvalid, b.awaddr, b.wvalid, b.wdata, b.wstrb, b.bready, b.arvalid,
                 b.araddr, b.rready))[2:]
            if bresp is not None and bready:
                bresp = None
            if r is not None and rready:
                r = None
            if awvalid and aw_ready:
                aw = awaddr
            if wvalid and w_ready:
                assert wstrb == 0xF
                w = wdata
            if aw is not None and w is not None and bresp is None and \
                    self.rng.random() >= self.stall:
                if aw < 0x100:
                    self.regs[aw & ~3] = w
                bresp = 0 if aw < 0x100 else 2
                aw = w = None
            if arvalid and ar_ready:
                r = (self.regs.get(araddr & ~3, 0), 0) if araddr < 0x100 else (0, 2)


def frame(cmd, addr, length=0, payload=b""):
    return struct.pack("<BBIH", 0xA5, cmd, addr, length) + bytes(payload)


def model_commands(rng, size, count):
    """Random commands and the exact response each must get, from a Python model of the
    registers and the memory."""
    regs, mem = {}, np.zeros(size, np.uint8)
    out = []
    for _ in range(count):
        kind = rng.choice(["csr_w", "csr_r", "mem_w", "mem_r", "bad"], p=[.2, .2, .3, .25, .05])
        if kind == "csr_w":
            addr = int(rng.integers(0, 0x100 // 4)) * 4 if rng.random() < 0.85 else 0x104
            value = int(rng.integers(0, 1 << 32))
            if addr < 0x100:
                regs[addr] = value
            out.append((frame(1, addr, 4, value.to_bytes(4, "little")),
                        bytes([0x5A, 1, 0 if addr < 0x100 else 2])))
        elif kind == "csr_r":
            addr = int(rng.integers(0, 0x100 // 4)) * 4 if rng.random() < 0.85 else 0x1F0
            value = regs.get(addr, 0) if addr < 0x100 else 0
            out.append((frame(2, addr), bytes([0x5A, 2]) + value.to_bytes(4, "little") +
                        bytes([0 if addr < 0x100 else 2])))
        elif kind == "mem_w":
            n = int(rng.integers(0, 28))
            addr = int(rng.integers(0, size - n))
            data = rng.integers(0, 256, n, dtype=np.uint8)
            mem[addr:addr + n] = data
            out.append((frame(3, addr, n, data.tobytes()), bytes([0x5A, 3, 0])))
        elif kind == "mem_r":
            n = int(rng.integers(0, 28))
            addr = int(rng.integers(0, size - n))
            out.append((frame(4, addr, n), bytes([0x5A, 4]) + mem[addr:addr + n].tobytes() +
                        bytes([0])))
        else:
            out.append((frame(0x17, 0x1234), bytes([0x5A, 0x17, 0x80])))
    return out, regs, mem


@pytest.mark.parametrize("ports, granule, stall", [(1, 8, 0.0), (2, 8, 0.4), (2, 32, 0.2)])
def test_bridge_commands(ports, granule, stall):
    cfg = AccelConfig(name="b", mem_ports=ports, port_width=64, burst_len=4,
                      reads_in_flight=4, axi_ids=4, addr_width=20, interleave_bytes=granule)
    size = 1024
    rng = np.random.default_rng(ports)
    commands, regs, image = model_commands(rng, size, 20)
    dut = UARTBridge(cfg, divisor=DIVISOR)
    mem = InterleavedMemory(cfg, size)
    subs = [AxiMemoryPort(mem, p, getattr(dut, f"m_axi{p}"), np.random.default_rng(10 + p),
                          stall=stall, latency=(1, 6)) for p in range(ports)]
    csr = Registers(dut.m_axil, np.random.default_rng(5), stall)
    got = []

    async def host(ctx):
        # noise before the first frame is dropped while the bridge hunts for a sync byte
        await uart_send(ctx, dut.rx, b"\x00\x13", DIVISOR)
        for request, response in commands:
            start = len(got)
            await uart_send(ctx, dut.rx, request, DIVISOR, rng, gap=0.2)
            for _ in range(200 * DIVISOR * (len(response) + 4)):
                if len(got) >= start + len(response):
                    break
                await ctx.tick()
            assert bytes(got[start:]) == response, (request.hex(), bytes(got[start:]).hex())
        assert not ctx.get(dut.rx_error)

    async def listen(ctx):
        await uart_recv(ctx, dut.tx, DIVISOR, got)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for sub in subs:
        sim.add_testbench(sub.run, background=True)
    sim.add_testbench(csr.run, background=True)
    sim.add_testbench(listen, background=True)
    sim.add_testbench(host)
    sim.run()
    assert np.array_equal(mem.data, image)
    assert csr.regs == regs


def test_bad_divisor():
    cfg = AccelConfig(name="b", mem_ports=1, port_width=64, burst_len=4, reads_in_flight=4)
    with pytest.raises(ValueError, match="divisor must be an integer of at least 4"):
        UARTBridge(cfg, divisor=3)
    with pytest.raises(ValueError, match="divisor must be an integer of at least 4"):
        UARTRx(2.5)
