"""Tier 1: requesters sharing the read engine through the read arbiter."""

import numpy as np
import pytest
from amaranth import *
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.axi import Resp
from hw.config import AccelConfig
from hw.read_arbiter import ReadArbiter
from hw.read_engine import ReadEngine
from sim.axi_mem import AxiMemoryPort, InterleavedMemory
from sim.transfers import random_descriptor, stripes

MEM = 1 << 16


def small_cfg(ports, width=64):
    return AccelConfig(name="r", mem_ports=ports, port_width=width, burst_len=4,
                       reads_in_flight=8, axi_ids=4, addr_width=20)


class Bench(Elaboratable):
    def __init__(self, cfg, n):
        self.arbiter = ReadArbiter(cfg, n)
        self.engine = ReadEngine(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter, m.submodules.engine = self.arbiter, self.engine
        for name in ("desc", "data", "status"):
            wiring.connect(m, getattr(self.arbiter.engine, name), getattr(self.engine, name))
        return m


def run(cfg, work, *, errors=None, seed=0, stall=0.0, timeout=60_000, idle=0.5, prefer=0,
        grants=None):
    """Requester ``c`` reads ``work[c]`` (descriptors, each held back for a cycle with
    probability ``idle`` while it repeats), taking beats with random stalls and statuses at
    once, as the fetcher and the load engine do. Returns, per requester, the list of
    ``("beat", payload)`` and ``("status", payload)`` events in the order they came; appends
    the requester of each granted descriptor to ``grants``."""
    bench = Bench(cfg, len(work))
    sim = Simulator(bench)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    mem = InterleavedMemory(cfg, MEM)
    mem.data[:] = rng.integers(0, 256, MEM)
    for p in range(cfg.mem_ports):
        port = AxiMemoryPort(mem, p, getattr(bench.engine, f"m_axi_hbm{p}"),
                             np.random.default_rng(seed * 10 + p), stall=stall,
                             errors=(errors or {}).get(p))
        sim.add_process(port.run)
    events = [[] for _ in work]

    def requester(c):
        client = bench.arbiter.client[c]

        async def feed(ctx):
            for desc in work[c]:
                while rng.random() < idle:
                    ctx.set(client.desc.valid, 0)
                    await ctx.tick()
                ctx.set(client.desc.payload, desc)
                ctx.set(client.desc.valid, 1)
                await ctx.tick().until(client.desc.ready)
                if grants is not None:
                    grants.append(c)
            ctx.set(client.desc.valid, 0)

        async def take(ctx):
            ctx.set(client.status.ready, 1)
            while True:
                ready = rng.random() >= 0.6
                ctx.set(client.data.ready, ready)
                _, _, dv, beat, sv, status = await ctx.tick().sample(
                    client.data.valid, client.data.payload,
                    client.status.valid, client.status.payload)
                if dv and ready:
                    events[c].append(("beat", beat))
                if sv:
                    events[c].append(("status", status))

        sim.add_testbench(feed)
        sim.add_testbench(take, background=True)

    for c in range(len(work)):
        requester(c)

    async def set_prefer(ctx):
        ctx.set(bench.arbiter.prefer, prefer)

    sim.add_testbench(set_prefer)

    def done():
        return all(sum(e[0] == "status" for e in events[c]) == len(work[c])
                   for c in range(len(work)))

    async def wait(ctx):
        for _ in range(timeout):
            if done():
                return
            await ctx.tick()

    sim.add_testbench(wait)
    sim.run()
    assert done(), f"hung: {[sum(e[0] == 'status' for e in ev) for ev in events]} statuses"
    return mem, events


def check_transfers(cfg, mem, descs, events):
    """Every transfer's beats, exactly and in order, and its status after its last beat (the
    next transfer's beats may come before it)."""
    S = cfg.stripe_bytes
    beats = [(i, e) for i, (kind, e) in enumerate(events) if kind == "beat"]
    statuses = [(i, e) for i, (kind, e) in enumerate(events) if kind == "status"]
    assert len(statuses) == len(descs)
    b = 0
    for t, (desc, (at, status)) in enumerate(zip(descs, statuses, strict=True)):
        for k, (s, lo, hi, last, end) in enumerate(stripes(desc, S)):
            assert b < len(beats), f"transfer {t}: beat {k} missing"
            i, beat = beats[b]
            assert i < at, f"transfer {t}: status before beat {k}"
            assert int(beat.mask) == (1 << hi) - (1 << lo), f"transfer {t} beat {k} mask"
            data = int(beat.data).to_bytes(S, "little")
            assert data[lo:hi] == mem.data[s * S + lo:s * S + hi].tobytes(), \
                f"transfer {t} beat {k} data"
            assert (beat.last, beat.end) == (last, end), f"transfer {t} beat {k} flags"
            b += 1
        assert (status.resp, status.aborted, status.invalid) == (0, 0, 0)
    assert b == len(beats), "beats beyond the last transfer"


@pytest.mark.parametrize("ports,width", [(1, 64), (2, 64), (4, 256)])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_requesters_get_their_own_beats_then_status(ports, width, stall):
    # 4 ports of 256 bits: 128-byte stripes, which the slow requesters take over many cycles
    cfg = small_cfg(ports, width)
    rng = np.random.default_rng(ports + int(stall * 10))
    work = [[random_descriptor(rng, MEM, 300) for _ in range(8)] for _ in range(3)]
    mem, events = run(cfg, work, seed=ports, stall=stall)
    for c in range(len(work)):
        check_transfers(cfg, mem, work[c], events[c])


@pytest.mark.parametrize("prefer", [0b00, 0b10, 0b01, 0b11])
def test_preferred_requesters_go_first(prefer):
    """Three requesters offering all the time: the preferred ones' descriptors are granted
    before the others', round-robin within each set; every transfer still arrives whole."""
    cfg = small_cfg(2)
    rng = np.random.default_rng(50 + prefer)
    work = [[random_descriptor(rng, MEM, 200) for _ in range(6)] for _ in range(3)]
    grants = []
    mem, events = run(cfg, work, seed=prefer, idle=0.0, prefer=prefer, grants=grants)
    for c in range(len(work)):
        check_transfers(cfg, mem, work[c], events[c])
    # the policy: round-robin from the requester after the last grant (0 at reset), among
    # the preferred requesters with descriptors left if there are any
    left, last, want = [6, 6, 6], 0, []
    while any(left):
        cands = [c for c in range(3) if left[c] and prefer >> c & 1] or \
            [c for c in range(3) if left[c]]
        last = next((last + k) % 3 for k in range(1, 4) if (last + k) % 3 in cands)
        left[last] -= 1
        want.append(last)
    assert grants == want


def test_failed_transfer_ends_with_its_status_and_others_go_on():
    cfg = small_cfg(2)
    good = {"addr": 0x3003, "rows": 2, "row_bytes": 100, "stride": 300}
    bad = {"addr": 0x1000, "rows": 1, "row_bytes": 512, "stride": 512}
    errors = {1: {("r", 0x820): Resp.SLVERR}}       # global address 0x1048
    mem, events = run(cfg, [[good, good], [bad]], errors=errors, stall=0.2)
    statuses = [e for kind, e in events[1] if kind == "status"]
    assert [(s.resp, s.addr) for s in statuses] == [(Resp.SLVERR, 0x1048)]
    assert events[1][-1][0] == "status"
    # beats of the failed transfer that came are its own, in order, and never its end
    beats = [e for kind, e in events[1] if kind == "beat"]
    want = stripes(bad, cfg.stripe_bytes)
    assert len(beats) < len(want)
    for beat, (s, lo, hi, _, _) in zip(beats, want[:len(beats)], strict=True):
        assert int(beat.data).to_bytes(8, "little")[lo:hi] == \
            mem.data[s * 8 + lo:s * 8 + hi].tobytes()
    assert not any(beat.end for beat in beats)
    # the other requester's transfers either completed exactly or were aborted
    for kind, e in events[0]:
        if kind == "status":
            assert e.resp == 0
    done = [e for kind, e in events[0] if kind == "status" and not e.aborted]
    check_transfers(cfg, mem, [good] * len(done),
                    [ev for ev in events[0] if ev[0] == "beat" or not ev[1].aborted])


def test_needs_two_requesters():
    with pytest.raises(ValueError, match="at least 2 requesters, not 1"):
        ReadArbiter(small_cfg(1), 1)
