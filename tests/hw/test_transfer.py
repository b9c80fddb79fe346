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


def run_bounded(sim, done, cycles):
    """Run ``sim`` (1 MHz clock) until ``done()``; fail after ``cycles`` cycles."""
    for k in range(1, cycles // 500 + 2):
        sim.run_until(k * 500e-6)
        if done():
            return
    raise AssertionError(f"not done after {cycles} cycles")


def plan_bursts(cfg, port, descs, count, rng=None, stall=0.0):
    """The bursts ``(addr, beats, last)`` of ``descs`` on ``port``, and the cycle each was
    taken in (descriptors always offered)."""
    dut = BurstPlanner(cfg, port)
    got = {}

    async def feed(ctx):
        await send(ctx, dut.desc, descs)

    async def take(ctx):
        got["b"], got["t"] = await recv(ctx, dut.burst, count, rng, stall)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    run_bounded(sim, lambda: "b" in got, 20 * count + 2000)
    return [(int(b.addr), int(b.len) + 1, int(b.last)) for b in got["b"]], got["t"]


def port_rows(cfg, port, desc):
    """Per row, the port addresses (of port words) a transfer touches on ``port``."""
    return [port_words(start, end, cfg.port_bytes, cfg.interleave_bytes, cfg.mem_ports, port)
            for start, end in transfer_bytes(desc)]


def check_bursts(cfg, port, descs, rng=None, stall=0.0):
    """The bursts of ``descs`` on ``port`` against the reference; returns the rows (port
    addresses of their words) and the cycle each burst was taken in."""
    rows = [r for d in descs for r in port_rows(cfg, port, d)]
    want = [w for r in rows for w in r]
    # a new burst at each row, 4 KiB page and burst_len beats
    bursts, when = plan_bursts(cfg, port, descs, sum(len(_split(cfg, r)) for r in rows),
                               rng, stall)
    words = [a + k * cfg.port_bytes for a, n, _ in bursts for k in range(n)]
    # each row's words end with a burst marked last
    ends = [a + (n - 1) * cfg.port_bytes for a, n, last in bursts if last]
    assert ends == [r[-1] for r in rows if r]
    assert words == want
    last_flags = [b[2] for b in bursts]
    assert sum(last_flags) == sum(1 for r in rows if r)
    for a, n, _ in bursts:
        assert 1 <= n <= cfg.burst_len
        assert a // PAGE_BYTES == (a + n * cfg.port_bytes - 1) // PAGE_BYTES
    splits = [_split(cfg, r) for r in rows]
    assert bursts == [(b[0], len(b), int(i == len(bs) - 1))
                      for bs in splits for i, b in enumerate(bs)]
    return rows, when


@pytest.mark.parametrize("granule", [8, 16, 256, 4096])
@pytest.mark.parametrize("ports, burst_len", [(1, 4), (2, 16), (4, 8), (8, 64)])
def test_bursts_cover_exactly_the_port_words_and_respect_4k(ports, burst_len, granule):
    cfg = cfg_for(ports, burst_len=burst_len, granule=granule)
    rng = np.random.default_rng(ports + granule)
    descs = [random_descriptor(rng, 1 << 20, 20000) for _ in range(5)]
    for port in range(ports):
        check_bursts(cfg, port, descs)


def corner_descriptors(cfg):
    """Rows of one word, of burst_len and one page's words and one more or fewer, ending and
    starting on page boundaries, and ending at the top of the address space."""
    W, n = cfg.stripe_bytes, cfg.mem_ports
    page = PAGE_BYTES * n       # global bytes holding one page of every port (granule < 4K)
    out = []
    sizes = {1, 2, cfg.burst_len - 1, cfg.burst_len, cfg.burst_len + 1, 2 * cfg.burst_len,
             PAGE_BYTES // cfg.port_bytes, PAGE_BYTES // cfg.port_bytes + 1} - {0}
    for words in sorted(sizes):
        for addr in (0, page - words * W, page - words * W - cfg.port_bytes,
                     page - cfg.burst_len * W, 3 * page + 5 * W, 7):
            out.append({"addr": addr % (1 << 20), "rows": 2, "row_bytes": words * W,
                        "stride": page + W})
    top = 1 << cfg.addr_width
    out.append({"addr": top - 3 * W, "rows": 1, "row_bytes": 3 * W, "stride": 0})
    out.append({"addr": top - PAGE_BYTES * n - 5, "rows": 1, "row_bytes": PAGE_BYTES * n + 5,
                "stride": 0})
    return out


@pytest.mark.parametrize("granule", [32, 64, 4096])
@pytest.mark.parametrize("ports, burst_len, port_width", [
    (1, 4, 64), (1, 256, 64), (1, 256, 256), (2, 1, 256), (4, 16, 256)])
def test_burst_corners(ports, burst_len, port_width, granule):
    cfg = cfg_for(ports, port_width=port_width, burst_len=burst_len, granule=granule)
    descs = corner_descriptors(cfg)
    for port in range(ports):
        check_bursts(cfg, port, descs)


@pytest.mark.parametrize("granule", [8, 256])
@pytest.mark.parametrize("ports, burst_len", [(1, 4), (2, 8), (4, 64)])
def test_bursts_under_backpressure(ports, burst_len, granule):
    cfg = cfg_for(ports, burst_len=burst_len, granule=granule)
    rng = np.random.default_rng(3 * ports + granule)
    descs = [random_descriptor(rng, 1 << 20, 3000, max_rows=8) for _ in range(8)]
    descs += corner_descriptors(cfg)[::5]
    for port in range(ports):
        check_bursts(cfg, port, descs, rng, 0.4)


@pytest.mark.parametrize("ports, granule", [(1, 8), (2, 8), (4, 16), (4, 64)])
def test_burst_rate(ports, granule):
    """Taken as offered: within a transfer a burst every cycle, and a cycle for each row
    without words of the port; from one transfer to the next at most one cycle more."""
    cfg = cfg_for(ports, burst_len=4, granule=granule)
    rng = np.random.default_rng(ports * granule)
    descs = [random_descriptor(rng, 1 << 20, int(rng.choice([40, 200, 1000])), max_rows=12)
             for _ in range(12)]
    for port in range(ports):
        # per transfer, per row: its bursts (0 for a row without words of the port)
        counts = [[len(_split(cfg, r)) for r in port_rows(cfg, port, d)] for d in descs]
        _, when = check_bursts(cfg, port, descs)
        i = 0
        prev_end, between, crossed = None, 0, 0      # rows and transfer ends since
        for rows in counts:
            n = sum(rows)
            if n == 0:
                between += len(rows)
                crossed += 1
                continue
            lead = next(j for j, c in enumerate(rows) if c)
            trail = next(j for j, c in enumerate(reversed(rows)) if c)
            empty = rows[lead:len(rows) - trail].count(0)
            assert when[i + n - 1] - when[i] == n - 1 + empty
            if prev_end is not None:
                assert when[i] - prev_end <= 1 + between + lead + crossed
            prev_end, between, crossed = when[i + n - 1], trail, 1
            i += n


def _split(cfg, words):
    bursts = []
    for w in words:
        if (bursts and w == bursts[-1][-1] + cfg.port_bytes and len(bursts[-1]) < cfg.burst_len
                and w % PAGE_BYTES != 0):
            bursts[-1].append(w)
        else:
            bursts.append([w])
    return bursts


def check_stripes(cfg, descs, rng, stall=0.3):
    """Checks the plans against the reference; returns the cycle each was taken in."""
    want = [s for d in descs for s in stripes(d, cfg.stripe_bytes)]
    dut = BeatPlanner(cfg)
    got = {}

    async def feed(ctx):
        await send(ctx, dut.desc, descs, rng, stall)

    async def take(ctx):
        got["p"], got["when"] = await recv(ctx, dut.plan, len(want), rng, stall)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    run_bounded(sim, lambda: "p" in got, 20 * len(want) + 2000)
    W, ports, granule = cfg.port_bytes, cfg.mem_ports, cfg.interleave_bytes
    for plan, (s, lo, hi, last, end) in zip(got["p"], want, strict=True):
        assert int(plan.mask) == (1 << hi) - (1 << lo)
        assert [int(plan.lanes) >> p & 1 for p in range(ports)] == \
            [int(lo < (p + 1) * W and hi > p * W) for p in range(ports)]
        assert (plan.last, plan.end) == (last, end)
        if ports > 1:       # the port of the stripe's first byte
            assert plan.port == locate(s * cfg.stripe_bytes, granule, ports)[0]
    return got["when"]


@pytest.mark.parametrize("granule", [8, 16, 256])
@pytest.mark.parametrize("ports", [1, 2, 4])
def test_stripe_plan_matches_reference(ports, granule):
    cfg = cfg_for(ports, granule=granule)
    rng = np.random.default_rng(10 + ports)
    descs = [random_descriptor(rng, 1 << 20, 3000) for _ in range(6)]
    check_stripes(cfg, descs, rng)


@pytest.mark.parametrize("ports", [1, 4])
def test_stripe_plan_corners(ports):
    # rows of one byte, one stripe and a byte more or less, at every offset in a stripe;
    # strides that are and are not whole stripes
    cfg = cfg_for(ports)
    S = cfg.stripe_bytes
    rng = np.random.default_rng(20 + ports)
    descs = [{"addr": 5 * S + off, "rows": rows, "row_bytes": n, "stride": stride}
             for n in (1, S - 1, S, S + 1, 2 * S, 3 * S - 1)
             for off in (0, 1, S - 1)
             for rows, stride in ((1, 0), (3, n), (2, 4 * S + 3))]
    check_stripes(cfg, descs, rng)


@pytest.mark.parametrize("ports", [1, 4])
def test_stripe_plan_rate(ports):
    """Descriptors offered ahead are planned a stripe per cycle, with no gap between one
    transfer's last stripe and the next one's first."""
    cfg = cfg_for(ports)
    rng = np.random.default_rng(30 + ports)
    descs = [random_descriptor(rng, 1 << 20, int(rng.choice([8, 100, 600])), max_rows=3)
             for _ in range(20)]
    when = check_stripes(cfg, descs, None, stall=0.0)
    assert when == list(range(when[0], when[0] + len(when)))
