"""Tier 1: the CSR block behind an AXI4-Lite manager with random channel order and stalls."""

import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hw.axi import Resp
from hw.config import PRESETS
from hw.csr import (
    CSR,
    CTRL_SOFT_RESET,
    CTRL_START,
    ENGINES,
    IRQ_DONE,
    IRQ_ERROR,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    Register,
    counter_names,
    register_map,
)
from sim.toolchain import flat_ports

CONFIGS = [PRESETS["tiny"], PRESETS["default"]]
CFG_IDS = [cfg.name for cfg in CONFIGS]
RW_OUTPUTS = {"PROG_ADDR": "prog_addr", "READ_BASE": "read_base", "READ_LIMIT": "read_limit",
              "WRITE_BASE": "write_base", "WRITE_LIMIT": "write_limit"}


class Host:
    """An AXI4-Lite manager: AW and W each start after a random delay (so either comes first,
    or both together), payloads are random while valid is low, and BREADY and RREADY drop
    at random with probability ``stall``."""

    def __init__(self, bus, rng, stall=0.0, max_delay=3):
        self.bus, self.rng, self.stall, self.max_delay = bus, rng, stall, max_delay

    def _ready(self):
        return int(self.rng.random() >= self.stall)

    async def write(self, ctx, addr, value, strb=0xF, delays=None):
        bus, rng = self.bus, self.rng
        aw_at, w_at = delays or [int(d) for d in rng.integers(0, self.max_delay + 1, 2)]
        aw_done = w_done = False
        cycle = 0
        while True:
            aw_valid, w_valid = not aw_done and cycle >= aw_at, not w_done and cycle >= w_at
            ctx.set(bus.awvalid, aw_valid)
            ctx.set(bus.awaddr, addr if aw_valid else int(rng.integers(1 << 12)))
            ctx.set(bus.wvalid, w_valid)
            ctx.set(bus.wdata, value if w_valid else int(rng.integers(1 << 32)))
            ctx.set(bus.wstrb, strb if w_valid else int(rng.integers(16)))
            ready = self._ready()
            ctx.set(bus.bready, ready)
            _, _, aw_ready, w_ready, b_valid, b_resp = await ctx.tick().sample(
                bus.awready, bus.wready, bus.bvalid, bus.bresp)
            aw_done |= aw_valid and bool(aw_ready)
            w_done |= w_valid and bool(w_ready)
            if ready and b_valid:
                break
            cycle += 1
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        ctx.set(bus.bready, 0)
        return Resp(b_resp)

    async def read(self, ctx, addr):
        bus, rng = self.bus, self.rng
        for _ in range(int(rng.integers(0, self.max_delay + 1))):
            ctx.set(bus.araddr, int(rng.integers(1 << 12)))
            await ctx.tick()
        ar_done = False
        while True:
            ctx.set(bus.arvalid, not ar_done)
            ctx.set(bus.araddr, addr)
            ready = self._ready()
            ctx.set(bus.rready, ready)
            _, _, ar_ready, r_valid, r_data, r_resp = await ctx.tick().sample(
                bus.arready, bus.rvalid, bus.rdata, bus.rresp)
            ar_done |= bool(ar_ready)
            if ready and r_valid:
                break
        ctx.set(bus.arvalid, 0)
        ctx.set(bus.rready, 0)
        return r_data, Resp(r_resp)

    async def write_ok(self, ctx, addr, value, strb=0xF):
        assert await self.write(ctx, addr, value, strb) == Resp.OKAY, f"write {addr:#x}"

    async def read_ok(self, ctx, addr):
        value, resp = await self.read(ctx, addr)
        assert resp == Resp.OKAY, f"read {addr:#x}"
        return value

    async def read64(self, ctx, lo_addr):
        lo = await self.read_ok(ctx, lo_addr)
        return lo | (await self.read_ok(ctx, lo_addr + 4)) << 32


