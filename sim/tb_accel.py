"""cocotb testbench of the whole accelerator on the HBM model, through the host driver.

Knobs (environment): ``TB_SEED``, ``TB_CASES`` (random GEMMs per test), ``TB_MAX_DIM``
(largest random M, K, N), ``TB_STALL`` (random stall probability on every AXI channel),
``TB_TIMING`` (``HBM2_2000``, ``HBM3_6400`` or ``ideal``), ``TB_REFRESH`` (``0``: no HBM
refresh). The ``gemm_report`` test runs the GEMMs of ``TB_GEMMS`` (``MxKxN[:ws|os]``
separated by commas) with bias, ReLU and int8 requantization and writes a JSON report to
``TB_OUT`` (for ``make demo`` and the benchmark);
with ``TB_TRACE`` set, each entry also has the phases of its memory-port activity
(:func:`sim.axi_trace.phases`).
"""

import json
import os
import time

import cocotb
import numpy as np

from hw.axi import Resp
from hw.engine import ErrorCode
from hw.isa import INSTR_BYTES, Buffer, Dataflow, Opcode, OutType, decode, region
from sim.assembler import Program, postprocess
from sim.axi_trace import AxiTrace, phases
from sim.compiler import PostOp, compile_conv2d
from sim.driver import Driver, RunError
from sim.reference import conv2d_reference, gemm_reference, random_operands, wrap
from sim.soak import random_post

SEED = int(os.environ.get("TB_SEED", "1"))
CASES = int(os.environ.get("TB_CASES", "6"))
MAX_DIM = int(os.environ.get("TB_MAX_DIM", "40"))
STALL = float(os.environ.get("TB_STALL", "0"))
TIMING = os.environ.get("TB_TIMING", "HBM2_2000")
TRACE = bool(os.environ.get("TB_TRACE"))
REFRESH = os.environ.get("TB_REFRESH", "1") != "0"


async def start(dut, stall=STALL):
    drv = Driver(dut, timing=TIMING, stall=stall, seed=SEED, refresh=REFRESH)
    await drv.reset()
    return drv


async def check_gemm(drv, rng, M, K, N, dataflow, bias=False, per_column=False, post=None):
    cfg = drv.cfg
    A, B = random_operands(rng, cfg, (M, K)), random_operands(rng, cfg, (K, N))
    b = rng.integers(-(1 << 20), 1 << 20, N) if bias else None
    s = rng.integers(0, 1 << 16, N) if per_column else None
    post = post or random_post(rng)
    got, run, gemm = await drv.gemm(A, B, bias=b, scales=s, post=post, dataflow=dataflow)
    want = gemm_reference(cfg, A, B, b, s, post)
    assert got.shape == want.shape and np.array_equal(got, want), (
        f"{M}x{K}x{N} {dataflow.name} {post}: {np.count_nonzero(got != want)} of "
        f"{want.size} values differ")
    stats = gemm.stats()
    assert run.counters["MACS"] == stats["macs"], "MACS counter"
    assert run.bytes_written == stats["store_bytes"], "BYTES_WRITTEN counters"
    return run


async def _random_gemms(dut, stall):
    drv = await start(dut, stall)
    rng = np.random.default_rng(SEED)
    sizes = [1, 2, 3, 7, 13, 31, MAX_DIM]
    for case in range(CASES):
        M, K, N = (int(rng.choice(sizes)) if rng.random() < 0.5 else
                   int(rng.integers(1, MAX_DIM + 1)) for _ in range(3))
        dataflow = Dataflow.OS if case % 2 else Dataflow.WS
        await check_gemm(drv, rng, M, K, N, dataflow, bias=bool(rng.integers(0, 2)),
                         per_column=bool(rng.integers(0, 2)))


@cocotb.test()
async def random_gemms(dut):
    """Random shapes (1, primes, larger than the array), post-processing, both dataflows."""
    await _random_gemms(dut, 0.0)


