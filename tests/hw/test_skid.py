"""Tier 1: the skid buffer passes every payload once, in order, at one per cycle, a cycle
late or (``latency=0``) in the same cycle."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.skid import SkidBuffer
from sim.streams import recv, send


def run(beats, seed=0, idle=0.0, stall=0.0, latency=1):
    dut = SkidBuffer(16, latency=latency)
    rng = np.random.default_rng(seed)
    result = {}

    async def feed(ctx):
        await send(ctx, dut.i, beats, rng, idle)

    async def drain(ctx):
        result["got"], result["when"] = await recv(ctx, dut.o, len(beats), rng, stall)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run_until(1e-6 * (10 * len(beats) + 20))
    assert "got" in result, "not every payload came out"
    return result["got"], result["when"]


@pytest.mark.parametrize("latency", [0, 1])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.5), (0.5, 0.0), (0.3, 0.3), (0.0, 0.8)])
def test_every_payload_once_in_order(idle, stall, latency):
    beats = [int(v) for v in np.random.default_rng(1).integers(0, 1 << 16, 300)]
    got, _ = run(beats, seed=int(10 * idle + 100 * stall), idle=idle, stall=stall,
                 latency=latency)
    assert got == beats


def test_one_per_cycle_one_cycle_late():
    beats = list(range(40))
    got, when = run(beats)
    assert got == beats
    # recv counts from cycle 0, the cycle the first payload is offered
    assert when == list(range(1, 41)), when


def test_fall_through_one_per_cycle_same_cycle():
    beats = list(range(40))
    got, when = run(beats, latency=0)
    assert got == beats
    assert when == list(range(40)), when


def test_fall_through_ready_from_a_register():
    # the producer's ready does not follow the consumer's ready in the same cycle
    dut = SkidBuffer(8, latency=0)

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.i.ready) == 0          # two kept, the consumer still waits
        ctx.set(dut.o.ready, 1)
        assert ctx.get(dut.i.ready) == 0          # not in the same cycle
        await ctx.tick()
        assert ctx.get(dut.i.ready) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_latency_is_checked():
    with pytest.raises(ValueError, match="latency must be 0 or 1, not 2"):
        SkidBuffer(8, latency=2)
