"""Host side of the board: the UART bridge protocol (:mod:`hw.uart_bridge`) over any byte
transport, and a GEMM run on the accelerator through it.

A transport is anything with ``write(bytes)`` and ``read(n) -> bytes`` (a ``serial.Serial``;
in simulation, the cocotb UART model of :mod:`sim.tb_board`). The placement of a GEMM in
memory is :meth:`sim.driver.Driver.place_gemm`, which needs only ``cfg``, ``alloc`` and
``write`` of the object it runs on, so it runs unchanged on :class:`BoardHost`.
"""

import struct
import time

import numpy as np

from hw.csr import (
    CTRL_START,
    IRQ_DONE,
    IRQ_ERROR,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    counter_names,
    register_map,
)
from hw.uart_bridge import REQUEST_SYNC, RESPONSE_SYNC, Cmd

__all__ = ["BridgeError", "BridgeClient", "BoardHost", "run_gemm"]

_CHUNK = 4096          # bytes per MEM_WRITE / MEM_READ frame


class BridgeError(Exception):
    """A frame was answered with a bad status, or not answered as the protocol says."""


class BridgeClient:
    """The four bridge commands over ``transport``."""

    def __init__(self, transport):
        self.transport = transport

    def _command(self, cmd, addr, length=0, payload=b"", reply=0):
        self.transport.write(struct.pack("<BBIH", REQUEST_SYNC, cmd, addr, length) +
                             bytes(payload))
        raw = self.transport.read(reply + 3)
        if len(raw) != reply + 3:
            raise BridgeError(f"{Cmd(cmd).name} at {addr:#x}: {len(raw)} of {reply + 3} "
                              f"response bytes")
        if raw[0] != RESPONSE_SYNC or raw[1] != cmd:
            raise BridgeError(f"{Cmd(cmd).name} at {addr:#x}: bad response header "
                              f"{raw[:2].hex()}")
        if raw[-1]:
            raise BridgeError(f"{Cmd(cmd).name} at {addr:#x}: status {raw[-1]:#04x}")
        return bytes(raw[2:-1])

    def csr_write(self, addr, value):
        self._command(Cmd.CSR_WRITE, addr, 4, value.to_bytes(4, "little"))

    def csr_read(self, addr):
        return int.from_bytes(self._command(Cmd.CSR_READ, addr, reply=4), "little")

    def mem_write(self, addr, data):
        data = bytes(data)
        for off in range(0, len(data), _CHUNK):
            part = data[off:off + _CHUNK]
            self._command(Cmd.MEM_WRITE, addr + off, len(part), part)

    def mem_read(self, addr, n):
        out = bytearray()
        for off in range(0, n, _CHUNK):
            k = min(_CHUNK, n - off)
            out += self._command(Cmd.MEM_READ, addr + off, k, reply=k)
        return bytes(out)


class BoardHost:
    """The accelerator on the board as :class:`~sim.driver.Driver` sees it: ``cfg``, a bump
    allocator over the ``mem_bytes`` of block RAM, memory and register access, and runs that
    poll STATUS instead of waiting on the IRQ pin."""

    def __init__(self, client, cfg, mem_bytes):
        self.client, self.cfg, self.mem_bytes = client, cfg, mem_bytes
        self.regs = register_map(cfg)
        self._next = 0

    def alloc(self, size, align=4096):
        addr = -(-self._next // align) * align
        if addr + size > self.mem_bytes:
            raise MemoryError(f"{size} bytes do not fit in the {self.mem_bytes}-byte board "
                              f"memory ({addr} bytes in use)")
        self._next = addr + max(size, 1)
        return addr

    def release(self):
        """Forget every allocation: the memory is reused from address 0."""
        self._next = 0

    def write(self, addr, data):
        self.client.mem_write(addr, data)

    def read(self, addr, n):
        return self.client.mem_read(addr, n)

    def write_reg(self, name, value):
        if name in self.regs:
            self.client.csr_write(self.regs[name].offset, value)
            return
        self.client.csr_write(self.regs[f"{name}_LO"].offset, value & 0xFFFF_FFFF)
        self.client.csr_write(self.regs[f"{name}_HI"].offset, value >> 32)

    def read_reg(self, name):
        if name in self.regs:
            return self.client.csr_read(self.regs[name].offset)
        lo = self.client.csr_read(self.regs[f"{name}_LO"].offset)
        return self.client.csr_read(self.regs[f"{name}_HI"].offset) << 32 | lo

    def run(self, prog_addr, length, timeout=10.0, polls=None):
        """START the program and poll STATUS until it leaves BUSY (within ``timeout``
        seconds, or ``polls`` reads when given); returns a :class:`~sim.driver.RunResult`."""
        from sim.driver import RunError, RunResult

        self.write_reg("PROG_ADDR", prog_addr)
        self.write_reg("PROG_LEN", length)
        self.write_reg("IRQ_ENABLE", IRQ_DONE | IRQ_ERROR)
        self.write_reg("IRQ_STATUS", IRQ_DONE | IRQ_ERROR)
        self.write_reg("CTRL", CTRL_START)
        deadline, n = time.monotonic() + timeout, 0
        while True:
            status = self.read_reg("STATUS")
            n += 1
            if not status & STATUS_BUSY and status & (STATUS_DONE | STATUS_ERROR):
                break
            if (polls is not None and n >= polls) or \
                    (polls is None and time.monotonic() > deadline):
                raise RunError(f"still running after {n} STATUS reads: {status:#x}")
        self.write_reg("IRQ_STATUS", IRQ_DONE | IRQ_ERROR)
        counters = {name: self.read_reg(name) for name in counter_names(self.cfg)}
        result = RunResult.from_registers(status, self.read_reg("ERR_INDEX"),
                                          self.read_reg("ERR_ADDR"), counters)
        if status & STATUS_ERROR or not status & STATUS_DONE:
            raise RunError(f"run failed: STATUS {status:#x}, {result.error_code.name} at "
                           f"instruction {result.error_index}, address {result.error_addr:#x}")
        return result


def run_gemm(host, M, K, N, seed=0, post=None, dataflow=None, **run_args):
    """A random ``C = post(A @ B + bias)`` on the board with ``host.cfg``'s operand range.
    Returns ``(C, expected, run, gemm)``: the board's C, the numpy reference
    (:func:`sim.reference.gemm_reference`), the :class:`~sim.driver.RunResult` and the
    :class:`~sim.compiler.Gemm`."""
    from sim.compiler import PostOp
    from sim.driver import Driver
    from sim.reference import gemm_reference, random_operands

    cfg = host.cfg
    post = post or PostOp()
    rng = np.random.default_rng(seed)
    A, B = random_operands(rng, cfg, (M, K)), random_operands(rng, cfg, (K, N))
    bias = rng.integers(-(1 << 20), 1 << 20, N)
    host.release()          # one GEMM at a time in the board's small memory
    gemm = Driver.place_gemm(host, A, B, bias=bias, post=post, dataflow=dataflow)
    run = host.run(gemm.prog_addr, gemm.prog_len, **run_args)
    addr, nbytes = gemm.output_region()
    C = gemm.unpack_output(host.read(addr, nbytes))
    return C, gemm_reference(cfg, A, B, bias, post=post), run, gemm
