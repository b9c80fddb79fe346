"""Tier 1: the accumulator memory against a Python model, in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.accumulator import Accumulator
from hw.config import PRESETS, AccelConfig
from sim.streams import send

CONFIGS = {
    "tiny": PRESETS["tiny"],
    "default": PRESETS["default"],
    "w16": AccelConfig(name="w16", rows=2, cols=3, in_width=8, acc_width=16, spad_depth=16,
                       acc_depth=24),
}


def wrap(x, width):
    x &= (1 << width) - 1
    return x - (1 << width) if x >> (width - 1) else x


class Model:
    """The accumulator rows as Python integers."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.rows = [[0] * cfg.cols for _ in range(cfg.acc_depth)]

    def result(self, beat):
        row = self.rows[beat["addr"]]
        for j in range(self.cfg.cols):
            if beat["mask"] >> j & 1:
                old = row[j] if beat["accumulate"] else 0
                row[j] = wrap(old + beat["data"][j], self.cfg.acc_width)

    def load(self, addr, values, mask):
        for j in range(self.cfg.cols):
            if mask >> j & 1:
                self.rows[addr][j] = values[j]


def random_values(rng, cfg):
    """A row of accumulator values, a third of them at or next to the limits, so that sums
    wrap both ways."""
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    edge = [lo, lo + 1, hi - 1, hi, -1, 1]
    return [edge[int(rng.integers(len(edge)))] if rng.random() < 0.35
            else int(rng.integers(lo, hi + 1)) for _ in range(cfg.cols)]


def random_beats(rng, cfg, pattern, n, rows):
    """``n`` result rows into the accumulator rows ``rows``: ``same`` hits one row back to back,
    ``alternate`` two rows in turn, ``rotate`` three rows in turn (so, back to back, each beat
    reads the row the beat one, two or three before it wrote), ``random`` a few hot rows and
    any other."""
    if pattern == "same":
        addrs = [rows[0]] * n
    elif pattern == "alternate":
        addrs = [rows[i % 2] for i in range(n)]
    elif pattern == "rotate":
        addrs = [rows[i % 3] for i in range(n)]
    else:
        hot = rows[:3]
        addrs = [hot[int(rng.integers(3))] if rng.random() < 0.6
                 else rows[int(rng.integers(len(rows)))] for _ in range(n)]
    full = (1 << cfg.cols) - 1
    return [{"data": random_values(rng, cfg), "addr": a,
             "accumulate": int(rng.random() < 0.8),
             "mask": full if rng.random() < 0.5 else int(rng.integers(full + 1))}
            for a in addrs]


def row_of(ctx, port, cols):
    got = ctx.get(port.data)
    return [got[j] for j in range(cols)]


async def read_all(ctx, dut, cfg):
    """Every row through the STORE port, one read per cycle."""
    rows = []
    ctx.set(dut.store.en, 1)
    for addr in range(cfg.acc_depth):
        ctx.set(dut.store.addr, addr)
        await ctx.tick()
        rows.append(row_of(ctx, dut.store, cfg.cols))
    return rows


def run(dut, *benches, cycles=None):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in benches:
        sim.add_testbench(bench, background=bench is not benches[0])
    if cycles is None:
        sim.run()
    else:
        sim.run_until(cycles * 1e-6)


def run_sequence(cfg, beats, loads=(), seed=0, idle=0.0, load_rate=0.0):
    """Send ``beats`` into the result input while a LOAD writer, with probability
    ``load_rate`` per cycle, writes the rows ``loads`` (address, values, mask) in order, and
    in some of the other cycles raises ``loading`` without writing. Returns the rows read back
    at the end and the cycles in which beats were accepted."""
    dut = Accumulator(cfg)
    rng = np.random.default_rng(seed)
    out = {}
    accepted = []

    async def main(ctx):
        await send(ctx, dut.i, beats, rng, idle)
        while ctx.get(dut.busy) or (loads and not out.get("loads_done")):
            await ctx.tick()
        out["rows"] = await read_all(ctx, dut, cfg)

    async def loader(ctx):
        pending = list(loads)
        while pending:
            if rng.random() < load_rate:
                addr, values, mask = pending.pop(0)
                ctx.set(dut.load.addr, addr)
                ctx.set(dut.load.data, values)
                ctx.set(dut.load.en, mask)
                ctx.set(dut.loading, 1)
            else:
                ctx.set(dut.load.en, 0)
                ctx.set(dut.loading, rng.random() < load_rate / 2)
            await ctx.tick()
        ctx.set(dut.load.en, 0)
        ctx.set(dut.loading, 0)
        out["loads_done"] = True

    async def monitor(ctx):
        cycle = 0
        async for _, _, valid, ready, loading in ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.loading):
            # LOAD wins the shared write port: results stall exactly while it may write
            assert ready == (not loading)
            if valid and ready:
                accepted.append(cycle)
            cycle += 1

    run(dut, main, loader, monitor)
    return out["rows"], accepted