@cocotb.test()
async def random_gemms_backpressure(dut):
    """The same with random stalls on every AXI channel of every port."""
    await _random_gemms(dut, STALL or 0.3)


@cocotb.test()
async def mlp(dut):
    """A quantized two-layer perceptron: int8 ReLU activations of layer 1 feed layer 2."""
    drv = await start(dut)
    cfg = drv.cfg
    rng = np.random.default_rng(SEED + 1)
    x = rng.integers(cfg.in_min, cfg.in_max + 1, (9, 20))
    w1 = rng.integers(cfg.in_min, cfg.in_max + 1, (20, 17))
    b1 = rng.integers(-4000, 4000, 17)
    w2 = rng.integers(cfg.in_min, cfg.in_max + 1, (17, 5))
    b2 = rng.integers(-4000, 4000, 5)
    l1 = PostOp(out_type=OutType.INT8, relu=True, scale=3, shift=9)
    l2 = PostOp(out_type=OutType.INT16, scale=5, shift=4)
    h, _, _ = await drv.gemm(x, w1, bias=b1, post=l1)
    y, _, _ = await drv.gemm(h.astype(np.int64), w2, bias=b2, post=l2)
    h_ref = gemm_reference(cfg, x, w1, b1, post=l1)
    assert np.array_equal(h, h_ref)
    assert np.array_equal(y, gemm_reference(cfg, h_ref, w2, b2, post=l2))


@cocotb.test()
async def conv(dut):
    """A 3x3 convolution, stride 2, padding 1, with bias, ReLU and int8 output."""
    drv = await start(dut)
    cfg = drv.cfg
    rng = np.random.default_rng(SEED + 2)
    x = rng.integers(cfg.in_min, cfg.in_max + 1, (2, 7, 6, 3))
    w = rng.integers(cfg.in_min, cfg.in_max + 1, (3, 3, 3, 5))
    bias = rng.integers(-3000, 3000, 5)
    post = PostOp(out_type=OutType.INT8, relu=True, scale=7, shift=10)
    conv = compile_conv2d(cfg, x.shape, w.shape, stride=2, padding=1, bias=True, post=post)
    cols, weights = conv.matrices(x, w)
    got, _, _ = await drv.gemm(cols, weights, bias=bias, post=post)
    got = got.reshape(conv.output_shape)
    acc = wrap(conv2d_reference(x, w, 2, 1), cfg.acc_width)
    want = postprocess(acc.reshape(-1, acc.shape[-1]), bias, True, 7, 10, OutType.INT8, False,
                       acc_width=cfg.acc_width).reshape(acc.shape)
    assert np.array_equal(got, want)