def protocol_monitor(bus):
    """A background testbench checking the subordinate's half of the handshake rules: a
    response, once valid, stays valid and stable until taken, and comes only after its
    request (AW and W for B, AR for R) was accepted."""

    async def monitor(ctx):
        aw = w = b = ar = r = 0
        held_b = held_r = None
        async for (_, _, aw_v, aw_r, w_v, w_r, b_v, b_r, b_resp, ar_v, ar_r, r_v, r_r, r_data,
                   r_resp) in ctx.tick().sample(
                bus.awvalid, bus.awready, bus.wvalid, bus.wready, bus.bvalid, bus.bready,
                bus.bresp, bus.arvalid, bus.arready, bus.rvalid, bus.rready, bus.rdata,
                bus.rresp):
            if held_b is not None:
                assert b_v and b_resp == held_b, "B dropped or changed before BREADY"
            if held_r is not None:
                assert r_v and (r_data, r_resp) == held_r, "R dropped or changed before RREADY"
            assert not b_v or b < min(aw, w), "B before its AW and W were accepted"
            assert not r_v or r < ar, "R before its AR was accepted"
            aw, w, ar = aw + (aw_v & aw_r), w + (w_v & w_r), ar + (ar_v & ar_r)
            b, r = b + (b_v & b_r), r + (r_v & r_r)
            held_b = b_resp if b_v and not b_r else None
            held_r = (r_data, r_resp) if r_v and not r_r else None

    return monitor


def run(cfg, *benches, background=(), addr_width=12, cycles=20000):
    """Simulate a :class:`CSR` with ``benches`` (``async def bench(ctx, dut)``), the protocol
    monitor and ``background`` (functions of the DUT returning background testbenches);
    every bench must finish within ``cycles``."""
    dut = CSR(cfg, addr_width=addr_width)
    finished = []

    def wrap(bench):
        async def testbench(ctx):
            await bench(ctx, dut)
            finished.append(bench)
        return testbench

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(protocol_monitor(dut.s_axil), background=True)
    for make in background:
        sim.add_testbench(make(dut), background=True)
    for bench in benches:
        sim.add_testbench(wrap(bench))
    # in slices, since the background monitor alone would keep the simulation going
    for t in range(1, cycles // 200 + 1):
        sim.run_until(200e-6 * t)
        if len(finished) == len(benches):
            break
    assert len(finished) == len(benches), "a testbench did not finish (bus hung?)"
    return dut


async def idle(ctx, cycles):
    for _ in range(cycles):
        await ctx.tick()


def byte_mask(strb):
    return sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1)


# Register map ------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_register_map_is_the_documented_one(cfg):
    regs = register_map(cfg)
    offsets = [r.offset for r in regs.values()]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 for o in offsets)
    assert max(offsets) < 1 << 12
    want = {"CTRL": 0x000, "STATUS": 0x004, "ERR_INDEX": 0x008, "STATE": 0x00C,
            "ERR_ADDR_LO": 0x010,
            "ERR_ADDR_HI": 0x014, "IRQ_ENABLE": 0x018, "IRQ_STATUS": 0x01C,
            "PROG_ADDR_LO": 0x020, "PROG_ADDR_HI": 0x024, "PROG_LEN": 0x028,
            "READ_BASE_LO": 0x030, "READ_LIMIT_LO": 0x038, "WRITE_BASE_LO": 0x040,
            "WRITE_LIMIT_HI": 0x04C, "TOKENS": 0x050, "DISPATCHED": 0x054,
            "CYCLES_LO": 0x100, "LOAD_BUSY_LO": 0x108,
            "LOAD_STALL_LO": 0x110, "COMPUTE_BUSY_LO": 0x118, "STORE_STALL_HI": 0x134,
            "MACS_LO": 0x138, "BYTES_READ0_LO": 0x200, "BYTES_WRITTEN0_LO": 0x208}
    for p in range(cfg.mem_ports):
        want[f"BYTES_WRITTEN{p}_HI"] = 0x20C + 16 * p
    assert {name: regs[name].offset for name in want} == want
    assert len(counter_names(cfg)) == 2 + 2 * len(ENGINES) + 2 * cfg.mem_ports
    assert regs["READ_LIMIT_HI"].reset == (1 << (cfg.addr_width - 32)) - 1