PATTERNS = ["same", "alternate", "rotate", "random"]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_back_to_back(name, pattern):
    """One row per cycle, whatever the addresses: the read-modify-write forwards the results
    still in flight to a row that reads the same address before they are written."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(PATTERNS.index(pattern))
    rows = [int(a) for a in rng.permutation(cfg.acc_depth)[:8]]
    beats = random_beats(rng, cfg, pattern, 60, rows)
    got, accepted = run_sequence(cfg, beats)
    model = Model(cfg)
    for beat in beats:
        model.result(beat)
    assert got == model.rows
    assert accepted == list(range(accepted[0], accepted[0] + len(beats)))


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("idle", [0.0, 0.3], ids=["dense", "gaps"])
def test_with_idle_and_loads(name, pattern, idle):
    """Result rows back to back or with random gaps, while LOAD writes other rows at random
    and stalls them, holding the rows in flight at every distance from each other."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(10 + PATTERNS.index(pattern) + int(idle * 100))
    perm = [int(a) for a in rng.permutation(cfg.acc_depth)]
    # LOAD and MATMUL must not write the same rows at overlapping times
    result_rows, load_rows = perm[:6], perm[6:12]
    beats = random_beats(rng, cfg, pattern, 60, result_rows)
    loads = [(load_rows[int(rng.integers(len(load_rows)))], random_values(rng, cfg),
              int(rng.integers(1, 1 << cfg.cols))) for _ in range(40)]
    got, _ = run_sequence(cfg, beats, loads, seed=3, idle=idle, load_rate=0.4)
    model = Model(cfg)
    for beat in beats:
        model.result(beat)
    for load in loads:
        model.load(*load)
    assert got == model.rows


@pytest.mark.parametrize("name", ["tiny", "w16"])
def test_wrap_around(name):
    """Sums wrap modulo 2**acc_width past both limits, in every column."""
    cfg = CONFIGS[name]
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    full = (1 << cfg.cols) - 1
    seq = [(hi, 0), (1, 1), (-1, 1), (-1, 1), (lo, 1), (lo, 1), (hi, 0), (hi, 1), (2, 1)]
    beats = [{"data": [v] * cfg.cols, "addr": 1, "accumulate": acc, "mask": full}
             for v, acc in seq]
    got, _ = run_sequence(cfg, beats)
    model = Model(cfg)
    values = []
    for beat in beats:
        model.result(beat)
        values.append(model.rows[1][0])
    # the model itself is checked here, since the hardware is checked against it
    assert values == [hi, lo, hi, hi - 1, -2, hi - 1, hi, -2, 0]
    assert got == model.rows


def test_load_wins_and_results_stall():
    """A LOAD write in the cycle a result row is offered takes the write port; the result row
    waits a cycle and then accumulates onto the row as the LOAD left it."""
    cfg = CONFIGS["w16"]
    dut = Accumulator(cfg)
    full = (1 << cfg.cols) - 1
    out = {}

    async def bench(ctx):
        ctx.set(dut.i.payload, {"data": [5] * cfg.cols, "addr": 2, "accumulate": 1, "mask": full})
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.load.addr, 2)
        ctx.set(dut.load.data, [100, 200, 300])
        ctx.set(dut.load.en, 0b101)
        ctx.set(dut.loading, 1)
        assert not ctx.get(dut.i.ready)
        await ctx.tick()
        ctx.set(dut.load.en, 0)
        ctx.set(dut.loading, 0)
        assert ctx.get(dut.i.ready)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        out["rows"] = await read_all(ctx, dut, cfg)

    run(dut, bench)
    assert out["rows"][2] == [105, 5, 305]