def _first_port(cfg, addr):
    """Port and port address of global byte ``addr`` (the accelerator's interleaving)."""
    word = addr // cfg.port_bytes
    return word % cfg.mem_ports, (word // cfg.mem_ports) * cfg.port_bytes


@cocotb.test()
async def errors(dut):
    """An illegal instruction, a read error and a write error each stop the program with
    their code, index and address; the next program runs correctly."""
    drv = await start(dut)
    cfg = drv.cfg
    rng = np.random.default_rng(SEED + 3)
    # An all-zero word after a LOAD.
    prog = Program(cfg)
    src = drv.alloc(4096)
    drv.write(src, bytes(4096))
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=src, rows=2, row_bytes=cfg.rows)
    end = Program(cfg)
    end.end()
    code = prog.to_bytes() + bytes(INSTR_BYTES) + end.to_bytes()
    addr = drv.alloc(len(code))
    drv.write(addr, code)
    run = await drv.run(addr, len(code) // INSTR_BYTES, budget=20_000, check=False)
    assert run.error_code == ErrorCode.ILLEGAL_INSTRUCTION, run
    assert (run.error_index, run.error_addr) == (1, addr + INSTR_BYTES), run
    await check_gemm(drv, rng, 5, 9, 4, Dataflow.WS)

    # A read error on the first burst of A, then a write error on the first burst of C.
    for is_write in (False, True):
        A, B = random_operands(rng, cfg, (12, 10)), random_operands(rng, cfg, (10, 6))
        gemm = drv.place_gemm(A, B)
        target = gemm.c_addr if is_write else gemm.a_addr
        port, port_addr = _first_port(cfg, target)
        drv.hbm.inject_error(port, is_write=is_write,
                             resp=Resp.DECERR if is_write else Resp.SLVERR, addr=port_addr)
        run = await drv.run(gemm.prog_addr, gemm.prog_len, budget=200_000, check=False)
        want = ErrorCode.WRITE_ERROR if is_write else ErrorCode.READ_ERROR
        assert run.error_code == want, run
        assert target <= run.error_addr < target + 4096, run
        await check_gemm(drv, rng, 7, 3, 11, Dataflow.OS)


@cocotb.test()
async def deadlock_and_budget(dut):
    """A program that waits for a token nobody gives stops with TOKEN_DEADLOCK; a program
    that overruns its cycle budget ends in RunError with the counters and every engine's
    state, not a hang, and SOFT_RESET aborts it; the next program runs."""
    drv = await start(dut)
    cfg = drv.cfg
    prog = Program(cfg)
    prog.matmul(a_addr=0, c_addr=0, m=1, k=1, n=1, pop_prev=True)
    prog.end()
    run = await drv.execute(prog, budget=2_000, check=False)
    assert (run.error_code, run.error_index) == (ErrorCode.TOKEN_DEADLOCK, 0), run

    rng = np.random.default_rng(SEED)
    A, B = random_operands(rng, cfg, (64, 64)), random_operands(rng, cfg, (64, 64))
    gemm = drv.place_gemm(A, B)
    try:
        await drv.run(gemm.prog_addr, gemm.prog_len, budget=300)
    except RunError as e:
        for word in ("no IRQ within the budget of 300 cycles", "running=1", "dispatched=",
                     "tokens_lc=", "CYCLES=", "COMPUTE_BUSY=", "BYTES_READ0="):
            assert word in str(e), (word, str(e))
    else:
        raise AssertionError("a 64x64x64 GEMM finished within 300 cycles")
    status = await drv.read_reg("STATUS")
    assert ErrorCode(status >> 8 & 0xFF) == ErrorCode.ABORTED, f"STATUS {status:#x}"
    await check_gemm(drv, rng, 4, 4, 4, Dataflow.WS)


def _writes_outside(drv, since, first, last):
    return [(a, b) for a, b in drv.hbm.memory.device_writes[since:] if a < first or b > last + 1]


@cocotb.test()
async def protection(dut):
    """Protection windows: a GEMM runs inside them; a STORE or LOAD or program that reaches
    one byte outside is refused before it moves a byte, and no byte outside the write window
    ever changes."""
    drv = await start(dut)
    cfg = drv.cfg
    rng = np.random.default_rng(SEED + 4)
    A, B = random_operands(rng, cfg, (11, 9)), random_operands(rng, cfg, (9, 5))
    post = PostOp(out_type=OutType.INT16, relu=True, scale=5, shift=3)
    gemm = drv.place_gemm(A, B, post=post)
    # the windows the program needs, from its own LOADs and STOREs
    code = gemm.program_bytes()
    spans = {Opcode.LOAD: [], Opcode.STORE: []}
    for i in range(0, len(code), INSTR_BYTES):
        f = decode(cfg, int.from_bytes(code[i:i + INSTR_BYTES], "little"))
        if f["opcode"] in spans:
            spans[f["opcode"]].append(region(f))
    prog_last = gemm.prog_addr + len(code) - 1
    r_first = min([gemm.prog_addr] + [a for a, _ in spans[Opcode.LOAD]])
    r_last = max([prog_last] + [b for _, b in spans[Opcode.LOAD]])
    w_first = min(a for a, _ in spans[Opcode.STORE])
    w_last = max(b for _, b in spans[Opcode.STORE])
    c_first, c_size = gemm.output_region()

    await drv.set_windows(read=(r_first, r_last), write=(w_first, w_last))
    since = len(drv.hbm.memory.device_writes)
    await drv.run(gemm.prog_addr, gemm.prog_len, budget=100_000)
    got = gemm.unpack_output(drv.read(c_first, c_size))
    assert np.array_equal(got, gemm_reference(cfg, A, B, post=post))
    assert drv.hbm.memory.device_writes[since:], "the GEMM wrote nothing"
    assert not _writes_outside(drv, since, w_first, w_last)

    # one byte short at either end: refused, and nothing is written outside the window
    for window in ((w_first + 1, w_last), (w_first, w_last - 1)):
        await drv.set_windows(read=(r_first, r_last), write=window)
        since = len(drv.hbm.memory.device_writes)
        run = await drv.run(gemm.prog_addr, gemm.prog_len, budget=100_000, check=False)
        assert run.error_code == ErrorCode.WRITE_PROTECTION, run
        assert not _writes_outside(drv, since, *window), window
    # a LOAD one byte outside, and the program itself one byte outside
    for read in ((r_first, r_last - 1), (r_first + 1, r_last)):
        await drv.set_windows(read=read, write=(w_first, w_last))
        since = len(drv.hbm.memory.device_writes)
        run = await drv.run(gemm.prog_addr, gemm.prog_len, budget=100_000, check=False)
        assert run.error_code == ErrorCode.READ_PROTECTION, run
        assert not _writes_outside(drv, since, w_first, w_last)
    await drv.set_windows()
    await check_gemm(drv, rng, 6, 5, 3, Dataflow.OS)


@cocotb.test()
async def gemm_report(dut):
    """GEMMs of ``TB_GEMMS`` with bias, ReLU and int8 requantization; JSON to ``TB_OUT``."""
    spec = os.environ.get("TB_GEMMS")
    if not spec:
        return
    drv = await start(dut)
    cfg = drv.cfg
    rng = np.random.default_rng(SEED)
    report = []
    for item in spec.split(","):
        shape, _, flow = item.partition(":")
        M, K, N = (int(v) for v in shape.lower().split("x"))
        dataflow = Dataflow.OS if flow.lower() == "os" else Dataflow.WS
        A, B = random_operands(rng, cfg, (M, K)), random_operands(rng, cfg, (K, N))
        bias = rng.integers(-(1 << 12), 1 << 12, N)
        post = PostOp(out_type=OutType.INT8, relu=True, scale=int(rng.integers(1, 1 << 10)),
                      shift=12)
        t0 = time.monotonic()
        trace = AxiTrace(dut, cfg, drv.regs["CTRL"].offset, engines=True) if TRACE else None
        if trace:
            trace.start()
        got, run, gemm = await drv.gemm(A, B, bias=bias, post=post, dataflow=dataflow)
        if trace:
            trace.stop()
        wall = time.monotonic() - t0
        want = gemm_reference(cfg, A, B, bias, post=post)
        report.append({
            "M": M, "K": K, "N": N, "dataflow": dataflow.name,
            "bit_exact": bool(np.array_equal(got, want)),
            "mismatches": int(np.count_nonzero(got != want)),
            "cycles": run.cycles, "counters": run.counters, "stats": gemm.stats(),
            "tiling": str(gemm.tiling), "wall_s": wall,
            "phases": phases(trace.events, gemm.regions()) if trace else None,
            "hbm": {"read_beats": sum(c["read_beats"] for c in drv.hbm.stats()["channels"]),
                    "write_beats": sum(c["write_beats"] for c in drv.hbm.stats()["channels"])},
        })
    with open(os.environ["TB_OUT"], "w") as f:
        json.dump({"config": json.loads(cfg.to_json()), "timing": TIMING, "refresh": REFRESH,
                   "gemms": report},
                  f, indent=1, default=str)
