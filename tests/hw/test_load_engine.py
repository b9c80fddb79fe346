"""Tier 1: the load engine between a model of the read engine and real scratchpad and
accumulator memories, against a numpy model of LOAD."""

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.accumulator import Accumulator
from hw.axi import Resp
from hw.config import AccelConfig
from hw.engine import ErrorCode
from hw.isa import (
    Buffer,
    Opcode,
    acc_bytes,
    buffer_depth,
    buffer_row_bytes,
    operand_bytes,
    validate,
)
from hw.load_engine import LoadEngine
from hw.scratchpad import Scratchpad
from sim.streams import send
from sim.transfers import stripes

MEM = 1 << 14

CONFIGS = {
    # 16-byte stripes; every buffer row fits in one
    "two_ports": AccelConfig(name="lp2", rows=4, cols=3, spad_depth=32, acc_depth=32,
                             mem_ports=2, port_width=64, addr_width=20),
    # 8-byte stripes, 2-byte operands: bank-B rows span two stripes, accumulator rows three
    "one_port": AccelConfig(name="lp1", rows=4, cols=5, in_width=12, in_signed=False,
                            acc_width=28, spad_depth=32, acc_depth=24, mem_ports=1,
                            port_width=64, addr_width=20),
    # 32-byte stripes
    "four_ports": AccelConfig(name="lp4", rows=8, cols=4, spad_depth=24, acc_depth=32,
                              mem_ports=4, port_width=64, addr_width=20),
    # 64-byte accumulator rows over 8-byte stripes
    "wide": AccelConfig(name="lpw", rows=2, cols=16, spad_depth=16, acc_depth=16, mem_ports=1,
                        port_width=64, addr_width=20),
}
# Scratchpad rows written several per cycle: up to the rows of a stripe, or fewer
CONFIGS["two_ports_x4"] = CONFIGS["two_ports"].replace(name="lp2x4", load_rows=4)
CONFIGS["four_ports_x2"] = CONFIGS["four_ports"].replace(name="lp4x2", load_rows=2)
CONFIGS["wide_x8"] = CONFIGS["wide"].replace(name="lpwx8", load_rows=8)

OKAY = {"resp": Resp.OKAY, "addr": 0, "invalid": 0, "aborted": 0}
ABORTED = {"resp": Resp.OKAY, "addr": 0, "invalid": 0, "aborted": 1}


class Bench(Elaboratable):
    """The load engine writing into a scratchpad and an accumulator memory."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.dut = LoadEngine(cfg)
        self.spad = Scratchpad(cfg)
        self.acc = Accumulator(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.submodules.spad = self.spad
        m.submodules.acc = self.acc
        wiring.connect(m, self.spad.a_write, self.dut.a_write)
        wiring.connect(m, self.spad.b_write, self.dut.b_write)
        wiring.connect(m, self.acc.load, self.dut.acc_write)
        m.d.comb += self.acc.loading.eq(self.dut.acc_loading)
        return m


# The ISA model -----------------------------------------------------------------------------

def elem_bytes(cfg, buf):
    return acc_bytes(cfg) if buf == Buffer.ACC else operand_bytes(cfg)


def lanes(cfg, buf):
    return cfg.rows if buf == Buffer.SPAD_A else cfg.cols


def lane_width(cfg, buf):
    return cfg.acc_width if buf == Buffer.ACC else cfg.in_width


def reference(cfg, mem, loads):
    """Every buffer's rows as bytes after ``loads``, in order."""
    bufs = {b: np.zeros((buffer_depth(cfg, b), buffer_row_bytes(cfg, b)), np.uint8)
            for b in Buffer}
    for ld in loads:
        for r in range(ld["rows"]):
            src = ld["addr"] + r * ld["stride"]
            row = bufs[ld["buf"]][ld["buf_addr"] + r]
            row[:] = 0
            row[:ld["row_bytes"]] = mem[src:src + ld["row_bytes"]]
    return bufs


def pack(cfg, buf, row):
    """The bits of a buffer row holding the bytes ``row``: the low bits of each element."""
    eb, w = elem_bytes(cfg, buf), lane_width(cfg, buf)
    value = 0
    for i in range(lanes(cfg, buf)):
        elem = int.from_bytes(row[i * eb:(i + 1) * eb].tobytes(), "little")
        value |= (elem & ((1 << w) - 1)) << (i * w)
    return value


