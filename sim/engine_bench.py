"""Runs the read and write engines in Amaranth's simulator against ``sim.axi_mem``."""

import numpy as np
from amaranth.sim import Simulator

from hw.dma import CopyEngine
from hw.read_engine import ReadEngine
from hw.write_engine import WriteEngine

from .axi_mem import AxiMemoryPort, InterleavedMemory
from .streams import recv, send
from .transfers import stripes

__all__ = ["run_reads", "run_writes", "run_copies"]


def _run(sim, got, keys, timeout):
    """Run until every result in ``keys`` is in ``got``, or ``timeout`` cycles."""
    t = 0
    while not all(k in got for k in keys) and t < timeout:
        t += 500
        sim.run_until(1e-6 * t)
    return t


def _memory(cfg, dut, sim, size, seed, stall, errors, latency=(1, 12)):
    mem = InterleavedMemory(cfg, size)
    ports = []
    for p in range(cfg.mem_ports):
        port = AxiMemoryPort(mem, p, getattr(dut, f"m_axi_hbm{p}"),
                             np.random.default_rng(seed * 100 + p), stall=stall,
                             latency=latency, errors=(errors or {}).get(p))
        sim.add_process(port.run)
        ports.append(port)
    return mem, ports


def run_reads(cfg, descs, *, size=1 << 16, seed=0, stall=0.0, errors=None, fill=None,
              n_beats=None, serial=False, timeout=50_000, stats=None):
    """Read ``descs``; return the memory, the data beats and the statuses.

    ``errors`` maps a port to ``{("r", port_addr): resp}``; ``n_beats`` is how many beats to
    wait for (all of every transfer by default); ``serial`` sends each descriptor only after
    the status of the previous one; ``stats``, a dict, receives the cycle each beat was taken
    in (``"beat_cycles"``)."""
    dut = ReadEngine(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    mem, _ = _memory(cfg, dut, sim, size, seed, stall, errors)
    mem.data[:] = rng.integers(0, 256, size) if fill is None else fill
    if n_beats is None:
        n_beats = sum(len(stripes(d, cfg.stripe_bytes)) for d in descs)
    got = {}

    statuses = []

    async def feed(ctx):
        for desc in descs:
            await send(ctx, dut.desc, [desc], rng, stall)
            while serial and len(statuses) < descs.index(desc) + 1:
                await ctx.tick()

    async def data(ctx):
        got["beats"], when = await recv(ctx, dut.data, n_beats, rng, stall)
        if stats is not None:
            stats["beat_cycles"] = when

    async def status(ctx):
        while len(statuses) < len(descs):
            statuses.extend((await recv(ctx, dut.status, 1, rng, stall))[0])
        got["status"] = statuses

    sim.add_testbench(feed)
    sim.add_testbench(data)
    sim.add_testbench(status)
    _run(sim, got, ("beats", "status"), timeout)
    assert "beats" in got and "status" in got, \
        f"engine hung: {len(got.get('beats', []))} beats, {len(got.get('status', []))} statuses"
    return mem, got["beats"], got["status"]


def run_writes(cfg, descs, beats, *, size=1 << 16, seed=0, stall=0.0, errors=None,
               timeout=50_000, stats=None, latency=(1, 12), cancel_after=None):
    """Write ``beats`` (payload dicts) for ``descs``; return the memory and the statuses.
    ``stats``, a dict, receives the cycle each status was taken in (``"status_cycles"``) and
    a copy of the memory's ``written`` mask as each one was taken (``"written"``);
    ``latency`` is the memory's range of response latencies in cycles; with ``cancel_after``
    only that many beats are sent, and ``cancel`` is raised and held after the last."""
    dut = WriteEngine(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    mem, ports = _memory(cfg, dut, sim, size, seed, stall, errors, latency)
    got = {}

    async def feed(ctx):
        await send(ctx, dut.desc, descs, rng, stall)

    async def data(ctx):
        await send(ctx, dut.data, beats[:cancel_after], rng, stall)
        if cancel_after is not None:
            ctx.set(dut.cancel, 1)
        got["fed"] = True

    async def status(ctx):
        statuses, when, written = [], [], []
        while len(statuses) < len(descs):
            s, (w,) = await recv(ctx, dut.status, 1, rng, stall)
            statuses += s
            when.append(w + (when[-1] + 1 if when else 0))
            written.append(mem.written.copy())
        got["status"] = statuses
        if stats is not None:
            stats.update(status_cycles=when, written=written)

    sim.add_testbench(feed)
    sim.add_testbench(data)
    sim.add_testbench(status)
    _run(sim, got, ("status", "fed"), timeout)
    assert "status" in got, f"engine hung: {len(got.get('status', []))} statuses"
    return mem, got["status"]


def run_copies(cfg, copies, *, size=1 << 16, seed=0, stall=0.0, errors=None, fill=None,
               timeout=100_000):
    """Copy ``copies`` (dicts of ``CopyDescriptor`` fields); return the memory before, the
    memory after and the statuses."""
    dut = CopyEngine(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    mem, _ = _memory(cfg, dut, sim, size, seed, stall, errors)
    mem.data[:] = rng.integers(0, 256, size) if fill is None else fill
    before = mem.data.copy()
    got = {}

    async def feed(ctx):
        await send(ctx, dut.desc, copies, rng, stall)

    async def status(ctx):
        got["status"], _ = await recv(ctx, dut.status, len(copies), rng, stall)

    sim.add_testbench(feed)
    sim.add_testbench(status)
    _run(sim, got, ("status",), timeout)
    assert "status" in got, "copy engine hung"
    return before, mem, got["status"]
