"""The accelerator's instruction set, defined once for the gateware and the Python assembler.

Instructions are fixed-width words of ``INSTR_WIDTH`` = 256 bits (32 bytes), stored
little-endian at consecutive 32-byte addresses. 256 bits is one beat of a 256-bit HBM
pseudo-channel port, so fetching an instruction is one aligned access; 128 bits is too
narrow, because a STORE carries two full-width addresses (base and stride, up to 64 bits
each with ``addr_width`` = 64) besides three accumulator addresses and the requantization
parameters. Field widths follow the :class:`~hw.config.AccelConfig`; :class:`InstructionLayout`
raises ``ValueError`` if a configuration's fields do not fit.

Every word is a header (bits 0 to 7) and a body (bits 8 up) whose meaning the opcode selects:

====  =========  ==========================================================================
bits  field      meaning
====  =========  ==========================================================================
0-3   opcode     ``Opcode``: LOAD 1, MATMUL 2, STORE 3, FENCE 4, END 5. 0 and 6-15 are
                 illegal, so running into zeroed memory stops the accelerator with an error.
4     pop_prev   wait for, and take, a token from the previous queue before starting
5     pop_next   wait for, and take, a token from the next queue before starting
6     push_prev  give a token to the previous queue after finishing
7     push_next  give a token to the next queue after finishing
====  =========  ==========================================================================

Body fields, in order from bit 8 (widths for configuration ``cfg``; ``bits(n)`` is the width
of an unsigned field holding ``0 .. n - 1``, and :func:`layout_table` lists exact offsets):

LOAD (load queue): memory -> scratchpad bank A, bank B, or accumulator memory.

============  =========================================  =====================================
field         width                                      meaning
============  =========================================  =====================================
buf           2                                          ``Buffer``: SPAD_A 0, SPAD_B 1, ACC 2
buf_addr      bits(max(spad_depth, acc_depth))           first buffer row written
rows          bits(max(spad_depth, acc_depth) + 1)       rows moved (memory rows = buffer rows)
row_bytes     bits(max row bytes of any buffer + 1)      bytes per memory row
addr          addr_width                                 byte address of memory row 0
stride        addr_width                                 bytes from one memory row to the next
============  =========================================  =====================================

Memory row ``r`` (``row_bytes`` bytes at ``addr + r * stride``) fills buffer row
``buf_addr + r``; the bytes of a buffer row past ``row_bytes`` are zero, so edge tiles come
out zero-padded. Elements are little-endian, ``operand_bytes(cfg)`` bytes per operand (1 for
int8) and ``acc_bytes(cfg)`` per accumulator (4 for int32). A bank-A row holds ``rows``
operands, a bank-B row ``cols`` operands, an accumulator row ``cols`` accumulators.
``row_bytes`` is a multiple of the element size and at most a row's size. ``stride`` may be
0 (one memory row broadcast to every buffer row, as for a bias).

MATMUL (compute queue): scratchpad -> systolic array -> accumulator memory.

============  ========================================  ======================================
field         width                                     meaning
============  ========================================  ======================================
dataflow      1                                         ``Dataflow``: WS 0, OS 1
accumulate    1                                         add to the accumulator rows (1) or
                                                        overwrite them (0)
keep_weights  1                                         WS only: reuse the weights already in
                                                        the array; ``b_addr`` is ignored
a_addr        bits(spad_depth)                          first bank-A row
b_addr        bits(spad_depth)                          first bank-B row
c_addr        bits(acc_depth)                           first accumulator row
m             bits(acc_depth + 1)                       M: result rows
k             bits(max(rows, spad_depth) + 1)           K: reduction length
n             bits(cols + 1)                            N: result columns
============  ========================================  ======================================

Computes ``C[0:M, 0:N] = A[0:M, 0:K] @ B[0:K, 0:N]`` into accumulator rows
``c_addr .. c_addr + M - 1`` (columns ``N ..`` of those rows are left unchanged). Bank-B row
``b_addr + k`` holds ``B[k, 0:N]`` in both dataflows. Weight-stationary (WS): ``K <= rows``,
``N <= cols``, any M; bank-A row ``a_addr + i`` holds ``A[i, 0:K]``; the tile's weights shift
into the array's second weight buffer while the previous WS tile still computes.
Output-stationary (OS): ``M <= rows``, ``N <= cols``, any K; bank-A row ``a_addr + k`` holds
column ``A[0:M, k]`` (A is stored transposed). Operand lanes past K (WS) or M (OS) are forced
to zero. Sums wrap modulo ``2**acc_width``.

STORE (store queue): accumulator memory -> post-processing -> memory.

============  ========================================  ======================================
field         width                                     meaning
============  ========================================  ======================================
out_type      2                                         ``OutType``: INT8 0, INT16 1, INT32 2
relu          1                                         clamp negative values to zero
bias          1                                         add the bias row at ``bias_addr``
per_column    1                                         scale per column from the row at
                                                        ``scale_addr`` (1), or by ``scale`` (0)
shift         6                                         arithmetic right shift, 0 to 63
scale         16                                        per-layer scale, unsigned
acc_addr      bits(acc_depth)                           first accumulator row read
bias_addr     bits(acc_depth)                           accumulator row holding the bias
scale_addr    bits(acc_depth)                           accumulator row holding the scales
rows          bits(acc_depth + 1)                       rows stored
row_bytes     bits(4 * cols + 1)                        bytes per memory row
addr          addr_width                                byte address of memory row 0
stride        addr_width                                bytes from one memory row to the next
============  ========================================  ======================================

Accumulator row ``acc_addr + r`` goes to ``addr + r * stride``; only the first
``row_bytes / out_bytes`` columns are written (``out_bytes`` is 1, 2 or 4). Rows of a STORE
must not overlap (``stride >= row_bytes``), since the memory system may complete them in any
order. Each value ``x`` of column ``j`` goes through, in exact integer arithmetic:

1. ``x = wrap(x + bias_row[j])`` if ``bias`` (modulo ``2**acc_width``, like accumulation);
2. ``x = max(x, 0)`` if ``relu``;
3. ``p = x * s`` with ``s = scale``, or ``s = scale_row[j]`` if ``per_column`` (a scale-table
   entry must hold a value in ``0 .. 2**16 - 1``; the hardware uses its low 16 bits);
4. ``y = round(p / 2**shift)``, rounding half away from zero:
   ``y = (p + 2**(shift-1) - (p < 0)) >> shift`` for ``shift > 0``, ``y = p`` for
   ``shift = 0``. This is the tie rule of gemmlowp's and TensorFlow Lite's
   ``RoundingDivideByPOT``, and in hardware it is one adder whose carry-in is the sign bit;
5. saturate ``y`` to the range of ``out_type`` (int8 -128..127, int16 -32768..32767, int32).

Raw accumulators are ``out_type`` INT32, ``scale`` 1, ``shift`` 0 (with ``acc_width`` 32 the
saturation never acts). Bias and scale tables are accumulator rows (filled by a LOAD with
``buf`` ACC); the store engine reads each once per STORE, before its data rows.

FENCE waits until every instruction before it has finished in all three queues; END does
the same, then raises done. Neither uses tokens. Fields that an instruction's flags leave
unused are ignored; the assembler writes them as zero. Bits above the opcode's body are
reserved: they must be zero, and a word with one set is an illegal instruction.

Dependency tokens
-----------------
Decode sends LOAD to the load queue, MATMUL to the compute queue, STORE to the store queue;
the queues run concurrently, in order within each queue. They are ordered load, compute,
store, so "previous" and "next" name a neighbour, and four token channels connect them:

==============  ==================  ==================  ====================================
channel         pushed by           popped by           usual meaning
==============  ==================  ==================  ====================================
load->compute   LOAD push_next      MATMUL pop_prev     operands are in the scratchpad
compute->load   MATMUL push_prev    LOAD pop_next       a scratchpad buffer is free again
compute->store  MATMUL push_next    STORE pop_prev      results are in the accumulator
store->compute  STORE push_prev     MATMUL pop_next     an accumulator buffer is free again
==============  ==================  ==================  ====================================

Each channel is a counter, zero when the program starts. A pop waits while its counter is
zero, then decrements it, before the instruction starts; a push increments the counter once
the instruction's writes are visible to the other queue. LOAD has no previous queue and
STORE no next one, so those bits must be zero. Double-buffering a GEMM over tiles
``t = 0 .. T-1``: the LOADs of tile ``t`` push "data ready" (the last of them only) and,
from ``t = 2`` on, pop "buffer free", since both buffers start free; each MATMUL pops
"data ready", pushes "results ready", pops "accumulator free" from ``t = 2`` on, and pushes
"buffer free" while ``t < T - 2``; each STORE pops "results ready" and pushes "accumulator
free" while ``t < T - 2``. Every channel then ends at zero. Counters are cleared when the
doorbell starts a program, so tokens left over at END do no harm.
:meth:`sim.assembler.Program.check_tokens` finds deadlocks statically.
"""

