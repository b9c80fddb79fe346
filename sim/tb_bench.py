"""cocotb benchmark of one engine (``read_engine`` or ``write_engine`` top) on the HBM model:
long transfers at full rate, bytes per cycle against the model's peak.

Knobs (environment): ``BENCH_BYTES`` (per transfer), ``BENCH_TRANSFERS``, ``BENCH_TIMING``
(``HBM2_2000``, ``HBM3_6400``, ``ideal``), ``BENCH_OUT`` (JSON file for the figures).
"""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hw.transfer import Beat, Descriptor, Status
from sim import hbm
from sim.hbm_axi import HbmAxi
from sim.toolchain import load_config


@cocotb.test()
async def bandwidth(dut):
    """Sequential transfers back to back; the data side never stalls."""
    cfg = load_config()
    size = int(os.environ.get("BENCH_BYTES", str(1 << 20)))
    count = int(os.environ.get("BENCH_TRANSFERS", "2"))
    timing = os.environ.get("BENCH_TIMING", "HBM2_2000")
    timing = hbm.ideal(20) if timing == "ideal" else getattr(hbm, timing)
    writing = dut._name == "write_engine"
    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    mem = HbmAxi(dut, dut.clk, striped=True, granule=cfg.interleave_bytes, timing=timing,
                 check_reads=False)
    base = mem.alloc(count * size)
    dut.rst.value = 1
    dut.desc_valid.value = 0
    dut.status_ready.value = 1
    if writing:
        dut.data_valid.value = 1
        dut.data_payload.value = Beat(cfg).const(
            {"data": (1 << 8 * cfg.stripe_bytes) - 1, "mask": 0}).as_value().value
    else:
        dut.data_ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    descs = [Descriptor(cfg).const({"addr": base + k * size, "rows": 1, "row_bytes": size,
                                    "stride": 0}).as_value().value for k in range(count)]
    status_layout = Status(cfg)
    sent = done = cycle = 0
    wall = time.perf_counter()
    while done < count:
        if sent < count:
            dut.desc_payload.value = descs[sent]
        dut.desc_valid.value = sent < count
        await ReadOnly()
        if sent < count and dut.desc_ready.value:
            sent += 1
        if dut.status_valid.value:
            status = status_layout.from_bits(dut.status_payload.value.to_unsigned())
            assert status.resp == 0 and not status.invalid, f"transfer {done}: {status}"
            done += 1
        await RisingEdge(dut.clk)
        cycle += 1
        assert cycle < 100 * count * size // cfg.stripe_bytes + 100_000, "benchmark hung"
    wall = time.perf_counter() - wall
    mem.check()
    peak = cfg.port_bytes * cfg.mem_ports          # bytes per AXI cycle, all ports
    figures = {
        "direction": "write" if writing else "read", "ports": cfg.mem_ports,
        "burst_len": cfg.burst_len, "in_flight": cfg.reads_in_flight,
        "granule": cfg.interleave_bytes,
        "bytes": count * size, "cycles": cycle,
        "bytes_per_cycle": count * size / cycle, "efficiency": count * size / (cycle * peak),
        "port_efficiency": [
            ch["bytes_written" if writing else "bytes_read"] / (cycle * cfg.port_bytes)
            for ch in mem.stats()["channels"]],
        "row_hit_rate": [ch["hit_rate"] for ch in mem.stats()["channels"]],
        "cycles_per_second": cycle / wall,
    }
    dut._log.info("%s", figures)
    if "BENCH_OUT" in os.environ:
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump(figures, f, indent=2)
