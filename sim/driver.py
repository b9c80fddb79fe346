"""Host driver of the accelerator on cocotb: tensors into the HBM model, a program, START, IRQ.

The driver talks to the generated Verilog the way software talks to the chip: registers over
AXI4-Lite (:mod:`hw.csr`), data through the memory (an :class:`~sim.hbm_axi.HbmAxi` model on
the ``m_axi_hbm<i>`` ports, striped as the accelerator interleaves them)::

    drv = Driver(dut)
    await drv.reset()
    c, run = await drv.gemm(a, b, bias=bias, post=PostOp(relu=True, scale=3, shift=8))
    run.cycles, run.counters["MACS"], run.bytes_read

:meth:`Driver.run` is the low-level call: a program already in memory, START, wait for the
IRQ within a cycle budget, and the status and performance counters of the run.
"""

import dataclasses
import logging

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from hw.controller import TOKEN_CHANNELS, StateLayout
from hw.csr import (
    CTRL_SOFT_RESET,
    CTRL_START,
    IRQ_DONE,
    IRQ_ERROR,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    counter_names,
    register_map,
)
from hw.engine import ErrorCode
from hw.isa import INSTR_BYTES
from sim import hbm
from sim.hbm_axi import HbmAxi
from sim.toolchain import load_config

__all__ = ["RunError", "RunResult", "Driver", "timing_preset"]


class RunError(Exception):
    """A run ended with an error, or did not end within its cycle budget."""


@dataclasses.dataclass
class RunResult:
    """What one run reports: cycles from START to the IRQ, the STATUS register, the error
    registers, and every performance counter by name (:func:`hw.csr.counter_names`)."""

    cycles: int
    status: int
    error_code: ErrorCode
    error_index: int
    error_addr: int
    counters: dict

    @classmethod
    def from_registers(cls, status, error_index, error_addr, counters):
        """The result of a run from its STATUS, ERR_INDEX, ERR_ADDR and counter registers."""
        return cls(cycles=counters["CYCLES"], status=status,
                   error_code=ErrorCode((status >> 8) & 0xFF), error_index=error_index,
                   error_addr=error_addr, counters=counters)

    @property
    def bytes_read(self):
        return sum(v for k, v in self.counters.items() if k.startswith("BYTES_READ"))

    @property
    def bytes_written(self):
        return sum(v for k, v in self.counters.items() if k.startswith("BYTES_WRITTEN"))


def timing_preset(name):
    """An HBM timing preset by name: ``HBM2_2000``, ``HBM3_6400`` or ``ideal``."""
    if name == "ideal":
        return hbm.ideal(20)
    if name not in ("HBM2_2000", "HBM3_6400"):
        raise ValueError(f"timing must be HBM2_2000, HBM3_6400 or ideal, not {name!r}")
    return getattr(hbm, name)


