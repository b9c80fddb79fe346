"""Tier 1: the write engine against an interleaved AXI4 memory with reordering and stalls."""

import numpy as np
import pytest

from hw.axi import Resp
from hw.config import AccelConfig
from sim.engine_bench import run_writes
from sim.transfers import random_descriptor, stripes, transfer_bytes


def small_cfg(ports, granule=0):
    return AccelConfig(name="w", mem_ports=ports, port_width=64, burst_len=4,
                       reads_in_flight=8, axi_ids=4, addr_width=20, interleave_bytes=granule)


# Granules of one port word, two port words, and one spanning many stripes.
GRANULES = [8, 16, 256]


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


@pytest.mark.parametrize("granule", GRANULES)
@pytest.mark.parametrize("ports", [1, 2, 4])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_random_transfers_write_exactly_their_bytes(ports, stall, granule):
    cfg = small_cfg(ports, granule)
    rng = np.random.default_rng(ports * 3 + int(stall * 10) + granule)
    size = 1 << 16
    descs = [random_descriptor(rng, size, 600 if granule < 256 else 2000) for _ in range(6)]
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


@pytest.mark.parametrize("seed", range(3))
def test_rewrite_of_the_previous_transfer_lands_last(seed):
    # Pairs of back-to-back transfers over the same bytes: the second starts while the first
    # still waits for responses, and the memory commits writes at their response, reordering
    # IDs. Each pair has bytes of its own, so every pair shows its own order.
    cfg = small_cfg(1)
    rng = np.random.default_rng(seed)
    size = 1 << 12
    # three bursts per transfer, so that the two transfers' bursts over the same bytes would
    # not share IDs if the port numbered them in turn
    row = 3 * cfg.burst_len * cfg.port_bytes
    descs = [{"addr": pair * row, "rows": 1, "row_bytes": row, "stride": 0}
             for pair in range(24) for _ in range(2)]
    beats, image = random_beats(cfg, rng, descs, size)
    mem, status = run_writes(cfg, descs, beats, size=size, seed=seed, stall=0.1,
                             latency=(1, 60))
    assert [(s.resp, s.aborted) for s in status] == [(0, 0)] * len(descs)
    assert np.array_equal(mem.data, image)


@pytest.mark.parametrize("ports", [1, 2])
@pytest.mark.parametrize("latency", [(1, 4), (10, 40)])
def test_status_follows_every_byte_of_its_transfer(ports, latency):
    """Short transfers back to back, each starting while the one before waits for its
    responses: each status is taken only once every byte of its transfer is written, and in
    order."""
    cfg = small_cfg(ports)
    rng = np.random.default_rng(ports * 10 + latency[0])
    size = 1 << 14
    descs = [{"addr": 0x100 * i + int(rng.integers(0, 64)), "rows": int(rng.integers(1, 4)),
              "row_bytes": int(rng.integers(1, 40)), "stride": 64} for i in range(40)]
    beats, image = random_beats(cfg, rng, descs, size)
    stats = {}
    mem, status = run_writes(cfg, descs, beats, size=size, seed=ports, stall=0.2,
                             latency=latency, stats=stats)
    assert [(s.resp, s.aborted, s.invalid) for s in status] == [(0, 0, 0)] * len(descs)
    assert np.array_equal(mem.data, image)
    for i, (d, written) in enumerate(zip(descs, stats["written"], strict=True)):
        for start, end in transfer_bytes(d):
            assert written[start:end].all(), (i, start)


def test_error_in_a_transfer_aborts_the_next_one():
    cfg = small_cfg(1)
    rng = np.random.default_rng(7)
    size = 1 << 14
    first = {"addr": 0x0, "rows": 1, "row_bytes": 256, "stride": 0}
    second = {"addr": 0x1000, "rows": 8, "row_bytes": 256, "stride": 256}
    third = {"addr": 0x2000, "rows": 1, "row_bytes": 64, "stride": 0}
    errors = {0: {("w", 0xe0): Resp.DECERR}}       # the last burst of the first transfer
    beats, image = random_beats(cfg, rng, [first, second, third], size)
    mem, status = run_writes(cfg, [first, second, third], beats, size=size, errors=errors)
    assert [(s.resp, s.addr, s.aborted) for s in status] == [
        (Resp.DECERR, 0xe0, 0), (Resp.OKAY, 0, 1), (Resp.OKAY, 0, 0)]
    # whatever was written is the transfers' own data; the failing burst wrote nothing,
    # the second transfer stopped early, and the third ran in full after the reset
    assert np.array_equal(mem.data[mem.written], image[mem.written])
    assert not mem.written[0xe0:0x100].any()
    assert not mem.written[0x1000:0x1800].all()
    assert mem.written[0x2000:0x2040].all()


