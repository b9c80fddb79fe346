"""Functional (untimed) model of the accelerator: it runs a program instruction by instruction,
in program order, with the semantics of the instruction set in :mod:`hw.isa`.

The model holds the architectural state the instructions see: scratchpad bank A
(``spad_depth`` rows of ``rows`` operands), bank B (``spad_depth`` rows of ``cols`` operands),
the accumulator memory (``acc_depth`` rows of ``cols`` signed ``acc_width``-bit values) and
the weights a weight-stationary tile leaves in the array (for ``keep_weights``). Memory is a
numpy ``uint8`` array: element ``i`` is the byte at global address ``base + i``; LOAD reads it
and STORE writes it in place.

Dependency tokens only order the three queues of the hardware; a program whose tokens
:meth:`sim.assembler.Program.check_tokens` accepts computes, in any legal interleaving, what
it computes in program order, so the model ignores them.

Where the instruction-set text leaves a case open, the model rejects it with ``ValueError``
rather than guess:

- ``keep_weights`` needs an earlier weight-stationary tile that loaded weights in the same
  run, with at least this tile's ``k`` rows and ``n`` columns (rows past the loaded ``k`` and
  columns past the loaded ``n`` of the array's weights are not defined by the ISA). An
  output-stationary tile in between leaves the weights as they are.
- A program that runs past ``length`` instructions without END (as the hardware does,
  with PROGRAM_OVERRUN; see :class:`ProgramError`).

Operands are the low ``in_width`` bits of each little-endian element of ``operand_bytes``
bytes (signed if ``in_signed``); accumulators loaded from memory the low ``acc_width`` bits of
each ``acc_bytes`` element, signed. Scale-table entries use their low 16 bits, as the
hardware does.
"""

import dataclasses

import numpy as np

from hw.isa import (
    INSTR_BYTES,
    SCALE_WIDTH,
    Buffer,
    Dataflow,
    ErrorCode,
    InstructionError,
    Opcode,
    acc_bytes,
    buffer_row_bytes,
    decode,
    operand_bytes,
    out_bytes,
    validate,
)
from sim.assembler import postprocess

__all__ = ["IsaModel", "ProgramError", "RunStats", "matmul_cycles"]

_OUT_DTYPE = {1: "<i1", 2: "<i2", 4: "<i4"}


def matmul_cycles(instr):
    """Cycles a MATMUL (fields as :func:`hw.isa.decode` gives them) takes in the array when
    tiles run back to back: ``max(m, k)``, its rows or the weight rows it loads; ``m`` for a
    WS MATMUL that keeps the weights (it loads none)."""
    if instr["dataflow"] == Dataflow.WS and instr["keep_weights"]:
        return instr["m"]
    return max(instr["m"], instr["k"])


@dataclasses.dataclass
class RunStats:
    """What a run executed.

    ``matmul_cycles`` is the sum of :func:`matmul_cycles` over MATMULs, the compute engine's
    cost when its tiles run back to back; ``macs`` the sum of ``m * k * n``; ``load_rows`` and
    ``store_rows`` the buffer rows the load engine wrote and the accumulator rows the store
    engine read (table rows of a STORE not counted).
    """

    instructions: int = 0
    loads: int = 0
    matmuls: int = 0
    stores: int = 0
    fences: int = 0
    load_rows: int = 0
    load_bytes: int = 0
    store_rows: int = 0
    store_bytes: int = 0
    matmul_cycles: int = 0
    macs: int = 0


class ProgramError(ValueError):
    """A program the accelerator stops with an error: ``code`` (:class:`hw.isa.ErrorCode`),
    the failing instruction's ``index`` and the ``addr`` the hardware reports with it."""

    def __init__(self, message, code, index, addr):
        super().__init__(message)
        self.code, self.index, self.addr = code, index, addr


def _wrap(x, bits):
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


