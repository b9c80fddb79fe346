"""Tiling compiler: a GEMM (or a conv2d layer, by im2col) as one program for the accelerator,
with the host-side byte layouts of its operands and result.

``C = post(A @ B + bias)``: A is M x K, B is K x N (operands of ``in_width`` bits), the
optional bias one int32 per column, ``post`` the STORE post-processing (ReLU, per-layer scale
and shift or per-column scales, saturation to int8, int16 or int32). Any M, K, N >= 1.

Typical use by a driver::

    gemm = gemm_at(cfg, M, K, N, base=0x1000_0000, bias=True, post=PostOp(OutType.INT8, ...))
    for addr, data in gemm.inputs(A, B, bias):
        hbm.write(addr, data)
    hbm.write(gemm.prog_addr, gemm.program_bytes())    # then start PROG_LEN = gemm.prog_len
    addr, nbytes = gemm.output_region()
    C = gemm.unpack_output(hbm.read(addr, nbytes))

Notation: R = ``cfg.rows``, Cc = ``cfg.cols``, ob = operand bytes, ab = accumulator bytes
(4), KB = ceil(K / R) k-blocks, NB = ceil(N / Cc) column blocks, MB = ceil(M / R) m-blocks.

Host layouts (packed, so that every LOAD is one contiguous block of full buffer rows; padding
is zero, and the hardware ignores it anyway since operand lanes past K (WS) or M (OS) are
forced to zero and results past N are not stored):

=========  ====================================  ==================================  =========
operand    weight-stationary (WS)                output-stationary (OS)              row bytes
=========  ====================================  ==================================  =========
A          ``[kb][m][R]``: row (kb, m) holds     ``[mb][k][R]``: row (mb, k) holds   R * ob
           ``A[m, kb*R : kb*R + R]``             ``A[mb*R : mb*R + R, k]`` (A^T)
B          ``[kb][nb][R][Cc]``: tile (kb, nb)    ``[nb][k][Cc]``: row (nb, k) holds  Cc * ob
           is R rows ``B[kb*R + k, nb*Cc ..]``   ``B[k, nb*Cc : nb*Cc + Cc]``
bias       ``[nb][Cc]`` int32                    same                                Cc * ab
scales     ``[nb][Cc]`` int32 (0 .. 65535)       same                                Cc * ab
C          row-major M x N of ``out_type``, row stride ``c_row_stride`` (N * out bytes)
=========  ====================================  ==================================  =========

Schedule. The output is cut into output blocks of ``block_rows`` rows by ``group`` column
blocks; the reduction into steps (WS: one k-block of R; OS: ``k_step`` of K). Column blocks
are taken in phases of ``phase`` blocks whose bias and scale rows stay in the accumulator
memory; phases are separated by a FENCE (only needed when the tables do not all fit). For
each output block (row blocks outer, column groups inner) and each step:

- WS: LOAD the A block (``block_rows`` rows of k-block kb, one contiguous LOAD) and the
  ``group`` B tiles of k-block kb (contiguous in the layout: one LOAD), then one MATMUL per
  column block with ``m = block_rows``, ``k = R`` (less in the last k-block), overwriting at
  the first k-block and accumulating after it. The A block is loaded once per step and used
  by every MATMUL of the step. The first step of a phase instead LOADs the first tile, the
  A block in chunks (of the rows the load engine writes in R cycles: R, or R times
  ``load_rows``) and then each further tile on its own, and computes the first
  column block chunk by chunk (the chunks after the first keep the tile's weights), so that
  computing starts once a tile and a chunk are in.
- OS: LOAD ``k_step`` rows of A^T for each of the ``block_rows / R`` m-blocks and of B for
  each column block, then one MATMUL per (column block, m-block) with ``m <= R``,
  ``k = k_step``; accumulating across steps when K needs several.

After the last step of an output block, one STORE per column block writes its rows of C with
the post-processing. The last output block of a WS phase instead goes column block by column
block where that fits (see :func:`_column_major`): each step LOADs the block's A rows of
every k-block and one column block's tiles, computes that column block over all k-blocks and
STOREs it, so that the STOREs overlap the next column block's MATMULs and only the last
column block's rows are stored after the last MATMUL (the A rows are loaded once per column
block there). Each phase LOADs its bias rows and its scale rows (those in use) once,
behind the first step's LOADs when the phase has more than one step per output block (STOREs
wait for the next step), before them otherwise.

Costs (the load engine writes ``load_rows`` scratchpad rows per cycle where that many fit
in a stripe, else one; the store engine one row per cycle; a MATMUL about ``max(m, k)``
cycles): a WS step computes ``group * block_rows`` cycles and loads ``block_rows + group * R``
rows. The scratchpad is cut into ``slots`` slots that the steps take in turn, so the LOADs of
step s start when step ``s - slots`` ends and a step takes at least ``(STEP_LATENCY + its
load cycles + its compute) / slots``. :func:`choose_tiling` searches ``block_rows``,
``group``, ``slots`` (and ``k_step`` in OS) for the least estimated time, counting load and
store cycles double so that memory keeps slack, plus the start (the first tile and A chunk)
and the end (the last block's rows), within the buffer sizes below. For 256 x 256 x 256 on
the ``large`` preset (16 x 16, 8 rows per cycle) it picks ``block_rows`` 64, ``group`` 8 and
2 slots: 1024 MATMULs of 64 cycles (65536, the ideal ``M * K * N / (rows * cols)``), 24 rows
loaded per MATMUL, 1352 instructions; for 64 x 64 x 64 ``block_rows`` 16, ``group`` 4 and 3
slots, so that the last output block's STOREs are short.

Buffer map (``T`` = table rows, ``HC = (acc_depth - T) // 2``, ``H = spad_depth // slots``):

=============  =============================================================================
buffer         rows
=============  =============================================================================
bank A         slot h = step % slots at ``h * H``: WS the A block; OS m-block i at
               ``+ i * k_step``
bank B         slot h = step % slots at ``h * H``: tile j at ``+ j * R`` (WS), ``+ j * k_step``
               (OS)
accumulator    ``0 .. phase-1`` bias rows, then ``phase`` scale rows (those in use);
               half o % 2 of output block o at ``T + (o % 2) * HC``: column block j at
               ``+ j * block_rows`` (OS: m-block i of it at ``+ i * R``)
=============  =============================================================================

Dependency tokens (the double-buffering recipe of :mod:`hw.isa`, with ``slots`` buffers),
for steps ``s = 0 .. S-1`` and output blocks ``o = 0 .. O-1`` of a phase:

- data ready: the last LOAD of step s pushes, the first MATMUL of step s pops; in the first
  step of a WS phase, each A chunk and each B tile after the first is its own LOAD and
  pushes, and each MATMUL pops (the first tile's LOAD comes before the first chunk's);
- buffer free: the last MATMUL of step s pushes while ``s + slots < S``; the first LOAD of
  step ``s + slots`` pops (every slot starts free);
- results ready: in the last step of block o (in each step of a column-major block), the
  last MATMUL of each column block pushes; the STORE of that column block pops;
- accumulator free: the last STORE of block o pushes while ``o + 2 < O``; the first MATMUL
  of block ``o + 2`` pops.

Instructions are emitted with the LOADs one step ahead of the MATMULs (LOADs of step s + 1
before the MATMULs of step s), so that the LOADs of the next step reach the load queue
before the current step computes, even with shallow queues. Every pop waits on an
instruction earlier in program order (so bounded queues cannot deadlock), and every channel
ends at zero.
"""