def coalesced(ld):
    rb = ld["row_bytes"]
    return ld["rows"] > 1 and ld["stride"] == rb and rb & (rb - 1) == 0


def descriptor(ld):
    """The read descriptor a LOAD should become."""
    if coalesced(ld):
        return (ld["addr"], 1, ld["rows"] * ld["row_bytes"])
    return (ld["addr"], ld["rows"], ld["row_bytes"])


def instruction(ld, index):
    body = ("buf", "buf_addr", "rows", "row_bytes", "addr", "stride")
    return {"header": {"opcode": Opcode.LOAD, "push_prev": ld["push_prev"],
                       "push_next": ld["push_next"]},
            "body": {k: ld[k] for k in body},
            "index": index}


def make_load(cfg, rng, buf, buf_addr, rows, row_bytes, addr, stride):
    ld = {"buf": buf, "buf_addr": buf_addr, "rows": rows, "row_bytes": row_bytes,
          "addr": addr, "stride": stride,
          "push_prev": int(rng.integers(2)), "push_next": int(rng.integers(2))}
    # LOAD has no previous queue, so the ISA wants push_prev 0; the engine just passes it on.
    validate(cfg, {"opcode": Opcode.LOAD, **ld, "push_prev": 0})
    assert addr + (rows - 1) * stride + row_bytes <= MEM
    return ld


