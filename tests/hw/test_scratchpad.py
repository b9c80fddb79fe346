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
    """Both banks, both ports active at random every cycle, against a row model. Addresses
    come half the time from a small pool, so reads often meet rows written just before or in
    the same cycle, and partial writes overlap."""
    cfg = CONFIGS[name]
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
                wa, wd = addr(), random_row(rng, cfg, n)
                mask = int(rng.integers(1 << n)) if rng.random() < 0.8 else 0
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
                for k in range(lanes(cfg, b)):
                    if mask >> k & 1:
                        model[b][wa][k] = wd[k]

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
            ctx.set(w.data, rows[b][write_half * half + i])
            ctx.set(w.en, (1 << lanes(cfg, b)) - 1)
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


def test_partial_row_writes():
    """A row assembled from writes with disjoint masks (an edge tile, zero-padded lanes)."""
    cfg = CONFIGS["default"]
    dut = Scratchpad(cfg)

    async def bench(ctx):
        for k in range(cfg.rows):
            ctx.set(dut.a_write.addr, 5)
            ctx.set(dut.a_write.data, [k - 3] * cfg.rows)
            ctx.set(dut.a_write.en, 1 << k)
            await ctx.tick()
        ctx.set(dut.a_write.en, 0b11)           # two lanes overwritten, the rest kept
        ctx.set(dut.a_write.data, [0] * cfg.rows)
        await ctx.tick()
        ctx.set(dut.a_write.en, 0)
        ctx.set(dut.a_read.addr, 5)
        await ctx.tick()
        got = ctx.get(dut.a_read.data)
        assert [got[k] for k in range(cfg.rows)] == [0, 0] + [k - 3 for k in range(2, cfg.rows)]

    run(dut, bench)


def test_port_shapes():
    cfg = CONFIGS["w16"]
    dut = Scratchpad(cfg)
    assert len(dut.a_write.en) == cfg.rows and len(dut.b_write.en) == cfg.cols
    assert len(dut.a_read.addr) == len(dut.b_write.addr) == 5
    assert Scratchpad.READ_LATENCY == 1
    Fragment.get(dut, None)