@pytest.mark.parametrize("hold_len", [1, 2])
@pytest.mark.parametrize("hold_at", range(6))
def test_load_hold_keeps_forwarding(hold_at, hold_len):
    """LOAD writes another row for ``hold_len`` cycles from cycle ``hold_at`` while four
    results to one row, with partial masks, are offered back to back: the hold must lose none
    of the values forwarded between them, wherever it falls. Each row is written (``written``)
    in the second cycle after its acceptance in which the pipeline advances, and ``busy``
    stays high until the last is."""
    cfg = CONFIGS["tiny"]
    dut = Accumulator(cfg)
    beats = [{"data": data, "addr": 7, "accumulate": 1, "mask": mask}
             for data, mask in [([3, 4], 0b11), ([5, -6], 0b01), ([-7, 8], 0b11),
                                ([1, 1], 0b10)]]
    out = {}
    log = []

    async def main(ctx):
        await send(ctx, dut.i, beats)
        while ctx.get(dut.busy):
            await ctx.tick()
        out["rows"] = await read_all(ctx, dut, cfg)

    async def loader(ctx):
        ctx.set(dut.load.addr, 9)
        ctx.set(dut.load.data, [-1, -2])
        for cycle in range(hold_at + hold_len):
            ctx.set(dut.load.en, 0b11 if cycle >= hold_at else 0)
            ctx.set(dut.loading, cycle >= hold_at)
            await ctx.tick()
        ctx.set(dut.load.en, 0)
        ctx.set(dut.loading, 0)

    async def monitor(ctx):
        async for _, _, valid, ready, written, busy in ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.written, dut.busy):
            log.append((valid and ready, ready, written, busy))

    run(dut, main, loader, monitor)
    model = Model(cfg)
    for beat in beats:
        model.result(beat)
    model.load(9, [-1, -2], 0b11)
    assert model.rows[7] == [1, 13]          # the model, checked by hand
    assert out["rows"] == model.rows
    fired = [c for c, (fire, *_) in enumerate(log) if fire]
    written = [[c for c in range(t + 1, len(log)) if log[c][1]][1] for t in fired]
    assert [c for c, (_, _, w, _) in enumerate(log) if w] == written
    assert [busy for *_, busy in log[fired[-1] + 1:written[-1] + 2]] == \
        [1] * (written[-1] - fired[-1]) + [0]


def test_latencies():
    """A result accepted in cycle t is readable by a read issued in cycle t + 3, and a read
    issued in cycle t + 2, while it is written, returns the old value; the read port answers
    one cycle later and holds its data while ``en`` is low."""
    cfg = CONFIGS["tiny"]
    dut = Accumulator(cfg)

    async def bench(ctx):
        ctx.set(dut.store.addr, 4)
        ctx.set(dut.store.en, 1)
        ctx.set(dut.i.payload, {"data": [-7, 9], "addr": 4, "accumulate": 0, "mask": 0b11})
        ctx.set(dut.i.valid, 1)
        assert ctx.get(dut.i.ready)
        await ctx.tick()                        # accepted in cycle t; now t + 1
        ctx.set(dut.i.valid, 0)
        for k in range(1, 4):                   # the reads of cycles t .. t + 2
            assert ctx.get(dut.busy) == (k < 3)
            assert ctx.get(dut.written) == (k == 2)
            assert row_of(ctx, dut.store, 2) == [0, 0]
            await ctx.tick()
        assert not ctx.get(dut.busy)            # t + 4: the read of t + 3 sees it
        assert row_of(ctx, dut.store, 2) == [-7, 9]
        ctx.set(dut.store.en, 0)
        ctx.set(dut.store.addr, 0)
        await ctx.tick()
        assert row_of(ctx, dut.store, 2) == [-7, 9]
        ctx.set(dut.store.en, 1)
        await ctx.tick()
        assert row_of(ctx, dut.store, 2) == [0, 0]

    run(dut, bench)
    assert Accumulator.READ_LATENCY == 1 and Accumulator.WRITE_LATENCY == 3
