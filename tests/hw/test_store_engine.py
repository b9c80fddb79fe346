"""Tier 1: the store engine reads accumulator rows, post-processes them bit-exactly and writes
them where each STORE says, through a model of the write side and through the write engine
on an AXI4 memory; retire, error and abort behave as :mod:`hw.engine` specifies."""

from collections import deque

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.accumulator import Accumulator
from hw.axi import Resp
from hw.config import AccelConfig
from hw.engine import ErrorCode
from hw.isa import SCALE_WIDTH, Opcode, OutType, StoreLayout, out_bytes, validate
from hw.postprocess import PostProcessor
from hw.store_engine import StoreEngine
from hw.write_engine import WriteEngine
from sim.assembler import postprocess
from sim.axi_mem import AxiMemoryPort, InterleavedMemory
from sim.transfers import stripes

MEM = 1 << 15
SMALL = dict(rows=2, spad_depth=16, acc_depth=32, port_width=64, addr_width=20, burst_len=4,
             reads_in_flight=8, axi_ids=4)
CFGS = {
    "2port": AccelConfig(name="s2", cols=3, mem_ports=2, **SMALL),     # 16-byte stripes
    "1port": AccelConfig(name="s1", cols=3, mem_ports=1, **SMALL),     # int32 rows: 2 stripes
    "4port": AccelConfig(name="s4", cols=4, mem_ports=4, **SMALL),     # 32-byte stripes
    # two post-processing lanes: a row of 3 columns takes two cycles
    "2lane": AccelConfig(name="s2l", cols=3, mem_ports=2, post_lanes=2, **SMALL),
}
SCALE_ROWS = (28, 29, 30, 31)       # accumulator rows holding scale tables
REGION = ("addr", "rows", "row_bytes", "stride")
MAX_SCALE = (1 << SCALE_WIDTH) - 1


class Bench(Elaboratable):
    """The store engine on an accumulator memory; with ``writer``, also a write engine."""

    def __init__(self, cfg, writer=False):
        self.dut = StoreEngine(cfg)
        self.acc = Accumulator(cfg)
        self.writer = WriteEngine(cfg) if writer else None

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.acc = self.acc
        wiring.connect(m, self.acc.store, dut.acc_read)
        if self.writer is not None:
            m.submodules.writer = w = self.writer
            wiring.connect(m, dut.wr_desc, w.desc)
            wiring.connect(m, dut.wr_data, w.data)
            wiring.connect(m, w.status, dut.wr_status)
            m.d.comb += w.cancel.eq(dut.wr_cancel)
        return m


def random_acc(rng, cfg):
    """Accumulator contents: random values with the extremes mixed in, scale tables at
    ``SCALE_ROWS``."""
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    acc = rng.integers(lo, hi, (cfg.acc_depth, cfg.cols), endpoint=True)
    pick = rng.random(acc.shape) < 0.2
    acc[pick] = rng.choice([lo, hi, 0, 1, -1], int(pick.sum()))
    small = rng.random(acc.shape) < 0.2
    acc[small] = rng.integers(-1000, 1000, int(small.sum()))
    for r in SCALE_ROWS:
        acc[r] = rng.choice([0, 1, 2, MAX_SCALE, int(rng.integers(MAX_SCALE))], cfg.cols)
    return acc


class Store:
    """One STORE: its validated fields, program index and the tokens it gives."""

    def __init__(self, fields, index, push_next):
        self.f, self.index, self.push_next = fields, index, push_next

    @property
    def region(self):
        return {k: self.f[k] for k in REGION}

    def payload(self, cfg):
        f = self.f
        return {"header": {"opcode": Opcode.STORE, "pop_prev": 0, "pop_next": 0,
                           "push_prev": int(f["push_prev"]), "push_next": int(self.push_next)},
                "body": {name: f[name] for name, _ in StoreLayout(cfg)},
                "index": self.index}

    def rows(self, acc, acc_width):
        """``(address, bytes)`` of every memory row, from the numpy reference."""
        f = self.f
        data = acc[f["acc_addr"]:f["acc_addr"] + f["rows"]]
        bias = acc[f["bias_addr"]] if f["bias"] else None
        scale = acc[f["scale_addr"]] & MAX_SCALE if f["per_column"] else f["scale"]
        out = postprocess(data, bias, f["relu"], scale, f["shift"], f["out_type"],
                          f["per_column"], acc_width=acc_width)
        return [(f["addr"] + r * f["stride"], out[r].tobytes()[:f["row_bytes"]])
                for r in range(f["rows"])]


