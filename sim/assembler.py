"""Python assembler for the accelerator's instruction set, its disassembler, and the numpy
reference of STORE post-processing.

The encoding comes from :mod:`hw.isa`, the module the gateware decodes with, so the two
cannot disagree. Programs are built instruction by instruction::

    prog = Program(cfg)
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=b_addr, rows=8, row_bytes=8, push_next=True)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=a_addr, rows=8, row_bytes=8, push_next=True)
    prog.matmul(a_addr=0, b_addr=0, c_addr=0, m=8, k=8, n=8, pop_prev=True, push_next=True)
    ...
    memory[base:base + len(prog.to_bytes())] = prog.to_bytes()
"""

import numpy as np

from hw.isa import (
    INSTR_BYTES,
    INSTR_WIDTH,
    SCALE_WIDTH,
    SHIFT_WIDTH,
    TOKEN_FIELDS,
    Dataflow,
    Opcode,
    OutType,
    Queue,
    decode,
    encode,
    queue_of,
    validate,
)

__all__ = ["Program", "disassemble", "format_instruction", "postprocess", "CHANNELS"]

CHANNELS = ("load->compute", "compute->load", "compute->store", "store->compute")
"""The four dependency-token channels, named ``producer->consumer``."""

_NEIGHBOUR = {
    (Queue.LOAD, "next"): "compute", (Queue.COMPUTE, "prev"): "load",
    (Queue.COMPUTE, "next"): "store", (Queue.STORE, "prev"): "compute",
}


def _channels(instr):
    """Channels ``instr`` pops from and pushes to."""
    queue = queue_of(instr["opcode"])
    if queue is None:
        return [], []
    me = queue.name.lower()
    pops = [f"{_NEIGHBOUR[queue, side]}->{me}" for side in ("prev", "next")
            if instr[f"pop_{side}"]]
    pushes = [f"{me}->{_NEIGHBOUR[queue, side]}" for side in ("prev", "next")
              if instr[f"push_{side}"]]
    return pops, pushes


