"""cocotb testbench of the generated systolic array: random tiles against numpy.

Knobs (environment): ``TB_SEED``, ``TB_TILES`` (tiles per test), ``TB_MAX_M`` (largest M of a
weight-stationary tile).
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hw.array import ALayout, BLayout, CLayout, Dataflow
from hw.pe import ProcessingElement
from sim.reference import matmul, random_operands
from sim.tiles import os_tile, ws_tile
from sim.toolchain import load_config

__all__ = ["ArrayBench", "random_ws_tile", "random_os_tile"]


def _pack(layout, beats):
    return [layout.const(b).as_value().value for b in beats]


class ArrayBench:
    """Drives the A and B streams and drains C in one coroutine, one wake-up per cycle.

    Valid is held with a stable payload until ready (stream rules); ``idle`` is the chance
    of an idle cycle before a beat (but inside a WS tile's weights, which come in consecutive
    cycles), ``stall`` the chance of ready low on C in a cycle.
    """

    def __init__(self, dut, cfg, rng, idle=0.0, stall=0.0):
        self.dut, self.cfg, self.rng = dut, cfg, rng
        self.idle, self.stall = idle, stall
        self.c_layout = CLayout(cfg)

    async def reset(self):
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        dut.a_valid.value = 0
        dut.b_valid.value = 0
        dut.c_ready.value = 0
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    async def run(self, a_beats, b_beats, n_out, timeout=None):
        """Stream the beats; return the result rows as ``(cycle, data, last)`` and the cycles
        at which the A and B beats were accepted (cycle 0 is the first cycle of the run)."""
        dut, rng = self.dut, self.rng
        a_bits = _pack(ALayout(self.cfg), a_beats)
        b_bits = _pack(BLayout(self.cfg), b_beats)
        # a B beat may wait unless it continues a WS tile's weights
        b_may_wait = [i == 0 or b_beats[i]["mode"] == Dataflow.OS or b_beats[i - 1]["last"]
                      for i in range(len(b_beats))]
        timeout = timeout or 50 * (len(a_bits) + len(b_bits) + n_out) + 1000
        ai = bi = 0
        a_on = b_on = False
        out, a_when, b_when = [], [], []
        cycle = 0
        while len(out) < n_out or ai < len(a_bits) or bi < len(b_bits):
            if cycle > timeout:
                raise AssertionError(
                    f"timeout after {cycle} cycles: {ai}/{len(a_bits)} A beats, "
                    f"{bi}/{len(b_bits)} B beats, {len(out)}/{n_out} results")
            if not a_on and ai < len(a_bits) and rng.random() >= self.idle:
                dut.a_payload.value = a_bits[ai]
                a_on = True
            if not b_on and bi < len(b_bits) and \
                    (not b_may_wait[bi] or rng.random() >= self.idle):
                dut.b_payload.value = b_bits[bi]
                b_on = True
            dut.a_valid.value = a_on
            dut.b_valid.value = b_on
            c_ready = rng.random() >= self.stall
            dut.c_ready.value = c_ready
            await ReadOnly()
            if a_on and dut.a_ready.value:
                a_when.append(cycle)
                ai += 1
                a_on = False
            if b_on and dut.b_ready.value:
                b_when.append(cycle)
                bi += 1
                b_on = False
            if c_ready and dut.c_valid.value:
                if len(out) >= n_out:
                    raise AssertionError(f"unexpected result row at cycle {cycle}")
                row = self.c_layout.from_bits(dut.c_payload.value.to_unsigned())
                out.append((cycle, [int(v) for v in row.data], int(row.last)))
            await RisingEdge(dut.clk)
            cycle += 1
        return out, a_when, b_when


def random_ws_tile(rng, cfg, max_m):
    m = int(rng.integers(1, max_m, endpoint=True))
    k = int(rng.integers(1, cfg.rows, endpoint=True))
    n = int(rng.integers(1, cfg.cols, endpoint=True))
    return random_operands(rng, cfg, (m, k)), random_operands(rng, cfg, (k, n))


def random_os_tile(rng, cfg, max_k):
    m = int(rng.integers(1, cfg.rows, endpoint=True))
    k = int(rng.integers(1, max_k, endpoint=True))
    n = int(rng.integers(1, cfg.cols, endpoint=True))
    return random_operands(rng, cfg, (m, k)), random_operands(rng, cfg, (k, n))


def check(cfg, tiles, out):
    """Compare result rows against numpy, tile by tile, ``last`` flags included."""
    assert len(out) == sum(a.shape[0] for a, _ in tiles), "result row count"
    pos = 0
    for t, (a, b) in enumerate(tiles):
        want = matmul(a, b, cfg.acc_width)
        got = np.array([data[:b.shape[1]] for _, data, _ in out[pos:pos + a.shape[0]]])
        lasts = [last for _, _, last in out[pos:pos + a.shape[0]]]
        assert np.array_equal(got, want), f"tile {t} ({a.shape} @ {b.shape}):\n{got}\n!=\n{want}"
        assert lasts == [0] * (a.shape[0] - 1) + [1], f"tile {t}: last flags {lasts}"
        pos += a.shape[0]


def _settings():
    seed = int(os.environ.get("TB_SEED", "1"))
    return (np.random.default_rng(seed), int(os.environ.get("TB_TILES", "12")),
            int(os.environ.get("TB_MAX_M", "200")))


async def _random_tiles(dut, kinds, idle, stall):
    cfg = load_config()
    rng, n_tiles, max_m = _settings()
    tiles, a_beats, b_beats = [], [], []
    for _ in range(n_tiles):
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "ws":
            a, b = random_ws_tile(rng, cfg, max_m)
            ab, bb = ws_tile(cfg, a, b)
        else:
            a, b = random_os_tile(rng, cfg, max_m)
            ab, bb = os_tile(cfg, a, b)
        tiles.append((a, b))
        a_beats += ab
        b_beats += bb
    bench = ArrayBench(dut, cfg, rng, idle=idle, stall=stall)
    await bench.reset()
    out, _, _ = await bench.run(a_beats, b_beats, sum(a.shape[0] for a, _ in tiles))
    check(cfg, tiles, out)


@cocotb.test()
async def ws_random(dut):
    """Weight-stationary tiles (K <= rows, N <= cols, M up to TB_MAX_M), no gaps."""
    await _random_tiles(dut, ["ws"], 0.0, 0.0)


@cocotb.test()
async def ws_random_backpressure(dut):
    """Weight-stationary tiles with random input gaps and random result backpressure."""
    await _random_tiles(dut, ["ws"], 0.3, 0.3)


@cocotb.test()
async def os_random_backpressure(dut):
    """Output-stationary tiles (M <= rows, N <= cols, any K) with gaps and backpressure."""
    await _random_tiles(dut, ["os"], 0.3, 0.3)


@cocotb.test()
async def mixed_dataflows_backpressure(dut):
    """Weight- and output-stationary tiles interleaved, chosen per tile at run time."""
    await _random_tiles(dut, ["ws", "os"], 0.2, 0.4)


@cocotb.test()
async def ws_back_to_back_timing(dut):
    """Back-to-back weight-stationary tiles with full weight tiles: a tile starts in the cycle
    after its first weight row, or once the tile before it has had its M rows; the weights of
    a tile load once those of the tile before are all in and that tile has started. Tile i
    thus starts max(M_i, rows) cycles after tile i-1 (M_i cycles once M_i >= rows: no bubble
    at the weight switch), or sooner after a short tile that left the weights ahead, and each
    result leaves rows + cols + PSUM_DELAY + 1 cycles after its A row entered (the input
    register, a cycle per PE row and column, the PE's product registers, and the result
    buffer)."""
    cfg = load_config()
    rng, n_tiles, max_m = _settings()
    ms = [int(m) for m in rng.integers(1, max_m, size=n_tiles, endpoint=True)]
    ms[1:3] = [cfg.rows, 1]             # the edge cases: M == K and M == 1
    tiles, a_beats, b_beats = [], [], []
    for m in ms:
        a = random_operands(rng, cfg, (m, cfg.rows))
        b = random_operands(rng, cfg, (cfg.rows, cfg.cols))
        ab, bb = ws_tile(cfg, a, b)
        tiles.append((a, b))
        a_beats += ab
        b_beats += bb
    bench = ArrayBench(dut, cfg, rng)
    await bench.reset()
    out, a_when, b_when = await bench.run(a_beats, b_beats, sum(ms))
    check(cfg, tiles, out)

    # Expected schedule: the weights of tile i load from max(the end of tile i-1's weights,
    # a cycle after tile i-1 started); tile i starts a cycle after its first weight row, and
    # not before tile i-1 has had its rows.
    load, start = [b_when[0]], [b_when[0] + 1]
    for i in range(1, len(ms)):
        load.append(max(load[-1] + cfg.rows, start[-1] + 1))
        start.append(max(start[-1] + ms[i - 1], load[-1] + 1))
    firsts = np.cumsum([0] + ms[:-1])
    got_load = [b_when[i * cfg.rows] for i in range(len(ms))]
    assert got_load == load, f"weight load cycles {got_load}, expected {load}"
    got_start = [a_when[f] for f in firsts]
    assert got_start == start, f"tile start cycles {got_start}, expected {start}"
    got_out = [out[f][0] for f in firsts]
    want_out = [s + cfg.rows + cfg.cols + ProcessingElement.PSUM_DELAY + 1 for s in start]
    assert got_out == want_out, f"first result cycles {got_out}, expected {want_out}"
    for i, m in enumerate(ms[:-1]):
        assert start[i + 1] - start[i] <= max(m, cfg.rows)
        if m >= cfg.rows:
            assert start[i + 1] - start[i] == m
    dut._log.info("%d tiles, %d rows in %d cycles", len(ms), sum(ms), out[-1][0] - b_when[0] + 1)


@cocotb.test()
async def demo_stream(dut):
    """One weight-stationary tile of TB_DEMO_M rows (default 128) on a full weight tile, no
    stalls; writes cycles and utilization to the JSON file named by TB_DEMO_OUT, if set."""
    cfg = load_config()
    rng = np.random.default_rng(int(os.environ.get("TB_SEED", "1")))
    m = int(os.environ.get("TB_DEMO_M", "128"))
    a = random_operands(rng, cfg, (m, cfg.rows))
    b = random_operands(rng, cfg, (cfg.rows, cfg.cols))
    a_beats, b_beats = ws_tile(cfg, a, b)
    bench = ArrayBench(dut, cfg, rng)
    await bench.reset()
    out, a_when, b_when = await bench.run(a_beats, b_beats, m)
    check(cfg, [(a, b)], out)
    cycles = out[-1][0] - b_when[0] + 1
    stream_cycles = out[-1][0] - out[0][0] + 1
    report = {
        "config": cfg.name, "rows": cfg.rows, "cols": cfg.cols, "m": m,
        "macs": int(m * cfg.rows * cfg.cols), "cycles": cycles,
        "utilization": m * cfg.rows * cfg.cols / (cycles * cfg.macs),
        "stream_cycles": stream_cycles, "stream_utilization": m / stream_cycles,
        "max_abs_error": int(np.max(np.abs(
            np.array([d[:cfg.cols] for _, d, _ in out]) - matmul(a, b, cfg.acc_width)))),
    }
    if "TB_DEMO_OUT" in os.environ:
        with open(os.environ["TB_DEMO_OUT"], "w") as f:
            json.dump(report, f, indent=2)
