"""cocotb testbench of the board top (:class:`hw.board.BoardTop`): a bit-level UART model on
``uart_rx``/``uart_tx`` carries the bridge frames of :mod:`sim.board_host`, the same host code
that drives the real board, and GEMMs run through it are checked against numpy.

Environment: ``TB_PRESET`` (the accelerator preset), ``TB_DIVISOR`` (clock cycles per UART bit),
``TB_MEM_BYTES`` (the board memory), ``TB_SEED``.
"""

import collections
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from hw.config import PRESETS
from hw.isa import Dataflow
from sim.board_host import BoardHost, BridgeClient, run_gemm
from sim.compiler import PostOp


class UartModel:
    """The host end of the UART: 8N1 frames, ``divisor`` clock cycles per bit."""

    def __init__(self, dut, divisor):
        self.dut, self.divisor = dut, divisor
        self.received = collections.deque()
        dut.uart_rx.value = 1

    async def send(self, data):
        for byte in data:
            for bit in [0, *(byte >> i & 1 for i in range(8)), 1]:
                self.dut.uart_rx.value = bit
                await ClockCycles(self.dut.clk, self.divisor)

    async def listen(self):
        clk, tx, d = self.dut.clk, self.dut.uart_tx, self.divisor
        while True:
            await FallingEdge(tx)
            await ClockCycles(clk, d // 2)
            assert not tx.value, "start bit too short"
            byte = 0
            for i in range(8):
                await ClockCycles(clk, d)
                byte |= int(tx.value) << i
            await ClockCycles(clk, d)
            assert tx.value, "no stop bit"
            self.received.append(byte)

    async def recv(self, n, budget):
        for _ in range(budget):
            if len(self.received) >= n:
                break
            await ClockCycles(self.dut.clk, self.divisor)
        return bytes(self.received.popleft() for _ in range(min(n, len(self.received))))


class SimSerial:
    """A ``serial.Serial`` look-alike on the UART model, for code running in a bridge thread;
    ``read`` returns short after ``timeout_bytes`` byte times without data, like a timeout."""

    def __init__(self, uart, timeout_bytes=2000):
        self._send, self._recv = resume(uart.send), resume(uart.recv)
        self.timeout = timeout_bytes * 10

    def write(self, data):
        self._send(bytes(data))

    def read(self, n):
        return self._recv(n, self.timeout + 10 * n)


@cocotb.test()
async def gemm_over_uart(dut):
    cfg = PRESETS[os.environ.get("TB_PRESET", "tiny")]
    divisor = int(os.environ.get("TB_DIVISOR", "4"))
    mem_bytes = int(os.environ["TB_MEM_BYTES"])
    rng = np.random.default_rng(int(os.environ.get("TB_SEED", "1")))

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    uart = UartModel(dut, divisor)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    cocotb.start_soon(uart.listen())
    host = BoardHost(BridgeClient(SimSerial(uart)), cfg, mem_bytes)

    # memory through the bridge: an unaligned block across words and ports
    addr, data = 4093, rng.integers(0, 256, 45, dtype=np.uint8).tobytes()
    await bridge(host.write)(addr, data)
    assert await bridge(host.read)(addr - 3, len(data) + 6) == \
        bytes(3) + data + bytes(3), "memory round trip"

    cases = [(5, 4, 3, Dataflow.WS, PostOp()),
             (3, 7, 2, Dataflow.OS, PostOp("INT8", relu=True, scale=77, shift=12))]
    for i, (M, K, N, dataflow, post) in enumerate(cases):
        C, want, run, gemm = await bridge(run_gemm)(host, M, K, N, seed=i, post=post,
                                                    dataflow=dataflow, polls=50)
        assert C.shape == want.shape and np.array_equal(C, want), \
            f"{M}x{K}x{N} {dataflow.name}: {np.count_nonzero(C != want)} values differ"
        assert run.counters["MACS"] == gemm.stats()["macs"], "MACS counter"
        assert run.cycles > 0
        dut._log.info(f"{M}x{K}x{N} {dataflow.name}: {run.cycles} cycles, "
                      f"{run.counters['MACS']} MACs")