def test_errors_one_after_another():
    """A failing transfer reports its error also after an earlier one reset the datapath;
    the one right after a failure may be aborted, the others land in full."""
    cfg = small_cfg(1)
    rng = np.random.default_rng(11)
    size = 1 << 14
    descs = [{"addr": 0x400 * i, "rows": 2, "row_bytes": 100, "stride": 128}
             for i in range(8)]
    failing = {1: 0x400, 4: 0x1080}                 # transfer: the address of its bad burst
    errors = {0: {("w", a): Resp.SLVERR for a in failing.values()}}
    beats, image = random_beats(cfg, rng, descs, size)
    mem, status = run_writes(cfg, descs, beats, size=size, errors=errors, stall=0.2)
    for i, (s, d) in enumerate(zip(status, descs, strict=True)):
        if i in failing:
            assert (s.resp, s.addr, s.aborted) == (Resp.SLVERR, failing[i], 0), i
        else:
            assert s.resp == Resp.OKAY and (s.aborted == 0 or i - 1 in failing), i
            if not s.aborted:
                span = slice(d["addr"], d["addr"] + d["stride"] + d["row_bytes"])
                assert mem.written[span].sum() == 2 * d["row_bytes"], i
    assert np.array_equal(mem.data[mem.written], image[mem.written])


@pytest.mark.parametrize("seed", range(3))
def test_cancel_keeps_the_transfer_before_whole(seed):
    """A transfer whose words still go out when the next one is cancelled lands in full and
    reports OKAY; the cancelled one, and those after it, report ``aborted``."""
    cfg = small_cfg(2)
    rng = np.random.default_rng(seed)
    size = 1 << 14
    descs = [{"addr": 0x100, "rows": 6, "row_bytes": 200, "stride": 256},
             {"addr": 0x1000, "rows": 8, "row_bytes": 256, "stride": 256},
             {"addr": 0x2000, "rows": 1, "row_bytes": 64, "stride": 0}]
    beats, image = random_beats(cfg, rng, descs, size)
    first = len(stripes(descs[0], cfg.stripe_bytes))
    mem, status = run_writes(cfg, descs, beats, size=size, seed=seed, stall=0.5,
                             latency=(20, 60), cancel_after=first + 6)
    assert [(s.resp, s.aborted) for s in status] == [(0, 0), (0, 1), (0, 1)]
    d = descs[0]
    assert mem.written[d["addr"]:d["addr"] + 6 * d["stride"]].sum() == 6 * d["row_bytes"]
    assert np.array_equal(mem.data[mem.written], image[mem.written])
    assert not mem.written[0x2000:].any()


def test_invalid_descriptor_is_refused_without_writing():
    cfg = small_cfg(2)
    descs = [{"addr": 64, "rows": 0, "row_bytes": 30, "stride": 0},
             {"addr": 96, "rows": 2, "row_bytes": 0, "stride": 0}]
    mem, status = run_writes(cfg, descs, [])
    assert [(s.invalid, s.addr) for s in status] == [(1, 64), (1, 96)]
    assert not mem.written.any()


@pytest.mark.parametrize("ports", [2, 4])
def test_page_granule(ports):
    # 4 KiB granules: rows cross from one port's page to the next port's
    cfg = small_cfg(ports, 4096)
    rng = np.random.default_rng(50 + ports)
    size = 1 << 16
    descs = [random_descriptor(rng, size, 9000, max_rows=2) for _ in range(3)]
    descs.append({"addr": 4096 - 13, "rows": 2, "row_bytes": 4096 * ports + 30,
                  "stride": 4096 * ports + 100})
    beats, image = random_beats(cfg, rng, descs, size)
    mem, status = run_writes(cfg, descs, beats, size=size, seed=ports, stall=0.2,
                             timeout=100_000)
    assert [(s.resp, s.invalid) for s in status] == [(0, 0)] * len(descs)
    assert np.array_equal(mem.data, image)


def global_of(cfg, port, port_addr):
    G, N = cfg.interleave_bytes, cfg.mem_ports
    return ((port_addr // G) * N + port) * G + port_addr % G


@pytest.mark.parametrize("granule", [16, 256])
def test_error_address_follows_the_granule(granule):
    cfg = small_cfg(4, granule)
    size = 1 << 16
    rng = np.random.default_rng(granule)
    # the row starts on port 1 at port address 0xe0, so its second burst starts at 0x100
    bad = {"addr": global_of(cfg, 1, 0xe0), "rows": 1, "row_bytes": 1000, "stride": 0}
    errors = {1: {("w", 0x100): Resp.SLVERR}}
    beats, image = random_beats(cfg, rng, [bad], size)
    mem, status = run_writes(cfg, [bad], beats, size=size, errors=errors, stall=0.2)
    where = global_of(cfg, 1, 0x100)
    assert [(s.resp, s.addr) for s in status] == [(Resp.SLVERR, where)]
    assert np.array_equal(mem.data[mem.written], image[mem.written])
    assert not mem.written[where:where + 8].any()