import dataclasses
import itertools
from collections import Counter

import numpy as np

from hw.controller import QUEUE_DEPTH
from hw.isa import (
    INSTR_BYTES,
    SCALE_WIDTH,
    SHIFT_WIDTH,
    Buffer,
    Dataflow,
    OutType,
    acc_bytes,
    operand_bytes,
    out_bytes,
)
from sim.assembler import Program, postprocess
from sim.isa_model import matmul_cycles

__all__ = [
    "ALIGN", "PostOp", "Tiling", "MemoryPlan", "Gemm", "Conv2d",
    "choose_tiling", "compile_gemm", "plan_memory", "gemm_at",
    "conv2d_output_shape", "im2col", "compile_conv2d",
]

ALIGN = 4096
"""Default alignment of the regions :func:`plan_memory` places (a 4 KiB page)."""

MAX_SLOTS = 4
"""Most scratchpad slots :func:`choose_tiling` tries."""

STEP_LATENCY = 90
"""Cycles, besides its LOADs' rows, from the end of a step's MATMULs to the start of the
step ``slots`` later, whose LOADs wait for that end: the buffer-free token, the LOADs' issue and
memory latency, the data-ready token and the array's drain, measured on the HBM model."""

TABLE_FRACTION = 8
"""Bias and scale tables take at most ``acc_depth // TABLE_FRACTION`` accumulator rows; more
column blocks than that fit are split into phases."""

_OUT_DTYPE = {OutType.INT8: np.dtype("<i1"), OutType.INT16: np.dtype("<i2"),
              OutType.INT32: np.dtype("<i4")}