class Program:
    """Random STOREs in disjoint memory regions (any alignment), numbered from ``index``."""

    def __init__(self, cfg, rng, index=100):
        self.cfg, self.rng, self.index, self.free = cfg, rng, index, 64

    def store(self, rows=None, out_type=None, bias=None, per_column=None, row_bytes=None,
              stride=None, align=None, **fields):
        cfg, rng = self.cfg, self.rng
        S = cfg.stripe_bytes
        out_type = OutType(int(rng.integers(3))) if out_type is None else out_type
        ob = out_bytes(out_type)
        rows = int(rng.integers(1, 7)) if rows is None else rows
        if row_bytes is None:
            row_bytes = ob * int(rng.choice([1, cfg.cols, *rng.integers(1, cfg.cols + 1, 2)]))
        if stride is None:
            stride = row_bytes + int(rng.choice([0, int(rng.integers(1, 2 * S + 8))]))
        gap = int(rng.integers(0, 3 * S)) if align is None else -self.free % align
        addr = self.free + gap
        self.free = addr + (rows - 1) * stride + row_bytes
        assert self.free < MEM - 64
        f = {
            "opcode": Opcode.STORE, "out_type": out_type,
            "relu": bool(rng.integers(2)),
            "bias": bool(rng.integers(2)) if bias is None else bias,
            "per_column": bool(rng.integers(2)) if per_column is None else per_column,
            "shift": int(rng.integers(0, 41)),
            "scale": int(rng.choice([0, 1, 2, MAX_SCALE, *rng.integers(0, MAX_SCALE, 2)])),
            "acc_addr": int(rng.integers(0, cfg.acc_depth - rows + 1)),
            "bias_addr": int(rng.integers(cfg.acc_depth)),
            "scale_addr": int(rng.choice(SCALE_ROWS)) if rng.random() < 0.8 else
            int(rng.integers(cfg.acc_depth)),
            "rows": rows, "row_bytes": row_bytes, "addr": addr, "stride": stride,
            "push_prev": bool(rng.integers(2)),
        }
        f.update(fields)
        store = Store(validate(cfg, f), self.index, bool(rng.integers(2)))
        self.index += 1
        return store