def test_bad_parameters():
    with pytest.raises(ValueError, match="addr_width must be an integer from 12 to 64, not 8"):
        CSR(PRESETS["tiny"], addr_width=8)
    with pytest.raises(TypeError, match="cfg must be an AccelConfig"):
        CSR({"rows": 2})


def test_verilog_ports_carry_the_amba_names():
    dut = CSR(PRESETS["default"])
    text = verilog.convert(dut, name="csr", ports=flat_ports(dut), emit_src=False)
    names = ["start", "soft_reset", "irq", "busy", "done", "error_addr", "macs", "bytes_read",
             "read_limit"]
    names += [f"s_axil_{m}" for m in ("awaddr", "wstrb", "bresp", "araddr", "rdata", "rready")]
    for name in names:
        assert re.search(rf"\b(input|output) .*\b{name};", text), name


# Registers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_reset_values(cfg):
    regs = register_map(cfg)

    async def bench(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(1), stall=0.3)
        for reg in regs.values():
            assert await host.read_ok(ctx, reg.offset) == reg.reset, reg.name
        top = (1 << cfg.addr_width) - 1
        assert [ctx.get(getattr(dut, o)) for o in RW_OUTPUTS.values()] == [0, 0, top, 0, top]
        assert (ctx.get(dut.prog_len), ctx.get(dut.irq), ctx.get(dut.start)) == (0, 0, 0)

    run(cfg, bench)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
@pytest.mark.parametrize("stall", [0.0, 0.5], ids=["free", "stall"])
def test_rw_registers_with_random_values_and_strobes(cfg, stall):
    regs = register_map(cfg)
    rw = [r for r in regs.values() if r.access == "RW"]
    model = {r.name: r.reset for r in rw}
    rng = np.random.default_rng(cfg.rows * 10 + int(stall * 10))

    async def check_outputs(ctx, dut):
        for name, port in RW_OUTPUTS.items():
            want = model[f"{name}_LO"] | model[f"{name}_HI"] << 32
            assert ctx.get(getattr(dut, port)) == want, port
        assert ctx.get(dut.prog_len) == model["PROG_LEN"]

    async def bench(ctx, dut):
        host = Host(dut.s_axil, rng, stall=stall)
        for _ in range(120):
            reg = rw[int(rng.integers(len(rw)))]
            value = int(rng.integers(1 << 32))
            strb = int(rng.integers(16)) if rng.random() < 0.6 else 0xF
            await host.write_ok(ctx, reg.offset, value, strb)
            mask = byte_mask(strb) & reg.bits
            model[reg.name] = (model[reg.name] & ~mask) | (value & mask)
            if rng.random() < 0.5:
                other = rw[int(rng.integers(len(rw)))]
                assert await host.read_ok(ctx, other.offset) == model[other.name], other.name
            await check_outputs(ctx, dut)
        for reg in rw:
            assert await host.read_ok(ctx, reg.offset) == model[reg.name], reg.name

    run(cfg, bench)


def test_write_channel_orders():
    cfg = PRESETS["tiny"]
    prog_len = register_map(cfg)["PROG_LEN"].offset

    async def bench(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(2), stall=0.5)
        # AW first, W first, both together, and each after a longer wait
        for i, delays in enumerate([(0, 2), (2, 0), (0, 0), (5, 1), (1, 5), (3, 3)]):
            assert await host.write(ctx, prog_len, 0x1000 + i, delays=delays) == Resp.OKAY
            assert await host.read_ok(ctx, prog_len) == 0x1000 + i

    run(cfg, bench)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_concurrent_reads_and_writes(cfg):
    regs = register_map(cfg)
    rng = np.random.default_rng(3)
    written = [regs[n] for n in ("PROG_LEN", "READ_BASE_LO", "WRITE_BASE_LO")]
    read = [regs[n] for n in ("PROG_ADDR_LO", "READ_LIMIT_LO", "WRITE_LIMIT_LO")]
    values = {r.name: int(rng.integers(1 << 32)) & r.bits for r in read}
    ready = []

    async def setup_and_read(ctx, dut):
        host = Host(dut.s_axil, rng, stall=0.3)
        for reg in read:
            await host.write_ok(ctx, reg.offset, values[reg.name])
        ready.append(True)
        for _ in range(60):
            reg = read[int(rng.integers(len(read)))]
            assert await host.read_ok(ctx, reg.offset) == values[reg.name]

    async def write(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(4), stall=0.3)
        while not ready:
            await ctx.tick()
        for i in range(60):
            await host.write_ok(ctx, written[i % 3].offset, i)

    run(cfg, setup_and_read, write)


