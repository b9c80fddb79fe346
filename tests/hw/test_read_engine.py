"""Tier 1: the read engine against an interleaved AXI4 memory with reordering and stalls."""

import numpy as np
import pytest

from hw.axi import Resp
from hw.config import AccelConfig
from sim.engine_bench import run_reads
from sim.transfers import random_descriptor, stripes


def small_cfg(ports):
    return AccelConfig(name="r", mem_ports=ports, port_width=64, burst_len=4,
                       reads_in_flight=8, axi_ids=4, addr_width=20)


def check_beats(cfg, mem, descs, beats):
    S = cfg.stripe_bytes
    want = [s for d in descs for s in stripes(d, S)]
    assert len(beats) == len(want)
    for i, (beat, (s, lo, hi, last, end)) in enumerate(zip(beats, want, strict=True)):
        assert int(beat.mask) == (1 << hi) - (1 << lo), f"beat {i} mask"
        data = int(beat.data).to_bytes(S, "little")
        assert data[lo:hi] == mem.data[s * S + lo:s * S + hi].tobytes(), f"beat {i} data"
        assert (beat.last, beat.end) == (last, end), f"beat {i} flags"


@pytest.mark.parametrize("ports", [1, 2, 4])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_random_transfers(ports, stall):
    cfg = small_cfg(ports)
    rng = np.random.default_rng(ports * 7 + int(stall * 10))
    descs = [random_descriptor(rng, 1 << 16, 600) for _ in range(6)]
    mem, beats, status = run_reads(cfg, descs, seed=ports, stall=stall)
    check_beats(cfg, mem, descs, beats)
    assert [(s.resp, s.invalid) for s in status] == [(0, 0)] * len(descs)


@pytest.mark.parametrize("resp", [Resp.SLVERR, Resp.DECERR])
def test_error_reports_address_and_engine_recovers(resp):
    cfg = small_cfg(2)
    # 2 ports of 8-byte words: global word w is on port w % 2 at port address (w // 2) * 8
    bad = {"addr": 0x1000, "rows": 1, "row_bytes": 512, "stride": 512}
    good = {"addr": 0x3003, "rows": 2, "row_bytes": 100, "stride": 300}
    # the burst at port address 0x820 of port 1 holds global words 0x209 + 2k: 0x1048 on
    errors = {1: {("r", 0x820): resp}}
    mem, beats, status = run_reads(cfg, [bad], errors=errors, n_beats=0, stall=0.2)
    assert len(status) == 1
    assert (status[0].resp, status[0].addr) == (resp, 0x1048)
    # transfers queued behind the failing one are answered as aborted
    mem, beats, status = run_reads(cfg, [bad, good, good], errors=errors, n_beats=0)
    assert [(s.resp, s.aborted) for s in status] == [(resp, 0), (0, 1), (0, 1)]
    # and a transfer after the error status runs normally
    mem, beats, status = run_reads(cfg, [bad, good], errors=errors, stall=0.2, serial=True,
                                   n_beats=len(stripes(good, cfg.stripe_bytes)))
    assert [(s.resp, s.aborted) for s in status] == [(resp, 0), (0, 0)]
    check_beats(cfg, mem, [good], beats)


def test_invalid_descriptor_is_refused_in_order():
    cfg = small_cfg(2)
    descs = [{"addr": 5, "rows": 1, "row_bytes": 30, "stride": 0},
             {"addr": 64, "rows": 0, "row_bytes": 30, "stride": 0},
             {"addr": 96, "rows": 2, "row_bytes": 0, "stride": 0},
             {"addr": 200, "rows": 2, "row_bytes": 17, "stride": 40}]
    mem, beats, status = run_reads(cfg, descs)
    check_beats(cfg, mem, [descs[0], descs[3]], beats)
    assert [(s.invalid, s.addr if s.invalid else 0) for s in status] == \
        [(0, 0), (1, 64), (1, 96), (0, 0)]


def test_error_belongs_to_the_transfer_of_the_failing_burst():
    # the engine plans ahead: the second transfer's bursts go out while the first one's data
    # still streams; an error there must not fail the first transfer
    cfg = small_cfg(2)
    first = {"addr": 0x100, "rows": 4, "row_bytes": 400, "stride": 512}
    failing = {"addr": 0x1000, "rows": 1, "row_bytes": 64, "stride": 0}
    errors = {1: {("r", 0x800): Resp.DECERR}}      # global word 0x201: address 0x1008
    mem, beats, status = run_reads(cfg, [first, failing], errors=errors,
                                   n_beats=len(stripes(first, cfg.stripe_bytes)), stall=0.3)
    check_beats(cfg, mem, [first], beats)
    assert [(s.resp, s.addr) for s in status] == [(0, 0), (Resp.DECERR, 0x1008)]