class Run:
    """Runs a program of STOREs on a :class:`Bench` and records what happens.

    ``program`` items are a :class:`Store` to offer, or a predicate ``f(run)`` to wait for
    before offering the next items. The write side is a model (``stall``: chance of ready
    low per cycle; ``delay``: cycles before each status; ``inject``: transfer number to
    status) or, with ``writer``, a write engine on an interleaved AXI4 memory (``errors``
    as :class:`sim.axi_mem.AxiMemoryPort` takes them). ``abort`` raises ``abort``:
    ``("error", cycles)`` that long after an error pulse, or ``("cycle", n)`` at cycle
    ``n``; it is held until ``busy`` has been low for ``hold`` cycles.
    """

    def __init__(self, cfg, program, *, seed=0, idle=0.0, stall=0.0, delay=(0, 0),
                 inject=None, writer=False, errors=None, abort=None, hold=8,
                 timeout=4000):
        self.cfg, self.program, self.seed = cfg, program, seed
        self.rng = np.random.default_rng(seed)
        self.idle, self.stall, self.delay = idle, stall, delay
        self.inject = inject or {}
        self.abort, self.hold, self.timeout = abort, hold, timeout
        self.acc = random_acc(self.rng, cfg)
        self.initial = self.rng.integers(0, 256, MEM, dtype=np.uint8)
        self.bench = Bench(cfg, writer)
        self.cycle = 0
        self.trace = []             # per cycle: dict of sampled signals
        self.offered = []           # (store, dropped): in the order they were taken
        self.expect = deque()       # STOREs whose descriptor must come next
        self.descs, self.statuses = [], []
        self.aborting = self.abort_done = self.finished = False
        self.abort_cycles = None    # (raised, busy fell)

        sim = Simulator(self.bench)
        sim.add_clock(1e-6)
        sim.add_testbench(self.main)
        sim.add_testbench(self.monitor, background=True)
        if abort is not None:
            sim.add_testbench(self.controller, background=True)
        if writer:
            self.memory = InterleavedMemory(cfg, MEM)
            self.memory.data[:] = self.initial
            self.ports = [AxiMemoryPort(self.memory, p,
                                        getattr(self.bench.writer, f"m_axi_hbm{p}"),
                                        np.random.default_rng(seed * 10 + p), stall=stall,
                                        errors=(errors or {}).get(p))
                          for p in range(cfg.mem_ports)]
            for port in self.ports:
                sim.add_process(port.run)
            self.mem = self.memory.data
        else:
            self.mem = self.initial.copy()
            sim.add_testbench(self.write_side, background=True)
        sim.run()

    # processes -------------------------------------------------------------------------------

    async def monitor(self, ctx):
        dut = self.bench.dut
        names = {
            "retire": dut.retire.valid, "push_prev": dut.retire.payload.push_prev,
            "push_next": dut.retire.payload.push_next,
            "error": dut.error.valid, "code": dut.error.payload.code,
            "index": dut.error.payload.index, "addr": dut.error.payload.addr,
            "busy": dut.busy, "stall": dut.stall, "abort": dut.abort,
            "read": dut.acc_read.en,
            "instr": dut.instr.valid, "instr_ready": dut.instr.ready,
            "data": dut.wr_data.valid, "data_ready": dut.wr_data.ready,
            "status": dut.wr_status.valid, "status_ready": dut.wr_status.ready,
        }
        while True:
            values = (await ctx.tick().sample(*names.values()))[2:]
            self.trace.append(dict(zip(names, values, strict=True)))
            self.cycle += 1

    async def main(self, ctx):
        cfg, dut, acc = self.cfg, self.bench.dut, self.bench.acc
        ctx.set(acc.load.en, (1 << cfg.cols) - 1)
        ctx.set(acc.loading, 1)
        for r in range(cfg.acc_depth):
            ctx.set(acc.load.addr, r)
            ctx.set(acc.load.data, [int(v) for v in self.acc[r]])
            await ctx.tick()
        ctx.set(acc.load.en, 0)
        ctx.set(acc.loading, 0)
        for item in self.program:
            if not isinstance(item, Store):
                while not item(self):
                    assert self.cycle < self.timeout, "waited too long for a program step"
                    await ctx.tick()
                continue
            while self.rng.random() < self.idle:
                await ctx.tick()
            ctx.set(dut.instr.payload, item.payload(cfg))
            ctx.set(dut.instr.valid, 1)
            while True:
                _, _, ready, abort = await ctx.tick().sample(dut.instr.ready, dut.abort)
                if ready:
                    break
                assert self.cycle < self.timeout, "instruction not taken"
            ctx.set(dut.instr.valid, 0)
            self.offered.append((item, bool(abort)))
            if not abort:
                self.expect.append(item)
        # done once every STORE taken has its status, the controller is done, and busy is low
        taken = sum(not dropped for _, dropped in self.offered)
        quiet = 0
        while quiet < 4:
            _, _, busy = await ctx.tick().sample(dut.busy)
            statuses = sum(t["status"] and t["status_ready"] for t in self.trace)
            settled = statuses == taken and (self.abort is None or self.abort_done)
            quiet = quiet + 1 if settled and not busy else 0
            if self.cycle > self.timeout:
                return
        self.finished = True

    async def controller(self, ctx):
        dut = self.bench.dut
        kind, when = self.abort
        if kind == "error":
            while not any(t["error"] for t in self.trace):
                await ctx.tick()
            for _ in range(when):
                await ctx.tick()
        else:
            while self.cycle < when:
                await ctx.tick()
        ctx.set(dut.abort, 1)
        self.aborting = True
        raised = self.cycle
        low = 0
        while low < self.hold:
            _, _, busy, ready = await ctx.tick().sample(dut.busy, dut.instr.ready)
            assert ready, "instructions must be taken during abort"
            if busy:
                assert low == 0, "busy rose again during abort"
            else:
                if low == 0:
                    self.abort_cycles = (raised, self.cycle)
                low += 1
        ctx.set(dut.abort, 0)
        self.aborting = False
        self.abort_done = True

    async def write_side(self, ctx):
        """The write engine's behaviour at its stream interface, one transfer at a time."""
        cfg, dut, rng = self.cfg, self.bench.dut, self.rng
        S = cfg.stripe_bytes
        n = 0
        while True:
            ready = rng.random() >= self.stall
            ctx.set(dut.wr_desc.ready, ready)
            _, _, valid, payload, cancel = await ctx.tick().sample(
                dut.wr_desc.valid, dut.wr_desc.payload, dut.wr_cancel)
            if not (ready and valid):
                continue
            ctx.set(dut.wr_desc.ready, 0)
            desc = {k: int(payload[k]) for k in REGION}
            assert self.expect, f"descriptor {desc} of no STORE"
            store = self.expect.popleft()
            assert desc == store.region, f"STORE {store.index}: descriptor {desc}"
            self.descs.append(store)
            status = {"resp": Resp.OKAY, "addr": 0, "invalid": 0, "aborted": 0}
            written = []
            if cancel:
                status["aborted"] = 1
            for s, lo, hi, last, end in ([] if cancel else stripes(desc, S)):
                while True:
                    # the write engine takes no data while cancel is high
                    ready = rng.random() >= self.stall and not ctx.get(dut.wr_cancel)
                    ctx.set(dut.wr_data.ready, ready)
                    _, _, valid, beat, cancel = await ctx.tick().sample(
                        dut.wr_data.valid, dut.wr_data.payload, dut.wr_cancel)
                    if cancel or (ready and valid):
                        break
                ctx.set(dut.wr_data.ready, 0)
                if cancel:
                    status["aborted"] = 1
                    break
                assert int(beat.mask) == (1 << hi) - (1 << lo), \
                    f"STORE {store.index} stripe {s}: mask {int(beat.mask):#x}, bytes {lo}..{hi}"
                assert (beat.last, beat.end) == (last, end), \
                    f"STORE {store.index} stripe {s}: last/end"
                raw = int(beat.data).to_bytes(S, "little")
                written.append((s * S + lo, raw[lo:hi]))
            if n in self.inject:
                status.update(self.inject[n])
            else:
                # an erroring transfer writes nothing here; the test ignores its rows
                for addr, raw in written:
                    self.mem[addr:addr + len(raw)] = np.frombuffer(raw, np.uint8)
            # (a cancelled transfer is reported at once)
            for _ in range(0 if cancel else int(rng.integers(self.delay[0], self.delay[1] + 1))):
                await ctx.tick()
            ctx.set(dut.wr_status.payload, status)
            ctx.set(dut.wr_status.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.wr_status.ready)
                if ready:
                    break
            ctx.set(dut.wr_status.valid, 0)
            self.statuses.append((store, status))
            n += 1

    # checks ----------------------------------------------------------------------------------

    def column(self, name):
        return np.array([int(t[name]) for t in self.trace])

    def retired(self):
        return [(t["push_prev"], t["push_next"]) for t in self.trace if t["retire"]]

    def error_pulses(self):
        return [(t["code"], t["index"], t["addr"]) for t in self.trace if t["error"]]

    def check_memory(self, good):
        """The rows of the STOREs in ``good`` hold the reference bytes; rows of other STOREs
        may hold anything; no other byte changed."""
        image = self.initial.copy()
        free = np.zeros(MEM, bool)
        for store, dropped in self.offered:
            if not dropped and store not in good:
                for addr, raw in store.rows(self.acc, self.cfg.acc_width):
                    free[addr:addr + len(raw)] = True
        for store in good:
            for addr, raw in store.rows(self.acc, self.cfg.acc_width):
                image[addr:addr + len(raw)] = np.frombuffer(raw, np.uint8)
        bad = np.flatnonzero((self.mem != image) & ~free)
        if bad.size:
            where = next(((s.index, s.region) for s in good
                          if any(a <= bad[0] < a + len(r)
                                 for a, r in s.rows(self.acc, self.cfg.acc_width))), None)
            raise AssertionError(f"{bad.size} bytes differ, first at {bad[0]:#x} "
                                 f"(got {self.mem[bad[0]]}, want {image[bad[0]]}); STORE {where}")

    def handshakes(self, valid, ready):
        return np.flatnonzero(self.column(valid) & self.column(ready))

    def accepted(self):
        """Cycles in which each STORE offered was taken (dropped ones included)."""
        return self.handshakes("instr", "instr_ready")

    def check_busy_stall(self):
        # busy: a STORE taken (not dropped) before this cycle has no status yet
        kept = np.array([not d for _, d in self.offered], bool)
        starts = np.zeros(len(self.trace) + 1, int)
        np.add.at(starts, self.accepted()[kept] + 1, 1)
        np.add.at(starts, self.handshakes("status", "status_ready") + 1, -1)
        busy = self.column("busy")
        assert np.array_equal(busy, np.cumsum(starts)[:-1] > 0), "busy"
        stall = self.column("stall")
        moved = self.column("read") | (self.column("data") & self.column("data_ready"))
        assert np.array_equal(stall, busy & ~moved & 1), "stall is not busy without progress"