def unmapped(offset):
    """A stand-in register at an offset the map leaves free."""
    return Register(f"unmapped {offset:#x}", offset, "none", 0, 0)


async def send_requests(ctx, valid, ready, fields, items, rng, idle):
    """Drive one request channel with ``items`` (tuples of ``fields`` values), independent of
    the other channels; random idle cycles between them."""
    for item in items:
        while rng.random() < idle:
            ctx.set(valid, 0)
            await ctx.tick()
        for field, value in zip(fields, item, strict=True):
            ctx.set(field, value)
        ctx.set(valid, 1)
        # sampled by hand: a testbench left waiting in ``until()`` when a check fails
        # elsewhere raises again while the simulator is torn down
        while not (await ctx.tick().sample(ready))[2]:
            pass
    ctx.set(valid, 0)


async def take_responses(ctx, valid, ready, fields, count, rng, stall):
    """Take ``count`` responses from one channel, dropping ready at random."""
    out = []
    while len(out) < count:
        take = int(rng.random() >= stall)
        ctx.set(ready, take)
        _, _, got, *values = await ctx.tick().sample(valid, *fields)
        if take and got:
            out.append(tuple(values))
    ctx.set(ready, 0)
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
@pytest.mark.parametrize("pressure", [0.0, 0.4], ids=["free", "pressure"])
def test_pipelined_requests_on_independent_channels(cfg, pressure):
    """A manager that issues the next AW, W and AR before the previous response: each
    channel is driven by its own testbench, so they drift apart freely."""
    regs = register_map(cfg)
    rng = np.random.default_rng(13 + int(pressure * 10))
    targets = [regs[n] for n in ("PROG_LEN", "PROG_ADDR_LO", "READ_BASE_HI", "IRQ_ENABLE",
                                 "STATUS", "MACS_LO")] + [unmapped(0x0FC)]
    writes = [(targets[int(i)], int(v), int(b)) for i, v, b in
              zip(rng.integers(len(targets), size=80), rng.integers(1 << 32, size=80),
                  rng.integers(16, size=80), strict=True)]
    want_b = [Resp.OKAY if reg.access == "RW" else Resp.SLVERR for reg, _, _ in writes]
    model = {reg.name: reg.reset for reg in targets}
    for reg, value, strb in writes:
        if reg.access == "RW":
            mask = byte_mask(strb) & reg.bits
            model[reg.name] = (model[reg.name] & ~mask) | (value & mask)
    # reads, concurrent with the writes, of registers the writes leave alone
    sources = [regs[n] for n in ("READ_LIMIT_LO", "ERR_INDEX", "CYCLES_HI")]
    sources.append(unmapped(0x300 + 16 * cfg.mem_ports))
    reads = [sources[int(i)] for i in rng.integers(len(sources), size=80)]
    want_r = [(reg.reset, Resp.SLVERR if reg.access == "none" else Resp.OKAY) for reg in reads]
    got = {}

    async def aw(ctx, dut):
        bus = dut.s_axil
        await send_requests(ctx, bus.awvalid, bus.awready, [bus.awaddr],
                            [(reg.offset,) for reg, _, _ in writes], rng, pressure)

    async def w(ctx, dut):
        bus = dut.s_axil
        await send_requests(ctx, bus.wvalid, bus.wready, [bus.wdata, bus.wstrb],
                            [(v, b) for _, v, b in writes], np.random.default_rng(1), pressure)

    async def b(ctx, dut):
        bus = dut.s_axil
        got["b"] = await take_responses(ctx, bus.bvalid, bus.bready, [bus.bresp], len(writes),
                                        np.random.default_rng(2), pressure)

    async def ar(ctx, dut):
        bus = dut.s_axil
        await send_requests(ctx, bus.arvalid, bus.arready, [bus.araddr],
                            [(reg.offset,) for reg in reads], np.random.default_rng(3),
                            pressure)

    async def r(ctx, dut):
        bus = dut.s_axil
        got["r"] = await take_responses(ctx, bus.rvalid, bus.rready, [bus.rdata, bus.rresp],
                                        len(reads), np.random.default_rng(4), pressure)

    async def final_values(ctx, dut):
        # the read channel is free once the reads above are answered
        while "b" not in got or "r" not in got:
            await ctx.tick()
        host = Host(dut.s_axil, rng)
        for reg in targets:
            if reg.access != "none":
                assert await host.read_ok(ctx, reg.offset) == model[reg.name], reg.name

    run(cfg, aw, w, b, ar, r, final_values)
    assert [Resp(x) for x, in got["b"]] == want_b
    assert [(d, Resp(x)) for d, x in got["r"]] == want_r


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_ro_registers_refuse_writes(cfg):
    regs = register_map(cfg)
    ro = [r for r in regs.values() if r.access == "RO"]

    async def bench(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(5), stall=0.3)
        ctx.set(dut.error_code, 0x5A)
        ctx.set(dut.error_index, 0x1234)
        ctx.set(dut.error_addr, 0x1_2345_6789)
        ctx.set(dut.error, 1)
        live = {"STATE": 0x0A5_3217, "TOKENS": 0x0102_FF07, "DISPATCHED": 0x8000_0001}
        for name, value in live.items():
            ctx.set(getattr(dut, name.lower()), value)
        await ctx.tick()
        ctx.set(dut.error, 0)
        before = {r.name: await host.read_ok(ctx, r.offset) for r in ro}
        assert {name: before[name] for name in live} == live
        for reg in ro:
            assert await host.write(ctx, reg.offset, 0xFFFF_FFFF) == Resp.SLVERR, reg.name
        assert {r.name: await host.read_ok(ctx, r.offset) for r in ro} == before
        assert before["STATUS"] == STATUS_ERROR | 0x5A << 8
        # CTRL is write-only: it reads as zero
        assert await host.read_ok(ctx, regs["CTRL"].offset) == 0

    run(cfg, bench)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_unmapped_offsets_answer_slverr(cfg):
    regs = register_map(cfg)
    mapped = {r.offset for r in regs.values()}
    rng = np.random.default_rng(6)
    unmapped = [0x02C, 0x058, 0x0FC, 0x140, 0x200 + 16 * cfg.mem_ports, 0xFFC]
    unmapped += [int(a) * 4 for a in rng.integers(0, 1 << 10, 40) if int(a) * 4 not in mapped]
    # aliases of mapped registers above the 4 KiB map are not decoded either
    aliases = [0x1000 + regs["PROG_LEN"].offset, 0x8000 + regs["IRQ_ENABLE"].offset]

    async def bench(ctx, dut):
        host = Host(dut.s_axil, rng, stall=0.3)
        for addr in unmapped + aliases:
            assert await host.read(ctx, addr) == (0, Resp.SLVERR), hex(addr)
            assert await host.write(ctx, addr, 0xFFFF_FFFF) == Resp.SLVERR, hex(addr)
        assert await host.read_ok(ctx, regs["PROG_LEN"].offset) == 0
        assert await host.read_ok(ctx, regs["IRQ_ENABLE"].offset) == 0
        # the byte offset within a word is ignored
        await host.write_ok(ctx, regs["PROG_LEN"].offset + 3, 77)
        assert await host.read_ok(ctx, regs["PROG_LEN"].offset + 1) == 77

    run(cfg, bench, addr_width=16)