class IsaModel:
    """Executes programs for configuration ``cfg`` against ``memory``.

    Parameters
    ----------
    cfg : AccelConfig
    memory : numpy.ndarray of uint8, or bytearray
        The global byte address space from ``base`` on; written in place by STORE. A
        ``bytearray`` is wrapped without a copy.
    base : int
        Global address of ``memory[0]``.

    Members
    -------
    spad_a, spad_b, acc : numpy.ndarray
        Bank A (``spad_depth`` x ``rows``), bank B (``spad_depth`` x ``cols``) and the
        accumulator memory (``acc_depth`` x ``cols``) as signed integers.
    stats : RunStats
        Totals since construction (or :meth:`reset`).
    """

    def __init__(self, cfg, memory, *, base=0):
        if isinstance(memory, bytearray):
            memory = np.frombuffer(memory, dtype=np.uint8)
        if not isinstance(memory, np.ndarray) or memory.dtype != np.uint8 or memory.ndim != 1:
            what = f"an array of {memory.dtype} with shape {memory.shape}" \
                if isinstance(memory, np.ndarray) else type(memory).__name__
            raise ValueError(f"memory must be a 1-D numpy uint8 array or a bytearray, "
                             f"not {what}")
        if not memory.flags.writeable:
            raise ValueError("memory must be writable (STORE writes it in place)")
        if isinstance(base, bool) or not isinstance(base, (int, np.integer)) or base < 0:
            raise ValueError(f"base must be a non-negative integer, not {base!r}")
        self.cfg = cfg
        self.memory = memory
        self.base = int(base)
        wide = cfg.acc_width > 62 or \
            cfg.product_width + max(cfg.rows, cfg.spad_depth).bit_length() + 1 > 62
        self._dtype = object if wide else np.int64
        self._op_bytes = operand_bytes(cfg)
        self._acc_bytes = acc_bytes(cfg)
        self.reset()

    def reset(self):
        """Zero the buffers, forget the array's weights and clear the statistics."""
        cfg = self.cfg
        self.spad_a = np.zeros((cfg.spad_depth, cfg.rows), dtype=self._dtype)
        self.spad_b = np.zeros((cfg.spad_depth, cfg.cols), dtype=self._dtype)
        self.acc = np.zeros((cfg.acc_depth, cfg.cols), dtype=self._dtype)
        self._weights = None        # (k, n, k x cols weights) of the last WS weight load
        self.stats = RunStats()

    # Memory -------------------------------------------------------------------------------

    def _span(self, index, what, addr, nbytes):
        start = addr - self.base
        if start < 0 or start + nbytes > self.memory.size:
            raise ValueError(
                f"instruction {index}: {what} {addr:#x} .. {addr + nbytes - 1:#x} is outside "
                f"the modelled memory {self.base:#x} .. {self.base + self.memory.size - 1:#x}")
        return start

    def _rows_index(self, index, what, f):
        """Byte offsets into ``memory`` of a strided region, shape (rows, row_bytes)."""
        rows, row_bytes, stride = f["rows"], f["row_bytes"], f["stride"]
        end = f["addr"] + (rows - 1) * stride + row_bytes
        start = self._span(index, what, f["addr"], end - f["addr"])
        return (start + np.arange(rows, dtype=np.int64)[:, None] * stride
                + np.arange(row_bytes, dtype=np.int64)[None, :])

    def read(self, addr, nbytes):
        """``nbytes`` bytes of memory at global address ``addr``."""
        start = self._span("-", "read", addr, nbytes)
        return self.memory[start:start + nbytes].tobytes()

    def write(self, addr, data):
        """Write ``data`` (bytes-like) at global address ``addr``."""
        data = np.frombuffer(bytes(data), dtype=np.uint8)
        start = self._span("-", "write", addr, data.size)
        self.memory[start:start + data.size] = data

    # Elements -----------------------------------------------------------------------------

    def _elements(self, raw, elem_bytes, width, signed):
        """Little-endian elements of the byte matrix ``raw`` as integers of ``width`` bits."""
        rows, nbytes = raw.shape
        parts = raw.reshape(rows, nbytes // elem_bytes, elem_bytes)
        dtype = object if (self._dtype is object or elem_bytes > 4) else np.int64
        value = np.zeros(parts.shape[:2], dtype=dtype)
        for i in range(elem_bytes):
            value = value + (parts[:, :, i].astype(dtype) << (8 * i))
        value = value & ((1 << width) - 1)
        if signed:
            value = _wrap(value, width)
        return value.astype(self._dtype)

    # Running ------------------------------------------------------------------------------

    def run(self, prog_addr, length, *, read_window=None, write_window=None):
        """Fetch, decode and execute the program at ``prog_addr`` until END.

        Parameters
        ----------
        prog_addr : int
            Global byte address of instruction 0.
        length : int
            Program length in instructions (as the PROG_LEN register holds it).
        read_window, write_window : (int, int), optional
            The protection windows (READ_BASE/LIMIT, WRITE_BASE/LIMIT); the whole address
            space by default.

        Returns
        -------
        RunStats
            Totals of this run.

        Raises
        ------
        ProgramError
            With the error code, instruction index and address the hardware reports: a bad
            program address or length, a program outside the read window, a refused
            instruction (:func:`hw.isa.validate`), or no END within ``length``.
        ValueError
            On a memory access outside the modelled memory (naming the instruction's index).
        """
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1 \
                or prog_addr % INSTR_BYTES:
            raise ProgramError(f"a program needs a positive length and an address that is a "
                               f"multiple of {INSTR_BYTES}, not {length!r} instructions at "
                               f"{prog_addr!r}", ErrorCode.BAD_PROGRAM, 0, prog_addr)
        lo, hi = read_window if read_window is not None else (0, (1 << self.cfg.addr_width) - 1)
        last = prog_addr + INSTR_BYTES * int(length) - 1
        if prog_addr < lo or last > hi:
            raise ProgramError(f"the program {prog_addr:#x} .. {last:#x} must lie in the read "
                               f"window {lo:#x} .. {hi:#x}", ErrorCode.READ_PROTECTION, 0,
                               prog_addr)
        before = dataclasses.replace(self.stats)
        for index in range(int(length)):
            addr = prog_addr + INSTR_BYTES * index
            start = self._span(index, "instruction fetch", addr, INSTR_BYTES)
            word = int.from_bytes(self.memory[start:start + INSTR_BYTES].tobytes(), "little")
            try:
                instr = validate(self.cfg, decode(self.cfg, word), read_window=read_window,
                                 write_window=write_window)
            except InstructionError as error:
                raise ProgramError(f"instruction {index} at {addr:#x} refused with "
                                   f"{error.code.name}: {error}",
                                   error.code, index, addr) from None
            if self.execute(instr, index):
                return RunStats(**{f.name: getattr(self.stats, f.name) - getattr(before, f.name)
                                   for f in dataclasses.fields(RunStats)})
        end = prog_addr + INSTR_BYTES * int(length)
        raise ProgramError(f"the program at {prog_addr:#x} has no END in its {length} "
                           f"instructions", ErrorCode.PROGRAM_OVERRUN, int(length), end)

    def execute(self, instr, index=0):
        """Execute one instruction (a dict of fields, validated here); return whether it
        was END. ``index`` names the instruction in error messages."""
        try:
            f = validate(self.cfg, instr)
        except ValueError as error:
            raise ValueError(f"illegal instruction {index}: {error}") from None
        op = f["opcode"]
        self.stats.instructions += 1
        if op == Opcode.LOAD:
            self._load(index, f)
        elif op == Opcode.MATMUL:
            self._matmul(index, f)
        elif op == Opcode.STORE:
            self._store(index, f)
        elif op == Opcode.FENCE:
            self.stats.fences += 1
        return op == Opcode.END

    def _load(self, index, f):
        cfg = self.cfg
        buf = f["buf"]
        full = buffer_row_bytes(cfg, buf)
        raw = np.zeros((f["rows"], full), dtype=np.uint8)
        raw[:, :f["row_bytes"]] = self.memory[self._rows_index(index, "LOAD source", f)]
        if buf == Buffer.ACC:
            values = self._elements(raw, self._acc_bytes, cfg.acc_width, True)
            target = self.acc
        else:
            values = self._elements(raw, self._op_bytes, cfg.in_width, cfg.in_signed)
            target = self.spad_a if buf == Buffer.SPAD_A else self.spad_b
        target[f["buf_addr"]:f["buf_addr"] + f["rows"]] = values
        self.stats.loads += 1
        self.stats.load_rows += f["rows"]
        self.stats.load_bytes += f["rows"] * f["row_bytes"]

    def _matmul(self, index, f):
        cfg = self.cfg
        m, k, n = f["m"], f["k"], f["n"]
        if f["dataflow"] == Dataflow.WS:
            a = self.spad_a[f["a_addr"]:f["a_addr"] + m, :k]          # lanes past K are zero
            if f["keep_weights"]:
                if self._weights is None:
                    raise ValueError(f"instruction {index}: MATMUL keep_weights, but no "
                                     f"weight-stationary tile has loaded weights in this run")
                wk, wn, weights = self._weights
                if k > wk or n > wn:
                    raise ValueError(
                        f"instruction {index}: MATMUL keep_weights with k {k} and n {n} needs "
                        f"kept weights of at least that size; the array holds {wk} x {wn}")
            else:
                weights = self.spad_b[f["b_addr"]:f["b_addr"] + k].copy()
                self._weights = (k, n, weights)
            b = weights[:k, :n]
        else:
            # Bank-A row a_addr + s holds column s of A; lanes past M are zero.
            a = self.spad_a[f["a_addr"]:f["a_addr"] + k, :m].T
            b = self.spad_b[f["b_addr"]:f["b_addr"] + k, :n]
        product = a.dot(b) if self._dtype is not object else \
            np.asarray(a, dtype=object).dot(np.asarray(b, dtype=object))
        rows = slice(f["c_addr"], f["c_addr"] + m)
        if f["accumulate"]:
            product = product + self.acc[rows, :n]
        self.acc[rows, :n] = _wrap(product, cfg.acc_width)
        self.stats.matmuls += 1
        self.stats.matmul_cycles += matmul_cycles(f)
        self.stats.macs += m * k * n

    def _store(self, index, f):
        cfg = self.cfg
        rows = self.acc[f["acc_addr"]:f["acc_addr"] + f["rows"]]
        bias = self.acc[f["bias_addr"]] if f["bias"] else None
        if f["per_column"]:
            scale = np.asarray(self.acc[f["scale_addr"]], dtype=object) & \
                ((1 << SCALE_WIDTH) - 1)
        else:
            scale = f["scale"]
        y = postprocess(rows, bias, f["relu"], scale, f["shift"], f["out_type"],
                        f["per_column"], acc_width=cfg.acc_width)
        ob = out_bytes(f["out_type"])
        cols = f["row_bytes"] // ob
        data = np.ascontiguousarray(y[:, :cols].astype(_OUT_DTYPE[ob])).view(np.uint8)
        self.memory[self._rows_index(index, "STORE destination", f)] = \
            data.reshape(f["rows"], f["row_bytes"])
        self.stats.stores += 1
        self.stats.store_rows += f["rows"]
        self.stats.store_bytes += f["rows"] * f["row_bytes"]
