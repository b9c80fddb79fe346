"""Tier 1: the skid buffer passes every payload once, in order, at one per cycle."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.skid import SkidBuffer
from sim.streams import recv, send


def run(beats, seed=0, idle=0.0, stall=0.0):
    dut = SkidBuffer(16)
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


@pytest.mark.parametrize("idle, stall", [(0.0, 0.5), (0.5, 0.0), (0.3, 0.3), (0.0, 0.8)])
def test_every_payload_once_in_order(idle, stall):
    beats = [int(v) for v in np.random.default_rng(1).integers(0, 1 << 16, 300)]
    got, _ = run(beats, seed=int(10 * idle + 100 * stall), idle=idle, stall=stall)
    assert got == beats


def test_one_per_cycle_one_cycle_late():
    beats = list(range(40))
    got, when = run(beats)
    assert got == beats
    # recv counts from cycle 0, the cycle the first payload is offered
    assert when == list(range(1, 41)), when
