"""The operand scratchpad: bank A and bank B, each written by LOAD and read by MATMUL."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from .config import AccelConfig
from .pe import operand_shape

__all__ = ["a_row_layout", "b_row_layout", "Scratchpad"]


def a_row_layout(cfg):
    """Shape of one bank-A row: ``rows`` operands, lane ``k`` feeding array row ``k``."""
    return data.ArrayLayout(operand_shape(cfg), cfg.rows)


def b_row_layout(cfg):
    """Shape of one bank-B row: ``cols`` operands, lane ``n`` feeding array column ``n``."""
    return data.ArrayLayout(operand_shape(cfg), cfg.cols)


class Scratchpad(wiring.Component):
    """Two single-write, single-read operand banks of ``spad_depth`` rows each.

    Each bank has its own write port (driven by the load engine) and read port (driven by the
    compute engine), and the four ports work independently every cycle, so a LOAD fills one
    half of a bank while a MATMUL reads the other. Which half is whose is up to software, which
    hands the halves back and forth with dependency tokens (see :mod:`hw.isa`).

    The ports use the signatures of :mod:`amaranth.lib.memory` unchanged, so an engine declares
    the flipped signature (``In(WritePort.Signature(...))``) and is connected with
    :func:`~amaranth.lib.wiring.connect`. Plain ports rather than streams, because neither side
    ever has to wait: the banks accept a write and a read every cycle.

    Write ports (``granularity=1``): in each cycle, lane ``k`` of ``data`` is written to row
    ``addr`` if bit ``k`` of ``en`` is set; the other lanes of the row keep their values, so a
    partial row (an edge tile, or a LOAD narrower than a row) needs no read-modify-write.
    ``en == 0`` writes nothing.

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
    a_write : Out(WritePort.Signature(addr_width, a_row_layout(cfg), granularity=1))
        Bank A write port; ``en`` has ``rows`` bits, one per operand.
    a_read : Out(ReadPort.Signature(addr_width, a_row_layout(cfg)))
        Bank A read port.
    b_write : Out(WritePort.Signature(addr_width, b_row_layout(cfg), granularity=1))
        Bank B write port; ``en`` has ``cols`` bits, one per operand.
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
                addr_width=addr_width, shape=layout, granularity=1))
            members[f"{bank}_read"] = Out(ReadPort.Signature(addr_width=addr_width, shape=layout))
        super().__init__(members)

    @property
    def cfg(self):
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        for bank, layout in (("a", a_row_layout(cfg)), ("b", b_row_layout(cfg))):
            mem = Memory(shape=layout, depth=cfg.spad_depth, init=[])
            m.submodules[f"{bank}_mem"] = mem
            # Non-transparent: a 1R1W block RAM needs no bypass logic for it.
            wiring.connect(m, wiring.flipped(getattr(self, f"{bank}_write")),
                           mem.write_port(granularity=1))
            wiring.connect(m, wiring.flipped(getattr(self, f"{bank}_read")), mem.read_port())
        return m