import functools
import operator

from amaranth.lib import data, enum

from .array import Dataflow

__all__ = [
    "INSTR_WIDTH", "INSTR_BYTES", "HEADER_WIDTH", "SCALE_WIDTH", "SHIFT_WIDTH",
    "Opcode", "Buffer", "OutType", "Queue", "Dataflow",
    "HeaderLayout", "LoadLayout", "MatmulLayout", "StoreLayout", "BodyLayout",
    "InstructionLayout", "HEADER_FIELDS", "TOKEN_FIELDS", "FLAG_FIELDS",
    "field_names", "queue_of", "operand_bytes", "acc_bytes", "out_bytes", "buffer_depth",
    "buffer_row_bytes", "layout_table", "ErrorCode", "InstructionError", "validate", "encode",
    "decode",
]

INSTR_WIDTH = 256           # one 256-bit HBM pseudo-channel beat
INSTR_BYTES = INSTR_WIDTH // 8
HEADER_WIDTH = 8
SCALE_WIDTH = 16            # 16-bit multipliers (as NVDLA's) keep requantization to 2 DSPs/column
SHIFT_WIDTH = 6


class ErrorCode(enum.Enum, shape=8):
    """Why the accelerator refused an instruction or stopped a program (STATUS.ERR_CODE)."""
    NONE = 0
    ILLEGAL_INSTRUCTION = 1     #: undefined opcode or enumerated value, a reserved bit, a
                                #: token bit the queue has no use for, keep_weights with OS
    FETCH_ERROR = 2             #: an instruction fetch got SLVERR or DECERR
    READ_ERROR = 3              #: a LOAD's read got SLVERR or DECERR
    WRITE_ERROR = 4             #: a STORE's write got SLVERR or DECERR
    BAD_PROGRAM = 5             #: PROG_LEN is 0 or PROG_ADDR is not instruction-aligned
    ABORTED = 6                 #: SOFT_RESET stopped the program
    BAD_DIMENSION = 7           #: a count (rows, row_bytes, m, k, n) is 0, too large or not
                                #: a whole number of elements; STORE rows that overlap
    BUFFER_RANGE = 8            #: scratchpad or accumulator rows past the end of the buffer
    READ_PROTECTION = 9         #: a LOAD, or the program, reaches outside the read window
    WRITE_PROTECTION = 10       #: a STORE reaches outside the write window
    PROGRAM_OVERRUN = 11        #: PROG_LEN instructions ran without an END
    TOKEN_DEADLOCK = 12         #: every queue waits for a token no instruction can give


