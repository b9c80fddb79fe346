"""Tier 1: the serial harness drives a block's inputs and reads its outputs through five pins."""

import numpy as np
from amaranth import *
from amaranth.back import rtlil
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.config import PRESETS
from hw.load_engine import LoadEngine
from hw.serial_harness import SerialHarness


class _Adder(wiring.Component):
    """y = a + b, registered; an always-ready stream whose ``ready`` is a constant."""

    a: In(8)
    b: In(8)
    events: In(stream.Signature(4, always_ready=True))
    y: Out(9)
    seen: Out(4)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a + self.b)
        with m.If(self.events.valid):
            m.d.sync += self.seen.eq(self.events.payload)
        return m


def test_inputs_in_outputs_out():
    dut = SerialHarness(_Adder())
    rng = np.random.default_rng(5)
    cases = [tuple(int(v) for v in rng.integers(0, 256, 2)) + (int(rng.integers(0, 16)),)
             for _ in range(6)]
    got = []

    async def bench(ctx):
        async def shift(bits):
            out = []
            for bit in bits:
                ctx.set(dut.sin, bit)
                ctx.set(dut.shift, 1)
                out.append(ctx.get(dut.sout))
                await ctx.tick()
            ctx.set(dut.shift, 0)
            return out

        async def apply():
            ctx.set(dut.apply, 1)
            await ctx.tick()
            ctx.set(dut.apply, 0)
            await ctx.tick()            # the block's output register takes the new inputs

        # input order: a, b, events.payload, events.valid (ready is fixed by the signature)
        for a, b, ev in cases:
            word = a | b << 8 | ev << 16 | 1 << 20
            await shift([(word >> i) & 1 for i in range(21)])
            await apply()
            await apply()               # capture the outputs of these inputs
            bits = await shift([0] * 13)
            value = sum(bit << i for i, bit in enumerate(bits))
            got.append((value & 0x1FF, value >> 9))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(a + b, ev) for a, b, ev in cases]


def test_wraps_an_engine_with_always_ready_streams():
    """The load engine's status and retire streams fix some ports; the harness skips them."""
    text = rtlil.convert(SerialHarness(LoadEngine(PRESETS["tiny"])))
    assert "sout" in text
