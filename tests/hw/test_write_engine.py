"""Tier 1: the write engine against an interleaved AXI4 memory with reordering and stalls."""

import numpy as np
import pytest

from hw.axi import Resp
from hw.config import AccelConfig
from sim.engine_bench import run_writes
from sim.transfers import random_descriptor, stripes


def small_cfg(ports):
    return AccelConfig(name="w", mem_ports=ports, port_width=64, burst_len=4,
                       reads_in_flight=8, axi_ids=4, addr_width=20)


def random_beats(cfg, rng, descs, size):
    """Random stripes for ``descs`` (random bytes outside the transfers too) and the memory
    image they should leave behind."""
    S = cfg.stripe_bytes
    image = np.zeros(size, np.uint8)
    beats = []
    for d in descs:
        for s, lo, hi, last, end in stripes(d, S):
            data = rng.integers(0, 256, S, dtype=np.uint8)
            image[s * S + lo:s * S + hi] = data[lo:hi]
            beats.append({"data": int.from_bytes(data.tobytes(), "little"),
                          "mask": (1 << S) - 1, "last": last, "end": end})
    return beats, image


@pytest.mark.parametrize("ports", [1, 2, 4])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_random_transfers_write_exactly_their_bytes(ports, stall):
    cfg = small_cfg(ports)
    rng = np.random.default_rng(ports * 3 + int(stall * 10))
    size = 1 << 16
    descs = [random_descriptor(rng, size, 600) for _ in range(6)]
    # later transfers may overlap earlier ones: write in order into the reference image
    beats, image = random_beats(cfg, rng, descs, size)
    mem, status = run_writes(cfg, descs, beats, size=size, seed=ports, stall=stall)
    assert [(s.resp, s.invalid) for s in status] == [(0, 0)] * len(descs)
    assert np.array_equal(mem.data, image)


@pytest.mark.parametrize("resp", [Resp.SLVERR, Resp.DECERR])
def test_error_reports_address_and_writes_nothing_more(resp):
    cfg = small_cfg(2)
    size = 1 << 16
    rng = np.random.default_rng(1)
    bad = {"addr": 0x1000, "rows": 4, "row_bytes": 512, "stride": 1024}
    # port 0, port address 0x820 holds global words 0x208 + 2k: global address 0x1040
    errors = {0: {("w", 0x820): resp}}
    beats, image = random_beats(cfg, rng, [bad], size)
    mem, status = run_writes(cfg, [bad], beats, size=size, errors=errors)
    assert len(status) == 1 and (status[0].resp, status[0].addr) == (resp, 0x1040)
    # whatever was written is the transfer's own data, and the failing burst wrote nothing
    assert np.array_equal(mem.data[mem.written], image[mem.written])
    assert not mem.written[0x1040:0x1040 + 8].any()
    assert not mem.written.all()


def test_invalid_descriptor_is_refused_without_writing():
    cfg = small_cfg(2)
    descs = [{"addr": 64, "rows": 0, "row_bytes": 30, "stride": 0},
             {"addr": 96, "rows": 2, "row_bytes": 0, "stride": 0}]
    mem, status = run_writes(cfg, descs, [])
    assert [(s.invalid, s.addr) for s in status] == [(1, 64), (1, 96)]
    assert not mem.written.any()