class InstructionError(ValueError):
    """An instruction the accelerator refuses; ``code`` is the :class:`ErrorCode` it reports."""

    def __init__(self, message, code=ErrorCode.ILLEGAL_INSTRUCTION):
        super().__init__(message)
        self.code = code


class Opcode(enum.Enum, shape=4):
    """Operation of an instruction; 0 is illegal so that zeroed memory never executes."""
    LOAD = 1
    MATMUL = 2
    STORE = 3
    FENCE = 4
    END = 5


class Buffer(enum.Enum, shape=2):
    """Destination of a LOAD: a scratchpad bank (A operands, B operands) or accumulators."""
    SPAD_A = 0
    SPAD_B = 1
    ACC = 2


class OutType(enum.Enum, shape=2):
    """Element type a STORE writes; the post-processed value saturates to it."""
    INT8 = 0
    INT16 = 1
    INT32 = 2


class Queue(enum.Enum, shape=2):
    """The three decoupled instruction queues, in token order (previous to next)."""
    LOAD = 0
    COMPUTE = 1
    STORE = 2


TOKEN_FIELDS = ("pop_prev", "pop_next", "push_prev", "push_next")
HEADER_FIELDS = ("opcode",) + TOKEN_FIELDS
FLAG_FIELDS = frozenset(TOKEN_FIELDS + (
    "accumulate", "keep_weights", "relu", "bias", "per_column"))

