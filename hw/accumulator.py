"""The accumulator memory: result rows of MATMUL, bias and scale tables of LOAD, read by STORE."""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .config import AccelConfig

__all__ = ["acc_row_layout", "AccWriteLayout", "Accumulator"]


def acc_row_layout(cfg):
    """Shape of one accumulator row: ``cols`` signed ``acc_width``-bit values."""
    return data.ArrayLayout(signed(cfg.acc_width), cfg.cols)


class AccWriteLayout(data.StructLayout):
    """Payload of the accumulator's result input: one result row and where it goes.

    ``data`` is a row of the systolic array's result stream. Column ``j`` of row ``addr``
    becomes ``old + data[j]`` (wrapping modulo ``2**acc_width``) if ``accumulate`` is set, or
    ``data[j]`` if not, when bit ``j`` of ``mask`` is set; it is left unchanged otherwise
    (columns ``N ..`` of a tile with N < cols).
    """

    def __init__(self, cfg):
        super().__init__({
            "data": acc_row_layout(cfg),
            "addr": ceil_log2(cfg.acc_depth),
            "accumulate": 1,
            "mask": cfg.cols,
        })


class Accumulator(wiring.Component):
    """``acc_depth`` rows of ``cols`` accumulators with three ports: MATMUL, LOAD and STORE.

    ``i`` takes one result row per cycle, accumulating or overwriting. It is a three-stage
    read-modify-write: the row's old value is read in the cycle the beat is accepted,
    registered as it leaves the memory in the next, and added to and written in the third, so
    that the adder starts from a register rather than from the memory's output. The memory
    read misses the writes of the two rows ahead, which land in the cycle of the read and the
    one after; the new value of each write is therefore kept for the next two advances of the
    pipeline and forwarded, column by column and newest first, to the rows that follow with
    the same address. So any sequence of addresses, including the same row back to back, runs
    at one row per cycle.

    ``load`` writes a row directly (a LOAD into bias or scale tables): in each cycle, column
    ``j`` of ``data`` goes to row ``addr`` if bit ``j`` of ``en`` is set. The memory has one
    write port, shared with ``i``: **LOAD wins**. ``loading`` is high in every cycle in which
    ``load.en`` may be non-zero (a register of the load engine, so that the hold starts from a
    flip-flop rather than from the enables' logic); while it is, the whole read-modify-write
    pipeline holds and ``i.ready`` is low, so the systolic array stalls (losslessly) instead
    of the load engine, which then never waits and drives the same signature as a scratchpad
    bank. A cycle with ``loading`` high and no enable only holds the pipeline. A LOAD and a
    MATMUL must not write the same row at overlapping times (a row in the pipeline would
    overwrite the LOAD with a sum of stale data); the dependency tokens of :mod:`hw.isa`
    order them.

    ``store`` reads a row: synchronous, ``READ_LATENCY`` = 1, ``data`` holds while ``en`` is
    low. A row accepted on ``i`` in cycle ``t``, or written by ``load`` in cycle ``t``, is
    visible to a ``store`` read issued in cycle ``t + WRITE_LATENCY`` (plus any cycles a LOAD
    holds the pipeline) or ``t + 1`` respectively. ``written`` is high in the cycle an accepted
    row is written (rows are written in the order they were accepted), and ``busy`` while an
    accepted row is not yet written, so once it is low every accepted row is visible. A read
    of a row being written in the same cycle returns its old value.

    Rows are zero after reset.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    i : In(stream.Signature(AccWriteLayout(cfg)))
        Result rows from the compute engine.
    load : Out(WritePort.Signature(addr_width, acc_row_layout(cfg), granularity=1))
        Direct row writes; ``en`` is the column mask.
    loading : In(1)
        ``load.en`` may be non-zero in this cycle; it is ignored while this is low.
    store : Out(ReadPort.Signature(addr_width, acc_row_layout(cfg)))
        Row reads for the store engine.
    written : Out(1)
        The oldest accepted result row not yet written is written in this cycle.
    busy : Out(1)
        An accepted result row has not been written yet.

    ``addr_width`` is ``ceil_log2(acc_depth)``.

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~hw.config.AccelConfig`.
    """

    READ_LATENCY = 1
    WRITE_LATENCY = 3

    def __init__(self, cfg):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        addr_width = ceil_log2(cfg.acc_depth)
        row = acc_row_layout(cfg)
        super().__init__({
            "i": In(stream.Signature(AccWriteLayout(cfg))),
            "load": Out(WritePort.Signature(addr_width=addr_width, shape=row, granularity=1)),
            "loading": In(1),
            "store": Out(ReadPort.Signature(addr_width=addr_width, shape=row)),
            "written": Out(1),
            "busy": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        row = acc_row_layout(cfg)
        m = Module()

        # One write port and two read ports: a simple dual-port RAM, duplicated for the second
        # read port, which is what block RAMs offer without bypass or arbitration logic.
        m.submodules.mem = mem = Memory(shape=row, depth=cfg.acc_depth, init=[])
        wr = mem.write_port(granularity=1)
        rmw = mem.read_port()
        wiring.connect(m, wiring.flipped(self.store), mem.read_port())

        # Every stage moves in the cycles the pipeline advances, and only then: the memory
        # read port's enable, every register below and the ``i`` writes. A LOAD write during
        # a hold is never to a row in the pipeline, and every read issued after it sees it.
        loading = self.loading
        advance = ~loading
        m.d.comb += self.i.ready.eq(advance)

        # Stage 1: the accepted row, its old value arriving from the read port.
        s1 = Signal(AccWriteLayout(cfg))
        s1_valid = Signal()
        m.d.comb += [rmw.addr.eq(self.i.payload.addr), rmw.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [s1.eq(self.i.payload), s1_valid.eq(self.i.valid)]

        # Stage 2: the row, its old value registered (zero if it overwrites), and per column
        # where the value to add comes from. Its read was issued in the cycle of the write now
        # in ``fwd1`` (``fwd2`` when the row reaches stage 3) and before the write of the row
        # now in stage 2 (``fwd1`` then): the value read has neither.
        s2 = Signal(AccWriteLayout(cfg))
        s2_valid = Signal()
        old = Signal(row)
        from1 = Signal(cfg.cols)                # take the column from fwd1
        from2 = Signal(cfg.cols)                # from fwd2, unless from fwd1
        wr_mask = Signal(cfg.cols)
        fwd1 = Signal(row)                      # the write of the last advance
        fwd1_addr = Signal.like(s2.addr)
        fwd1_mask = Signal(cfg.cols)
        fwd2 = Signal(row)                      # the write of the advance before
        hit1 = Signal()
        hit2 = Signal()
        m.d.comb += [
            wr_mask.eq(Mux(s2_valid, s2.mask, 0)),
            hit1.eq(s1.accumulate & (s2.addr == s1.addr)),
            hit2.eq(s1.accumulate & (fwd1_addr == s1.addr)),
        ]
        with m.If(advance):
            m.d.sync += [
                s2.eq(s1),
                s2_valid.eq(s1_valid),
                old.eq(Mux(s1.accumulate, rmw.data, 0)),
                from1.eq(Mux(hit1, wr_mask, 0)),
                from2.eq(Mux(hit2, fwd1_mask, 0)),
            ]

        # Stage 3: add and write. The selections come from registers, so the path to the
        # write data is two multiplexers and the adder's carry chain.
        new = Signal(row)
        for j in range(cfg.cols):
            base = Mux(from1[j], fwd1[j], Mux(from2[j], fwd2[j], old[j]))
            # Assigning the (acc_width + 1)-bit sum to an acc_width-bit lane wraps it.
            m.d.comb += new[j].eq(base + s2.data[j])

        with m.If(loading):
            m.d.comb += [wr.addr.eq(self.load.addr), wr.data.eq(self.load.data),
                         wr.en.eq(self.load.en)]
        with m.Else():
            m.d.comb += [wr.addr.eq(s2.addr), wr.data.eq(new), wr.en.eq(wr_mask)]
            m.d.sync += [fwd1.eq(new), fwd1_addr.eq(s2.addr), fwd1_mask.eq(wr_mask),
                         fwd2.eq(fwd1)]

        m.d.comb += [self.written.eq(s2_valid & advance), self.busy.eq(s1_valid | s2_valid)]
        return m
