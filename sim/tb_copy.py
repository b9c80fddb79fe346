"""cocotb testbench of the copy engine (read engine, realigner, write engine) on the HBM model.

Knobs (environment): ``TB_SEED``, ``TB_COPIES`` (random copies per test), ``TB_MAX_BYTES``
(largest random copy), ``TB_BIG`` (bytes of the one large copy, default 1 MiB),
``TB_TIMING`` (``HBM2_2000``, ``HBM3_6400`` or ``ideal``).
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hw.axi import Resp
from hw.realign import CopyDescriptor
from hw.transfer import Status
from sim import hbm
from sim.hbm_axi import HbmAxi
from sim.toolchain import load_config

SEED = int(os.environ.get("TB_SEED", "1"))


class CopyBench:
    """The copy engine with an HBM stack on its ports and a Python model of its memory."""

    def __init__(self, dut, rng, src_bytes, dst_bytes, stall=0.0):
        self.dut, self.rng, self.stall = dut, rng, stall
        self.cfg = load_config()
        timing = os.environ.get("TB_TIMING", "HBM2_2000")
        timing = hbm.ideal(20) if timing == "ideal" else getattr(hbm, timing)
        self.hbm = HbmAxi(dut, dut.clk, striped=True, granule=self.cfg.interleave_bytes,
                          timing=timing, seed=rng.randrange(1 << 30))
        self.src = self.hbm.alloc(src_bytes)
        self.dst = self.hbm.alloc(dst_bytes)
        self.src_data = bytes(rng.randbytes(src_bytes))
        self.dst_data = bytearray(rng.randbytes(dst_bytes))
        self.hbm.write(self.src, self.src_data)
        self.hbm.write(self.dst, self.dst_data)
        self.desc_layout = CopyDescriptor(self.cfg)
        self.status_layout = Status(self.cfg)
        if stall:
            self.hbm.set_backpressure(ar=stall, aw=stall, w=stall, r=stall, b=stall)

    async def reset(self):
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
        dut.rst.value = 1
        dut.desc_valid.value = 0
        dut.status_ready.value = 0
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    def random_copy(self, max_bytes):
        rng = self.rng
        rows = rng.randint(1, 4)
        row_bytes = rng.randint(1, max(1, max_bytes // rows))
        src_stride = row_bytes + rng.randrange(0, 3 * row_bytes + 64)
        dst_stride = row_bytes + rng.randrange(0, 3 * row_bytes + 64)
        return self.placed(rows, row_bytes, src_stride, dst_stride)

    def placed(self, rows, row_bytes, src_stride, dst_stride, window=None):
        """A copy at random addresses; within ``window = (offset, size)`` of both regions when
        given (to keep the copies of a test apart)."""
        rng = self.rng
        src_span = (rows - 1) * src_stride + row_bytes
        dst_span = (rows - 1) * dst_stride + row_bytes
        lo, size = window or (0, len(self.src_data))
        return {"src": self.src + lo + rng.randrange(size - src_span + 1),
                "dst": self.dst + lo + rng.randrange(size - dst_span + 1),
                "rows": rows, "row_bytes": row_bytes,
                "src_stride": src_stride, "dst_stride": dst_stride}

    def first_burst(self, addr):
        """The port and port address of the burst that starts a row at global ``addr``, and
        the global address of its first beat."""
        W, G, N = self.cfg.port_bytes, self.cfg.interleave_bytes, self.cfg.mem_ports
        word = addr // W * W
        j, off = divmod(word, G)
        return j % N, (j // N) * G + off, word

    def apply(self, copy):
        """Update the model of the destination region with ``copy``."""
        for r in range(copy["rows"]):
            s = copy["src"] - self.src + r * copy["src_stride"]
            d = copy["dst"] - self.dst + r * copy["dst_stride"]
            self.dst_data[d:d + copy["row_bytes"]] = self.src_data[s:s + copy["row_bytes"]]

    async def run(self, copies, timeout=None):
        """Send ``copies`` back to back; return their statuses and the cycles taken."""
        dut, rng = self.dut, self.rng
        total = sum(c["rows"] * c["row_bytes"] for c in copies)
        timeout = timeout or 20 * total // self.cfg.stripe_bytes + 5000 * len(copies) + 20000
        bits = [self.desc_layout.const(c).as_value().value for c in copies]
        sent, statuses, cycle = 0, [], 0
        while len(statuses) < len(copies):
            if cycle > timeout:
                raise AssertionError(f"copy engine hung: {sent} copies sent, "
                                     f"{len(statuses)} statuses after {cycle} cycles")
            if sent < len(bits):
                dut.desc_payload.value = bits[sent]
            dut.desc_valid.value = sent < len(bits)
            ready = rng.random() >= self.stall
            dut.status_ready.value = ready
            await ReadOnly()
            if sent < len(bits) and dut.desc_ready.value:
                sent += 1
            if ready and dut.status_valid.value:
                statuses.append(self.status_layout.from_bits(
                    dut.status_payload.value.to_unsigned()))
            await RisingEdge(dut.clk)
            cycle += 1
        return statuses, cycle

    def check_memory(self):
        self.hbm.check()
        assert self.hbm.read(self.src, len(self.src_data)) == self.src_data, "source changed"
        got = self.hbm.read(self.dst, len(self.dst_data))
        if got != bytes(self.dst_data):
            bad = [i for i in range(len(got)) if got[i] != self.dst_data[i]]
            raise AssertionError(f"{len(bad)} destination bytes differ, first at "
                                 f"{self.dst + bad[0]:#x}")


async def _random_copies(dut, stall):
    rng = random.Random(SEED)
    big = int(os.environ.get("TB_BIG", str(1 << 20)))
    bench = CopyBench(dut, rng, src_bytes=big + 65536, dst_bytes=big + 65536, stall=stall)
    await bench.reset()
    copies = [bench.random_copy(int(os.environ.get("TB_MAX_BYTES", "6000")))
              for _ in range(int(os.environ.get("TB_COPIES", "16")))]
    copies.insert(len(copies) // 2, bench.placed(1, 1, 1, 1))           # a single byte
    copies.append(bench.placed(2, big // 2, big // 2 + rng.randrange(64), big // 2 + 5))
    statuses, cycles = await bench.run(copies)
    for i, s in enumerate(statuses):
        assert (s.resp, s.invalid, s.aborted) == (0, 0, 0), f"copy {i}: status {s}"
    for c in copies:
        bench.apply(c)
    bench.check_memory()
    moved = sum(c["rows"] * c["row_bytes"] for c in copies)
    dut._log.info("%d copies, %d bytes in %d cycles (%.1f bytes/cycle)", len(copies), moved,
                  cycles, moved / cycles)


@cocotb.test()
async def random_copies(dut):
    """Random 2-D copies (any alignment and stride, 1 byte to 1 MiB), every byte checked."""
    await _random_copies(dut, 0.0)


@cocotb.test()
async def random_copies_backpressure(dut):
    """The same with random stalls on all five AXI channels and on the status stream."""
    await _random_copies(dut, 0.3)


def _inside(addr, copy, side):
    base, stride = copy[side], copy[f"{side}_stride"]
    return any(base + r * stride <= addr < base + r * stride + copy["row_bytes"]
               for r in range(copy["rows"]))


@cocotb.test()
async def read_error(dut):
    """SLVERR on one read burst: that copy reports it, the copies queued behind it are
    aborted, nothing outside the failed copy's destination is written, and the engine then
    copies correctly again."""
    rng = random.Random(SEED + 1)
    bench = CopyBench(dut, rng, src_bytes=1 << 16, dst_bytes=1 << 16)
    await bench.reset()
    # every copy in a 16 KiB window of its own, so that only the failing one meets the error
    good = [bench.placed(2, 3000, 3100, 3333, window=(k << 14, 1 << 14)) for k in range(2)]
    failing = bench.placed(3, 2000, 2100, 2500, window=(2 << 14, 1 << 14))
    queued = [bench.placed(1, 500, 500, 500, window=(3 << 14, 1 << 14)) for _ in range(2)]
    port, port_addr, where = bench.first_burst(failing["src"] + failing["src_stride"])
    bench.hbm.inject_error(port, is_write=False, resp=Resp.SLVERR, addr=port_addr)
    statuses, _ = await bench.run(good[:1] + [failing] + queued)
    assert (statuses[0].resp, statuses[0].aborted) == (0, 0)
    assert (statuses[1].resp, statuses[1].addr) == (Resp.SLVERR, where), \
        f"failing copy status {statuses[1]}, expected SLVERR at {where:#x}"
    assert [(s.resp, s.aborted) for s in statuses[2:]] == [(0, 1)] * len(queued)
    # the failed copy may have written part of its destination, nothing else
    bench.apply(good[0])
    after = bench.hbm.read(bench.dst, len(bench.dst_data))
    for i, (a, b) in enumerate(zip(after, bench.dst_data, strict=True)):
        assert a == b or _inside(bench.dst + i, failing, "dst"), f"byte {bench.dst + i:#x}"
    bench.dst_data[:] = after
    statuses, _ = await bench.run(good[1:])
    assert (statuses[0].resp, statuses[0].aborted) == (0, 0)
    bench.apply(good[1])
    bench.check_memory()


@cocotb.test()
async def write_error(dut):
    """DECERR on one write burst: that copy reports it with an address in its destination,
    the failing burst writes nothing, and the copies after it are performed, except that the
    next one may report ``aborted`` if its writes had started before the error came back (the
    write engine overlaps a transfer with the previous one's responses); such a copy may
    have written part of its destination. No other byte changes."""
    rng = random.Random(SEED + 2)
    bench = CopyBench(dut, rng, src_bytes=1 << 16, dst_bytes=1 << 16)
    await bench.reset()
    failing = bench.placed(4, 1500, 1600, 1700, window=(0, 1 << 14))
    after = [bench.placed(1, 999, 999, 999, window=(k << 14, 1 << 14)) for k in (1, 2)]
    port, port_addr, where = bench.first_burst(failing["dst"] + 2 * failing["dst_stride"])
    bench.hbm.inject_error(port, is_write=True, resp=Resp.DECERR, addr=port_addr)
    statuses, _ = await bench.run([failing] + after)
    assert (statuses[0].resp, statuses[0].addr) == (Resp.DECERR, where), \
        f"failing copy status {statuses[0]}, expected DECERR at {where:#x}"
    assert (statuses[1].resp, statuses[1].invalid) == (0, 0)
    assert [(s.resp, s.aborted) for s in statuses[2:]] == [(0, 0)] * (len(after) - 1)
    # copies that may be partly written: the failing one, and the next one if aborted
    partial = [failing] + after[:statuses[1].aborted]
    performed = after[statuses[1].aborted:]
    got = bench.hbm.read(bench.dst, len(bench.dst_data))
    model = bytearray(bench.dst_data)
    for c in partial:
        bench.apply(c)
    full = bytes(bench.dst_data)
    bench.dst_data[:] = model
    for c in performed:
        bench.apply(c)
    for i in range(len(got)):
        if any(_inside(bench.dst + i, c, "dst") for c in partial) and not any(
                _inside(bench.dst + i, c, "dst") for c in performed):
            assert got[i] in (model[i], full[i]), f"byte {bench.dst + i:#x}"
        else:
            assert got[i] == bench.dst_data[i], f"byte {bench.dst + i:#x}"
    # the failing burst itself wrote nothing
    row = failing["dst"] + 2 * failing["dst_stride"] - bench.dst
    assert got[row] == model[row] or full[row] == model[row]