_OUT_BYTES = {OutType.INT8: 1, OutType.INT16: 2, OutType.INT32: 4}
_BODY = {Opcode.LOAD: "load", Opcode.MATMUL: "matmul", Opcode.STORE: "store"}
_QUEUE = {Opcode.LOAD: Queue.LOAD, Opcode.MATMUL: Queue.COMPUTE, Opcode.STORE: Queue.STORE}


def _addr(depth):
    # range(1) would be a zero-width field; one bit keeps every address field a real signal.
    return range(max(depth, 2))


def _pow2_bytes(width):
    n = (width + 7) // 8
    return 1 << (n - 1).bit_length()


def operand_bytes(cfg):
    """Bytes one operand takes in memory: ``in_width`` rounded up to 1, 2 or 4 bytes."""
    return _pow2_bytes(cfg.in_width)


def acc_bytes(cfg):
    """Bytes one accumulator takes in memory: ``acc_width`` rounded up to 1, 2, 4 or 8 bytes."""
    return _pow2_bytes(cfg.acc_width)


def out_bytes(out_type):
    """Bytes one STORE output element takes: 1, 2 or 4."""
    return _OUT_BYTES[OutType(out_type)]


def buffer_depth(cfg, buf):
    """Rows of buffer ``buf``."""
    return cfg.acc_depth if Buffer(buf) == Buffer.ACC else cfg.spad_depth


def buffer_row_bytes(cfg, buf):
    """Bytes of memory one row of buffer ``buf`` holds."""
    buf = Buffer(buf)
    if buf == Buffer.SPAD_A:
        return cfg.rows * operand_bytes(cfg)
    if buf == Buffer.SPAD_B:
        return cfg.cols * operand_bytes(cfg)
    return cfg.cols * acc_bytes(cfg)


def queue_of(opcode):
    """Queue that runs ``opcode``, or ``None`` for FENCE and END (handled by decode)."""
    return _QUEUE.get(Opcode(opcode))


class HeaderLayout(data.StructLayout):
    """The 8 bits every instruction starts with: opcode and dependency-token bits."""

    def __init__(self):
        super().__init__({
            "opcode": Opcode,
            "pop_prev": 1,
            "pop_next": 1,
            "push_prev": 1,
            "push_next": 1,
        })


class LoadLayout(data.StructLayout):
    """Body of LOAD: a 2-D strided memory region into buffer rows."""

    def __init__(self, cfg):
        depth = max(cfg.spad_depth, cfg.acc_depth)
        row_bytes = max(buffer_row_bytes(cfg, b) for b in Buffer)
        super().__init__({
            "buf": Buffer,
            "buf_addr": _addr(depth),
            "rows": range(depth + 1),
            "row_bytes": range(row_bytes + 1),
            "addr": cfg.addr_width,
            "stride": cfg.addr_width,
        })


