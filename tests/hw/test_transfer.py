"""Tier 1: the burst and stripe planners against the Python reference of a transfer."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import AccelConfig
from hw.transfer import PAGE_BYTES, BeatPlanner, BurstPlanner
from sim.streams import recv, send
from sim.transfers import locate, port_words, random_descriptor, stripes, transfer_bytes


def cfg_for(ports, port_width=64, burst_len=4, granule=0):
    return AccelConfig(name="t", mem_ports=ports, port_width=port_width, burst_len=burst_len,
                       reads_in_flight=8, axi_ids=4, addr_width=24, interleave_bytes=granule)


def plan_bursts(cfg, port, descs, count):
    dut = BurstPlanner(cfg, port)
    got = {}

    async def feed(ctx):
        await send(ctx, dut.desc, descs)

    async def take(ctx):
        got["b"], _ = await recv(ctx, dut.burst, count)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run()
    return [(int(b.addr), int(b.len) + 1, int(b.last)) for b in got["b"]]


def port_rows(cfg, port, desc):
    """Per row, the port addresses (of port words) a transfer touches on ``port``."""
    return [port_words(start, end, cfg.port_bytes, cfg.interleave_bytes, cfg.mem_ports, port)
            for start, end in transfer_bytes(desc)]


@pytest.mark.parametrize("granule", [8, 16, 256, 4096])
@pytest.mark.parametrize("ports, burst_len", [(1, 4), (2, 16), (4, 8), (8, 64)])
def test_bursts_cover_exactly_the_port_words_and_respect_4k(ports, burst_len, granule):
    cfg = cfg_for(ports, burst_len=burst_len, granule=granule)
    rng = np.random.default_rng(ports + granule)
    descs = [random_descriptor(rng, 1 << 20, 20000) for _ in range(5)]
    for port in range(ports):
        rows = [r for d in descs for r in port_rows(cfg, port, d)]
        want = [w for r in rows for w in r]
        # a new burst at each row, 4 KiB page and burst_len beats
        bursts = plan_bursts(cfg, port, descs, count=sum(len(_split(cfg, r)) for r in rows))
        words = [a + k * cfg.port_bytes for a, n, _ in bursts for k in range(n)]
        # each row's words end with a burst marked last
        ends = [a + (n - 1) * cfg.port_bytes for a, n, last in bursts if last]
        assert ends == [r[-1] for r in rows if r]
        assert words == want
        last_flags = [b[2] for b in bursts]
        assert sum(last_flags) == sum(1 for r in rows if r)
        for a, n, _ in bursts:
            assert 1 <= n <= burst_len
            assert a // PAGE_BYTES == (a + n * cfg.port_bytes - 1) // PAGE_BYTES


def _split(cfg, words):
    bursts = []
    for w in words:
        if (bursts and w == bursts[-1][-1] + cfg.port_bytes and len(bursts[-1]) < cfg.burst_len
                and w % PAGE_BYTES != 0):
            bursts[-1].append(w)
        else:
            bursts.append([w])
    return bursts


@pytest.mark.parametrize("granule", [8, 16, 256])
@pytest.mark.parametrize("ports", [1, 2, 4])
def test_stripe_plan_matches_reference(ports, granule):
    cfg = cfg_for(ports, granule=granule)
    rng = np.random.default_rng(10 + ports)
    descs = [random_descriptor(rng, 1 << 20, 3000) for _ in range(6)]
    want = [s for d in descs for s in stripes(d, cfg.stripe_bytes)]
    dut = BeatPlanner(cfg)
    got = {}

    async def feed(ctx):
        await send(ctx, dut.desc, descs, rng, 0.3)

    async def take(ctx):
        got["p"], _ = await recv(ctx, dut.plan, len(want), rng, 0.3)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run()
    W = cfg.port_bytes
    for plan, (s, lo, hi, last, end) in zip(got["p"], want, strict=True):
        assert int(plan.mask) == (1 << hi) - (1 << lo)
        assert [int(plan.lanes) >> p & 1 for p in range(ports)] == \
            [int(lo < (p + 1) * W and hi > p * W) for p in range(ports)]
        assert (plan.last, plan.end) == (last, end)
        if ports > 1:       # the port of the stripe's first byte
            assert plan.port == locate(s * cfg.stripe_bytes, granule, ports)[0]