def stores_of(run):
    return [s for s in run.program if isinstance(s, Store)]


def check_all_retired(run):
    stores = stores_of(run)
    statuses = len(run.handshakes("status", "status_ready"))
    assert run.finished, f"hung: {statuses} of {len(stores)} statuses"
    assert run.retired() == [(int(s.f["push_prev"]), int(s.push_next)) for s in stores]
    assert not run.error_pulses()
    run.check_memory(stores)


# tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CFGS))
@pytest.mark.parametrize("pressure", [0.0, 0.4], ids=["free", "pressure"])
def test_random_stores_bit_exact(name, pressure):
    # every option at random: out types, ReLU, bias, per-column or per-layer scale, shifts,
    # alignments, strides, one element to a full row; checked byte for byte in memory
    cfg = CFGS[name]
    rng = np.random.default_rng(len(name) * 7 + int(10 * pressure))
    prog = Program(cfg, rng)
    stores = [prog.store() for _ in range(14)]
    # full int32 rows, unaligned, wider than a stripe in the one-port configuration
    stores += [prog.store(out_type=OutType.INT32, row_bytes=4 * cfg.cols, rows=3,
                          bias=True, per_column=True)]
    run = Run(cfg, stores, seed=int(rng.integers(1000)), idle=pressure / 2, stall=pressure,
              delay=(0, int(6 * pressure)))
    check_all_retired(run)
    run.check_busy_stall()