# Control and status ------------------------------------------------------------------------

def pulse_recorder(log):
    """A background testbench logging the cycles of ``start`` and ``soft_reset``."""

    def make(dut):
        async def record(ctx):
            cycle = 0
            async for _, _, start, soft_reset in ctx.tick().sample(dut.start, dut.soft_reset):
                if start:
                    log.append(("start", cycle))
                if soft_reset:
                    log.append(("soft_reset", cycle))
                cycle += 1
        return record

    return make


def test_start_pulses_only_when_idle():
    cfg = PRESETS["tiny"]
    ctrl = register_map(cfg)["CTRL"].offset
    log = []

    async def bench(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(7), stall=0.3)

        async def pulses():
            await ctx.tick().repeat(2)
            got = [kind for kind, _ in log]
            log.clear()
            return got

        await host.write_ok(ctx, ctrl, CTRL_START)
        assert await pulses() == ["start"]
        ctx.set(dut.busy, 1)
        await host.write_ok(ctx, ctrl, CTRL_START)          # busy: ignored, still OKAY
        assert await pulses() == []
        await host.write_ok(ctx, ctrl, CTRL_SOFT_RESET)     # soft reset works while busy
        assert await pulses() == ["soft_reset"]
        ctx.set(dut.busy, 0)
        await host.write_ok(ctx, ctrl, CTRL_START, strb=0b1110)    # lane 0 not strobed
        assert await pulses() == []
        await host.write_ok(ctx, ctrl, CTRL_START | CTRL_SOFT_RESET)
        assert await pulses() == ["soft_reset"]
        await host.write_ok(ctx, ctrl, 0xFFFF_FFFC)         # no action bits
        assert await pulses() == []
        await host.write_ok(ctx, ctrl, CTRL_START)
        assert await pulses() == ["start"]

    run(cfg, bench, background=[pulse_recorder(log)])


