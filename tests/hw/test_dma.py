"""Tier 1: the copy engine (read engine, realigner, write engine) on an interleaved memory."""

import numpy as np
import pytest

from hw.axi import Resp
from hw.config import AccelConfig
from sim.engine_bench import run_copies


def small_cfg(ports):
    return AccelConfig(name="c", mem_ports=ports, port_width=64, burst_len=4,
                       reads_in_flight=8, axi_ids=4, addr_width=20)


def random_copies(rng, n, size, max_bytes=700):
    half = size // 2
    out = []
    for _ in range(n):
        rows = int(rng.integers(1, 4))
        row_bytes = int(rng.integers(1, max_bytes // rows + 1))
        ss = row_bytes + int(rng.integers(0, 200))
        ds = row_bytes + int(rng.integers(0, 200))
        out.append({"src": int(rng.integers(0, half - (rows - 1) * ss - row_bytes)),
                    "dst": half + int(rng.integers(0, half - (rows - 1) * ds - row_bytes)),
                    "rows": rows, "row_bytes": row_bytes, "src_stride": ss, "dst_stride": ds})
    return out


def apply(image, copy):
    for r in range(copy["rows"]):
        s = copy["src"] + r * copy["src_stride"]
        d = copy["dst"] + r * copy["dst_stride"]
        image[d:d + copy["row_bytes"]] = image[s:s + copy["row_bytes"]]


@pytest.mark.parametrize("ports", [1, 2, 4])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_random_copies(ports, stall):
    rng = np.random.default_rng(ports + int(stall * 10))
    size = 1 << 16
    copies = random_copies(rng, 8, size)
    before, mem, status = run_copies(small_cfg(ports), copies, size=size, seed=ports,
                                     stall=stall)
    assert [(s.resp, s.invalid, s.aborted) for s in status] == [(0, 0, 0)] * len(copies)
    for c in copies:
        apply(before, c)
    assert np.array_equal(mem.data, before)


@pytest.mark.parametrize("granule", [16, 256])
@pytest.mark.parametrize("ports", [2, 4])
def test_random_copies_over_a_granule(ports, granule):
    cfg = small_cfg(ports).replace(interleave_bytes=granule)
    rng = np.random.default_rng(ports + granule)
    size = 1 << 16
    copies = random_copies(rng, 6, size, max_bytes=1500)
    before, mem, status = run_copies(cfg, copies, size=size, seed=ports, stall=0.3)
    assert [(s.resp, s.invalid, s.aborted) for s in status] == [(0, 0, 0)] * len(copies)
    for c in copies:
        apply(before, c)
    assert np.array_equal(mem.data, before)


def test_read_error_aborts_the_queue_and_writes_nothing_else():
    cfg = small_cfg(2)
    size = 1 << 16
    copies = [{"src": 0x100, "dst": 0x8000, "rows": 2, "row_bytes": 300, "src_stride": 400,
               "dst_stride": 500},
              {"src": 0x1000, "dst": 0x9000, "rows": 1, "row_bytes": 40, "src_stride": 0,
               "dst_stride": 0}]
    # global word 0x21 (bytes 0x108..) is the first word of port 1 in the first copy: port
    # address 0x80, the start of its first burst
    errors = {1: {("r", 0x80): Resp.SLVERR}}
    before, mem, status = run_copies(cfg, copies, size=size, errors=errors)
    assert (status[0].resp, status[0].addr) == (Resp.SLVERR, 0x108)
    assert (status[1].resp, status[1].aborted) == (0, 1)
    outside = np.ones(size, bool)
    outside[0x8000:0x8000 + 800] = False
    assert np.array_equal(mem.data[outside], before[outside])
