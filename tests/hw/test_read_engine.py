"""Tier 1: the read engine against an interleaved AXI4 memory with reordering and stalls."""

import numpy as np
import pytest

from hw.axi import Resp
from hw.config import AccelConfig
from sim.engine_bench import run_reads
from sim.transfers import random_descriptor, stripes


def small_cfg(ports, granule=0):
    return AccelConfig(name="r", mem_ports=ports, port_width=64, burst_len=4,
                       reads_in_flight=8, axi_ids=4, addr_width=20, interleave_bytes=granule)


# Granules of one port word, two port words, and one spanning many stripes.
GRANULES = [8, 16, 256]


def check_beats(cfg, mem, descs, beats):
    S = cfg.stripe_bytes
    want = [s for d in descs for s in stripes(d, S)]
    assert len(beats) == len(want)
    for i, (beat, (s, lo, hi, last, end)) in enumerate(zip(beats, want, strict=True)):
        assert int(beat.mask) == (1 << hi) - (1 << lo), f"beat {i} mask"
        data = int(beat.data).to_bytes(S, "little")
        assert data[lo:hi] == mem.data[s * S + lo:s * S + hi].tobytes(), f"beat {i} data"
        assert (beat.last, beat.end) == (last, end), f"beat {i} flags"


@pytest.mark.parametrize("granule", GRANULES)
@pytest.mark.parametrize("ports", [1, 2, 4])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_random_transfers(ports, stall, granule):
    cfg = small_cfg(ports, granule)
    rng = np.random.default_rng(ports * 7 + int(stall * 10) + granule)
    descs = [random_descriptor(rng, 1 << 16, 600 if granule < 256 else 2000) for _ in range(6)]
    mem, beats, status = run_reads(cfg, descs, seed=ports, stall=stall)
    check_beats(cfg, mem, descs, beats)
    assert [(s.resp, s.invalid) for s in status] == [(0, 0)] * len(descs)


@pytest.mark.parametrize("ports", [2, 4])
def test_page_granule(ports):
    # 4 KiB granules: rows cross from one port's page to the next port's
    cfg = small_cfg(ports, 4096)
    rng = np.random.default_rng(40 + ports)
    descs = [random_descriptor(rng, 1 << 16, 9000, max_rows=2) for _ in range(3)]
    descs.append({"addr": 4096 - 13, "rows": 2, "row_bytes": 4096 * ports + 30,
                  "stride": 4096 * ports + 100})
    mem, beats, status = run_reads(cfg, descs, seed=ports, stall=0.2, timeout=100_000)
    check_beats(cfg, mem, descs, beats)
    assert [(s.resp, s.invalid) for s in status] == [(0, 0)] * len(descs)


def global_of(cfg, port, port_addr):
    G, N = cfg.interleave_bytes, cfg.mem_ports
    return ((port_addr // G) * N + port) * G + port_addr % G


@pytest.mark.parametrize("granule", [16, 256])
def test_error_address_follows_the_granule(granule):
    cfg = small_cfg(4, granule)
    # the row starts on port 2 at port address 0xe0, so its second burst (4 words) starts at
    # 0x100, which fails
    desc = {"addr": global_of(cfg, 2, 0xe0), "rows": 1, "row_bytes": 1000, "stride": 0}
    errors = {2: {("r", 0x100): Resp.SLVERR}}
    mem, beats, status = run_reads(cfg, [desc], errors=errors, n_beats=0, stall=0.2)
    assert [(s.resp, s.addr) for s in status] == [(Resp.SLVERR, global_of(cfg, 2, 0x100))]


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_errors_one_after_another(stall):
    """Each failing transfer reports its own error, also after an earlier one reset the
    datapath; the transfers between them complete."""
    cfg = small_cfg(1)
    good = [{"addr": 0x1000 * i + 8 * i, "rows": 3, "row_bytes": 40 + 8 * i, "stride": 64}
            for i in range(1, 5)]
    bad = [{"addr": 0x8000 + 0x400 * i, "rows": 2, "row_bytes": 24, "stride": 32}
           for i in range(3)]
    descs = [good[0], bad[0], bad[1], good[1], good[2], bad[2], good[3]]
    errors = {0: {("r", d["addr"]): Resp.SLVERR for d in bad}}
    mem, beats, status = run_reads(cfg, descs, errors=errors, stall=stall, serial=True,
                                   n_beats=sum(len(stripes(d, cfg.stripe_bytes))
                                               for d in good))
    check_beats(cfg, mem, good, beats)
    assert [(s.resp, s.addr if s.resp else 0) for s in status] == [
        (Resp.SLVERR, d["addr"]) if d in bad else (Resp.OKAY, 0) for d in descs]


@pytest.mark.parametrize("granule", [8, 16, 32, 256, 4096])
def test_sequential_read_rate(granule, record_property):
    """A benchmark figure, not a timed assertion: cycles per stripe of one long sequential
    read (4 ports, no backpressure), recorded as ``cycles_per_stripe`` over the whole read and
    ``steady_cycles_per_stripe`` over its second half (the first granule comes from one port
    alone); the data is checked."""
    cfg = AccelConfig(name="rate", mem_ports=4, port_width=64, burst_len=8, reads_in_flight=16,
                      axi_ids=4, addr_width=20, interleave_bytes=granule)
    desc = {"addr": 0, "rows": 1, "row_bytes": 1 << 15, "stride": 0}
    stats = {}
    mem, beats, status = run_reads(cfg, [desc], size=1 << 15, stats=stats)
    check_beats(cfg, mem, [desc], beats)
    when = stats["beat_cycles"]
    half = len(when) // 2
    rate = (when[-1] - when[0]) / (len(when) - 1)
    steady = (when[-1] - when[half]) / (len(when) - 1 - half)
    record_property("cycles_per_stripe", rate)
    record_property("steady_cycles_per_stripe", steady)
    print(f"granule {granule}: {rate:.3f} cycles per stripe, {steady:.3f} in the second half")
