"""Tier 1: the realigner moves every row's bytes from source to destination alignment."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import AccelConfig
from hw.realign import Realigner
from sim.streams import recv, send
from sim.transfers import beats, stripes


def run_copies(cfg, copies, memory, rng, pressure):
    """Realigns ``copies`` of ``memory`` and checks every output stripe; returns the cycle
    each was taken in."""
    S = cfg.stripe_bytes
    beats_in, want = [], []
    for copy in copies:
        rows, row_bytes = copy["rows"], copy["row_bytes"]
        src = {"addr": copy["src"], "rows": rows, "row_bytes": row_bytes,
               "stride": copy["src_stride"]}
        dst = {"addr": copy["dst"], "rows": rows, "row_bytes": row_bytes,
               "stride": copy["dst_stride"]}
        beats_in += beats(memory, src, S)
        for r in range(rows):
            row = memory[copy["src"] + r * copy["src_stride"]:][:row_bytes]
            start = copy["dst"] + r * copy["dst_stride"]
            for s, lo, hi, last, end in stripes({**dst, "addr": start, "rows": 1}, S):
                off = s * S + lo - start
                want.append((bytes(row[off:off + hi - lo]), lo, hi, last,
                             end and r == rows - 1))

    dut = Realigner(cfg)
    got = {}

    async def feed_desc(ctx):
        await send(ctx, dut.desc, copies, rng, pressure)

    async def feed(ctx):
        await send(ctx, dut.i, beats_in, rng, pressure)

    async def take(ctx):
        got["o"], got["when"] = await recv(ctx, dut.o, len(want), rng, pressure)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed_desc)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run()
    for i, (beat, (raw, lo, hi, last, end)) in enumerate(zip(got["o"], want, strict=True)):
        data = int(beat.data).to_bytes(S, "little")
        assert data[lo:hi] == raw, f"stripe {i}"
        assert int(beat.mask) == (1 << hi) - (1 << lo), f"stripe {i} mask"
        assert (beat.last, beat.end) == (last, end), f"stripe {i} flags"
    return got["when"]


@pytest.mark.parametrize("ports", [1, 2, 4])
@pytest.mark.parametrize("pressure", [0.0, 0.3])
def test_random_copies(ports, pressure):
    cfg = AccelConfig(name="r", mem_ports=ports, port_width=64, addr_width=20)
    S = cfg.stripe_bytes
    rng = np.random.default_rng(ports * 5 + int(10 * pressure))
    memory = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
    copies = []
    for _ in range(8):
        rows = int(rng.integers(1, 4))
        row_bytes = int(rng.integers(1, 4 * S))
        copies.append({"src": int(rng.integers(0, 20000)), "dst": int(rng.integers(0, 20000)),
                       "rows": rows, "row_bytes": row_bytes,
                       "src_stride": row_bytes + int(rng.integers(0, 100)),
                       "dst_stride": row_bytes + int(rng.integers(0, 100))})
    run_copies(cfg, copies, memory, rng, pressure)


@pytest.mark.parametrize("ports", [1, 4])
def test_copies_back_to_back(ports):
    """Copies without a shift (source and destination at the same offset in a stripe), all
    offered ahead: a stripe out in every cycle, from one copy to the next too."""
    cfg = AccelConfig(name="r", mem_ports=ports, port_width=64, addr_width=20)
    S = cfg.stripe_bytes
    rng = np.random.default_rng(40 + ports)
    memory = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
    copies = []
    for _ in range(12):
        row_bytes = int(rng.choice([1, S, 2 * S + 3]))
        off = int(rng.integers(0, S))
        copies.append({"src": int(rng.integers(0, 200)) * S + off,
                       "dst": int(rng.integers(0, 200)) * S + off, "rows": 1,
                       "row_bytes": row_bytes, "src_stride": row_bytes,
                       "dst_stride": row_bytes})
    when = run_copies(cfg, copies, memory, None, 0.0)
    assert when == list(range(when[0], when[0] + len(when)))


def test_ready_does_not_wait_for_valid():
    """Waiting for a stripe it can take, the realigner is ready whether one is offered or
    not: its ready does not depend on the producer's valid."""
    cfg = AccelConfig(name="r", mem_ports=1, port_width=64, addr_width=20)
    dut = Realigner(cfg)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.desc.payload, {"src": 3, "dst": 5, "rows": 2, "row_bytes": 20,
                                   "src_stride": 20, "dst_stride": 20})
        ctx.set(dut.desc.valid, 1)
        await ctx.tick().until(dut.desc.ready)
        ctx.set(dut.desc.valid, 0)
        for _ in range(4):
            await ctx.tick()
            seen.append(ctx.get(dut.i.ready))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1, 1, 1, 1], seen