def random_load(cfg, rng):
    S = cfg.stripe_bytes
    buf = Buffer(int(rng.integers(3)))
    depth, row, eb = buffer_depth(cfg, buf), buffer_row_bytes(cfg, buf), elem_bytes(cfg, buf)
    rows = int(rng.integers(1, min(depth, 10) + 1))
    buf_addr = int(rng.integers(0, depth - rows + 1))
    kind = rng.choice(["packed", "contiguous", "broadcast", "strided", "overlapping"],
                      p=[0.35, 0.15, 0.1, 0.3, 0.1])
    if kind == "packed":
        rb = int(rng.choice([eb << k for k in range(8) if eb << k <= row]))
    else:
        rb = eb * int(rng.integers(1, row // eb + 1))
    stride = {"packed": rb, "contiguous": rb, "broadcast": 0,
              "strided": rb + int(rng.integers(1, 3 * S)),
              "overlapping": int(rng.integers(1, rb + 1))}[kind]
    span = (rows - 1) * stride + rb
    if rng.random() < 0.3:
        addr = S * int(rng.integers(0, (MEM - span) // S + 1))
    else:
        addr = int(rng.integers(0, MEM - span + 1))
    return make_load(cfg, rng, buf, buf_addr, rows, rb, addr, stride)


# The read engine model ---------------------------------------------------------------------

class ReadModel:
    """Takes descriptors, and answers each in order with its stripes (bytes outside the mask
    are garbage) and then a status, as the read engine does. ``fail`` maps a descriptor number
    to ``(beats, resp, addr)``: only the first ``beats`` stripes come, then that status, then
    ``aborted`` for every descriptor already taken behind it."""

    def __init__(self, cfg, dut, mem, rng, *, desc_stall=0.0, gap=0.0, status_gap=0.0,
                 fail=None):
        self.cfg, self.dut, self.mem, self.rng = cfg, dut, mem, rng
        self.desc_stall, self.gap, self.status_gap = desc_stall, gap, status_gap
        self.fail = fail or {}
        self.descs = []             # (cycle taken, addr, rows, row_bytes, stride)
        self.statuses = []
        self.answered = 0           # descriptors whose data is all taken
        self.statuses_taken = 0
        self.cycle = 0

    def beats(self, desc):
        S = self.cfg.stripe_bytes
        out = []
        for s, lo, hi, last, end in stripes(desc, S):
            raw = bytearray(self.rng.integers(0, 256, S, dtype=np.uint8).tobytes())
            raw[lo:hi] = self.mem[s * S + lo:s * S + hi].tobytes()
            out.append({"data": int.from_bytes(raw, "little"), "mask": (1 << hi) - (1 << lo),
                        "last": last, "end": end})
        return out

    async def take_descs(self, ctx):
        port = self.dut.rd_desc
        while True:
            ready = self.rng.random() >= self.desc_stall
            ctx.set(port.ready, ready)
            _, _, valid, p = await ctx.tick().sample(port.valid, port.payload)
            if ready and valid:
                self.descs.append((self.cycle, p.addr, p.rows, p.row_bytes, p.stride))
            self.cycle += 1

    def report(self, k, fail):
        """Queue the status of descriptor ``k``; returns the next descriptor to answer."""
        if fail is None:
            self.statuses.append(OKAY)
            return k + 1
        self.statuses.append({"resp": fail[1], "addr": fail[2], "invalid": 0, "aborted": 0})
        self.statuses += [ABORTED] * (len(self.descs) - k - 1)
        return len(self.descs)

    async def respond(self, ctx):
        port = self.dut.rd_data
        k = 0
        while True:
            if k >= len(self.descs):
                await ctx.tick()
                continue
            _, addr, rows, row_bytes, stride = self.descs[k]
            beats = self.beats({"addr": addr, "rows": rows, "row_bytes": row_bytes,
                                "stride": stride})
            fail = self.fail.get(k)
            if fail is not None:
                beats = beats[:fail[0]]
            nxt = k + 1
            if not beats:
                nxt = self.report(k, fail)
            for i, beat in enumerate(beats):
                while self.rng.random() < self.gap:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload, beat)
                ctx.set(port.valid, 1)
                if i == len(beats) - 1:
                    # the status may be offered before the last stripe is taken
                    nxt = self.report(k, fail)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
            k = nxt
            self.answered = k

    async def send_statuses(self, ctx):
        port = self.dut.rd_status
        while True:
            if self.statuses_taken >= len(self.statuses) or self.rng.random() < self.status_gap:
                ctx.set(port.valid, 0)
                await ctx.tick()
                continue
            ctx.set(port.payload, self.statuses[self.statuses_taken])
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
            self.statuses_taken += 1
            ctx.set(port.valid, 0)

    @property
    def idle(self):
        return (self.answered == len(self.descs) and
                self.statuses_taken == len(self.statuses) == len(self.descs))


class Log:
    """What the engine did, cycle by cycle."""

    def __init__(self):
        self.cycle = 0
        self.retires = []       # (cycle, push_prev, push_next)
        self.errors = []        # (cycle, code, index, addr)
        self.writes = []        # for every buffer row written, its cycle
        self.taken = []         # cycles with an instruction taken
        self.busy = []
        self.abort = []

    async def monitor(self, ctx, dut, cfg):
        full = (1 << cfg.cols) - 1
        async for _, _, rv, rp, ev, ep, a, b, c, loading, busy, stall, iv, ir, abort in \
                ctx.tick().sample(dut.retire.valid, dut.retire.payload, dut.error.valid,
                                  dut.error.payload, dut.a_write.en, dut.b_write.en,
                                  dut.acc_write.en, dut.acc_loading, dut.busy, dut.stall,
                                  dut.instr.valid, dut.instr.ready, dut.abort):
            if rv:
                self.retires.append((self.cycle, rp.push_prev, rp.push_next))
            if ev:
                self.errors.append((self.cycle, ErrorCode(ep.code), ep.index, ep.addr))
            ens = {"a": a, "b": b, "c": c}
            active = [k for k, v in ens.items() if v]
            assert len(active) <= 1, f"cycle {self.cycle}: two buffers written"
            # accumulator rows: every lane; scratchpad: rows addr, addr + 1, .. (a prefix)
            assert c in (0, full), f"cycle {self.cycle}: partial row write"
            assert loading or not c, f"cycle {self.cycle}: accumulator row without loading"
            for v in (a, b):
                assert v & (v + 1) == 0, f"cycle {self.cycle}: rows {v:b} not consecutive"
            rows = 1 if c else bin(a | b).count("1")
            self.writes.extend([self.cycle] * rows)
            assert stall == (busy and not active), f"cycle {self.cycle}: stall"
            if iv and ir:
                self.taken.append(self.cycle)
            self.busy.append(busy)
            self.abort.append(abort)
            self.cycle += 1


async def wait_for(ctx, cond, limit=20_000):
    for _ in range(limit):
        if cond():
            return
        await ctx.tick()
    raise AssertionError("timed out")


async def read_buffers(ctx, bench):
    cfg = bench.cfg
    out = {}
    for buf, port in ((Buffer.SPAD_A, bench.spad.a_read), (Buffer.SPAD_B, bench.spad.b_read),
                      (Buffer.ACC, bench.acc.store)):
        ctx.set(port.en, 1)
        values = []
        for addr in range(buffer_depth(cfg, buf)):
            ctx.set(port.addr, addr)
            await ctx.tick()
            values.append(ctx.get(port.data.as_value()))
        out[buf] = values
    return out


def check_buffers(cfg, got, want, skip=()):
    """Compare every buffer row, except the rows ``(buf, row)`` in ``skip``."""
    for buf in Buffer:
        for r in range(buffer_depth(cfg, buf)):
            if (buf, r) not in skip:
                assert got[buf][r] == pack(cfg, buf, want[buf][r]), f"{buf.name} row {r}"


def run(bench, model, log, main, *others):
    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(main)
    async def monitor(ctx):
        await log.monitor(ctx, bench.dut, bench.cfg)

    for bg in (*others, model.take_descs, model.respond, model.send_statuses, monitor):
        sim.add_testbench(bg, background=True)
    sim.run()


def random_memory(seed):
    return np.random.default_rng(seed).integers(0, 256, MEM, dtype=np.uint8)


# Tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CONFIGS)
def test_random_loads(name):
    """Random LOADs into all three buffers, every alignment, packed, contiguous, broadcast,
    strided and overlapping rows, random gaps and backpressure everywhere."""
    cfg = CONFIGS[name]
    seed = list(CONFIGS).index(name)
    rng = np.random.default_rng(seed)
    mem = random_memory(seed)
    loads = [random_load(cfg, rng) for _ in range(24)]
    bench = Bench(cfg)
    model = ReadModel(cfg, bench.dut, mem, rng, desc_stall=0.3, gap=0.2, status_gap=0.3)
    log = Log()
    out = {}

    async def main(ctx):
        await send(ctx, bench.dut.instr, [instruction(ld, 100 + i) for i, ld in enumerate(loads)],
                   rng, 0.2)
        await wait_for(ctx, lambda: len(log.retires) == len(loads) and model.idle)
        await wait_for(ctx, lambda: not ctx.get(bench.dut.busy))
        out["bufs"] = await read_buffers(ctx, bench)

    run(bench, model, log, main)
    assert [d[1:4] for d in model.descs] == [descriptor(ld) for ld in loads]
    for d, ld in zip(model.descs, loads, strict=True):
        assert d[2] == 1 or d[4] == ld["stride"]
    assert any(coalesced(ld) for ld in loads) and not all(coalesced(ld) for ld in loads)
    assert log.errors == []
    assert [r[1:] for r in log.retires] == [(ld["push_prev"], ld["push_next"]) for ld in loads]
    assert len(log.writes) == sum(ld["rows"] for ld in loads)
    # each LOAD retires in or after the cycle that writes its last row (a read it allows
    # comes a cycle later at the earliest)
    last = np.cumsum([ld["rows"] for ld in loads]) - 1
    assert all(r[0] >= log.writes[i] for r, i in zip(log.retires, last, strict=True))
    check_buffers(cfg, out["bufs"], reference(cfg, mem, loads))


def timing_loads(cfg, rng, mixed):
    """LOADs for the throughput test: packed ones (several rows per stripe), and with
    ``mixed`` also unpacked ones (one or more stripes per row) and coalesced rows of one or
    more whole stripes. The realigner takes a cycle to start a descriptor and, when the first
    row starts inside a stripe, one more; rows already cut from the previous LOAD's last
    stripe hide that, so a misaligned LOAD follows one whose last stripe holds several rows,
    and a LOAD following one with one row in its last stripe starts on a stripe boundary."""
    S = cfg.stripe_bytes
    out, addr = [], 64

    def add(buf, buf_addr, rows, rb, stride, offset=0):
        nonlocal addr
        ld = make_load(cfg, rng, buf, buf_addr, rows, rb, addr + offset, stride)
        out.append(ld)
        addr += -(-((rows - 1) * stride + rb + offset + 1) // S) * S

    A, B, ACC = Buffer.SPAD_A, Buffer.SPAD_B, Buffer.ACC
    if cfg.stripe_bytes == 16:          # two_ports: rows of 4, 3 and 12 bytes
        add(A, 0, 8, 4, 4)
        add(ACC, 1, 8, 4, 4, offset=4)
        if mixed:
            add(A, 8, 6, 4, 32)
            add(ACC, 9, 6, 8, 8)
            add(B, 20, 5, 3, 48)
            add(ACC, 20, 5, 12, 16)
        add(ACC, 2, 6, 8, 8)
        add(B, 3, 16, 2, 2)
        add(A, 20, 5, 2, 2, offset=3)
        if mixed:
            add(B, 0, 4, 3, 16)
    else:                               # one_port: rows of 8, 10 and 20 bytes
        add(A, 0, 8, 4, 4)
        add(ACC, 1, 6, 4, 4)
        if mixed:
            add(ACC, 7, 4, 16, 16)
            add(A, 8, 6, 8, 8)
            add(ACC, 11, 4, 20, 24)
            add(B, 15, 5, 10, 16)
            add(ACC, 0, 4, 4, 4)
        add(B, 3, 12, 2, 2)
        add(A, 20, 6, 2, 2, offset=6)
        if mixed:
            add(B, 20, 3, 4, 16)
    return out


@pytest.mark.parametrize("mixed", [False, True], ids=["packed", "mixed"])
@pytest.mark.parametrize("name", ["two_ports", "one_port", "two_ports_x4"])
def test_rows_per_cycle(name, mixed):
    """With memory data always there, rows are written back to back: one per cycle, or one per
    stripe for rows of several stripes, or for packed LOADs into the scratchpad up to
    ``load_rows`` of a stripe's rows per cycle, within a LOAD and from one packed LOAD to the
    next. The realigner's cycle (two for a LOAD starting inside a stripe) to start a
    descriptor shows as idle cycles only where cutting the previous LOAD's last stripe does
    not hide it: after an unpacked LOAD (one), or after a last stripe cut in fewer cycles."""
    cfg = CONFIGS[name]
    S, W = cfg.stripe_bytes, cfg.load_rows
    rng = np.random.default_rng(7)
    mem = random_memory(7)
    loads = timing_loads(cfg, rng, mixed)
    bench = Bench(cfg)
    model = ReadModel(cfg, bench.dut, mem, rng)
    log = Log()
    out = {}

    async def main(ctx):
        await send(ctx, bench.dut.instr, [instruction(ld, i) for i, ld in enumerate(loads)])
        await wait_for(ctx, lambda: len(log.retires) == len(loads) and model.idle)
        out["bufs"] = await read_buffers(ctx, bench)

    run(bench, model, log, main)
    check_buffers(cfg, out["bufs"], reference(cfg, mem, loads))
    assert len(log.writes) == sum(ld["rows"] for ld in loads)
    cycles = sorted(set(log.writes))
    got = [log.writes.count(t) for t in cycles]
    # the expected cuts: (rows, cycles since the previous cut, idle cycles allowed before it).
    # The realigner takes a cycle to start a LOAD's descriptor, two if its first row starts
    # inside a stripe; cutting the previous LOAD's last stripe in several cycles hides them.
    want, prev_packed, hidden = [], True, 0
    for ld in loads:
        packed = coalesced(ld) and ld["row_bytes"] < S
        if packed:
            per = 1 if ld["buf"] == Buffer.ACC else W
            step, stripes = 1, []
            for r0 in range(0, ld["rows"], S // ld["row_bytes"]):
                left = min(S // ld["row_bytes"], ld["rows"] - r0)
                stripes.append([per] * (left // per) + ([left % per] if left % per else []))
        else:
            step, stripes = -(-ld["row_bytes"] // S), [[1]] * ld["rows"]
        start = 1 + (ld["addr"] % S != 0)
        idle = max(0, start - hidden) if prev_packed else 1
        counts = [n for cuts in stripes for n in cuts]
        want += [(n, step, idle if i == 0 else 0) for i, n in enumerate(counts)]
        prev_packed, hidden = packed, len(stripes[-1]) - 1
    assert got == [n for n, _, _ in want]
    for (_, step, idle), t, prev in zip(want[1:], cycles[1:], cycles[:-1], strict=True):
        gap = t - prev - step
        assert 0 <= gap <= idle, f"cycle {t}: {gap} idle cycles"


def error_loads(cfg, rng):
    """Six LOADs into disjoint rows of bank A, and more for the recovery."""
    S, rb = cfg.stripe_bytes, buffer_row_bytes(cfg, Buffer.SPAD_A)
    out = []
    for i in range(8):
        stride = rb if i % 2 else 2 * S + 3
        out.append(make_load(cfg, rng, Buffer.SPAD_A, 4 * i, 4, rb, 512 * (i + 1) + 5 * i,
                             stride))
    return out


@pytest.mark.parametrize("mode", ["slverr", "decerr_first", "abort"])
def test_error_and_abort(mode):
    """A failed read: one error pulse with the LOAD's index and the failing address, no retire
    for it or anything after it, no instruction taken until abort, no row written after it,
    every beat and status in flight drained, busy falling under abort, and the engine working
    again afterwards. With ``abort``, the controller aborts while LOADs are in flight."""
    cfg = CONFIGS["two_ports"]
    rng = np.random.default_rng(3)
    mem = random_memory(3)
    loads = error_loads(cfg, rng)
    first, dropped, recovery = loads[:6], loads[6], loads[7]
    fail = {"slverr": {2: (1, Resp.SLVERR, 0x1234)},
            "decerr_first": {2: (0, Resp.DECERR, 0x777)},
            "abort": {}}[mode]
    bench = Bench(cfg)
    dut = bench.dut
    model = ReadModel(cfg, dut, mem, rng, desc_stall=0.2, gap=0.3, status_gap=0.2, fail=fail)
    log = Log()
    out = {}

    async def feeder(ctx):
        await send(ctx, dut.instr, [instruction(ld, 100 + i) for i, ld in enumerate(first)])
        await wait_for(ctx, lambda: "aborting" in out)
        await send(ctx, dut.instr, [instruction(dropped, 106)])
        out["fed"] = True

    async def controller(ctx):
        if mode == "abort":
            await wait_for(ctx, lambda: len(log.retires) >= 2)
        else:
            await wait_for(ctx, lambda: log.errors)
            for _ in range(6):
                await ctx.tick()
        out["aborting"] = True
        ctx.set(dut.abort, 1)
        await wait_for(ctx, lambda: out.get("fed") and not ctx.get(dut.busy))
        await ctx.tick()            # the model's view of the cycle in which busy fell
        assert model.idle, "data or statuses left in flight"
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.abort, 0)
        retired = len(log.retires)
        await send(ctx, dut.instr, [instruction(recovery, 107)])
        await wait_for(ctx, lambda: len(log.retires) > retired and model.idle and
                       not ctx.get(dut.busy))
        out["bufs"] = await read_buffers(ctx, bench)

    run(bench, model, log, controller, feeder)
    abort_at = log.abort.index(1)
    recovery_at = log.abort.index(0, abort_at)
    before = [r for r in log.retires if r[0] < abort_at]
    assert log.retires[len(before):] == [r for r in log.retires if r[0] >= recovery_at]
    assert len(log.retires) == len(before) + 1
    assert [r[1:] for r in log.retires] == [(ld["push_prev"], ld["push_next"])
                                           for ld in loads[:len(before)] + [recovery]]
    if mode == "abort":
        assert log.errors == []
        assert len(before) >= 2
        stop = abort_at
    else:
        assert [e[1:] for e in log.errors] == [(ErrorCode.READ_ERROR, 102, fail[2][2])]
        assert len(before) == 2
        stop = log.errors[0][0] + 1
        # nothing taken between the error and abort
        assert not [c for c in log.taken if stop <= c < abort_at]
    assert not [c for c in log.writes if stop <= c < recovery_at]
    assert not [d for d in model.descs if stop + 1 < d[0] < recovery_at]
    assert not any(log.busy[recovery_at - 4:recovery_at])
    assert log.taken[-2] >= abort_at            # the LOAD offered during abort was taken
    unknown = {(Buffer.SPAD_A, ld["buf_addr"] + r)
               for ld in first[len(before):] for r in range(ld["rows"])}
    if mode != "abort":
        unknown = {(Buffer.SPAD_A, 8 + r) for r in range(4)}     # the failed LOAD's rows
    want = reference(cfg, mem, loads[:len(before)] + [recovery])
    check_buffers(cfg, out["bufs"], want, skip=unknown)