def test_every_option_combination():
    # each combination of the flags and out types once, back to back
    cfg = CFGS["2port"]
    rng = np.random.default_rng(5)
    prog = Program(cfg, rng)
    stores = [prog.store(out_type=t, bias=b, per_column=p, relu=r, rows=2)
              for t in OutType for b in (False, True) for p in (False, True)
              for r in (False, True)]
    run = Run(cfg, stores, seed=5, stall=0.2)
    check_all_retired(run)


def test_one_row_per_cycle():
    # aligned rows of one stripe each, the write side always ready: a row every cycle
    cfg = CFGS["4port"]
    prog = Program(cfg, np.random.default_rng(1))
    n = 24
    store = prog.store(rows=n, out_type=OutType.INT32, row_bytes=16, stride=32, align=32,
                       bias=True, per_column=True)
    run = Run(cfg, [store], seed=1)
    check_all_retired(run)
    reads = np.flatnonzero(run.column("read"))
    taken = np.flatnonzero(run.column("data") & run.column("data_ready"))
    start = run.accepted()[0]
    assert len(reads) == n + 2 and reads[-1] - reads[0] == n + 1, reads   # bias, scale, rows
    assert len(taken) == n and taken[-1] - taken[0] == n - 1, taken
    # the take with the bias read, the scale read, the row read, the register in front of
    # the post-processor, post-processor, packer, realigner (the skid buffers fall through)
    bound = 2 + 1 + 1 + PostProcessor.LATENCY + 1 + 1
    assert taken[0] - start <= bound, f"first stripe {taken[0] - start} cycles after the STORE"