class MatmulLayout(data.StructLayout):
    """Body of MATMUL: one tile, scratchpad operands into accumulator rows."""

    def __init__(self, cfg):
        super().__init__({
            "dataflow": Dataflow,
            "accumulate": 1,
            "keep_weights": 1,
            "a_addr": _addr(cfg.spad_depth),
            "b_addr": _addr(cfg.spad_depth),
            "c_addr": _addr(cfg.acc_depth),
            "m": range(cfg.acc_depth + 1),
            "k": range(max(cfg.rows, cfg.spad_depth) + 1),
            "n": range(cfg.cols + 1),
        })


def post_op_fields():
    """The post-processing settings that open a STORE body (the post-processor takes them as
    they are)."""
    return {
        "out_type": OutType,
        "relu": 1,
        "bias": 1,
        "per_column": 1,
        "shift": SHIFT_WIDTH,
        "scale": SCALE_WIDTH,
    }


class StoreLayout(data.StructLayout):
    """Body of STORE: accumulator rows, post-processed, into a 2-D strided memory region."""

    def __init__(self, cfg):
        super().__init__({
            **post_op_fields(),
            "acc_addr": _addr(cfg.acc_depth),
            "bias_addr": _addr(cfg.acc_depth),
            "scale_addr": _addr(cfg.acc_depth),
            "rows": range(cfg.acc_depth + 1),
            "row_bytes": range(cfg.cols * max(_OUT_BYTES.values()) + 1),
            "addr": cfg.addr_width,
            "stride": cfg.addr_width,
        })


class BodyLayout(data.UnionLayout):
    """The opcode-dependent part of an instruction: one view per opcode over the same bits."""

    def __init__(self, cfg):
        super().__init__({
            "load": LoadLayout(cfg),
            "matmul": MatmulLayout(cfg),
            "store": StoreLayout(cfg),
        })


class InstructionLayout(data.FlexibleLayout):
    """One instruction word: ``header`` at bit 0, ``body`` at bit ``HEADER_WIDTH``, padded
    with reserved bits to ``INSTR_WIDTH``.

    Parameters
    ----------
    cfg : AccelConfig

    Raises
    ------
    ValueError
        If the configuration's fields need more than ``INSTR_WIDTH`` bits.
    """

    def __init__(self, cfg):
        body = BodyLayout(cfg)
        if HEADER_WIDTH + body.size > INSTR_WIDTH:
            widest = max(body, key=lambda item: item[1].shape.size)[0]
            raise ValueError(
                f"configuration {cfg.name!r} needs {HEADER_WIDTH + body.size} bits for "
                f"{widest.upper()}, more than the {INSTR_WIDTH}-bit instruction; reduce "
                f"addr_width, spad_depth or acc_depth")
        super().__init__(INSTR_WIDTH, {
            "header": data.Field(HeaderLayout(), 0),
            "body": data.Field(body, HEADER_WIDTH),
        })


@functools.lru_cache(maxsize=32)
def _layout(cfg):
    return InstructionLayout(cfg)


def _body(cfg, opcode):
    member = _BODY.get(opcode)
    return None if member is None else _layout(cfg)["body"].shape[member].shape


def field_names(cfg, opcode):
    """Names of the fields of ``opcode``, header first, in bit order."""
    body = _body(cfg, Opcode(opcode))
    return HEADER_FIELDS + (() if body is None else tuple(name for name, _ in body))


def layout_table(cfg):
    """Rows ``(opcode name, field, first bit, width)`` of every field, for documentation."""
    table = []
    for op in Opcode:
        base = HEADER_WIDTH
        fields = [(name, field.offset, field.width) for name, field in HeaderLayout()]
        body = _body(cfg, op)
        if body is not None:
            fields += [(name, base + field.offset, field.width) for name, field in body]
        table += [(op.name, name, offset, width) for name, offset, width in fields]
    return table


# Validation --------------------------------------------------------------------------------

def _enum_value(enum_cls, field, value, ctx):
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str) and value in enum_cls.__members__:
        return enum_cls[value]
    if not isinstance(value, bool) and isinstance(value, int):
        try:
            return enum_cls(value)
        except ValueError:
            pass
    allowed = ", ".join(f"{m.name} ({m.value})" for m in enum_cls)
    raise ValueError(f"{ctx}{field} must be one of {allowed}, not {value!r}")