def sequencer(runs, cycles=20):
    """A background testbench standing in for the sequencer: ``busy`` rises in the cycle
    after each ``start`` pulse and stays high for ``cycles`` cycles."""

    def make(dut):
        async def sequence(ctx):
            left = 0
            async for _, _, start in ctx.tick().sample(dut.start):
                if start:
                    runs.append(True)
                    left = cycles
                left = max(left - 1, 0)
                ctx.set(dut.busy, left > 0)
        return sequence

    return make


def test_back_to_back_starts_start_one_run():
    cfg = PRESETS["tiny"]
    ctrl = register_map(cfg)["CTRL"].offset
    runs = []

    async def bench(ctx, dut):
        # no idle cycles and no stalls: writes as close together as the bus allows
        host = Host(dut.s_axil, np.random.default_rng(7), max_delay=0)
        for _ in range(4):
            await host.write_ok(ctx, ctrl, CTRL_START)
        assert len(runs) == 1
        while ctx.get(dut.busy):
            await ctx.tick()
        await host.write_ok(ctx, ctrl, CTRL_START)
        await ctx.tick()
        assert len(runs) == 2

    run(cfg, bench, background=[sequencer(runs)])


def test_pulses_last_one_cycle():
    cfg = PRESETS["tiny"]
    ctrl = register_map(cfg)["CTRL"].offset
    log = []

    async def bench(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(8))
        await host.write_ok(ctx, ctrl, CTRL_START)
        await host.write_ok(ctx, ctrl, CTRL_SOFT_RESET)
        await ctx.tick().repeat(3)

    run(cfg, bench, background=[pulse_recorder(log)])
    assert [kind for kind, _ in log] == ["start", "soft_reset"]