class Driver:
    """The host's view of one accelerator instance.

    Parameters
    ----------
    dut : cocotb handle
        The ``accelerator`` top level (ports ``clk``, ``rst``, ``s_axil_*``,
        ``m_axi_hbm<i>_*``, ``irq``).
    cfg : AccelConfig, optional
        By default the configuration of the running simulation.
    timing : str
        HBM preset (:func:`timing_preset`).
    stall : float
        Probability of a random stall on every AXI channel of every port, each cycle.
    seed : int
        Seed of the memory model's backpressure.
    period_ns : int
        Clock period.
    refresh : bool
        Model HBM refresh. Off, a run's cycle count no longer depends on where its refreshes
        fall, which is what an A/B comparison of two designs wants.
    """

    def __init__(self, dut, cfg=None, timing="HBM2_2000", stall=0.0, seed=0, period_ns=2,
                 refresh=True):
        self.dut = dut
        self.cfg = cfg or load_config()
        self.period_ns = period_ns
        self.hbm = HbmAxi(dut, dut.clk, striped=True, granule=self.cfg.interleave_bytes,
                          timing=timing_preset(timing), seed=seed, refresh=refresh)
        if stall:
            self.hbm.set_backpressure(ar=stall, aw=stall, w=stall, r=stall, b=stall)
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        for side in (self.csr.write_if, self.csr.read_if):
            side.log.setLevel(logging.WARNING)      # one INFO line per register access
        self.regs = register_map(self.cfg)

    async def reset(self):
        """Start the clock and hold reset for a few cycles."""
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, self.period_ns, unit="ns").start())
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    # Memory ---------------------------------------------------------------------------------

    def alloc(self, size, align=4096):
        """Reserve ``size`` bytes of memory; returns the address."""
        return self.hbm.alloc(max(size, 1), align)

    def write(self, addr, data):
        self.hbm.write(addr, bytes(data))

    def read(self, addr, n):
        return bytes(self.hbm.read(addr, n))

    # Registers ------------------------------------------------------------------------------

    async def write_reg(self, name, value):
        """Write a 32-bit register, or both words of a ``_LO``/``_HI`` pair given without the
        suffix."""
        if name in self.regs:
            await self.csr.write_dword(self.regs[name].offset, value)
            return
        await self.csr.write_dword(self.regs[f"{name}_LO"].offset, value & 0xFFFF_FFFF)
        await self.csr.write_dword(self.regs[f"{name}_HI"].offset, value >> 32)

    async def read_reg(self, name):
        """Read a 32-bit register, or a 64-bit pair (LO first, which snapshots HI)."""
        if name in self.regs:
            return await self.csr.read_dword(self.regs[name].offset)
        lo = await self.csr.read_dword(self.regs[f"{name}_LO"].offset)
        hi = await self.csr.read_dword(self.regs[f"{name}_HI"].offset)
        return hi << 32 | lo

    # Runs -----------------------------------------------------------------------------------

    async def start(self, prog_addr, length):
        """Point the accelerator at the program, enable both interrupts and START; returns
        at once (see :meth:`run`)."""
        await self.write_reg("PROG_ADDR", prog_addr)
        await self.write_reg("PROG_LEN", length)
        await self.write_reg("IRQ_ENABLE", IRQ_DONE | IRQ_ERROR)
        await self.write_reg("IRQ_STATUS", IRQ_DONE | IRQ_ERROR)
        await self.write_reg("CTRL", CTRL_START)

    async def run(self, prog_addr, length, budget=1_000_000, check=True):
        """Run the ``length`` instructions at ``prog_addr``: START, then wait for the IRQ.

        Raises :class:`RunError` if the IRQ does not come within ``budget`` cycles, or (with
        ``check``) if the run ended with an error.
        """
        await self.start(prog_addr, length)
        clk, irq = self.dut.clk, self.dut.irq
        timeout = ClockCycles(clk, budget)
        if not irq.value:
            fired = await First(RisingEdge(irq), timeout)
            if fired is timeout:
                state = await self.describe()
                await self.abort()
                raise RunError(f"no IRQ within the budget of {budget} cycles "
                               f"(program at {prog_addr:#x}, {length} instructions); {state}")
        await self.write_reg("IRQ_STATUS", IRQ_DONE | IRQ_ERROR)
        result = await self.result()
        status = result.status
        if status & STATUS_BUSY:
            raise RunError(f"IRQ raised while STATUS {status:#x} still shows BUSY")
        if check and (status & STATUS_ERROR or not status & STATUS_DONE):
            raise RunError(f"run failed: STATUS {status:#x}, {result.error_code.name} at "
                           f"instruction {result.error_index}, address {result.error_addr:#x}")
        self.hbm.check()
        return result

    async def describe(self):
        """One line of what the accelerator is doing: the STATE, TOKENS and DISPATCHED
        registers decoded, and every performance counter."""
        state = await self.read_reg("STATE")
        fields = []
        for name, field in StateLayout:
            if not name.startswith("_"):
                fields.append(f"{name}={state >> field.offset & ((1 << field.width) - 1)}")
        tokens = await self.read_reg("TOKENS")
        fields += [f"tokens_{ch}={tokens >> 8 * i & 0xFF}" for i, ch in enumerate(TOKEN_CHANNELS)]
        fields.append(f"dispatched={await self.read_reg('DISPATCHED')}")
        fields += [f"{name}={await self.read_reg(name)}" for name in counter_names(self.cfg)]
        return "state: " + " ".join(fields)

    async def result(self):
        """The :class:`RunResult` of the last run, from the registers."""
        status = await self.read_reg("STATUS")
        counters = {name: await self.read_reg(name) for name in counter_names(self.cfg)}
        return RunResult.from_registers(status, await self.read_reg("ERR_INDEX"),
                                        await self.read_reg("ERR_ADDR"), counters)

    async def set_windows(self, read=None, write=None):
        """Set the protection windows: inclusive ``(first, last)`` byte addresses the
        accelerator may read and write; ``None`` opens the whole address space."""
        top = (1 << self.cfg.addr_width) - 1
        for side, window in (("READ", read), ("WRITE", write)):
            first, last = window if window is not None else (0, top)
            if not 0 <= first <= last <= top:
                raise ValueError(f"the {side.lower()} window must be (first, last) with "
                                 f"0 <= first <= last <= {top:#x}, not {window!r}")
            await self.write_reg(f"{side}_BASE", first)
            await self.write_reg(f"{side}_LIMIT", last)

    async def abort(self, budget=100_000):
        """SOFT_RESET: stop the running program and wait until the accelerator is idle."""
        await self.write_reg("CTRL", CTRL_SOFT_RESET)
        for _ in range(budget // 8):
            if not await self.read_reg("STATUS") & STATUS_BUSY:
                await self.write_reg("IRQ_STATUS", IRQ_DONE | IRQ_ERROR)
                return
            await ClockCycles(self.dut.clk, 8)
        raise RunError(f"still busy {budget} cycles after SOFT_RESET; {await self.describe()}")

    async def execute(self, program, budget=1_000_000, check=True):
        """Write a :class:`~sim.assembler.Program` into memory and :meth:`run` it."""
        code = program.to_bytes()
        addr = self.alloc(len(code))
        self.write(addr, code)
        return await self.run(addr, len(code) // INSTR_BYTES, budget, check)

    def place_gemm(self, A, B, bias=None, scales=None, post=None, dataflow=None,
                   tiling=None):
        """Compile ``C = post(A @ B + bias)``, allocate its memory, and write its operands and
        program; returns the :class:`~sim.compiler.Gemm` (run it with :meth:`run`)."""
        from hw.isa import Dataflow
        from sim.compiler import PostOp, gemm_at

        M, K = A.shape
        N = B.shape[1]
        kwargs = dict(bias=bias is not None, per_column=scales is not None,
                      post=post or PostOp(), dataflow=dataflow or Dataflow.WS, tiling=tiling)
        probe = gemm_at(self.cfg, M, K, N, base=0, **kwargs)
        # whole pages: a partial last beat of C spans the rest of its bus word
        span = max(addr + size for addr, size in probe.regions().values())
        base = self.alloc(-(-span // 4096) * 4096)
        gemm = gemm_at(self.cfg, M, K, N, base=base, **kwargs)
        for addr, data in gemm.inputs(A, B, bias, scales):
            self.write(addr, data)
        self.write(gemm.prog_addr, gemm.program_bytes())
        return gemm

    async def gemm(self, A, B, bias=None, scales=None, post=None, dataflow=None, budget=None,
                   tiling=None):
        """``C = post(A @ B + bias)`` on the accelerator: :meth:`place_gemm`, run, read.

        Returns ``(C, run, gemm)``: C as a numpy array, the :class:`RunResult`, and the
        :class:`~sim.compiler.Gemm` (program, layout, static statistics).
        """
        gemm = self.place_gemm(A, B, bias, scales, post, dataflow, tiling)
        if budget is None:
            stats = gemm.stats()
            budget = 20 * (stats["matmul_cycles"] + stats["load_rows"] +
                           stats["store_rows"]) + 20_000
        run = await self.run(gemm.prog_addr, gemm.prog_len, budget)
        addr, nbytes = gemm.output_region()
        return gemm.unpack_output(self.read(addr, nbytes)), run, gemm