class Program:
    """A program under construction for configuration ``cfg``.

    Every method checks its instruction with :func:`hw.isa.validate` at once, so a mistake
    raises ``ValueError`` at the line that made it, and returns the instruction's index.
    Token keywords (``pop_prev``, ``pop_next``, ``push_prev``, ``push_next``) exist only where
    the instruction's queue has that neighbour; see :mod:`hw.isa` for their meaning.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    cfg : AccelConfig
    instructions : list of dict
        The validated fields of every instruction, in program order.
    words : list of int
        The encoded instructions.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self._instrs = []
        self._words = []
        self._ended = False

    def __len__(self):
        return len(self._words)

    @property
    def instructions(self):
        return [dict(instr) for instr in self._instrs]

    @property
    def words(self):
        return list(self._words)

    def _add(self, fields):
        if self._ended:
            raise ValueError(f"the program ended at instruction {len(self) - 1}; "
                             f"no {fields['opcode'].name} may follow END")
        instr = validate(self.cfg, fields)
        self._words.append(encode(self.cfg, instr))
        self._instrs.append(instr)
        if instr["opcode"] == Opcode.END:
            self._ended = True
        return len(self._words) - 1

    def load(self, *, buf, buf_addr, addr, rows, row_bytes, stride=None,
             pop_next=False, push_next=False):
        """Append a LOAD of ``rows`` memory rows of ``row_bytes`` bytes, row ``r`` at
        ``addr + r * stride`` (``stride`` defaults to ``row_bytes``), into rows
        ``buf_addr ..`` of buffer ``buf`` (a :class:`~hw.isa.Buffer`)."""
        return self._add({
            "opcode": Opcode.LOAD, "buf": buf, "buf_addr": buf_addr, "rows": rows,
            "row_bytes": row_bytes, "addr": addr,
            "stride": row_bytes if stride is None else stride,
            "pop_next": pop_next, "push_next": push_next,
        })

    def matmul(self, *, a_addr, c_addr, m, k, n, b_addr=0, dataflow=Dataflow.WS,
               accumulate=False, keep_weights=False,
               pop_prev=False, pop_next=False, push_prev=False, push_next=False):
        """Append a MATMUL of the M x K tile of A at bank-A row ``a_addr`` by the K x N tile
        of B at bank-B row ``b_addr`` into accumulator rows ``c_addr ..``."""
        return self._add({
            "opcode": Opcode.MATMUL, "dataflow": dataflow, "accumulate": accumulate,
            "keep_weights": keep_weights, "a_addr": a_addr,
            "b_addr": 0 if keep_weights else b_addr, "c_addr": c_addr,
            "m": m, "k": k, "n": n, "pop_prev": pop_prev, "pop_next": pop_next,
            "push_prev": push_prev, "push_next": push_next,
        })

    def store(self, *, acc_addr, rows, addr, row_bytes, stride=None, out_type=OutType.INT8,
              relu=False, bias_addr=None, scale=1, shift=0, scale_addr=None,
              pop_prev=False, push_prev=False):
        """Append a STORE of accumulator rows ``acc_addr .. acc_addr + rows - 1``,
        post-processed, to ``addr + r * stride`` (``stride`` defaults to ``row_bytes``).

        ``bias_addr`` names the accumulator row of a per-column bias (no bias if ``None``);
        ``scale_addr`` names the accumulator row of per-column scales, which replace
        ``scale`` (a per-layer scale if ``None``).
        """
        per_column = scale_addr is not None
        return self._add({
            "opcode": Opcode.STORE, "out_type": out_type, "relu": relu,
            "bias": bias_addr is not None, "bias_addr": 0 if bias_addr is None else bias_addr,
            "per_column": per_column, "scale_addr": scale_addr if per_column else 0,
            "scale": 0 if per_column else scale, "shift": shift,
            "acc_addr": acc_addr, "rows": rows, "row_bytes": row_bytes, "addr": addr,
            "stride": row_bytes if stride is None else stride,
            "pop_prev": pop_prev, "push_prev": push_prev,
        })

    def fence(self):
        """Append a FENCE: wait until every earlier instruction has finished."""
        return self._add({"opcode": Opcode.FENCE})

    def end(self):
        """Append END: wait for everything, then raise done. Nothing may follow it."""
        return self._add({"opcode": Opcode.END})

    def to_bytes(self):
        """The program as it lies in memory: each word little-endian in
        ``INSTR_BYTES`` bytes, in program order."""
        return b"".join(word.to_bytes(INSTR_BYTES, "little") for word in self._words)

    def check_tokens(self):
        """Run the token protocol abstractly and find deadlocks.

        Each queue runs its instructions in order; an instruction starts when its pops can be
        met. FENCE and END wait for all queues. Queues are taken as unbounded, so a deadlock
        caused only by a full hardware queue is not found.

        Returns
        -------
        dict
            Tokens left in each of :data:`CHANNELS` at the end.

        Raises
        ------
        ValueError
            If some instruction can never start, naming the instructions that wait.
        """
        tokens = dict.fromkeys(CHANNELS, 0)
        pending = {q: [] for q in Queue}

        def drain(barrier):
            while True:
                progress = False
                for queue in Queue:
                    todo = pending[queue]
                    while todo:
                        index, pops, pushes = todo[0]
                        if any(tokens[ch] == 0 for ch in pops):
                            break
                        for ch in pops:
                            tokens[ch] -= 1
                        for ch in pushes:
                            tokens[ch] += 1
                        todo.pop(0)
                        progress = True
                if not progress:
                    break
            stuck = [(queue, todo[0]) for queue, todo in pending.items() if todo]
            if stuck:
                where = "the end of the program" if barrier is None else \
                    f"{self._instrs[barrier]['opcode'].name} at {barrier}"
                waits = "; ".join(
                    f"{self._instrs[index]['opcode'].name} at {index} waits on "
                    f"{' and '.join(ch for ch in pops if tokens[ch] == 0)}"
                    for _, (index, pops, _) in stuck)
                raise ValueError(f"dependency tokens deadlock before {where}: {waits}")

        for index, instr in enumerate(self._instrs):
            queue = queue_of(instr["opcode"])
            if queue is None:
                drain(index)
            else:
                pending[queue].append((index, *_channels(instr)))
        drain(None)
        return tokens


def _hex(value):
    return f"{value:#x}"


def format_instruction(cfg, instr):
    """One line of assembly text for the (validated or decoded) fields ``instr``; fields
    that its flags leave unused are omitted."""
    op = instr["opcode"]
    parts = [f"{op.name:<6}"]
    if op == Opcode.LOAD:
        parts += [f"{instr['buf'].name}[{instr['buf_addr']}]", f"rows={instr['rows']}",
                  f"row_bytes={instr['row_bytes']}", f"addr={_hex(instr['addr'])}",
                  f"stride={instr['stride']}"]
    elif op == Opcode.MATMUL:
        parts += [instr["dataflow"].name, "acc" if instr["accumulate"] else "overwrite"]
        parts += [f"m={instr['m']}", f"k={instr['k']}", f"n={instr['n']}",
                  f"a={instr['a_addr']}"]
        parts += ["b=kept"] if instr["keep_weights"] else [f"b={instr['b_addr']}"]
        parts += [f"c={instr['c_addr']}"]
    elif op == Opcode.STORE:
        parts += [f"ACC[{instr['acc_addr']}]", f"rows={instr['rows']}",
                  f"row_bytes={instr['row_bytes']}", f"addr={_hex(instr['addr'])}",
                  f"stride={instr['stride']}", instr["out_type"].name]
        if instr["bias"]:
            parts.append(f"bias=ACC[{instr['bias_addr']}]")
        if instr["relu"]:
            parts.append("relu")
        if instr["per_column"]:
            parts.append(f"scale=ACC[{instr['scale_addr']}]")
        else:
            parts.append(f"scale={instr['scale']}")
        parts.append(f"shift={instr['shift']}")
    tokens = [name for name in TOKEN_FIELDS if instr[name]]
    text = " ".join(parts).rstrip()
    return f"{text}  ; {' '.join(tokens)}" if tokens else text


def disassemble(cfg, words):
    """Readable text of a program, one numbered line per instruction.

    Parameters
    ----------
    cfg : AccelConfig
    words : iterable of int, or bytes
        Instruction words, or the program's bytes as :meth:`Program.to_bytes` gives them.

    Returns
    -------
    str
        Lines ``"  index: text"``; a word that does not decode, or breaks a rule of
        :func:`hw.isa.validate`, shows as ``.word`` with the reason.
    """
    if isinstance(words, (bytes, bytearray, memoryview)):
        raw = bytes(words)
        if len(raw) % INSTR_BYTES:
            raise ValueError(f"a program is a whole number of {INSTR_BYTES}-byte words, "
                             f"not {len(raw)} bytes")
        words = [int.from_bytes(raw[i:i + INSTR_BYTES], "little")
                 for i in range(0, len(raw), INSTR_BYTES)]
    words = list(words)
    digits = max(1, len(str(len(words) - 1)))
    lines = []
    for index, word in enumerate(words):
        try:
            text = format_instruction(cfg, validate(cfg, decode(cfg, word)))
        except ValueError as error:
            text = f".word {word:#0{INSTR_WIDTH // 4 + 2}x}  ; illegal: {error}"
        lines.append(f"{index:>{digits}}: {text}")
    return "\n".join(lines)


# Post-processing reference ---------------------------------------------------------------

_OUT_RANGE = {
    OutType.INT8: (-(1 << 7), (1 << 7) - 1, np.int8),
    OutType.INT16: (-(1 << 15), (1 << 15) - 1, np.int16),
    OutType.INT32: (-(1 << 31), (1 << 31) - 1, np.int32),
}


def _int_array(name, values):
    """``values`` as an object array of Python ints, so that no product can overflow."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(object)
    if array.dtype.kind == "O" and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array.flat):
        return np.vectorize(int, otypes=[object])(array) if array.size else array
    raise ValueError(f"{name} must hold integers, not {array.dtype} values")