def _cdiv(a, b):
    return -(-a // b)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_int(name, value, lo=None, hi=None):
    if not _is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            allowed = f"an integer from {lo} to {hi}"
        elif lo is not None:
            allowed = f"an integer of at least {lo}"
        else:
            allowed = "an integer"
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
    return int(value)


def _splits(total, parts):
    """``total`` cut into ``parts`` consecutive pieces as equal as possible: (start, size)."""
    base, extra = divmod(total, parts)
    out, start = [], 0
    for i in range(parts):
        size = base + (i < extra)
        out.append((start, size))
        start += size
    return out


# Post-processing --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PostOp:
    """STORE post-processing of a layer (see :mod:`hw.isa`).

    Parameters
    ----------
    out_type : OutType or str
        Element type of C: INT8, INT16 or INT32.
    relu : bool
        Clamp negative values (after the bias) to zero.
    scale : int
        Per-layer multiplier, 0 to 65535; unused with per-column scales.
    shift : int
        Right shift with rounding half away from zero, 0 to 63.
    """

    out_type: OutType = OutType.INT32
    relu: bool = False
    scale: int = 1
    shift: int = 0

    def __post_init__(self):
        out_type = self.out_type
        if isinstance(out_type, str) and out_type in OutType.__members__:
            out_type = OutType[out_type]
        if not isinstance(out_type, OutType):
            raise ValueError(f"out_type must be one of "
                             f"{', '.join(t.name for t in OutType)}, not {self.out_type!r}")
        object.__setattr__(self, "out_type", out_type)
        if not isinstance(self.relu, (bool, np.bool_)):
            raise ValueError(f"relu must be True or False, not {self.relu!r}")
        object.__setattr__(self, "relu", bool(self.relu))
        object.__setattr__(self, "scale", _check_int("scale", self.scale, 0,
                                                     (1 << SCALE_WIDTH) - 1))
        object.__setattr__(self, "shift", _check_int("shift", self.shift, 0,
                                                     (1 << SHIFT_WIDTH) - 1))

    @property
    def out_bytes(self):
        return out_bytes(self.out_type)


# Tiling -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Tiling:
    """How a GEMM is cut into tiles (see the module documentation).

    Members
    -------
    dataflow : Dataflow
    block_rows : int
        Rows of an output block. WS: at most this many rows per MATMUL (M is cut into
        ``ceil(M / block_rows)`` blocks as equal as possible). OS: a multiple of
        ``min(rows, M)``, that many m-blocks of ``rows`` rows per output block.
    group : int
        Column blocks per output block (at most).
    phase : int
        Column blocks whose bias and scale rows are resident at once (at most).
    k_step : int
        Reduction per step: ``rows`` in WS; OS up to a scratchpad slot.
    slots : int
        Scratchpad slots the steps take in turn (2 to :data:`MAX_SLOTS`), each
        ``spad_depth // slots`` rows of each bank: the LOADs of step s wait for the MATMULs
        of step ``s - slots`` only.
    """

    dataflow: Dataflow
    block_rows: int
    group: int
    phase: int
    k_step: int
    slots: int = 2


class _Geometry:
    """The sizes a GEMM's layouts and schedule derive from."""

    def __init__(self, cfg, M, K, N, dataflow, bias, per_column):
        self.cfg = cfg
        self.M, self.K, self.N = M, K, N
        self.dataflow = Dataflow(dataflow)
        self.R, self.C = cfg.rows, cfg.cols
        self.ob, self.ab = operand_bytes(cfg), acc_bytes(cfg)
        self.KB, self.NB, self.MB = _cdiv(K, self.R), _cdiv(N, self.C), _cdiv(M, self.R)
        self.bias, self.per_column = bool(bias), bool(per_column)
        self.ntab = int(self.bias) + int(self.per_column)
        self.sub_rows = min(self.R, M)          # OS: rows of a full m-block

    @property
    def ws(self):
        return self.dataflow == Dataflow.WS

    def slot_rows(self, slots):
        return self.cfg.spad_depth // slots

    def load_rate(self, row_bytes):
        """Scratchpad rows of ``row_bytes`` the load engine writes per cycle in a contiguous
        LOAD: up to ``load_rows`` of those in a stripe."""
        S = self.cfg.stripe_bytes
        if row_bytes < S and row_bytes & (row_bytes - 1) == 0:
            return min(self.cfg.load_rows, S // row_bytes)
        return 1

    def acc_half(self, phase):
        return (self.cfg.acc_depth - self.ntab * phase) // 2

    def max_phase(self):
        if self.ntab == 0:
            return self.NB
        budget = max(self.ntab, self.cfg.acc_depth // TABLE_FRACTION)
        return max(1, min(self.NB, budget // self.ntab))

    def phases(self, tiling):
        count = _cdiv(self.NB, tiling.phase)
        return _splits(self.NB, count)

    def groups(self, p0, size, tiling):
        return [(p0 + g0, g) for g0, g in _splits(size, _cdiv(size, tiling.group))]

    def row_blocks(self, tiling):
        """Output-block rows: (first row, rows, first m-block, m-blocks)."""
        if self.ws:
            return [(m0, m, None, None)
                    for m0, m in _splits(self.M, _cdiv(self.M, tiling.block_rows))]
        sub = tiling.block_rows // self.sub_rows
        out = []
        for b0, nb in _splits(self.MB, _cdiv(self.MB, sub)):
            m0 = b0 * self.R
            out.append((m0, min(self.M, (b0 + nb) * self.R) - m0, b0, nb))
        return out

    def k_steps(self, tiling):
        if self.ws:
            return [(kb * self.R, min(self.R, self.K - kb * self.R)) for kb in range(self.KB)]
        return _splits(self.K, _cdiv(self.K, tiling.k_step))

    # Region sizes in bytes
    def a_bytes(self):
        rows = self.KB * self.M if self.ws else self.MB * self.K
        return rows * self.R * self.ob

    def b_bytes(self):
        rows = self.KB * self.NB * self.R if self.ws else self.NB * self.K
        return rows * self.C * self.ob

    def table_bytes(self):
        return self.NB * self.C * self.ab


def _check_tiling(geo, tiling):
    """Raise ValueError if ``tiling`` breaks a buffer limit of ``geo``."""
    cfg = geo.cfg
    if not isinstance(tiling, Tiling):
        raise ValueError(f"tiling must be a Tiling, not {tiling!r}")
    if Dataflow(tiling.dataflow) != geo.dataflow:
        raise ValueError(f"tiling.dataflow must be {geo.dataflow.name} as the GEMM's, "
                         f"not {Dataflow(tiling.dataflow).name}")
    _check_int("tiling.slots", tiling.slots, 2, MAX_SLOTS)
    slot = geo.slot_rows(tiling.slots)
    _check_int("tiling.phase", tiling.phase, 1, geo.NB)
    _check_int("tiling.group", tiling.group, 1, tiling.phase)
    half_acc = geo.acc_half(tiling.phase)
    if half_acc < 1:
        raise ValueError(f"acc_depth {cfg.acc_depth} leaves no accumulator rows for results "
                         f"after {geo.ntab * tiling.phase} table rows; use a smaller "
                         f"tiling.phase")
    if geo.ws:
        _check_int("tiling.k_step", tiling.k_step, geo.R, geo.R)
        _check_int("tiling.block_rows", tiling.block_rows, 1, min(geo.M, slot))
        if tiling.group * geo.R > slot:
            raise ValueError(
                f"tiling.group must be at most {slot // geo.R} (group * rows "
                f"{geo.R} bank-B rows fit in a slot of {slot} rows, spad_depth "
                f"{cfg.spad_depth} // tiling.slots {tiling.slots}), not {tiling.group}")
    else:
        if tiling.block_rows % geo.sub_rows or not \
                1 <= tiling.block_rows // geo.sub_rows <= geo.MB:
            raise ValueError(f"tiling.block_rows must be a multiple of {geo.sub_rows} up to "
                             f"{geo.MB * geo.sub_rows} in OS, not {tiling.block_rows!r}")
        sub = tiling.block_rows // geo.sub_rows
        hi = min(geo.K, slot // max(sub, tiling.group))
        if hi < 1:
            raise ValueError(
                f"a slot of {slot} rows (spad_depth {cfg.spad_depth} // tiling.slots "
                f"{tiling.slots}) cannot hold one row for each of {sub} m-blocks and "
                f"{tiling.group} column blocks; use a smaller tiling.block_rows or "
                f"tiling.group")
        _check_int("tiling.k_step", tiling.k_step, 1, hi)
    if tiling.block_rows * tiling.group > half_acc:
        raise ValueError(
            f"tiling.block_rows * tiling.group must be at most {half_acc} (half of the "
            f"accumulator rows left by {geo.ntab * tiling.phase} table rows), not "
            f"{tiling.block_rows} * {tiling.group} = {tiling.block_rows * tiling.group}")


def _estimate(geo, tiling):
    """(compute cycles, load cycles, store rows, fill and drain cycles) of a tiling. A step
    takes at least ``(STEP_LATENCY + its loads + its compute) / slots``: its LOADs start
    when the step ``slots`` before it ends (see the module documentation)."""
    a_rate, b_rate = geo.load_rate(geo.R * geo.ob), geo.load_rate(geo.C * geo.ob)
    blocks = geo.row_blocks(tiling)
    phases = geo.phases(tiling)
    groups = Counter(g for p0, size in phases for _, g in geo.groups(p0, size, tiling))
    ksteps = Counter(kk for _, kk in geo.k_steps(tiling))
    # output blocks counted by the rows of their MATMULs on one column block: WS one
    # MATMUL of the block's rows, OS one per m-block
    if geo.ws:
        subs = Counter((m,) for _, m, _, _ in blocks)
    else:
        subs = Counter(tuple(min(geo.R, geo.M - (b0 + i) * geo.R) for i in range(nmb))
                       for _, _, b0, nmb in blocks)
    compute = loads = 0
    for ms, nb in subs.items():
        for g, ng in groups.items():
            for kk, nk in ksteps.items():
                c = g * sum(max(m, kk) for m in ms)
                if geo.ws:          # the A block; the group's tiles, the last one kk rows
                    ld = ms[0] / a_rate + ((g - 1) * geo.R + kk) / b_rate
                else:               # kk rows of A^T per m-block and of B per column block
                    ld = len(ms) * kk / a_rate + g * kk / b_rate
                count = nb * ng * nk
                compute += count * max(c, (STEP_LATENCY + ld + c) / tiling.slots)
                loads += count * ld
    loads += geo.ntab * geo.NB
    if geo.ws:
        fill = geo.R / b_rate + min(blocks[0][1], geo.R * a_rate) / a_rate  # a tile, an A chunk
    else:
        fill = (blocks[0][3] / a_rate + tiling.group / b_rate) * geo.k_steps(tiling)[0][1]
    stores = geo.M * geo.NB
    drain = blocks[-1][1]
    return compute, loads, stores, len(phases) * (fill + drain)


def _score(geo, tiling):
    compute, loads, stores, edges = _estimate(geo, tiling)
    return max(compute, 2 * loads, 2 * stores) + edges + 0.05 * loads


def choose_tiling(cfg, M, K, N, *, dataflow=Dataflow.WS, bias=False, per_column=False,
                  max_block_rows=None, max_group=None, max_phase=None):
    """The tiling :func:`compile_gemm` uses: the least estimated time (see the module
    documentation) within the buffers of ``cfg`` and the optional limits.

    Parameters
    ----------
    cfg : AccelConfig
    M, K, N : int
    dataflow : Dataflow
    bias, per_column : bool
        Whether bias and per-column scale tables take accumulator rows.
    max_block_rows, max_group, max_phase : int, optional
        Upper limits on the corresponding :class:`Tiling` fields.

    Returns
    -------
    Tiling
    """
    geo = _geometry(cfg, M, K, N, dataflow, bias, per_column)
    for name, value in (("max_block_rows", max_block_rows), ("max_group", max_group),
                        ("max_phase", max_phase)):
        if value is not None:
            _check_int(name, value, 1)
    phase = geo.max_phase() if max_phase is None else min(geo.max_phase(), max_phase)
    phase = _cdiv(geo.NB, _cdiv(geo.NB, phase))
    half_acc = geo.acc_half(phase)
    if half_acc < 1:
        raise ValueError(f"acc_depth {cfg.acc_depth} is too small: no accumulator rows are "
                         f"left for results after {geo.ntab * phase} table rows")
    group_cap = phase if max_group is None else min(phase, max_group)
    groups = sorted({_cdiv(phase, count) for count in range(1, phase + 1)})
    groups = [g for g in groups if g <= group_cap]
    best = None
    for slots, group in itertools.product(range(2, MAX_SLOTS + 1), groups):
        slot = geo.slot_rows(slots)
        if geo.ws:
            if group * geo.R > slot or group > half_acc:
                continue
            limit = min(geo.M, slot, half_acc // group)
            if max_block_rows is not None:
                limit = min(limit, max_block_rows)
            least = _cdiv(geo.M, limit)
            counts = set(range(least, least + 9)) | {2 * least, 4 * least}
            candidates = []
            for count in sorted(c for c in counts if c <= geo.M):
                block_rows = _cdiv(geo.M, count)
                candidates.append(Tiling(Dataflow.WS, block_rows, group, phase, geo.R, slots))
        else:
            candidates = []
            subs = min(geo.MB, half_acc // (geo.sub_rows * group))
            if max_block_rows is not None:
                subs = min(subs, max_block_rows // geo.sub_rows)
            for sub in range(1, subs + 1):
                k_step = min(geo.K, slot // max(sub, group))
                if k_step < 1:
                    continue
                k_step = _cdiv(geo.K, _cdiv(geo.K, k_step))
                candidates.append(Tiling(Dataflow.OS, sub * geo.sub_rows, group, phase,
                                         k_step, slots))
        for tiling in candidates:
            score = _score(geo, tiling)
            if best is None or score < best[0]:
                best = (score, tiling)
    if best is None:
        raise ValueError(
            f"no tiling of the {M} x {K} x {N} GEMM ({geo.dataflow.name}) fits configuration "
            f"{cfg.name!r} (spad_depth {cfg.spad_depth}, acc_depth {cfg.acc_depth})"
            f"{'' if max_block_rows is None and max_group is None else ' within the limits'}")
    _check_tiling(geo, best[1])
    return best[1]


def _geometry(cfg, M, K, N, dataflow, bias, per_column):
    M = _check_int("M", M, 1)
    K = _check_int("K", K, 1)
    N = _check_int("N", N, 1)
    try:
        dataflow = Dataflow(dataflow) if not isinstance(dataflow, str) else Dataflow[dataflow]
    except (ValueError, KeyError):
        raise ValueError(f"dataflow must be Dataflow.WS or Dataflow.OS, not "
                         f"{dataflow!r}") from None
    if cfg.spad_depth < 2:
        raise ValueError(f"spad_depth must be at least 2 for double buffering, not "
                         f"{cfg.spad_depth}")
    if dataflow == Dataflow.WS and cfg.spad_depth // 2 < cfg.rows:
        raise ValueError(f"half of spad_depth {cfg.spad_depth} must hold a weight tile of "
                         f"rows {cfg.rows} rows in WS")
    return _Geometry(cfg, M, K, N, dataflow, bias, per_column)


# Schedule -----------------------------------------------------------------------------------

def _merge_loads(loads):
    """Merge LOADs that continue each other in memory and in the buffer."""
    out = []
    for load in loads:
        prev = out[-1] if out else None
        if prev is not None and prev["buf"] == load["buf"] and \
                prev["row_bytes"] == load["row_bytes"] and \
                prev["stride"] == prev["row_bytes"] == load["stride"] and \
                prev["buf_addr"] + prev["rows"] == load["buf_addr"] and \
                prev["addr"] + prev["rows"] * prev["stride"] == load["addr"]:
            prev["rows"] += load["rows"]
        else:
            out.append(dict(load))
    return out


def _schedule(geo, tiling, post, addrs):
    """The program as a list of ``(method, kwargs)`` for :class:`~sim.assembler.Program`."""
    ops = []
    for index, (p0, psize) in enumerate(geo.phases(tiling)):
        if index:
            ops.append(("fence", {}))
        ops.extend(_phase(geo, tiling, post, addrs, p0, psize))
    ops.append(("end", {}))
    return ops


def _phase(geo, tiling, post, addrs, p0, psize):
    """The instructions of the phase of column blocks ``p0 .. p0 + psize - 1``."""
    C, ab = geo.C, geo.ab
    ops = []
    scale_row0 = tiling.phase if geo.bias else 0
    tables = []
    if geo.bias:
        tables.append(("load", dict(buf=Buffer.ACC, buf_addr=0, rows=psize, row_bytes=C * ab,
                                    addr=addrs["bias_addr"] + p0 * C * ab)))
    if geo.per_column:
        tables.append(("load", dict(buf=Buffer.ACC, buf_addr=scale_row0, rows=psize,
                                    row_bytes=C * ab,
                                    addr=addrs["scale_addr"] + p0 * C * ab)))
    blocks = [(rows, group) for rows in geo.row_blocks(tiling)
              for group in geo.groups(p0, psize, tiling)]
    ksteps = geo.k_steps(tiling)
    # A step is (output block, k-step, None), or in a column-major last block
    # (output block, None, column block of the group).
    last = len(blocks) - 1
    steps = [(o, ks, None) for o in range(last) for ks in range(len(ksteps))]
    if _column_major(geo, tiling, blocks, ksteps):
        steps += [(last, None, j) for j in range(blocks[last][1][1])]
    else:
        steps += [(last, ks, None) for ks in range(len(ksteps))]
    ctx = dict(blocks=blocks, ksteps=ksteps, steps=steps, p0=p0, scale_row0=scale_row0)
    pending = _step(geo, tiling, post, addrs, ctx, 0)
    # The tables are only read by STOREs: behind the first step's LOADs when that step's
    # MATMULs give no results (the next step's LOADs then come after the tables).
    ops.extend(pending[0] + tables if len(ksteps) > 1 else tables + pending[0])
    for s in range(len(steps)):
        current = pending
        if s + 1 < len(steps):
            pending = _step(geo, tiling, post, addrs, ctx, s + 1)
            ops.extend(pending[0])          # the next step's LOADs go ahead of this MATMULs
        ops.extend(current[1])
        ops.extend(current[2])
    return ops


def _column_major(geo, tiling, blocks, ksteps):
    """Whether the last output block of a WS phase goes column block by column block, each
    step all k-blocks of one column block (the A block of every k-block and that column's
    tiles), so that its STOREs go out as each column block is done, and only the last one's
    rows are stored after the last MATMUL. Only when there is more than one output block
    (the first step keeps its chunked start), more than one k-block and column block, the
    step's A blocks and tiles fit in a slot, and its LOADs (two per k-block) fit in the load
    queue: decode places them ahead of the MATMULs of the step before, and stops at a full
    queue."""
    (_, mrows, _, _), (_, gsize) = blocks[-1]
    slot = geo.slot_rows(tiling.slots)
    kb = len(ksteps)
    return (geo.ws and len(blocks) > 1 and kb > 1 and gsize > 1 and 2 * kb <= QUEUE_DEPTH and
            kb * mrows <= slot and kb * geo.R <= slot)


def _step(geo, tiling, post, addrs, ctx, s):
    """LOADs, MATMULs and STOREs (lists of ``(method, kwargs)``) of step ``s`` of a phase."""
    R, C, ob = geo.R, geo.C, geo.ob
    blocks, ksteps, steps = ctx["blocks"], ctx["ksteps"], ctx["steps"]
    o, ks, col = steps[s]
    (m0, mrows, b0, nmb), (g0, gsize) = blocks[o]
    spad = (s % tiling.slots) * geo.slot_rows(tiling.slots)
    c_base = geo.ntab * tiling.phase + (o % 2) * geo.acc_half(tiling.phase)
    loads, mms = [], []

    def ws_matmul(j, a_row, b_row, r0, rows, k, accumulate, keep_weights=False):
        # column block j: A rows from slot row a_row, its tile at b_row, into its rows r0..
        return (j, dict(dataflow=Dataflow.WS, a_addr=spad + a_row, b_addr=spad + b_row,
                        c_addr=c_base + j * tiling.block_rows + r0, m=rows, k=k,
                        n=min(C, geo.N - (g0 + j) * C), accumulate=accumulate,
                        keep_weights=keep_weights))

    if col is not None:
        # column-major: every k-block of column block ``col``; A block kb at ``kb * mrows``,
        # tile kb at ``kb * R``
        for kb in range(len(ksteps)):
            loads.append(dict(buf=Buffer.SPAD_A, buf_addr=spad + kb * mrows, rows=mrows,
                              row_bytes=R * ob,
                              addr=addrs["a_addr"] + (kb * geo.M + m0) * R * ob))
        for kb, (_, kk) in enumerate(ksteps):
            loads.append(dict(buf=Buffer.SPAD_B, buf_addr=spad + kb * R, rows=kk,
                              row_bytes=C * ob,
                              addr=addrs["b_addr"] + (kb * geo.NB + g0 + col) * R * C * ob))
        mms = [ws_matmul(col, kb * mrows, kb * R, 0, mrows, kk, kb > 0)
               for kb, (_, kk) in enumerate(ksteps)]
    elif geo.ws:
        _, kk = ksteps[ks]
        a_addr = addrs["a_addr"] + (ks * geo.M + m0) * R * ob
        b_addr = addrs["b_addr"] + (ks * geo.NB + g0) * R * C * ob

        def matmul(j, r0, rows, keep_weights=False):
            return ws_matmul(j, r0, j * R, r0, rows, kk, ks > 0, keep_weights)

        tiles = [dict(buf=Buffer.SPAD_B, buf_addr=spad + j * R,
                      rows=R if j + 1 < gsize else kk, row_bytes=C * ob,
                      addr=b_addr + j * R * C * ob) for j in range(gsize)]
        mms = [matmul(j, 0, mrows) for j in range(gsize)]
        if s == 0:
            # The first step: the first tile, then the A block in chunks (of the rows the
            # load engine writes in R cycles), each computed on the first tile as it lands
            # (the chunks after the first keep its weights), then one LOAD per further tile:
            # computing starts on a tile and a chunk, and goes on as fast as the load engine
            # writes rows. Each chunk and each further tile pushes data ready, popped by the
            # MATMUL that needs it.
            chunks = _splits(mrows, _cdiv(mrows, R * geo.load_rate(R * ob)))
            loads = [tiles[0]] + [
                dict(buf=Buffer.SPAD_A, buf_addr=spad + r0, rows=rows, row_bytes=R * ob,
                     addr=a_addr + r0 * R * ob) for r0, rows in chunks] + tiles[1:]
            mms[:1] = [matmul(0, r0, rows, i > 0) for i, (r0, rows) in enumerate(chunks)]
            for load, (_, mm) in zip(loads[1:], mms, strict=True):
                load["push_next"] = mm["pop_prev"] = True
        else:
            loads = [dict(buf=Buffer.SPAD_A, buf_addr=spad, rows=mrows, row_bytes=R * ob,
                          addr=a_addr),
                     dict(tiles[0], rows=(gsize - 1) * R + kk)]
    else:
        k0, kk = ksteps[ks]
        step = tiling.k_step
        for i in range(nmb):
            loads.append(dict(buf=Buffer.SPAD_A, buf_addr=spad + i * step, rows=kk,
                              row_bytes=R * ob,
                              addr=addrs["a_addr"] + ((b0 + i) * geo.K + k0) * R * ob))
        for j in range(gsize):
            loads.append(dict(buf=Buffer.SPAD_B, buf_addr=spad + j * step, rows=kk,
                              row_bytes=C * ob,
                              addr=addrs["b_addr"] + ((g0 + j) * geo.K + k0) * C * ob))
        for j in range(gsize):
            n = min(C, geo.N - (g0 + j) * C)
            for i in range(nmb):
                mms.append((j, dict(dataflow=Dataflow.OS, a_addr=spad + i * step,
                                    b_addr=spad + j * step,
                                    c_addr=c_base + j * tiling.block_rows + i * R,
                                    m=min(R, geo.M - (b0 + i) * R), k=kk, n=n,
                                    accumulate=ks > 0)))
    for load in loads:
        load["stride"] = load["row_bytes"]
    # Tokens: data ready, buffer free, accumulator free, results ready.
    if not (geo.ws and s == 0):
        loads = _merge_loads(loads)
        loads[-1]["push_next"] = True
        mms[0][1]["pop_prev"] = True
    loads[0]["pop_next"] = s >= tiling.slots
    mms[-1][1]["push_prev"] = s + tiling.slots < len(steps)
    if (ks == 0 or col == 0) and o >= 2:
        mms[0][1]["pop_next"] = True
    stores = []
    if ks == len(ksteps) - 1 or col is not None:
        for i, (j, mm) in enumerate(mms):
            if i + 1 == len(mms) or mms[i + 1][0] != j:
                mm["push_next"] = True
        outb = post.out_bytes
        for j in range(gsize) if col is None else [col]:
            nb = g0 + j
            stores.append(dict(
                acc_addr=c_base + j * tiling.block_rows, rows=mrows,
                addr=addrs["c_addr"] + m0 * addrs["c_row_stride"] + nb * C * outb,
                row_bytes=min(C, geo.N - nb * C) * outb, stride=addrs["c_row_stride"],
                out_type=post.out_type, relu=post.relu, shift=post.shift,
                scale=1 if geo.per_column else post.scale,
                bias_addr=nb - ctx["p0"] if geo.bias else None,
                scale_addr=ctx["scale_row0"] + nb - ctx["p0"] if geo.per_column else None,
                pop_prev=True, push_prev=False))
        stores[-1]["push_prev"] = o + 2 < len(blocks)
    return ([("load", x) for x in loads], [("matmul", x) for _, x in mms],
            [("store", x) for x in stores])


# Memory regions -----------------------------------------------------------------------------

def _check_regions(cfg, regions):
    """Every region within the address space and no two overlapping."""
    limit = 1 << cfg.addr_width
    for name, (addr, nbytes) in regions.items():
        if addr + nbytes > limit:
            raise ValueError(f"{name} region {addr:#x} .. {addr + nbytes - 1:#x} must end "
                             f"within the {cfg.addr_width}-bit address space "
                             f"(below {limit:#x})")
    items = sorted(regions.items(), key=lambda item: item[1][0])
    for (name0, (a0, n0)), (name1, (a1, n1)) in zip(items, items[1:], strict=False):
        if a0 + n0 > a1:
            raise ValueError(f"the {name0} region {a0:#x} .. {a0 + n0 - 1:#x} overlaps the "
                             f"{name1} region {a1:#x} .. {a1 + n1 - 1:#x}; regions must not "
                             f"overlap")


def _align(value, align):
    return _cdiv(value, align) * align


def _c_bytes(M, N, post, c_row_stride):
    return (M - 1) * c_row_stride + N * post.out_bytes


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Addresses :func:`plan_memory` chose; ``end`` is the first byte after the last region."""

    prog_addr: int
    a_addr: int
    b_addr: int
    bias_addr: int | None
    scale_addr: int | None
    c_addr: int
    c_row_stride: int
    end: int

    def addresses(self):
        """Keyword arguments of :func:`compile_gemm` for these addresses."""
        return {name: getattr(self, name) for name in (
            "prog_addr", "a_addr", "b_addr", "bias_addr", "scale_addr", "c_addr",
            "c_row_stride")}


def _stride(M, N, post, c_row_stride):
    if c_row_stride is None:
        return N * post.out_bytes
    lo = N * post.out_bytes
    if M == 1:
        return _check_int("c_row_stride", c_row_stride, 0)
    return _check_int(f"c_row_stride (at least N * {post.out_bytes} bytes)", c_row_stride, lo)


def plan_memory(cfg, M, K, N, *, base=0, bias=False, per_column=False, post=PostOp(),
                dataflow=Dataflow.WS, c_row_stride=None, align=ALIGN, tiling=None):
    """Non-overlapping addresses, from ``base`` up and each aligned to ``align``, for the
    program, A, B, the bias and scale tables (if used) and C, in that order.

    Returns
    -------
    MemoryPlan
    """
    if not isinstance(post, PostOp):
        raise ValueError(f"post must be a PostOp, not {post!r}")
    base = _check_int("base", base, 0)
    align = _check_int("align", align, 1)
    geo = _geometry(cfg, M, K, N, dataflow, bias, per_column)
    if tiling is None:
        tiling = choose_tiling(cfg, M, K, N, dataflow=geo.dataflow, bias=bias,
                               per_column=per_column)
    _check_tiling(geo, tiling)
    ldc = _stride(geo.M, geo.N, post, c_row_stride)
    zero = {"a_addr": 0, "b_addr": 0, "bias_addr": 0, "scale_addr": 0, "c_addr": 0,
            "c_row_stride": ldc}
    prog_bytes = len(_schedule(geo, tiling, post, zero)) * INSTR_BYTES
    cursor = _align(base, max(align, INSTR_BYTES))
    addrs = {"prog_addr": cursor}
    cursor = _align(cursor + prog_bytes, align)
    sizes = [("a_addr", geo.a_bytes()), ("b_addr", geo.b_bytes()),
             ("bias_addr", geo.table_bytes() if geo.bias else None),
             ("scale_addr", geo.table_bytes() if geo.per_column else None),
             ("c_addr", _c_bytes(geo.M, geo.N, post, ldc))]
    for name, nbytes in sizes:
        if nbytes is None:
            addrs[name] = None
            continue
        addrs[name] = cursor
        cursor = _align(cursor + nbytes, align)
    plan = MemoryPlan(**addrs, c_row_stride=ldc, end=cursor)
    if plan.end > 1 << cfg.addr_width:
        raise ValueError(f"the regions from base {base:#x} need {plan.end - base} bytes and "
                         f"end at {plan.end:#x}, beyond the {cfg.addr_width}-bit address space")
    return plan


# The compiled GEMM --------------------------------------------------------------------------

def _int_matrix(name, values, shape, lo, hi):
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, not {array.dtype} values")
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, not {array.shape}")
    if array.size and (array.min() < lo or array.max() > hi):
        bad = array.min() if array.min() < lo else array.max()
        raise ValueError(f"{name} must hold values from {lo} to {hi}, not {bad}")
    return array.astype(np.int64)


def _le_bytes(values, nbytes):
    return np.ascontiguousarray(values, dtype=np.int64).astype(f"<u{nbytes}").tobytes() \
        if nbytes < 8 else np.ascontiguousarray(values, dtype="<i8").tobytes()


class Gemm:
    """A compiled GEMM: its program, addresses and host layouts. Made by
    :func:`compile_gemm`.

    Members
    -------
    cfg, M, K, N, dataflow, post, tiling
    program : Program
    prog_addr, prog_len : int
        Where the program goes and its length in instructions (PROG_ADDR, PROG_LEN).
    a_addr, b_addr, bias_addr, scale_addr, c_addr, c_row_stride : int or None
    """

    def __init__(self, geo, post, tiling, addrs, program):
        self._geo = geo
        self.cfg = geo.cfg
        self.M, self.K, self.N = geo.M, geo.K, geo.N
        self.dataflow = geo.dataflow
        self.post = post
        self.tiling = tiling
        self.program = program
        self.prog_addr = addrs["prog_addr"]
        self.prog_len = len(program)
        self.a_addr, self.b_addr = addrs["a_addr"], addrs["b_addr"]
        self.bias_addr, self.scale_addr = addrs["bias_addr"], addrs["scale_addr"]
        self.c_addr, self.c_row_stride = addrs["c_addr"], addrs["c_row_stride"]

    def __repr__(self):
        return (f"<Gemm {self.M}x{self.K}x{self.N} {self.dataflow.name} on {self.cfg.name}: "
                f"{self.prog_len} instructions>")

    @property
    def bias(self):
        return self._geo.bias

    @property
    def per_column(self):
        return self._geo.per_column

    def regions(self):
        """Name to ``(address, bytes)`` of every memory region the GEMM uses."""
        geo = self._geo
        out = {"program": (self.prog_addr, self.prog_len * INSTR_BYTES),
               "A": (self.a_addr, geo.a_bytes()), "B": (self.b_addr, geo.b_bytes())}
        if geo.bias:
            out["bias"] = (self.bias_addr, geo.table_bytes())
        if geo.per_column:
            out["scales"] = (self.scale_addr, geo.table_bytes())
        out["C"] = self.output_region()
        return out

    # Host layouts
    def pack_a(self, A):
        """The bytes of A (M x K) that go at ``a_addr``."""
        geo, cfg = self._geo, self.cfg
        A = _int_matrix("A", A, (geo.M, geo.K), cfg.in_min, cfg.in_max)
        R = geo.R
        if geo.ws:
            padded = np.zeros((geo.M, geo.KB * R), dtype=np.int64)
            padded[:, :geo.K] = A
            packed = padded.reshape(geo.M, geo.KB, R).transpose(1, 0, 2)
        else:
            padded = np.zeros((geo.MB * R, geo.K), dtype=np.int64)
            padded[:geo.M] = A
            packed = padded.reshape(geo.MB, R, geo.K).transpose(0, 2, 1)
        return _le_bytes(packed, geo.ob)

    def pack_b(self, B):
        """The bytes of B (K x N) that go at ``b_addr``."""
        geo, cfg = self._geo, self.cfg
        B = _int_matrix("B", B, (geo.K, geo.N), cfg.in_min, cfg.in_max)
        R, C = geo.R, geo.C
        if geo.ws:
            padded = np.zeros((geo.KB * R, geo.NB * C), dtype=np.int64)
            padded[:geo.K, :geo.N] = B
            packed = padded.reshape(geo.KB, R, geo.NB, C).transpose(0, 2, 1, 3)
        else:
            padded = np.zeros((geo.K, geo.NB * C), dtype=np.int64)
            padded[:, :geo.N] = B
            packed = padded.reshape(geo.K, geo.NB, C).transpose(1, 0, 2)
        return _le_bytes(packed, geo.ob)

    def _table(self, name, values, lo, hi):
        geo = self._geo
        values = _int_matrix(name, values, (geo.N,), lo, hi)
        padded = np.zeros(geo.NB * geo.C, dtype=np.int64)
        padded[:geo.N] = values
        return _le_bytes(padded, geo.ab)

    def pack_bias(self, bias):
        """The bytes of the per-column bias (N values, signed ``acc_width``-bit)."""
        half = 1 << (self.cfg.acc_width - 1)
        return self._table("bias", bias, -half, half - 1)

    def pack_scales(self, scales):
        """The bytes of the per-column scales (N values, 0 to 65535)."""
        return self._table("scales", scales, 0, (1 << SCALE_WIDTH) - 1)

    def inputs(self, A, B, bias=None, scales=None):
        """``[(address, bytes), ...]`` to write before starting: A, B and the tables."""
        if self.bias != (bias is not None):
            raise ValueError("bias must be given, since the GEMM was compiled with a bias"
                             if self.bias else
                             "bias must be None, since the GEMM was compiled without a bias")
        if self.per_column != (scales is not None):
            raise ValueError("scales must be given, since the GEMM was compiled with "
                             "per-column scales" if self.per_column else
                             "scales must be None, since the GEMM was compiled with a "
                             "per-layer scale")
        out = [(self.a_addr, self.pack_a(A)), (self.b_addr, self.pack_b(B))]
        if self.bias:
            out.append((self.bias_addr, self.pack_bias(bias)))
        if self.per_column:
            out.append((self.scale_addr, self.pack_scales(scales)))
        return out

    def program_bytes(self):
        """The program's bytes, to write at ``prog_addr``."""
        return self.program.to_bytes()

    def output_region(self):
        """``(address, bytes)`` of C."""
        return self.c_addr, _c_bytes(self.M, self.N, self.post, self.c_row_stride)

    def unpack_output(self, raw):
        """C (M x N, dtype of ``out_type``) from the bytes of :meth:`output_region`."""
        raw = bytes(raw)
        _, nbytes = self.output_region()
        if len(raw) != nbytes:
            raise ValueError(f"the output region is {nbytes} bytes, not {len(raw)}")
        dtype = _OUT_DTYPE[self.post.out_type]
        width = self.N * dtype.itemsize
        rows = [np.frombuffer(raw, dtype=dtype, count=self.N, offset=m * self.c_row_stride)
                for m in range(self.M)] if self.c_row_stride != width else \
            [np.frombuffer(raw, dtype=dtype).reshape(self.M, self.N)]
        return np.vstack(rows).astype(dtype.newbyteorder("="), copy=True)

    def expected(self, A, B, bias=None, scales=None):
        """C computed in numpy with :func:`sim.assembler.postprocess` (for drivers)."""
        A = _int_matrix("A", A, (self.M, self.K), self.cfg.in_min, self.cfg.in_max)
        B = _int_matrix("B", B, (self.K, self.N), self.cfg.in_min, self.cfg.in_max)
        acc = A.astype(object).dot(B.astype(object))
        half = 1 << (self.cfg.acc_width - 1)
        acc = (acc + half) % (2 * half) - half
        return postprocess(acc, bias, self.post.relu,
                           self.post.scale if scales is None else scales, self.post.shift,
                           self.post.out_type, scales is not None,
                           acc_width=self.cfg.acc_width)

    def stats(self):
        """Static counts of the program: instructions per opcode, ``matmul_cycles`` (sum of
        :func:`~sim.isa_model.matmul_cycles`), ``ideal_cycles`` (``M * K * N / (rows *
        cols)``), rows loaded and stored, ``result_rows`` (the rows the MATMULs write into the
        accumulator: ``m`` each), ``store_bytes`` (the bytes the STOREs write), MACs."""
        out = dict.fromkeys(("instructions", "loads", "matmuls", "stores", "fences",
                             "load_rows", "store_rows", "store_bytes", "result_rows",
                             "matmul_cycles", "macs"), 0)
        for instr in self.program.instructions:
            op = instr["opcode"].name
            out["instructions"] += 1
            if op == "LOAD":
                out["loads"] += 1
                out["load_rows"] += instr["rows"]
            elif op == "MATMUL":
                out["matmuls"] += 1
                out["result_rows"] += instr["m"]
                out["matmul_cycles"] += matmul_cycles(instr)
                out["macs"] += instr["m"] * instr["k"] * instr["n"]
            elif op == "STORE":
                out["stores"] += 1
                out["store_rows"] += instr["rows"]
                out["store_bytes"] += instr["rows"] * instr["row_bytes"]
            elif op == "FENCE":
                out["fences"] += 1
        out["ideal_cycles"] = self.M * self.K * self.N / self.cfg.macs
        return out


def compile_gemm(cfg, M, K, N, *, a_addr, b_addr, c_addr, bias_addr=None, scale_addr=None,
                 post=PostOp(), dataflow=Dataflow.WS, prog_addr=None, c_row_stride=None,
                 tiling=None):
    """Compile ``C = post(A @ B + bias)`` for configuration ``cfg``.

    Parameters
    ----------
    cfg : AccelConfig
    M, K, N : int
        A is M x K, B is K x N; each at least 1.
    a_addr, b_addr : int
        Addresses of the packed A and B (:meth:`Gemm.pack_a`, :meth:`Gemm.pack_b`).
    c_addr : int
        Address of C, row-major M x N of ``post.out_type``.
    bias_addr : int, optional
        Address of the bias table (N int32); no bias if ``None``.
    scale_addr : int, optional
        Address of the per-column scale table (N values 0 .. 65535); if ``None``, the
        per-layer ``post.scale``.
    post : PostOp
    dataflow : Dataflow
    prog_addr : int, optional
        Address of the program, a multiple of 32; by default right after the highest other
        region, 4 KiB aligned.
    c_row_stride : int, optional
        Bytes from one row of C to the next; ``N * out bytes`` by default.
    tiling : Tiling, optional
        By default :func:`choose_tiling`'s.

    Returns
    -------
    Gemm

    Raises
    ------
    ValueError
        Naming the bad argument and what is allowed: sizes below 1, addresses that are not
        non-negative integers, regions that overlap or leave the address space, a tiling
        that does not fit the buffers.
    """
    if not isinstance(post, PostOp):
        raise ValueError(f"post must be a PostOp, not {post!r}")
    geo = _geometry(cfg, M, K, N, dataflow, bias_addr is not None, scale_addr is not None)
    addrs = {"a_addr": _check_int("a_addr", a_addr, 0),
             "b_addr": _check_int("b_addr", b_addr, 0),
             "c_addr": _check_int("c_addr", c_addr, 0),
             "bias_addr": None if bias_addr is None else _check_int("bias_addr", bias_addr, 0),
             "scale_addr": None if scale_addr is None else
             _check_int("scale_addr", scale_addr, 0),
             "c_row_stride": _stride(geo.M, geo.N, post, c_row_stride)}
    if tiling is None:
        tiling = choose_tiling(cfg, M, K, N, dataflow=geo.dataflow, bias=geo.bias,
                               per_column=geo.per_column)
    _check_tiling(geo, tiling)
    regions = {"A": (addrs["a_addr"], geo.a_bytes()), "B": (addrs["b_addr"], geo.b_bytes()),
               "C": (addrs["c_addr"], _c_bytes(geo.M, geo.N, post, addrs["c_row_stride"]))}
    if geo.bias:
        regions["bias"] = (addrs["bias_addr"], geo.table_bytes())
    if geo.per_column:
        regions["scales"] = (addrs["scale_addr"], geo.table_bytes())
    ops = _schedule(geo, tiling, post, addrs)
    if prog_addr is None:
        prog_addr = _align(max(a + n for a, n in regions.values()), ALIGN)
    prog_addr = _check_int("prog_addr", prog_addr, 0)
    if prog_addr % INSTR_BYTES:
        raise ValueError(f"prog_addr must be a multiple of {INSTR_BYTES}, not {prog_addr:#x}")
    regions["program"] = (prog_addr, len(ops) * INSTR_BYTES)
    _check_regions(cfg, regions)
    addrs["prog_addr"] = prog_addr
    program = Program(cfg)
    for method, kwargs in ops:
        getattr(program, method)(**kwargs)
    return Gemm(geo, post, tiling, addrs, program)


def gemm_at(cfg, M, K, N, *, base=0, bias=False, per_column=False, post=PostOp(),
            dataflow=Dataflow.WS, c_row_stride=None, align=ALIGN, tiling=None):
    """:func:`plan_memory` and :func:`compile_gemm` in one call: a GEMM whose regions lie
    from ``base`` up."""
    plan = plan_memory(cfg, M, K, N, base=base, bias=bias, per_column=per_column, post=post,
                       dataflow=dataflow, c_row_stride=c_row_stride, align=align,
                       tiling=tiling)
    return compile_gemm(cfg, M, K, N, **plan.addresses(), post=post, dataflow=dataflow,
                        tiling=tiling)


# conv2d -------------------------------------------------------------------------------------

def _pair(name, value, lo):
    if _is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be an integer or a pair of integers, not {value!r}")
    return tuple(_check_int(name, v, lo) for v in value)


def _shape(name, shape):
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"{name} must be 4 integers, not {shape!r}")
    return tuple(_check_int(name, v, 1) for v in shape)


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0):
    """``(N, OH, OW, C_out)`` of a conv2d of an NHWC input by HWIO weights."""
    n, h, w, c = _shape("input_shape (N, H, W, C)", input_shape)
    kh, kw, ci, co = _shape("weight_shape (KH, KW, C_in, C_out)", weight_shape)
    if ci != c:
        raise ValueError(f"weight_shape C_in must equal the input's C {c}, not {ci}")
    sh, sw = _pair("stride", stride, 1)
    ph, pw = _pair("padding", padding, 0)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"the {kh} x {kw} kernel must fit the padded {h + 2 * ph} x "
                         f"{w + 2 * pw} input")
    return n, oh, ow, co


def im2col(x, kh, kw, stride=1, padding=0):
    """The (N * OH * OW) x (KH * KW * C) patch matrix of NHWC ``x``, zero padded; column
    ``(i * KW + j) * C + c`` holds input channel c at kernel position (i, j), matching
    ``weights.reshape(KH * KW * C, C_out)`` of HWIO weights."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be NHWC (4 dimensions), not of shape {x.shape}")
    n, h, w, c = x.shape
    out_n, oh, ow, _ = conv2d_output_shape(x.shape, (kh, kw, c, 1), stride, padding)
    sh, sw = _pair("stride", stride, 1)
    ph, pw = _pair("padding", padding, 0)
    padded = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    padded[:, ph:ph + h, pw:pw + w] = x
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j] = padded[:, i:i + sh * (oh - 1) + 1:sh,
                                         j:j + sw * (ow - 1) + 1:sw]
    return cols.reshape(out_n * oh * ow, kh * kw * c)


class Conv2d:
    """A compiled conv2d layer: im2col on the host, then :attr:`gemm`. Made by
    :func:`compile_conv2d`.

    Members
    -------
    gemm : Gemm
    input_shape, weight_shape, output_shape : tuple
    stride, padding : (int, int)
    prog_addr, prog_len : int
    """

    def __init__(self, gemm, input_shape, weight_shape, stride, padding):
        self.gemm = gemm
        self.input_shape = input_shape
        self.weight_shape = weight_shape
        self.stride = stride
        self.padding = padding
        self.output_shape = conv2d_output_shape(input_shape, weight_shape, stride, padding)
        self.prog_addr, self.prog_len = gemm.prog_addr, gemm.prog_len

    def matrices(self, x, w):
        """The GEMM operands: the im2col matrix of ``x`` and the reshaped weights."""
        x, w = np.asarray(x), np.asarray(w)
        if x.shape != self.input_shape:
            raise ValueError(f"x must have shape {self.input_shape}, not {x.shape}")
        if w.shape != self.weight_shape:
            raise ValueError(f"w must have shape {self.weight_shape}, not {w.shape}")
        kh, kw, ci, co = self.weight_shape
        return im2col(x, kh, kw, self.stride, self.padding), w.reshape(kh * kw * ci, co)

    def inputs(self, x, w, bias=None, scales=None):
        """``[(address, bytes), ...]`` to write before starting."""
        a, b = self.matrices(x, w)
        return self.gemm.inputs(a, b, bias, scales)

    def program_bytes(self):
        return self.gemm.program_bytes()

    def output_region(self):
        return self.gemm.output_region()

    def regions(self):
        return self.gemm.regions()

    def unpack_output(self, raw):
        """The NHWC output from the bytes of :meth:`output_region`."""
        return self.gemm.unpack_output(raw).reshape(self.output_shape)


def compile_conv2d(cfg, input_shape, weight_shape, *, stride=1, padding=0, bias=False,
                   per_column=False, post=PostOp(), dataflow=Dataflow.WS, base=0, align=ALIGN):
    """Compile a conv2d of an NHWC input by HWIO weights (``(KH, KW, C_in, C_out)``), with
    zero ``padding`` and ``stride`` (each an integer or an (H, W) pair), as a GEMM of
    ``(N * OH * OW) x (KH * KW * C_in)`` by ``(KH * KW * C_in) x C_out`` placed from
    ``base`` up (:func:`gemm_at`).

    Returns
    -------
    Conv2d
    """
    input_shape = _shape("input_shape (N, H, W, C)", input_shape)
    weight_shape = _shape("weight_shape (KH, KW, C_in, C_out)", weight_shape)
    n, oh, ow, co = conv2d_output_shape(input_shape, weight_shape, stride, padding)
    kh, kw, ci, _ = weight_shape
    gemm = gemm_at(cfg, n * oh * ow, kh * kw * ci, co, base=base, bias=bias,
                   per_column=per_column, post=post, dataflow=dataflow, align=align)
    return Conv2d(gemm, input_shape, weight_shape, _pair("stride", stride, 1),
                  _pair("padding", padding, 0))