def _int_value(field, value, width, ctx):
    if isinstance(value, bool) and field not in FLAG_FIELDS:
        raise ValueError(f"{ctx}{field} must be an integer, not {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{ctx}{field} must be an integer, not {value!r}") from None
    if field in FLAG_FIELDS:
        if value not in (0, 1):
            raise ValueError(f"{ctx}{field} must be 0 or 1 (or a bool), not {value!r}")
        return bool(value)
    if not 0 <= value < 1 << width:
        raise ValueError(f"{ctx}{field} must be from 0 to {(1 << width) - 1} "
                         f"(a {width}-bit field), not {value!r}")
    return value


def _normalize(cfg, instr):
    if not isinstance(instr, dict):
        raise ValueError(f"an instruction must be a dict of fields, not {instr!r}")
    if "opcode" not in instr:
        raise ValueError("opcode is missing")
    op = _enum_value(Opcode, "opcode", instr["opcode"], "")
    ctx = f"{op.name}: "
    names = field_names(cfg, op)
    unknown = [name for name in instr if name not in names]
    if unknown:
        raise ValueError(f"{ctx}{unknown[0]} is not a field of {op.name}; its fields are "
                         f"{', '.join(names)}")
    shapes = dict(HeaderLayout())
    body = _body(cfg, op)
    if body is not None:
        shapes.update(body)
    out = {"opcode": op}
    for name in names[1:]:
        shape = shapes[name].shape
        value = instr.get(name, 0)
        if isinstance(shape, type) and issubclass(shape, enum.Enum):
            out[name] = _enum_value(shape, name, value, ctx)
        else:
            out[name] = _int_value(name, value, shapes[name].width, ctx)
    return out


def region(f):
    """The first and last byte address of a LOAD's or STORE's memory region."""
    return f["addr"], f["addr"] + (f["rows"] - 1) * f["stride"] + f["row_bytes"] - 1


def _check_region(cfg, ctx, f, window, what, code):
    lo, hi = window if window is not None else (0, (1 << cfg.addr_width) - 1)
    first, last = region(f)
    if first < lo or last > hi:
        raise InstructionError(
            f"{ctx}the memory region {first:#x} .. {last:#x} (addr {f['addr']:#x}, rows "
            f"{f['rows']}, stride {f['stride']}, row_bytes {f['row_bytes']}) must lie in the "
            f"{what} window {lo:#x} .. {hi:#x}", code)


def _check_count(ctx, field, value, hi, what):
    if not 1 <= value <= hi:
        raise InstructionError(f"{ctx}{field} must be from 1 to {hi} ({what}), not {value!r}",
                               ErrorCode.BAD_DIMENSION)


def _check_elements(ctx, value, elem, row, what):
    if not 1 <= value <= row or value % elem:
        raise InstructionError(f"{ctx}row_bytes must be a multiple of {elem} from {elem} to "
                               f"{row} ({what}), not {value!r}", ErrorCode.BAD_DIMENSION)


def _check_range(ctx, field, start, count, count_field, depth, what):
    if start + count > depth:
        raise InstructionError(
            f"{ctx}{field} + {count_field} must be at most {depth} ({what}), not "
            f"{start + count} ({field} {start}, {count_field} {count})", ErrorCode.BUFFER_RANGE)


def _check_below(ctx, field, value, depth):
    if value >= depth:
        raise InstructionError(f"{ctx}{field} must be below acc_depth {depth}, not {value!r}",
                               ErrorCode.BUFFER_RANGE)