def _signed_array(name, values, bits):
    array = _int_array(name, values)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if array.size and (array.min() < lo or array.max() > hi):
        bad = array.min() if array.min() < lo else array.max()
        raise ValueError(f"{name} must hold signed {bits}-bit values ({lo} to {hi}), "
                         f"not {bad}")
    return array


def postprocess(acc, bias=None, relu=False, scale=1, shift=0, out_type=OutType.INT8,
                per_column=False, *, acc_width=32):
    """What STORE makes of accumulator rows, bit-exact (see :mod:`hw.isa`).

    Parameters
    ----------
    acc : array_like of int, shape (M, N)
        Accumulator values, signed ``acc_width``-bit.
    bias : array_like of int, shape (N,), optional
        Per-column bias, signed ``acc_width``-bit; the sum wraps modulo ``2**acc_width``.
    relu : bool
        Clamp negative values (after the bias) to zero.
    scale : int, or array_like of int of shape (N,) if ``per_column``
        Unsigned ``SCALE_WIDTH``-bit multiplier(s).
    shift : int
        Right shift, 0 to ``2**SHIFT_WIDTH - 1``, rounding half away from zero.
    out_type : OutType or str
        Saturate to int8, int16 or int32.
    per_column : bool
        ``scale`` holds one value per column.
    acc_width : int
        Accumulator width in bits.

    Returns
    -------
    numpy.ndarray
        Shape (M, N), dtype ``int8``, ``int16`` or ``int32`` after ``out_type``.
    """
    if isinstance(out_type, str) and out_type in OutType.__members__:
        out_type = OutType[out_type]
    elif not isinstance(out_type, OutType):
        raise ValueError(f"out_type must be one of "
                         f"{', '.join(t.name for t in OutType)}, not {out_type!r}")
    x = _signed_array("acc", acc, acc_width)
    if x.ndim != 2:
        raise ValueError(f"acc must be a matrix (M, N), not of shape {x.shape}")
    cols = x.shape[1]
    if bias is not None:
        b = _signed_array("bias", bias, acc_width)
        if b.shape != (cols,):
            raise ValueError(f"bias must have shape ({cols},), not {b.shape}")
        half = 1 << (acc_width - 1)
        x = ((x + b[None, :] + half) & ((1 << acc_width) - 1)) - half
    if relu:
        x = np.where(x < 0, 0, x)
    s = _int_array("scale", scale)
    if per_column and s.shape != (cols,):
        raise ValueError(f"scale must have shape ({cols},) with per_column, not {s.shape}")
    if not per_column and s.shape != ():
        raise ValueError(f"scale must be one integer without per_column, not of shape "
                         f"{s.shape}")
    if s.size and (s.min() < 0 or s.max() >= 1 << SCALE_WIDTH):
        raise ValueError(f"scale must hold integers from 0 to {(1 << SCALE_WIDTH) - 1}, "
                         f"not {s.min() if s.min() < 0 else s.max()}")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or \
            not 0 <= shift < 1 << SHIFT_WIDTH:
        raise ValueError(f"shift must be an integer from 0 to {(1 << SHIFT_WIDTH) - 1}, "
                         f"not {shift!r}")
    shift = int(shift)
    p = x * (s[None, :] if per_column else s)
    if shift:
        p = (p + (1 << (shift - 1)) - (p < 0).astype(object)) >> shift
    lo, hi, dtype = _OUT_RANGE[out_type]
    y = np.minimum(np.maximum(p, lo), hi)
    return y.astype(dtype)
