"""Tier 1: the scratchpad banks against a Python model, in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.config import PRESETS, AccelConfig
from hw.scratchpad import Scratchpad

CONFIGS = {
    "tiny": PRESETS["tiny"],
    "default": PRESETS["default"],
    "w16": AccelConfig(name="w16", rows=3, cols=5, in_width=8, in_signed=False, acc_width=16,
                       spad_depth=24, acc_depth=8),
    # four rows per write, into four row-interleaved sub-banks
    "x4": AccelConfig(name="x4", rows=3, cols=2, spad_depth=32, acc_depth=8, load_rows=4),
}


def lanes(cfg, bank):
    return cfg.rows if bank == "a" else cfg.cols


def random_row(rng, cfg, n):
    return [int(v) for v in rng.integers(cfg.in_min, cfg.in_max + 1, n)]


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("name", CONFIGS)
def test_random_reads_and_writes(name):
    """Both banks, both ports active at random every cycle, against a row model. Each write
    enables a random subset of its ``load_rows`` rows at any start address; addresses come half
    the time from a small pool, so reads often meet rows written just before or in the same
    cycle, and writes overlap."""
    cfg = CONFIGS[name]
    W = cfg.load_rows
    dut = Scratchpad(cfg)
    rng = np.random.default_rng(len(name))
    model = {b: [[0] * lanes(cfg, b) for _ in range(cfg.spad_depth)] for b in "ab"}
    pool = [int(a) for a in rng.integers(0, cfg.spad_depth, 3)]
    checked = {"a": 0, "b": 0}

    def addr():
        if rng.random() < 0.5:
            return pool[int(rng.integers(len(pool)))]
        return int(rng.integers(cfg.spad_depth))

    async def bench(ctx):
        held = {b: [0] * lanes(cfg, b) for b in "ab"}
        for _ in range(300):
            ops = {}
            for b in "ab":
                w, r = getattr(dut, f"{b}_write"), getattr(dut, f"{b}_read")
                n = lanes(cfg, b)
                wa, wd = addr(), [random_row(rng, cfg, n) for _ in range(W)]
                # rows past the end of the bank are never enabled
                mask = int(rng.integers(1 << W)) if rng.random() < 0.8 else 0
                mask &= (1 << min(W, cfg.spad_depth - wa)) - 1
                ra, ren = addr(), int(rng.random() < 0.8)
                ctx.set(w.addr, wa)
                ctx.set(w.data, wd)
                ctx.set(w.en, mask)
                ctx.set(r.addr, ra)
                ctx.set(r.en, ren)
                ops[b] = wa, wd, mask, ra, ren
            await ctx.tick()
            for b in "ab":
                wa, wd, mask, ra, ren = ops[b]
                r = getattr(dut, f"{b}_read")
                if ren:
                    # a read in the cycle of a write to its row sees the old contents
                    held[b] = list(model[b][ra])
                got = ctx.get(r.data)
                assert [got[k] for k in range(lanes(cfg, b))] == held[b], (b, ra)
                checked[b] += ren
                for k in range(W):
                    if mask >> k & 1:
                        model[b][wa + k] = list(wd[k])

    run(dut, bench)
    assert min(checked.values()) > 200


@pytest.mark.parametrize("name", ["tiny", "w16"])
def test_double_buffered_halves(name):
    """The load engine fills one half of each bank while the compute engine reads the other,
    one row per cycle on every port; then they swap."""
    cfg = CONFIGS[name]
    dut = Scratchpad(cfg)
    rng = np.random.default_rng(7)
    half = cfg.spad_depth // 2
    rows = {b: [random_row(rng, cfg, lanes(cfg, b)) for _ in range(2 * half)] for b in "ab"}

    async def step(ctx, write_half, read_half, i):
        for b in "ab":
            w, r = getattr(dut, f"{b}_write"), getattr(dut, f"{b}_read")
            ctx.set(w.addr, write_half * half + i)
            ctx.set(w.data, [rows[b][write_half * half + i]])
            ctx.set(w.en, 1)
            ctx.set(r.addr, read_half * half + i)
            ctx.set(r.en, 1)
        await ctx.tick()

    async def bench(ctx):
        for i in range(half):
            await step(ctx, 0, 1, i)
        for i in range(half):
            await step(ctx, 1, 0, i)
            for b in "ab":
                got = ctx.get(getattr(dut, f"{b}_read").data)
                assert [got[k] for k in range(lanes(cfg, b))] == rows[b][i], (b, i)

    run(dut, bench)


def test_port_shapes():
    cfg = CONFIGS["w16"]
    dut = Scratchpad(cfg)
    assert len(dut.a_write.en) == len(dut.b_write.en) == cfg.load_rows == 1
    assert len(dut.a_read.addr) == len(dut.b_write.addr) == 5
    x4 = Scratchpad(CONFIGS["x4"])
    assert len(x4.b_write.en) == 4 and len(x4.b_write.addr) == 5
    Fragment.get(x4, None)
    assert Scratchpad.READ_LATENCY == 1
    Fragment.get(dut, None)
