"""cocotb tests of the HBM AXI adapter through a wire-through DUT (``s_axi_*`` to
``m_axi_hbm0_*``), driven by cocotbext-axi's AxiMaster.

Knobs (environment): ``TB_SEED``, ``TB_OPS`` (operations per worker of the random test).
"""

import logging
import os
import random
import warnings

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiResp

from sim.hbm_axi import DECERR, SLVERR, HbmAxi, ProtocolError

# cocotbext-axi 0.1.28 reads cocotb's deprecated Event.data in AxiMaster.read/write.
warnings.filterwarnings("ignore", "The data field will be removed", DeprecationWarning)

SEED = int(os.environ.get("TB_SEED", "1"))
OPS = int(os.environ.get("TB_OPS", "40"))


async def setup(dut, max_burst_len=16, master=True, **kwargs):
    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    for name in ("s_axi_arvalid", "s_axi_awvalid", "s_axi_wvalid", "s_axi_rready",
                 "s_axi_bready"):
        getattr(dut, name).value = 0
    hbm = HbmAxi(dut, dut.clk, seed=SEED, **kwargs)
    if master:
        master = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), dut.clk,
                           max_burst_len=max_burst_len)
    for name in ("cocotb.tb_hbm_axi", f"cocotb.{dut._name}.s_axi"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)
    await ClockCycles(dut.clk, 4)
    return hbm, master


def _pause(rng, p):
    while True:
        yield rng.random() < p


@cocotb.test()
async def random_traffic(dut):
    """Random reads and writes of random length and alignment from four concurrent workers,
    backpressure on all five channels from both sides, checked byte for byte."""
    hbm, master = await setup(dut)
    rng = random.Random(SEED)
    hbm.set_backpressure(ar=0.2, aw=0.2, w=0.2, r=0.2, b=0.2)
    master.read_if.r_channel.set_pause_generator(_pause(rng, 0.2))
    master.write_if.b_channel.set_pause_generator(_pause(rng, 0.2))
    master.write_if.w_channel.set_pause_generator(_pause(rng, 0.1))
    size = 64 * 1024
    base = hbm.alloc(size)
    shadow = bytearray(rng.randbytes(size))
    hbm.write(base, shadow)

    async def worker(k):
        lo, span = k * size // 4, size // 4
        wrng = random.Random(SEED * 10 + k)
        for _ in range(OPS):
            n = wrng.randint(1, 700)
            off = lo + wrng.randrange(span - n)
            if wrng.random() < 0.5:
                data = wrng.randbytes(n)
                resp = await master.write(base + off, data)
                assert resp.resp == AxiResp.OKAY
                shadow[off:off + n] = data
            else:
                got = await master.read(base + off, n)
                assert got.resp == AxiResp.OKAY
                assert got.data == shadow[off:off + n], f"read of {n} bytes at {off:#x}"

    tasks = [cocotb.start_soon(worker(k)) for k in range(4)]
    for t in tasks:
        await t
    assert hbm.read(base, size) == shadow
    hbm.check()
    st = hbm.stats()["channels"][0]
    dut._log.warning("random traffic:\n%s", hbm.report())
    assert st["reordered"] > 0, "no read burst ever overtook an older one"
    assert st["row_hits"] and st["row_conflicts"]


@cocotb.test()
async def streaming_reads(dut):
    """Eight concurrent 8 KiB reads in 256-byte bursts: the port streams near the model's
    limit, and a quiet port sleeps."""
    hbm, master = await setup(dut, max_burst_len=8)
    size = 64 * 1024
    base = hbm.alloc(size)
    data = random.Random(SEED).randbytes(size)
    hbm.write(base, data)
    await RisingEdge(dut.clk)
    start = cocotb.utils.get_sim_time("ns")
    chunk = size // 8
    tasks = [cocotb.start_soon(master.read(base + k * chunk, chunk)) for k in range(8)]
    for k, t in enumerate(tasks):
        got = await t
        assert got.data == data[k * chunk:(k + 1) * chunk]
    cycles = (cocotb.utils.get_sim_time("ns") - start) / 2
    eff = size / (cycles * 32)
    port = hbm.ports[0]
    dut._log.warning("streaming: %d bytes in %d cycles, %.1f%% of the port's peak; "
                     "%d wake-ups\n%s", size, cycles, 100 * eff, port.wakeups, hbm.report())
    assert eff > 0.6, eff
    before = port.wakeups
    await ClockCycles(dut.clk, 5000)
    assert port.wakeups - before <= 4, port.wakeups - before
    hbm.check()


