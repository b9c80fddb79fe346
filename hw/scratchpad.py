"""The operand scratchpad: bank A and bank B, each written by LOAD and read by MATMUL."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from .config import AccelConfig
from .pe import operand_shape

__all__ = ["a_row_layout", "b_row_layout", "rows_layout", "Scratchpad"]


def a_row_layout(cfg):
    """Shape of one bank-A row: ``rows`` operands, lane ``k`` feeding array row ``k``."""
    return data.ArrayLayout(operand_shape(cfg), cfg.rows)


def b_row_layout(cfg):
    """Shape of one bank-B row: ``cols`` operands, lane ``n`` feeding array column ``n``."""
    return data.ArrayLayout(operand_shape(cfg), cfg.cols)


def rows_layout(cfg, layout):
    """Shape of one scratchpad write: ``load_rows`` rows of ``layout``."""
    return data.ArrayLayout(layout, cfg.load_rows)


class Scratchpad(wiring.Component):
    """Two operand banks of ``spad_depth`` rows each, written ``load_rows`` rows at a time.

    Each bank has its own write port (driven by the load engine) and read port (driven by the
    compute engine), and the four ports work independently every cycle, so a LOAD fills one
    half of a bank while a MATMUL reads the other. Which half is whose is up to software, which
    hands the halves back and forth with dependency tokens (see :mod:`hw.isa`).

    The ports use the signatures of :mod:`amaranth.lib.memory`, so an engine declares the
    flipped signature (``In(WritePort.Signature(...))``) and is connected with
    :func:`~amaranth.lib.wiring.connect`. Plain ports rather than streams, because neither side
    ever has to wait: the banks accept a write and a read every cycle.

    Write ports: ``data`` holds ``W = load_rows`` rows and ``en`` one bit per row; in each
    cycle row ``k`` of ``data`` is written to row ``addr + k`` if bit ``k`` of ``en`` is set
    (rows past ``spad_depth`` must not be enabled). Rows are written whole: the load engine
    zero-pads what a LOAD does not fill. A bank is built from ``W`` sub-banks of
    ``spad_depth / W`` rows, row ``r`` in sub-bank ``r % W``, so that any ``W`` consecutive
    rows fall into different sub-banks and are written in one cycle; each sub-bank takes the
    row of ``data`` that lands in it, and a read selects the sub-bank of its row.

    Read ports: synchronous, ``READ_LATENCY`` = 1. With ``en`` set in cycle ``t``, ``data`` holds
    row ``addr`` from cycle ``t + 1`` until the next cycle with ``en`` set, so a stalled consumer
    keeps its row by dropping ``en``. A read of the row that the same bank's write port writes in
    the same cycle returns the row's previous contents; the token protocol keeps a LOAD and a
    MATMUL on different halves, so a correct program never depends on this.

    Rows are zero after reset.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    a_write : Out(WritePort.Signature(addr_width, rows_layout(cfg, a_row_layout(cfg)), 1))
        Bank A write port.
    a_read : Out(ReadPort.Signature(addr_width, a_row_layout(cfg)))
        Bank A read port.
    b_write : Out(WritePort.Signature(addr_width, rows_layout(cfg, b_row_layout(cfg)), 1))
        Bank B write port.
    b_read : Out(ReadPort.Signature(addr_width, b_row_layout(cfg)))
        Bank B read port.

    ``addr_width`` is ``ceil_log2(spad_depth)``.

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~hw.config.AccelConfig`.
    """

    READ_LATENCY = 1

    def __init__(self, cfg):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        addr_width = ceil_log2(cfg.spad_depth)
        members = {}
        for bank, layout in (("a", a_row_layout(cfg)), ("b", b_row_layout(cfg))):
            members[f"{bank}_write"] = Out(WritePort.Signature(
                addr_width=addr_width, shape=rows_layout(cfg, layout), granularity=1))
            members[f"{bank}_read"] = Out(ReadPort.Signature(addr_width=addr_width, shape=layout))
        super().__init__(members)

    @property
    def cfg(self):
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        W = cfg.load_rows
        lw = W.bit_length() - 1
        m = Module()
        for bank, layout in (("a", a_row_layout(cfg)), ("b", b_row_layout(cfg))):
            write, read = getattr(self, f"{bank}_write"), getattr(self, f"{bank}_read")
            # The sub-bank the last read came from, selecting its data until the next read.
            sel = Signal(range(W), name=f"{bank}_sel")
            if W > 1:
                with m.If(read.en):
                    m.d.sync += sel.eq(read.addr[:lw])
            outs = []
            for b in range(W):
                # Non-transparent: a 1R1W block RAM needs no bypass logic for it.
                mem = Memory(shape=layout, depth=cfg.spad_depth // W, init=[])
                m.submodules[f"{bank}_mem{b}" if W > 1 else f"{bank}_mem"] = mem
                wr, rd = mem.write_port(), mem.read_port()
                # Row k of the write lands here if (addr + k) % W == b.
                k = Signal(range(W), name=f"{bank}_k{b}")
                m.d.comb += [
                    k.eq(b - write.addr[:lw]),
                    wr.addr.eq((write.addr + k) >> lw),
                    wr.data.eq(write.data[k]),
                    wr.en.eq(write.en.bit_select(k, 1)),
                    rd.addr.eq(read.addr >> lw),
                    rd.en.eq(read.en),
                ]
                outs.append(rd.data)
            m.d.comb += read.data.eq(Array(outs)[sel])
        return m