def test_consecutive_stores_overlap():
    # the next STORE is taken and read while the previous one is still being written and
    # waits for its status; the rows stream without draining the pipeline in between
    cfg = CFGS["4port"]
    prog = Program(cfg, np.random.default_rng(2))
    stores = [prog.store(rows=6, out_type=OutType.INT32, row_bytes=16, stride=32, align=32,
                         bias=True, per_column=True) for _ in range(4)]
    run = Run(cfg, stores, seed=2)
    check_all_retired(run)
    taken = np.flatnonzero(run.column("data") & run.column("data_ready"))
    gaps = np.diff(taken)
    # between the rows of two STOREs the reads leave two cycles (the next STORE is taken
    # with its bias read, then its scale row is read), the model two (status, then
    # descriptor); waiting for the previous STORE to leave the pipeline would leave eight or
    # more
    assert len(taken) == 24 and max(gaps) <= 3, gaps
    taken_at = run.accepted()
    ends = taken[5::6]
    assert all(taken_at[k + 1] < ends[k] for k in range(3)), (taken_at, ends)

    # slow write responses: the next STOREs are taken and read while the first one waits for
    # its status (as many as the pipeline holds rows of)
    prog = Program(cfg, np.random.default_rng(3))
    stores = [prog.store(rows=2, bias=False, per_column=False) for _ in range(6)]
    run = Run(cfg, stores, seed=3, delay=(20, 30))
    check_all_retired(run)
    status_at = run.handshakes("status", "status_ready")
    taken_at = run.accepted()
    assert taken_at[3] < status_at[0], (taken_at, status_at)
    assert run.column("read")[:status_at[0]].sum() >= 7, "rows of four STOREs read"
    run.check_busy_stall()
    assert run.column("stall").sum() >= 5 * 15, "stall must count waiting for responses"


def test_retire_waits_for_status_and_gives_tokens():
    cfg = CFGS["1port"]
    prog = Program(cfg, np.random.default_rng(4))
    stores = [prog.store() for _ in range(8)]
    run = Run(cfg, stores, seed=4, idle=0.3, stall=0.3, delay=(0, 15))
    check_all_retired(run)
    retire_at = np.flatnonzero(run.column("retire"))
    status_at = np.flatnonzero(run.column("status") & run.column("status_ready"))
    assert np.array_equal(retire_at, status_at), "a STORE retires with its OKAY status"
    run.check_busy_stall()


@pytest.mark.parametrize("resp, wait", [
    ({"resp": Resp.SLVERR, "addr": 0x1234}, 3),
    ({"resp": Resp.DECERR, "addr": 0x777}, 3),
    ({"aborted": 1, "addr": 0x99}, 3),
    ({"resp": Resp.SLVERR, "addr": 0x4321}, 120),
], ids=["slverr", "decerr", "aborted", "slow_abort"])
def test_error_stops_retiring_and_abort_drains(resp, wait):
    # STORE 2 fails: one error pulse with its index and the status address, no retire for it
    # nor for the STOREs after it (with a slow abort, their statuses, OKAY or not, come back
    # before it); abort drops the instructions offered and busy falls; then STOREs run
    # normally again
    cfg = CFGS["2port"]
    prog = Program(cfg, np.random.default_rng(6))
    before = [prog.store(rows=int(r)) for r in (2, 3, 4, 5, 2, 3)]
    during = [prog.store(), prog.store()]
    after = [prog.store(), prog.store()]
    program = [*before, lambda r: r.aborting, *during, lambda r: r.abort_done, *after]
    inject = {2: resp, 4: {"resp": Resp.SLVERR, "addr": 0x5555}}
    run = Run(cfg, program, seed=6, stall=0.2, delay=(0, 4), inject=inject,
              abort=("error", wait), timeout=6000)
    assert run.finished, "hung"
    assert run.error_pulses() == [(ErrorCode.WRITE_ERROR, before[2].index, resp["addr"])]
    tokens = [(int(s.f["push_prev"]), int(s.push_next)) for s in before[:2] + after]
    assert run.retired() == tokens
    dropped = [s for s, d in run.offered if d]
    assert dropped[-2:] == during and all(s in during or s in before for s in dropped)
    raised, fell = run.abort_cycles
    if wait > 100:
        assert (run.handshakes("status", "status_ready") < raised).sum() == len(before)
    assert fell - raised < 60, f"busy fell {fell - raised} cycles after abort"
    abort = run.column("abort").astype(bool)
    assert not run.column("retire")[abort].any() and not run.column("error")[abort].any()
    run.check_busy_stall()
    run.check_memory(before[:2] + after)