@cocotb.test()
async def violations_and_injected_errors(dut):
    """A narrow write and a write to unallocated memory are reported; injected errors come
    back as SLVERR/DECERR."""
    hbm, master = await setup(dut, fail_fast=False)
    base = hbm.alloc(16 * 1024)
    resp = await master.write(base, bytes(range(8)), size=2)
    assert resp.resp == AxiResp.SLVERR
    assert any("narrower" in e for e in hbm.errors), hbm.errors
    resp = await master.write(0x4000_0000, bytes(64))
    assert resp.resp == AxiResp.DECERR
    assert any("unallocated" in e for e in hbm.errors), hbm.errors
    assert len(hbm.errors) == 2

    hbm.inject_error(0, False, SLVERR, addr=base + 256)
    hbm.inject_error(0, True, DECERR, addr=base + 512)
    assert (await master.read(base, 64)).resp == AxiResp.OKAY
    assert (await master.read(base + 256, 64)).resp == AxiResp.SLVERR
    assert (await master.write(base + 512, bytes(64))).resp == AxiResp.DECERR
    assert (await master.write(base + 768, b"\xff" * 64)).resp == AxiResp.OKAY
    assert hbm.read(base + 512, 64) == bytes(64) and hbm.read(base + 768, 64) == b"\xff" * 64
    assert len(hbm.errors) == 2


@cocotb.test()
async def violations_by_hand(dut):
    """What AxiMaster never does, driven by hand: a changed payload, a dropped VALID, a
    burst across 4 KiB and a strobe outside the transfer are all reported."""
    hbm, _ = await setup(dut, master=False, fail_fast=False)
    base = hbm.alloc(16 * 1024)
    clk = dut.clk

    hbm.set_backpressure(ar=1.0)  # AR never ready: the request must hold
    dut.s_axi_arid.value = 1
    dut.s_axi_araddr.value = base
    dut.s_axi_arlen.value = 0
    dut.s_axi_arsize.value = 5
    dut.s_axi_arburst.value = 1
    dut.s_axi_arvalid.value = 1
    await ClockCycles(clk, 3)
    dut.s_axi_araddr.value = base + 32
    await RisingEdge(clk)
    dut.s_axi_arvalid.value = 0
    await ClockCycles(clk, 3)
    assert [e.split(": ", 1)[1].split(":")[0] for e in hbm.errors] == [
        "AR payload changed while VALID and not READY", "ARVALID dropped before ARREADY"]
    hbm.set_backpressure(ar=None)
    dut.s_axi_araddr.value = base + 4096 - 32
    dut.s_axi_arlen.value = 1  # two beats: across the 4 KiB line
    dut.s_axi_arvalid.value = 1
    dut.s_axi_rready.value = 1
    while True:
        await RisingEdge(clk)
        if dut.s_axi_arready.value == 1:  # sampled before the edge: the handshake
            break
    dut.s_axi_arvalid.value = 0
    beats = []
    while len(beats) < 2:
        await RisingEdge(clk)
        if dut.s_axi_rvalid.value == 1:
            beats.append((dut.s_axi_rresp.value.to_unsigned(), dut.s_axi_rlast.value == 1))
    dut.s_axi_rready.value = 0
    assert beats == [(SLVERR, False), (SLVERR, True)]
    assert "crosses 4 KiB" in hbm.errors[2] and len(hbm.errors) == 3

    dut.s_axi_awid.value = 2
    dut.s_axi_awaddr.value = base + 16
    dut.s_axi_awlen.value = 0
    dut.s_axi_awsize.value = 5
    dut.s_axi_awburst.value = 1
    dut.s_axi_awvalid.value = 1
    dut.s_axi_wdata.value = 0
    dut.s_axi_wstrb.value = 0xFFFFFFFF  # the low 16 bytes lie before the start address
    dut.s_axi_wlast.value = 1
    dut.s_axi_wvalid.value = 1
    dut.s_axi_bready.value = 1
    aw_done = w_done = False
    while not (aw_done and w_done):
        await RisingEdge(clk)
        if dut.s_axi_awvalid.value == 1 and dut.s_axi_awready.value == 1:
            aw_done = True
            dut.s_axi_awvalid.value = 0
        if dut.s_axi_wvalid.value == 1 and dut.s_axi_wready.value == 1:
            w_done = True
            dut.s_axi_wvalid.value = 0
    while dut.s_axi_bvalid.value != 1:
        await RisingEdge(clk)
    assert dut.s_axi_bresp.value.to_unsigned() == SLVERR
    assert "WSTRB" in hbm.errors[3] and len(hbm.errors) == 4, hbm.errors


@cocotb.test(expect_error=ProtocolError)
async def fail_fast_fails_the_test(dut):
    """By default the first violation raises in the port's coroutine and fails the test."""
    hbm, master = await setup(dut)
    base = hbm.alloc(4096)
    await master.write(base, bytes(8), size=3)
    await ClockCycles(dut.clk, 10)
