"""Tier 1: the systolic array behind its streams, in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import SystolicArray
from hw.config import AccelConfig
from sim.reference import matmul, random_operands
from sim.streams import recv, send
from sim.tiles import os_tile, ws_tile


def run_tiles(cfg, tiles, seed=0, idle=0.0, stall=0.0):
    """Stream ``(dataflow, A, B)`` tiles through the array, with idle cycles (``idle``) before
    any beat but inside a WS tile's weights, which come in consecutive cycles; return the
    result rows with the cycle each was taken in."""
    dut = SystolicArray(cfg)
    rng = np.random.default_rng(seed)
    a_beats, b_tiles = [], []
    for flow, a, b in tiles:
        ab, bb = (ws_tile if flow == "ws" else os_tile)(cfg, a, b)
        a_beats += ab
        b_tiles.append((flow, bb))
    b_count = sum(len(bb) for _, bb in b_tiles)
    total = sum(a.shape[0] for _, a, _ in tiles)
    result = {}

    async def feed_a(ctx):
        await send(ctx, dut.a, a_beats, rng, idle)

    async def feed_b(ctx):
        for flow, beats in b_tiles:
            while rng.random() < idle:
                ctx.set(dut.b.valid, 0)
                await ctx.tick()
            await send(ctx, dut.b, beats, rng, idle if flow == "os" else 0.0)

    async def drain(ctx):
        result["rows"], result["when"] = await recv(ctx, dut.c, total, rng, stall)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed_a)
    sim.add_testbench(feed_b)
    sim.add_testbench(drain)
    sim.run_until(1e-6 * (50 * (len(a_beats) + b_count) + 500))
    assert "rows" in result, "the array did not return every result row"
    return result["rows"], result["when"]


def check(cfg, tiles, rows):
    pos = 0
    for t, (_, a, b) in enumerate(tiles):
        want = matmul(a, b, cfg.acc_width)
        got = np.array([[int(v) for v in r.data][:b.shape[1]] for r in rows[pos:pos + len(a)]])
        assert np.array_equal(got, want), f"tile {t}: {got} != {want}"
        assert [r.last for r in rows[pos:pos + len(a)]] == [0] * (len(a) - 1) + [1]
        pos += len(a)


def random_tiles(cfg, rng, n, flows, max_m=12):
    tiles = []
    for _ in range(n):
        flow = flows[int(rng.integers(len(flows)))]
        if flow == "ws":
            m, k = rng.integers(1, max_m + 1), rng.integers(1, cfg.rows + 1)
        else:
            m, k = rng.integers(1, cfg.rows + 1), rng.integers(1, max_m + 1)
        n_ = rng.integers(1, cfg.cols + 1)
        tiles.append((flow, random_operands(rng, cfg, (m, k)), random_operands(rng, cfg, (k, n_))))
    return tiles


SHAPES = [(1, 1), (2, 2), (3, 4), (4, 3)]


@pytest.mark.parametrize("rows, cols", SHAPES)
@pytest.mark.parametrize("flows", [["ws"], ["os"], ["ws", "os"]], ids=["ws", "os", "mixed"])
@pytest.mark.parametrize("pressure", [0.0, 0.35], ids=["free", "backpressure"])
def test_random_tiles(rows, cols, flows, pressure):
    cfg = AccelConfig(name="t", rows=rows, cols=cols)
    rng = np.random.default_rng(rows * 100 + cols)
    tiles = random_tiles(cfg, rng, 8, flows)
    rows_, _ = run_tiles(cfg, tiles, seed=rows + cols, idle=pressure, stall=pressure)
    check(cfg, tiles, rows_)


def test_unsigned_and_narrow_accumulator():
    cfg = AccelConfig(name="u", rows=3, cols=2, in_signed=False, acc_width=16)
    rng = np.random.default_rng(5)
    tiles = random_tiles(cfg, rng, 6, ["ws", "os"])
    rows, _ = run_tiles(cfg, tiles, idle=0.2, stall=0.2)
    check(cfg, tiles, rows)


def test_ws_weight_switch_costs_no_bubble():
    cfg = AccelConfig(name="t", rows=3, cols=4)
    rng = np.random.default_rng(9)
    tiles = [("ws", random_operands(rng, cfg, (m, 3)), random_operands(rng, cfg, (3, 4)))
             for m in (5, 3, 7, 4)]
    rows, when = run_tiles(cfg, tiles)
    check(cfg, tiles, rows)
    # with M >= K the next weights load during the current tile: one result row per cycle
    assert np.all(np.diff(when) == 1), f"result cycles {when}"


def test_os_tiles_overlap_their_drain():
    cfg = AccelConfig(name="t", rows=3, cols=3)
    rng = np.random.default_rng(10)
    tiles = [("os", random_operands(rng, cfg, (3, k)), random_operands(rng, cfg, (k, 3)))
             for k in (4, 3, 5)]
    rows, when = run_tiles(cfg, tiles)
    check(cfg, tiles, rows)
    # a tile's M rows drain in the M slots after its last beat, while the next tile streams:
    # results in slots 4-6, 7-9 and 12-14 (beats in slots 0-3, 4-6 and 7-11)
    assert np.diff(when).tolist() == [1, 1, 1, 1, 1, 3, 1, 1]


def test_ws_after_os_waits_for_the_drain():
    # A one-row weight tile loads at once, so the WS rows would reach the partial-sum
    # column while the OS results still drain through it, unless the array holds them back.
    cfg = AccelConfig(name="t", rows=4, cols=3)
    rng = np.random.default_rng(11)
    tiles = [("os", random_operands(rng, cfg, (4, 2)), random_operands(rng, cfg, (2, 3))),
             ("ws", random_operands(rng, cfg, (6, 1)), random_operands(rng, cfg, (1, 3))),
             ("os", random_operands(rng, cfg, (4, 1)), random_operands(rng, cfg, (1, 3))),
             ("ws", random_operands(rng, cfg, (3, 1)), random_operands(rng, cfg, (1, 2)))]
    rows, _ = run_tiles(cfg, tiles)
    check(cfg, tiles, rows)