async def pulse(ctx, signal, payload=()):
    for sig, value in payload:
        ctx.set(sig, value)
    ctx.set(signal, 1)
    await ctx.tick()
    ctx.set(signal, 0)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_done_sets_status_and_interrupt(cfg):
    regs = register_map(cfg)
    status, enable, irq = (regs[n].offset for n in ("STATUS", "IRQ_ENABLE", "IRQ_STATUS"))

    async def bench(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(9), stall=0.3)
        await pulse(ctx, dut.done)
        assert await host.read_ok(ctx, status) == STATUS_DONE
        assert await host.read_ok(ctx, irq) == IRQ_DONE
        assert not ctx.get(dut.irq)                         # not enabled
        await host.write_ok(ctx, enable, IRQ_ERROR)
        assert not ctx.get(dut.irq)
        await host.write_ok(ctx, enable, IRQ_DONE | IRQ_ERROR)
        assert ctx.get(dut.irq)
        await host.write_ok(ctx, enable, 0)
        assert not ctx.get(dut.irq)
        await host.write_ok(ctx, enable, IRQ_DONE)
        assert ctx.get(dut.irq)
        await host.write_ok(ctx, irq, IRQ_ERROR)            # W1C of another bit
        await host.write_ok(ctx, irq, IRQ_DONE, strb=0b1110)    # lane not strobed
        assert ctx.get(dut.irq) and await host.read_ok(ctx, irq) == IRQ_DONE
        await host.write_ok(ctx, irq, IRQ_DONE)
        assert not ctx.get(dut.irq) and await host.read_ok(ctx, irq) == 0
        assert await host.read_ok(ctx, status) == STATUS_DONE     # sticky until START
        # the error interrupt, with busy visible in STATUS
        ctx.set(dut.busy, 1)
        await host.write_ok(ctx, enable, IRQ_ERROR)
        await pulse(ctx, dut.error, [(dut.error_code, 3)])
        assert ctx.get(dut.irq)
        assert await host.read_ok(ctx, status) == STATUS_BUSY | STATUS_DONE | STATUS_ERROR | \
            3 << 8
        await host.write_ok(ctx, irq, IRQ_DONE | IRQ_ERROR)
        assert not ctx.get(dut.irq)
        # START clears DONE and ERROR but leaves IRQ_STATUS to the host
        ctx.set(dut.busy, 0)
        await pulse(ctx, dut.done)
        await host.write_ok(ctx, regs["CTRL"].offset, CTRL_START)
        assert await host.read_ok(ctx, status) == 0
        assert await host.read_ok(ctx, irq) == IRQ_DONE

    run(cfg, bench)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_first_error_is_latched_until_start(cfg):
    regs = register_map(cfg)
    rng = np.random.default_rng(10)

    async def read_error(host, ctx):
        status = await host.read_ok(ctx, regs["STATUS"].offset)
        index = await host.read_ok(ctx, regs["ERR_INDEX"].offset)
        addr = await host.read64(ctx, regs["ERR_ADDR_LO"].offset)
        return status, index, addr

    async def bench(ctx, dut):
        host = Host(dut.s_axil, rng, stall=0.3)
        assert await read_error(host, ctx) == (0, 0, 0)
        for run_ in range(3):
            errors = [(int(rng.integers(1, 256)), int(rng.integers(1 << 32)),
                       int(rng.integers(1 << 63)) * 2 + 1) for _ in range(3)]
            # the inputs carry junk outside the error pulses
            ctx.set(dut.error_code, 0xFF)
            ctx.set(dut.error_addr, (1 << 64) - 1)
            await ctx.tick()
            ctx.set(dut.busy, 1)
            for code, index, addr in errors:
                await pulse(ctx, dut.error, [(dut.error_code, code), (dut.error_index, index),
                                             (dut.error_addr, addr)])
                ctx.set(dut.error_code, 0xFF)
                await idle(ctx, int(rng.integers(0, 3)))
            code, index, addr = errors[0]
            want = STATUS_BUSY | STATUS_ERROR | code << 8
            assert await read_error(host, ctx) == (want, index, addr), f"run {run_}"
            assert await host.read_ok(ctx, regs["IRQ_STATUS"].offset) == IRQ_ERROR
            await host.write_ok(ctx, regs["IRQ_STATUS"].offset, IRQ_ERROR)
            ctx.set(dut.busy, 0)
            await host.write_ok(ctx, regs["CTRL"].offset, CTRL_START)
            assert await read_error(host, ctx) == (0, 0, 0)

    run(cfg, bench)


# Performance counters ----------------------------------------------------------------------

