"""Tier 1: the compute engine with a scratchpad and an accumulator, in Amaranth's simulator,
against a numpy model of MATMUL."""

import numpy as np
import pytest
from amaranth import *
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.accumulator import Accumulator
from hw.array import Dataflow
from hw.compute_engine import ComputeEngine
from hw.config import AccelConfig
from hw.isa import Opcode, validate
from hw.scratchpad import Scratchpad
from sim.reference import random_operands, wrap
from sim.streams import send


def small(name, rows, cols, **kw):
    return AccelConfig(name=name, rows=rows, cols=cols, spad_depth=32, acc_depth=32,
                       mem_ports=1, port_width=64, addr_width=20, **kw)


CONFIGS = {
    "3x4": small("c3x4", 3, 4),
    "2x2": small("c2x2", 2, 2),
    "4x3": small("c4x3", 4, 3, load_rows=4),      # its operands from four sub-banks
    "4x3u16": small("c4x3u16", 4, 3, in_signed=False, acc_width=16),
}


class Harness(Elaboratable):
    """The compute engine between a scratchpad and an accumulator. ``acc_stall`` withholds
    the engine's result stream from the accumulator (valid and ready low) for a cycle."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.engine = ComputeEngine(cfg)
        self.spad = Scratchpad(cfg)
        self.accum = Accumulator(cfg)
        self.acc_stall = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.spad = spad = self.spad
        m.submodules.accum = acc = self.accum
        wiring.connect(m, spad.a_read, eng.a_read)
        wiring.connect(m, spad.b_read, eng.b_read)
        m.d.comb += [
            acc.i.payload.eq(eng.acc.payload),
            acc.i.valid.eq(eng.acc.valid & ~self.acc_stall),
            eng.acc.ready.eq(acc.i.ready & ~self.acc_stall),
            eng.acc_written.eq(acc.written),
        ]
        return m


# The model -------------------------------------------------------------------------------

class Model:
    """The scratchpad banks and the accumulator rows as numpy arrays, and MATMUL as the ISA
    defines it. ``weights`` are the bank-B rows of the last WS MATMUL that loaded weights."""

    def __init__(self, cfg, bank_a, bank_b, acc):
        self.cfg = cfg
        self.a, self.b = bank_a, bank_b
        self.acc = acc.copy()
        self.weights = None

    def matmul(self, f):
        cfg = self.cfg
        m, k, n = f["m"], f["k"], f["n"]
        if f["dataflow"] == Dataflow.WS:
            if not f["keep_weights"]:
                self.weights = self.b[f["b_addr"]:f["b_addr"] + k]
            a = self.a[f["a_addr"]:f["a_addr"] + m, :k]
            b = self.weights[:k, :n]
        else:
            a = self.a[f["a_addr"]:f["a_addr"] + k, :m].T
            b = self.b[f["b_addr"]:f["b_addr"] + k, :n]
        c = a.astype(object) @ b.astype(object)
        rows = slice(f["c_addr"], f["c_addr"] + m)
        old = self.acc[rows, :n].astype(object) if f["accumulate"] else 0
        self.acc[rows, :n] = wrap(old + c, cfg.acc_width)

    def load(self, addr, values, mask):
        for j in range(self.cfg.cols):
            if mask >> j & 1:
                self.acc[addr, j] = values[j]


def random_acc(rng, cfg, shape):
    """Accumulator values, a third of them at or next to the limits, so that sums wrap."""
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    edge = np.array([lo, lo + 1, hi - 1, hi, -1, 1], dtype=np.int64)
    vals = rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64)
    pick = rng.random(shape) < 0.35
    vals[pick] = edge[rng.integers(len(edge), size=int(pick.sum()))]
    return vals


def matmul_fields(cfg, rng, flow, *, keep=None, m=None, k=None, n=None, c_rows=None):
    """A valid MATMUL with random addresses, flags and tokens. ``keep`` is the (K, N) of
    the weights in the array to reuse, or None to load new ones; ``c_rows`` bounds the
    accumulator rows written."""
    c_rows = cfg.acc_depth if c_rows is None else c_rows
    ws = flow == "ws"
    if ws:
        k = k or int(rng.integers(1, (keep[0] if keep else cfg.rows) + 1))
        n = n or int(rng.integers(1, (keep[1] if keep else cfg.cols) + 1))
        m = m or int(rng.integers(1, 9))
        a_rows = m
    else:
        m = m or int(rng.integers(1, cfg.rows + 1))
        k = k or int(rng.integers(1, 11))
        n = n or int(rng.integers(1, cfg.cols + 1))
        a_rows = k
    f = {
        "opcode": Opcode.MATMUL,
        "pop_prev": int(rng.integers(2)), "pop_next": int(rng.integers(2)),
        "push_prev": int(rng.integers(2)), "push_next": int(rng.integers(2)),
        "dataflow": Dataflow.WS if ws else Dataflow.OS,
        "accumulate": int(rng.integers(2)),
        "keep_weights": int(keep is not None),
        "a_addr": int(rng.integers(cfg.spad_depth - a_rows + 1)),
        # ignored with keep_weights: any value
        "b_addr": int(rng.integers(cfg.spad_depth - (0 if keep else k) + 1)) % cfg.spad_depth,
        "c_addr": int(rng.integers(c_rows - m + 1)),
        "m": m, "k": k, "n": n,
    }
    return validate(cfg, f)


def random_program(cfg, rng, count, *, keep_rate=0.4, c_rows=None):
    """WS and OS MATMULs mixed; a WS MATMUL reuses the weights of the last WS MATMUL that
    loaded some (with K and N no larger than theirs) at rate ``keep_rate``."""
    program, loaded = [], None
    for _ in range(count):
        flow = "ws" if rng.random() < 0.5 else "os"
        keep = loaded if flow == "ws" and loaded and rng.random() < keep_rate else None
        f = matmul_fields(cfg, rng, flow, keep=keep, c_rows=c_rows)
        if flow == "ws" and keep is None:
            loaded = (f["k"], f["n"])
        program.append(f)
    return program


def beat(f, index):
    body = {name: f[name] for name in ("dataflow", "accumulate", "keep_weights", "a_addr",
                                       "b_addr", "c_addr", "m", "k", "n")}
    header = {name: f[name] for name in ("opcode", "pop_prev", "pop_next", "push_prev",
                                         "push_next")}
    return {"header": header, "body": body, "index": index}


def macs_of(f):
    return f["m"] * f["k"] * f["n"]


# The bench -------------------------------------------------------------------------------

class Bench:
    """A harness with random operands in both banks and random accumulator rows, and a
    monitor that checks, every cycle:

    * ``busy`` is high while an accepted instruction has not retired, and ``stall`` is
      ``busy`` without an A row taken (``macs`` is non-zero exactly when the array takes one);
    * instructions offered during ``abort`` are taken at once, and nothing retires then;
    * with ``check_retire``, the last result row of each retiring MATMUL is visible to an
      accumulator read issued in the cycle after it retires (the model's value after it),
      the first in which the controller can hand an instruction that waited for it to an
      engine.
    """

    LIMIT = 20000

    def __init__(self, cfg, seed):
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.dut = Harness(cfg)
        self.bank_a = random_operands(self.rng, cfg, (cfg.spad_depth, cfg.rows))
        self.bank_b = random_operands(self.rng, cfg, (cfg.spad_depth, cfg.cols))
        self.acc0 = random_acc(self.rng, cfg, (cfg.acc_depth, cfg.cols))
        self.model = Model(cfg, self.bank_a, self.bank_b, self.acc0)
        self.accepted, self.retired, self.retire_cycles = [], [], []
        self.mac_cycles = []        # (cycle, macs) of every cycle in which the array took a row
        self.acc_cycles = []        # cycles in which the accumulator took a result row
        self.expect_last = []       # per instruction: (last result row, its value after it)
        self.checked = 0
        self.check_retire = True
        self.final = None

    def matmul(self, f):
        self.model.matmul(f)
        last = f["c_addr"] + f["m"] - 1
        self.expect_last.append((last, self.model.acc[last].tolist()))

    async def fill(self, ctx):
        cfg, dut = self.cfg, self.dut
        for bank in "ab":
            ctx.set(getattr(dut.spad, f"{bank}_write").en, 1)
        ctx.set(dut.accum.load.en, (1 << cfg.cols) - 1)
        ctx.set(dut.accum.loading, 1)
        for r in range(max(cfg.spad_depth, cfg.acc_depth)):
            if r < cfg.spad_depth:
                for bank, values in (("a", self.bank_a), ("b", self.bank_b)):
                    port = getattr(dut.spad, f"{bank}_write")
                    ctx.set(port.addr, r)
                    ctx.set(port.data, [values[r].tolist()] +
                            [[0] * len(values[r])] * (cfg.load_rows - 1))
            if r < cfg.acc_depth:
                ctx.set(dut.accum.load.addr, r)
                ctx.set(dut.accum.load.data, self.acc0[r].tolist())
            await ctx.tick()
        ctx.set(dut.spad.a_write.en, 0)
        ctx.set(dut.spad.b_write.en, 0)
        ctx.set(dut.accum.load.en, 0)
        ctx.set(dut.accum.loading, 0)
        ctx.set(dut.accum.store.en, 1)

    async def monitor(self, ctx):
        eng, acc = self.dut.engine, self.dut.accum
        store = acc.store
        cycle, owed = 0, 0                    # owed: accepted, not retired, not flushed
        # retired instructions whose read goes out in the next cycle, then is checked
        reading, pending = None, None
        async for (_, _, iv, ir, abort, rv, rp, busy, stall, macs, av, ar, data) in \
                ctx.tick().sample(eng.instr.valid, eng.instr.ready, eng.abort,
                                  eng.retire.valid, eng.retire.payload, eng.busy, eng.stall,
                                  eng.macs, acc.i.valid, acc.i.ready, store.data):
            if pending is not None:
                want = self.expect_last[pending][1]
                got = [data[j] for j in range(self.cfg.cols)]
                assert got == want, f"instruction {pending}: last row {got} at retire, not {want}"
                self.checked += 1
            # the read issued in the last cycle shows now; the one issued in this cycle was
            # set up in the last
            pending, reading = reading, None
            if pending is not None and pending + 1 < len(self.expect_last):
                ctx.set(store.addr, self.expect_last[pending + 1][0])
            if abort and not busy:
                owed = 0
            if owed:
                assert busy, f"cycle {cycle}: not busy with an instruction in flight"
            assert stall == (busy and macs == 0), f"cycle {cycle}: stall {stall}"
            assert not (abort and rv), f"cycle {cycle}: retired during abort"
            if abort:
                assert ir, f"cycle {cycle}: an instruction waits during abort"
            elif iv and ir:
                self.accepted.append(cycle)
                owed += 1
            if macs:
                self.mac_cycles.append((cycle, macs))
            if av and ar:
                self.acc_cycles.append(cycle)
            if rv:
                self.retired.append((int(rp.push_prev), int(rp.push_next)))
                self.retire_cycles.append(cycle)
                owed -= 1
                if self.check_retire:
                    reading = len(self.retired) - 1
            cycle += 1
            assert cycle < self.LIMIT, f"the bench did not finish in {self.LIMIT} cycles"

    async def wait_idle(self, ctx, retired, limit=3000):
        for _ in range(limit):
            if len(self.retired) >= retired and not ctx.get(self.dut.engine.busy) and (
                    not self.check_retire or self.checked >= retired):
                break
            await ctx.tick()
        else:
            raise AssertionError(f"not idle after {limit} cycles: {len(self.retired)} of "
                                 f"{retired} retired, busy {ctx.get(self.dut.engine.busy)}")
        await ctx.tick()

    async def read_acc(self, ctx):
        store = self.dut.accum.store
        rows = []
        ctx.set(store.en, 1)
        for addr in range(self.cfg.acc_depth):
            ctx.set(store.addr, addr)
            await ctx.tick()
            rows.append([ctx.get(store.data)[j] for j in range(self.cfg.cols)])
        self.final = np.array(rows, dtype=np.int64)

    def run(self, main, *background):
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(main)
        sim.add_testbench(self.monitor, background=True)
        for bench in background:
            sim.add_testbench(bench, background=True)
        sim.run()

    def check_acc(self):
        assert self.final is not None
        bad = np.argwhere(self.final != self.model.acc)
        assert not len(bad), (f"{len(bad)} wrong accumulators, first at (row, col) "
                              f"{tuple(bad[0])}: {self.final[tuple(bad[0])]} != "
                              f"{self.model.acc[tuple(bad[0])]}")


def run_program(cfg, program, *, seed=0, idle=0.0, acc_stall=0.0, load_rate=0.0,
                load_rows=()):
    """Run ``program`` (validated MATMUL fields) with ``idle`` between instructions, the
    result stream withheld at rate ``acc_stall``, and LOAD writes to ``load_rows`` of the
    accumulator at rate ``load_rate`` (holding its result pipeline); check every
    accumulator row, and the retired tokens. Returns the bench."""
    bench = Bench(cfg, seed)
    rng = bench.rng
    for f in program:
        bench.matmul(f)
    loads = [(int(rng.choice(load_rows)), random_acc(rng, cfg, cfg.cols).tolist(),
              int(rng.integers(1, 1 << cfg.cols))) for _ in range(40)] if load_rows else []
    started = {}

    async def main(ctx):
        await bench.fill(ctx)
        ctx.set(bench.dut.accum.store.addr, bench.expect_last[0][0])
        started["go"] = True
        await send(ctx, bench.dut.engine.instr,
                   [beat(f, i) for i, f in enumerate(program)], rng, idle)
        await bench.wait_idle(ctx, len(program))
        started["done"] = True
        await bench.read_acc(ctx)

    async def stall(ctx):
        while True:
            ctx.set(bench.dut.acc_stall, started.get("go", False) and rng.random() < acc_stall)
            await ctx.tick()

    async def loader(ctx):
        load = bench.dut.accum.load
        pending = list(loads)
        while True:
            if started.get("go") and not started.get("done") and pending and \
                    rng.random() < load_rate:
                addr, values, mask = pending.pop(0)
                bench.model.load(addr, values, mask)
                ctx.set(load.addr, addr)
                ctx.set(load.data, values)
                ctx.set(load.en, mask)
                ctx.set(bench.dut.accum.loading, 1)
            elif started.get("go"):
                ctx.set(load.en, 0)
                ctx.set(bench.dut.accum.loading, 0)
            await ctx.tick()

    bench.run(main, stall, loader)
    bench.check_acc()
    assert bench.retired == [(int(f["push_prev"]), int(f["push_next"])) for f in program]
    assert bench.checked == len(program)
    assert sum(v for _, v in bench.mac_cycles) == sum(macs_of(f) for f in program)
    return bench


# Tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["3x4", "2x2", "4x3", "4x3u16"])
@pytest.mark.parametrize("pressure", [0.0, 0.3], ids=["free", "pressure"])
def test_random_program(name, pressure):
    """WS and OS MATMULs mixed, accumulating or overwriting, with kept weights, every size
    down to 1, overlapping accumulator rows; with pressure, random gaps between
    instructions, a stalling result stream and LOAD writes holding the accumulator."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(list(CONFIGS).index(name) * 10 + int(pressure * 10))
    load_rows = (cfg.acc_depth - 2, cfg.acc_depth - 1) if pressure else ()
    program = random_program(cfg, rng, 28, c_rows=cfg.acc_depth - 2)
    run_program(cfg, program, seed=int(pressure * 10) + 1, idle=pressure, acc_stall=pressure,
                load_rate=pressure, load_rows=load_rows)


def test_sizes_of_one_back_to_back():
    """1 x 1 x 1 tiles of both dataflows, all to the same accumulator row, back to back."""
    cfg = CONFIGS["3x4"]
    rng = np.random.default_rng(7)
    program = [matmul_fields(cfg, rng, flow, m=1, k=1, n=1) for flow in ["ws", "os"] * 6]
    program = [dict(f, c_addr=5, accumulate=1) for f in program]
    run_program(cfg, program)


def streaming_run(cfg, program):
    """Run ``program`` without gaps or stalls; return the bench, after checking that the
    array took one A row per cycle from the first row of the first tile to the last row of
    the last, and that each MATMUL retired in the cycle the accumulator wrote its last result
    row, ``Accumulator.WRITE_LATENCY - 1`` cycles after taking it."""
    bench = run_program(cfg, program)
    cycles = [c for c, _ in bench.mac_cycles]
    rows = sum(f["m"] if f["dataflow"] == Dataflow.WS else f["k"] for f in program)
    assert len(cycles) == rows
    assert cycles == list(range(cycles[0], cycles[0] + rows)), f"A rows taken in {cycles}"
    ends = np.cumsum([f["m"] for f in program]) - 1
    assert bench.retire_cycles == [bench.acc_cycles[e] + Accumulator.WRITE_LATENCY - 1
                                   for e in ends]
    return bench, cycles


def test_ws_back_to_back():
    """WS tiles with M >= rows: the next tile's weights load while the current one streams,
    so the A rows flow without a bubble, including across a kept-weights tile."""
    cfg = CONFIGS["3x4"]
    rng = np.random.default_rng(3)
    program = []
    for m, k in [(3, 3), (5, 2), (4, 3), (7, None), (3, 1), (6, 3)]:
        keep = (program[-1]["k"], program[-1]["n"]) if k is None else None
        program.append(matmul_fields(cfg, rng, "ws", m=m, k=k, keep=keep))
    bench, cycles = streaming_run(cfg, program)
    assert sum(v for _, v in bench.mac_cycles) == sum(macs_of(f) for f in program)


def test_ws_weights_bound_short_tiles():
    """WS tiles shorter than their weights: a tile's weights load a row per cycle once the
    weights of the tile before are in and that tile has started; a tile starts in the cycle
    after its first weight row, once the tile before has had its rows (see
    :class:`hw.array.SystolicArray`)."""
    cfg = CONFIGS["3x4"]
    rng = np.random.default_rng(5)
    shapes = [(1, 3), (2, 3), (1, 1), (4, 3), (2, 2), (1, 3), (3, 1), (2, 2)]
    program = [matmul_fields(cfg, rng, "ws", m=m, k=k) for m, k in shapes]
    bench = run_program(cfg, program)
    cycles = [c for c, _ in bench.mac_cycles]
    firsts = [cycles[i] for i in np.cumsum([0] + [m for m, _ in shapes[:-1]])]
    load, start = firsts[0] - 1, firsts[0]
    want = [start]
    for m, k in shapes[:-1]:
        load = max(load + k, start + 1)
        start = max(start + m, load + 1)
        want.append(start)
    assert firsts == want


def test_os_back_to_back():
    """OS tiles with K >= rows: each tile's results drain while the next one streams, so
    the A beats flow without a bubble."""
    cfg = CONFIGS["4x3"]
    rng = np.random.default_rng(4)
    program = [matmul_fields(cfg, rng, "os", m=m, k=k)
               for m, k in [(4, 4), (2, 6), (4, 4), (3, 5), (1, 7), (4, 4)]]
    bench, cycles = streaming_run(cfg, program)
    assert sum(v for _, v in bench.mac_cycles) == sum(macs_of(f) for f in program)


def test_abort():
    """Abort rises while the engine's queues are full: offered instructions are still taken
    at once, and dropped; nothing retires during abort; the MATMULs accepted before it
    complete and busy falls; after abort the engine runs as before."""
    cfg = CONFIGS["3x4"]
    rng = np.random.default_rng(12)
    bench = Bench(cfg, 13)
    bench.check_retire = False
    before = [matmul_fields(cfg, rng, "ws", m=8, c_rows=12)
              for _ in range(bench.dut.engine.depth + 2)]
    dropped = [dict(f, c_addr=f["c_addr"] + 12) for f in random_program(cfg, rng, 8, c_rows=8)]
    after = [dict(f, c_addr=f["c_addr"] + 20) for f in random_program(cfg, rng, 4, c_rows=12)]
    for f in before + after:
        bench.matmul(f)
    seen = {}

    async def main(ctx):
        eng = bench.dut.engine
        await bench.fill(ctx)
        await send(ctx, eng.instr, [beat(f, i) for i, f in enumerate(before)])
        seen["full"] = not ctx.get(eng.instr.ready)
        ctx.set(eng.abort, 1)
        seen["retired_before"] = len(bench.retired)
        # some while the queues are full, some once they have room
        await send(ctx, eng.instr, [beat(f, 100 + i) for i, f in enumerate(dropped[:4])])
        await ctx.tick().repeat(40)
        assert ctx.get(eng.busy)
        await send(ctx, eng.instr, [beat(f, 104 + i) for i, f in enumerate(dropped[4:])])
        cycles = 0
        while ctx.get(eng.busy):
            assert cycles < 400, "busy did not fall during abort"
            await ctx.tick()
            cycles += 1
        seen["idle_after"] = cycles
        await ctx.tick()
        ctx.set(eng.abort, 0)
        await ctx.tick()
        await send(ctx, eng.instr, [beat(f, 200 + i) for i, f in enumerate(after)])
        await bench.wait_idle(ctx, seen["retired_before"] + len(after))
        await bench.read_acc(ctx)

    bench.run(main)
    bench.check_acc()
    n = seen["retired_before"]
    flags = [(int(f["push_prev"]), int(f["push_next"])) for f in before + after]
    assert seen["full"], "the queues were not full when abort rose"
    assert n < len(before)
    assert bench.retired == flags[:n] + flags[len(before):]
    assert 0 < seen["idle_after"] < 400
    assert sum(v for _, v in bench.mac_cycles) == sum(macs_of(f) for f in before + after)