def _check_tokens(op, f):
    ctx = f"{op.name}: "
    queue = _QUEUE.get(op)
    if queue is None:
        bad = [name for name in TOKEN_FIELDS if f[name]]
        if bad:
            raise InstructionError(f"{ctx}{bad[0]} must be 0 ({op.name} waits for every queue "
                                   f"and uses no tokens), not 1")
        return
    for side, edge in (("prev", Queue.LOAD), ("next", Queue.STORE)):
        if queue == edge:
            for name in (f"pop_{side}", f"push_{side}"):
                if f[name]:
                    raise InstructionError(f"{ctx}{name} must be 0 (the "
                                           f"{queue.name.lower()} queue has no {side} queue), "
                                           f"not 1")


def validate(cfg, instr, *, read_window=None, write_window=None):
    """Check an instruction against the ISA rules for configuration ``cfg``.

    The checks run in the order the hardware reports them: encoding (ILLEGAL_INSTRUCTION),
    then every count (BAD_DIMENSION), then buffer ranges (BUFFER_RANGE), then the memory
    region against the protection windows (READ_PROTECTION, WRITE_PROTECTION).

    Parameters
    ----------
    cfg : AccelConfig
    instr : dict
        Field name to value. ``opcode`` is required; other fields default to 0. Enumerated
        fields take a member, its value or its name.
    read_window, write_window : (int, int), optional
        Inclusive byte ranges a LOAD may read and a STORE may write (the READ_BASE/LIMIT and
        WRITE_BASE/LIMIT registers); the whole address space by default.

    Returns
    -------
    dict
        Every field of the opcode, header first: enum members for enumerated fields,
        ``bool`` for one-bit flags, ``int`` otherwise.

    Raises
    ------
    InstructionError
        A ``ValueError`` naming the opcode, the field, the value and what is allowed, with
        the :class:`ErrorCode` the hardware reports for it.
    """
    try:
        f = _normalize(cfg, instr)
    except InstructionError:
        raise
    except ValueError as e:
        raise InstructionError(str(e)) from None
    op = f["opcode"]
    ctx = f"{op.name}: "
    _check_tokens(op, f)

    if op == Opcode.LOAD:
        buf = f["buf"]
        depth, row = buffer_depth(cfg, buf), buffer_row_bytes(cfg, buf)
        elem = acc_bytes(cfg) if buf == Buffer.ACC else operand_bytes(cfg)
        what = f"the depth of {buf.name}"
        _check_count(ctx, "rows", f["rows"], depth, what)
        _check_elements(ctx, f["row_bytes"], elem, row, f"one {buf.name} row")
        _check_range(ctx, "buf_addr", f["buf_addr"], f["rows"], "rows", depth, what)
        _check_region(cfg, ctx, f, read_window, "read", ErrorCode.READ_PROTECTION)

    elif op == Opcode.MATMUL:
        ws = f["dataflow"] == Dataflow.WS
        if f["keep_weights"] and not ws:
            raise InstructionError(f"{ctx}keep_weights must be 0 with dataflow OS (weights "
                                   f"stay in the array only in WS), not 1")
        _check_count(ctx, "n", f["n"], cfg.cols, "the array's columns")
        if ws:
            _check_count(ctx, "k", f["k"], cfg.rows, "the array's rows, in WS")
            _check_count(ctx, "m", f["m"], min(cfg.acc_depth, cfg.spad_depth),
                         "the accumulator and scratchpad depth, in WS")
            _check_range(ctx, "a_addr", f["a_addr"], f["m"], "m", cfg.spad_depth,
                         "spad_depth; WS reads M rows of A")
        else:
            _check_count(ctx, "m", f["m"], min(cfg.rows, cfg.acc_depth),
                         "the array's rows, in OS")
            _check_count(ctx, "k", f["k"], cfg.spad_depth, "spad_depth, in OS")
            _check_range(ctx, "a_addr", f["a_addr"], f["k"], "k", cfg.spad_depth,
                         "spad_depth; OS reads K columns of A")
        if not f["keep_weights"]:
            _check_range(ctx, "b_addr", f["b_addr"], f["k"], "k", cfg.spad_depth,
                         "spad_depth; the tile reads K rows of B")
        _check_range(ctx, "c_addr", f["c_addr"], f["m"], "m", cfg.acc_depth, "acc_depth")

    elif op == Opcode.STORE:
        ob = out_bytes(f["out_type"])
        _check_count(ctx, "rows", f["rows"], cfg.acc_depth, "acc_depth")
        _check_elements(ctx, f["row_bytes"], ob, cfg.cols * ob,
                        f"{cfg.cols} columns of {f['out_type'].name}")
        if f["rows"] > 1 and f["stride"] < f["row_bytes"]:
            raise InstructionError(f"{ctx}stride must be at least row_bytes {f['row_bytes']} "
                                   f"when rows > 1 (stored rows must not overlap), not "
                                   f"{f['stride']!r}", ErrorCode.BAD_DIMENSION)
        _check_range(ctx, "acc_addr", f["acc_addr"], f["rows"], "rows", cfg.acc_depth,
                     "acc_depth")
        if f["bias"]:
            _check_below(ctx, "bias_addr", f["bias_addr"], cfg.acc_depth)
        if f["per_column"]:
            _check_below(ctx, "scale_addr", f["scale_addr"], cfg.acc_depth)
        _check_region(cfg, ctx, f, write_window, "write", ErrorCode.WRITE_PROTECTION)
    return f