def counter_stimulus(cfg, dut, rng, cycles, counts, busy_p=0.8):
    """A testbench driving random counter increments for ``cycles`` cycles and adding to
    ``counts`` what the counters should take (only cycles with ``busy``)."""

    async def drive(ctx):
        for _ in range(cycles):
            busy = int(rng.random() < busy_p)
            eb, es = int(rng.integers(8)), int(rng.integers(8))
            macs = int(rng.integers(cfg.macs + 1))
            rd = [int(v) for v in rng.integers(0, cfg.port_bytes + 1, cfg.mem_ports)]
            wr = [int(v) for v in rng.integers(0, cfg.port_bytes + 1, cfg.mem_ports)]
            ctx.set(dut.busy, busy)
            ctx.set(dut.engine_busy, eb)
            ctx.set(dut.engine_stalled, es)
            ctx.set(dut.macs, macs)
            ctx.set(dut.bytes_read, rd)
            ctx.set(dut.bytes_written, wr)
            await ctx.tick()
            if busy:
                counts["CYCLES"] += 1
                for e, engine in enumerate(ENGINES):
                    counts[f"{engine}_BUSY"] += eb >> e & 1
                    counts[f"{engine}_STALL"] += es >> e & 1
                counts["MACS"] += macs
                for p in range(cfg.mem_ports):
                    counts[f"BYTES_READ{p}"] += rd[p]
                    counts[f"BYTES_WRITTEN{p}"] += wr[p]
        ctx.set(dut.busy, 0)

    return drive


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_counters_count_what_was_driven_and_clear_on_start(cfg):
    regs = register_map(cfg)
    names = counter_names(cfg)
    rng = np.random.default_rng(cfg.mem_ports)
    runs = [dict.fromkeys(names, 0) for _ in range(2)]
    driven, checked = [], []

    async def stimulus(ctx, dut):
        for counts in runs:
            await counter_stimulus(cfg, dut, rng, 300, counts)(ctx)
            driven.append(True)
            while len(checked) < len(driven):
                await ctx.tick()

    async def host_bench(ctx, dut):
        host = Host(dut.s_axil, np.random.default_rng(11), stall=0.3)

        async def read_all():
            return {n: await host.read64(ctx, regs[f"{n}_LO"].offset) for n in names}

        for i, counts in enumerate(runs):
            # CYCLES read while it counts never goes backwards nor past the final count
            seen = []
            while len(driven) <= i:
                seen.append(await host.read64(ctx, regs["CYCLES_LO"].offset))
            assert await read_all() == counts, f"run {i}"
            assert seen == sorted(seen) and seen[-1] <= counts["CYCLES"]
            await host.write_ok(ctx, regs["CTRL"].offset, CTRL_START)
            assert await read_all() == dict.fromkeys(names, 0)
            checked.append(True)

    run(cfg, stimulus, host_bench, cycles=40000)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
@pytest.mark.parametrize("name", ["CYCLES", "MACS", "BYTES_WRITTEN0"])
def test_64_bit_reads_are_consistent_across_a_carry(cfg, name):
    regs = register_map(cfg)
    lo_addr = regs[f"{name}_LO"].offset
    step = {"CYCLES": 1, "MACS": cfg.macs, "BYTES_WRITTEN0": cfg.port_bytes}[name]
    rng = np.random.default_rng(12)

    async def bench(ctx, dut):
        host = Host(dut.s_axil, rng, stall=0.5)
        counter = dut.counters[name]
        ctx.set(dut.busy, 1)
        ctx.set(dut.macs, cfg.macs)
        ctx.set(dut.bytes_written, [cfg.port_bytes] * cfg.mem_ports)
        straddled = 0
        for k in range(1, 25):
            # put the carry into HI a few increments ahead, so that it often falls between
            # the LO read and the HI read
            before = (k << 32) - step * int(rng.integers(1, 8))
            ctx.set(counter, before)
            lo = await host.read_ok(ctx, lo_addr)
            await idle(ctx, int(rng.integers(0, 6)))
            now = ctx.get(counter)
            hi = await host.read_ok(ctx, lo_addr + 4)
            value = hi << 32 | lo
            assert before <= value <= now, f"{value:#x} not in [{before:#x}, {now:#x}]"
            straddled += now >> 32 != hi
        assert straddled >= 3, "too few reads saw the counter carry between LO and HI"
        # HI keeps its snapshot until the next LO read
        ctx.set(dut.busy, 0)
        assert await host.read_ok(ctx, lo_addr + 4) == hi

    run(cfg, bench)