def test_abort_with_stores_queued():
    # short STOREs behind slow write responses: some are still queued (taken, their rows
    # read, their transfers not yet started) when the abort comes; each still gets a status
    # from the write side, and busy falls
    cfg = CFGS["4port"]
    prog = Program(cfg, np.random.default_rng(12))
    before = [prog.store(rows=1, bias=False, per_column=False) for _ in range(8)]
    after = [prog.store()]
    program = [*before, lambda r: r.abort_done, *after]
    run = Run(cfg, program, seed=12, delay=(25, 30), abort=("cycle", 60), timeout=6000)
    assert run.finished, "hung"
    raised, fell = run.abort_cycles
    kept = sum(not d for _, d in run.offered)
    statuses = run.handshakes("status", "status_ready")
    assert len(statuses) == kept and (statuses < raised).sum() <= 1 and kept >= 4
    assert fell - raised < 60, f"busy fell {fell - raised} cycles after abort"
    run.check_busy_stall()
    assert run.retired()[-1] == (int(after[0].f["push_prev"]), int(after[0].push_next))
    run.check_memory(before[:len(run.retired()) - 1] + after)


@pytest.mark.parametrize("name", ["1port", "4port", "2lane"])
@pytest.mark.parametrize("at", [45, 75, 110])
def test_abort_in_flight(name, at):
    # abort at any point while STOREs are read, post-processed, realigned and written: the
    # write side sees consistent transfers (masks checked), nothing retires during the abort,
    # busy falls, and the next STOREs are written correctly
    cfg = CFGS[name]
    rng = np.random.default_rng(at)
    prog = Program(cfg, rng)
    before = [prog.store(rows=int(rng.integers(3, 7))) for _ in range(6)]
    after = [prog.store(), prog.store(bias=True, per_column=True)]
    program = [*before, lambda r: r.abort_done, *after]
    run = Run(cfg, program, seed=at, stall=0.3, delay=(0, 5), abort=("cycle", at))
    assert run.finished, "hung"
    assert not run.error_pulses()
    abort = run.column("abort").astype(bool)
    assert not run.column("retire")[abort].any()
    raised, fell = run.abort_cycles
    assert run.column("busy")[raised], "nothing in flight at the abort"
    assert fell - raised < 60, f"busy fell {fell - raised} cycles after abort"
    run.check_busy_stall()
    # every STORE taken before the abort either retired before it or got its status during it
    n = len(run.retired())
    assert run.retired() == [(int(s.f["push_prev"]), int(s.push_next))
                             for s in before[:n - 2] + after]
    retired_before = before[:n - 2]
    assert len(run.statuses) == sum(not d for _, d in run.offered)
    run.check_memory(retired_before + after)


def test_with_write_engine():
    # the real write engine on an interleaved AXI4 memory with random latency and stalls
    cfg = CFGS["2port"]
    prog = Program(cfg, np.random.default_rng(8))
    stores = [prog.store() for _ in range(8)]
    run = Run(cfg, stores, seed=8, stall=0.2, writer=True, timeout=6000)
    assert run.finished, "hung"
    assert run.retired() == [(int(s.f["push_prev"]), int(s.push_next)) for s in stores]
    run.check_memory(stores)


def test_with_write_engine_error_and_abort():
    # a write error on STORE 1: the error names its first byte; the abort leaves no AXI
    # transaction open on any port; a STORE after the abort is written
    cfg = CFGS["2port"]
    W, N = cfg.port_bytes, cfg.mem_ports
    prog = Program(cfg, np.random.default_rng(9))
    before = [prog.store(rows=4), prog.store(rows=3, align=W), prog.store(rows=5),
              prog.store(rows=5)]
    after = [prog.store()]
    g = before[1].f["addr"]
    errors = {(g // W) % N: {("w", g // W // N * W): Resp.SLVERR}}
    program = [*before, lambda r: r.abort_done, *after]
    run = Run(cfg, program, seed=9, stall=0.2, writer=True, errors=errors,
              abort=("error", 2), timeout=6000)
    assert run.finished, "hung"
    assert run.error_pulses() == [(ErrorCode.WRITE_ERROR, before[1].index, g)]
    tokens = [(int(s.f["push_prev"]), int(s.push_next)) for s in [before[0]] + after]
    assert run.retired() == tokens
    for port in run.ports:
        assert not port.writes and not any(port.bresps.values()), "AXI write left open"
    run.check_memory([before[0]] + after)
