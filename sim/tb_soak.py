"""cocotb randomized regression of the whole accelerator (see :mod:`sim.soak`).

Knobs (environment): ``SOAK_SEED`` (first seed), ``SOAK_N`` (programs), ``SOAK_MAX_DIM``
(largest M, K, N), ``SOAK_CORRUPT`` (share of corrupted programs), ``SOAK_ABORT`` (share
of runs cut short by SOFT_RESET at a random moment), ``SOAK_STALL`` (random
stall probability on every AXI channel), ``TB_TIMING``, and ``SOAK_OUT`` (a JSON summary).
Program ``i`` uses seed ``SOAK_SEED + i``; the HBM model reorders across IDs and its latency
follows its timing preset.
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from hw.isa import INSTR_BYTES, ErrorCode, Opcode, decode, region
from sim.driver import Driver, RunError
from sim.reference import gemm_reference
from sim.soak import expect, flip, random_case

SEED = int(os.environ.get("SOAK_SEED", "1"))
N = int(os.environ.get("SOAK_N", "20"))
MAX_DIM = int(os.environ.get("SOAK_MAX_DIM", "24"))
CORRUPT = float(os.environ.get("SOAK_CORRUPT", "0.5"))
ABORT = float(os.environ.get("SOAK_ABORT", "0.1"))
STALL = float(os.environ.get("SOAK_STALL", "0.2"))
TIMING = os.environ.get("TB_TIMING", "HBM2_2000")


def windows_of(cfg, gemm):
    """The read window (the GEMM's whole allocation) and the write window (the bytes its
    STOREs write) of a placed GEMM."""
    regions = gemm.regions().values()
    lo = min(addr for addr, _ in regions)
    hi = max(addr + size for addr, size in regions)
    hi = -(-hi // 4096) * 4096 - 1
    code = gemm.program_bytes()
    stores = []
    for i in range(0, len(code), INSTR_BYTES):
        f = decode(cfg, int.from_bytes(code[i:i + INSTR_BYTES], "little"))
        if f["opcode"] == Opcode.STORE:
            stores.append(region(f))
    return (lo, hi), (min(a for a, _ in stores), max(b for _, b in stores))


async def abort_midway(drv, gemm, cycles):
    """START, SOFT_RESET after ``cycles`` cycles (unless the run ended first), and the run's
    outcome once the accelerator is idle."""
    await drv.start(gemm.prog_addr, gemm.prog_len)
    await ClockCycles(drv.dut.clk, max(cycles, 1))
    await drv.abort()
    return await drv.result()


@cocotb.test()
async def soak(dut):
    """``SOAK_N`` random programs, valid or corrupted, each checked against its expectation."""
    drv = Driver(dut, timing=TIMING, stall=STALL, seed=SEED)
    await drv.reset()
    cfg = drv.cfg
    tally = {"programs": 0, "valid": 0, "corrupted": 0, "aborted": 0, "exact": 0, "errors": 0,
             "clean": 0, "mismatches": 0, "cycles": 0}
    codes = {}
    failures = []
    t0 = time.monotonic()
    for i in range(N):
        seed = SEED + i
        case = random_case(cfg, seed, MAX_DIM)
        A, B, bias, scales = case.operands(cfg)
        gemm = drv.place_gemm(A, B, bias, scales, case.post, case.dataflow)
        case = random_case(cfg, seed, MAX_DIM, CORRUPT, gemm.prog_len, ABORT)
        read, write = windows_of(cfg, gemm)
        original = gemm.program_bytes()
        drv.write(gemm.prog_addr, flip(original, case.flips))
        before = drv.read(read[0], read[1] + 1 - read[0])
        kind, detail = expect(cfg, before, read[0], gemm.prog_addr, gemm.prog_len, original,
                              (read, write))
        stats = gemm.stats()
        budget = 40 * (stats["matmul_cycles"] + stats["load_rows"] + stats["store_rows"]) + \
            20_000
        await drv.set_windows(read=read, write=write)
        since = len(drv.hbm.memory.device_writes)
        what = f"seed {seed} ({case.M}x{case.K}x{case.N} {case.dataflow.name}, flips " \
               f"{case.flips})"
        try:
            if case.abort_at is not None:
                run = await abort_midway(drv, gemm, int(case.abort_at * budget / 40))
                tally["aborted"] += 1
            else:
                run = await drv.run(gemm.prog_addr, gemm.prog_len, budget, check=False)
        except RunError as e:
            failures.append(f"{what}: {e}")
            tally["mismatches"] += 1
            continue
        finally:
            tally["programs"] += 1
            tally["corrupted" if case.flips else "valid"] += 1
        tally["cycles"] += run.cycles
        outside = [(a, b) for a, b in drv.hbm.memory.device_writes[since:]
                   if a < write[0] or b > write[1] + 1]
        after = drv.read(read[0], read[1] + 1 - read[0])
        ok = not outside
        if case.abort_at is not None:
            # cut short: done, aborted, or the error the program was going to report
            if kind == "error":
                ok &= run.error_code == ErrorCode.ABORTED or \
                    (run.error_code, run.error_index) == detail
            elif kind == "exact":
                ok &= run.error_code == ErrorCode.ABORTED or \
                    (run.error_code.value == 0 and after == detail)
        elif kind == "exact":
            ok &= run.error_code.value == 0 and after == detail
            if not case.flips:
                c_addr, c_size = gemm.output_region()
                got = gemm.unpack_output(drv.read(c_addr, c_size))
                ok &= np.array_equal(got, gemm_reference(cfg, A, B, bias, scales, case.post))
        elif kind == "error":
            ok &= (run.error_code, run.error_index) == detail
        if run.error_code.value:
            codes[run.error_code.name] = codes.get(run.error_code.name, 0) + 1
        tally["exact" if kind == "exact" else "errors" if kind == "error" else "clean"] += 1
        if not ok:
            tally["mismatches"] += 1
            failures.append(f"{what}: expected {kind} {detail if kind == 'error' else ''}, got "
                            f"{run.error_code.name} at {run.error_index}, "
                            f"{len(outside)} writes outside the window")
    tally["error_codes"] = codes
    tally["wall_s"] = time.monotonic() - t0
    tally["seeds"] = [SEED, SEED + N - 1]
    dut._log.info(f"soak: {json.dumps(tally)}")
    if os.environ.get("SOAK_OUT"):
        with open(os.environ["SOAK_OUT"], "w") as f:
            json.dump({"config": json.loads(cfg.to_json()), "timing": TIMING, "stall": STALL,
                       **tally, "failures": failures}, f, indent=1)
    assert not failures, "\n".join(failures[:10])