# Encoding ----------------------------------------------------------------------------------

def encode(cfg, fields):
    """The instruction word of ``fields``, after :func:`validate`.

    Parameters
    ----------
    cfg : AccelConfig
    fields : dict
        As for :func:`validate`.

    Returns
    -------
    int
        ``0 <= word < 2**INSTR_WIDTH``; reserved bits are zero.
    """
    f = validate(cfg, fields)
    op = f["opcode"]
    init = {"header": {name: f[name] for name in HEADER_FIELDS}}
    body = _body(cfg, op)
    if body is not None:
        init["body"] = {_BODY[op]: {name: f[name] for name, _ in body}}
    return _layout(cfg).const(init).as_value().value


def decode(cfg, word):
    """The fields of instruction ``word``; the inverse of :func:`encode`.

    Only the encoding is checked (opcode, enumerated values, reserved bits); call
    :func:`validate` on the result for the rules about ranges.

    Parameters
    ----------
    cfg : AccelConfig
    word : int

    Returns
    -------
    dict
        As returned by :func:`validate`.

    Raises
    ------
    InstructionError
        ILLEGAL_INSTRUCTION: the opcode is illegal, an enumerated field holds no member, or a
        reserved bit is set.
    """
    try:
        return _decode(cfg, word)
    except InstructionError:
        raise
    except ValueError as e:
        raise InstructionError(str(e)) from None


def _decode(cfg, word):
    try:
        word = operator.index(word)
    except TypeError:
        raise ValueError(f"an instruction word must be an integer, not {word!r}") from None
    if not 0 <= word < 1 << INSTR_WIDTH:
        raise ValueError(f"an instruction word must be from 0 to 2**{INSTR_WIDTH} - 1, "
                         f"not {word:#x}")
    layout = _layout(cfg)
    opcode_field = HeaderLayout()["opcode"]
    raw_op = (word >> opcode_field.offset) & ((1 << opcode_field.width) - 1)
    op = _enum_value(Opcode, "opcode", raw_op, "")
    body = _body(cfg, op)
    used = HEADER_WIDTH + (0 if body is None else body.size)
    if word >> used:
        raise ValueError(f"{op.name}: reserved bits {used} to {INSTR_WIDTH - 1} must be zero, "
                         f"not {word >> used:#x}")
    view = layout.from_bits(word)
    out = {"opcode": op}
    for name in TOKEN_FIELDS:
        out[name] = bool(view.header[name])
    if body is not None:
        fields = view.body[_BODY[op]]
        for name, field in body:
            try:
                value = fields[name]
            except ValueError:
                # An enumerated field holding no member: report it like validate() does.
                raw = (word >> (HEADER_WIDTH + field.offset)) & ((1 << field.width) - 1)
                value = _enum_value(field.shape, name, raw, f"{op.name}: ")
            out[name] = bool(value) if name in FLAG_FIELDS else value
    return out
