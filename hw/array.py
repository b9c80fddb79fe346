"""The systolic array: a grid of PEs behind stream interfaces, with skew and de-skew inside."""

from amaranth import *
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .pe import ProcessingElement, WeightBus, WestLane, operand_shape

__all__ = ["Dataflow", "ALayout", "BLayout", "CLayout", "SystolicArray"]


class Dataflow(enum.Enum, shape=1):
    WS = 0      #: weight-stationary: B is preloaded, A rows stream through
    OS = 1      #: output-stationary: A columns and B rows stream in together


class ALayout(data.StructLayout):
    """Payload of the A stream.

    ``data[k]`` is A[m, k] for a weight-stationary row m (lanes past K are zero), or
    A[i, k] of row i for output-stationary step k (lanes past M are zero).
    ``first``/``last`` mark the first and last beat of a tile. ``rows_m1`` (output-stationary,
    on the ``last`` beat) is M - 1: how many result rows to return.
    """

    def __init__(self, cfg):
        super().__init__({
            "data": data.ArrayLayout(operand_shape(cfg), cfg.rows),
            "mode": Dataflow,
            "first": 1,
            "last": 1,
            "rows_m1": range(max(cfg.rows, 2)),
        })


class BLayout(data.StructLayout):
    """Payload of the B stream.

    Weight-stationary (``mode`` WS): row k of the next tile's weights, rows in order from 0
    and in consecutive cycles (valid must not drop between the first row and the last);
    ``last`` ends the tile (the ``rows``-th row ends it in any case). Output-stationary
    (``mode`` OS): row k of B, consumed together with the A beat of step k.
    """

    def __init__(self, cfg):
        super().__init__({
            "data": data.ArrayLayout(operand_shape(cfg), cfg.cols),
            "mode": Dataflow,
            "last": 1,
        })


class CLayout(data.StructLayout):
    """Payload of the result stream: one row of C, ``last`` on the last row of a tile."""

    def __init__(self, cfg):
        super().__init__({
            "data": data.ArrayLayout(signed(cfg.acc_width), cfg.cols),
            "last": 1,
        })


class SystolicArray(wiring.Component):
    """A ``rows`` x ``cols`` systolic array computing ``C = A @ B`` tile by tile.

    Weight-stationary tiles: K <= rows, N <= cols, any M. A tile's weights go onto the
    columns' weight buses one row per cycle, every PE of a column seeing the bus at once, and
    the A row marked ``first`` switches each PE to them as it passes. That row may enter in the
    cycle after the first weight row: it reaches PE row i i cycles later, by which time weight
    row i is in, since the weight rows of a tile come in consecutive cycles (see
    :class:`BLayout`). The next tile's weights load once the current tile's are all in and its
    ``first`` row has entered. So the first tile waits one cycle for its weights, not K, and
    back to back a tile costs at most max(M, K, 2) cycles, without a bubble at the switch.

    Output-stationary tiles: M <= rows, N <= cols, any K. A and B beats pair up; the M result
    rows leave through the same column pipeline in the M slots after the ``last`` beat,
    overlapping the next output-stationary tile.

    The whole pipeline advances while a two-row result buffer at its end has room for the
    row it may deliver, so every stall (empty inputs, result backpressure) is lossless. That
    ``advance``, the clock enable of every PE and pipeline register, is itself a register,
    set from the buffer's next level: the consumer's ``ready`` reaches no PE in the same
    cycle. Results leave :attr:`latency` cycles after the row that produced them entered.

    Members
    -------
    a : In(stream.Signature(ALayout))
    b : In(stream.Signature(BLayout))
    c : Out(stream.Signature(CLayout))
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "a": In(stream.Signature(ALayout(cfg))),
            "b": In(stream.Signature(BLayout(cfg))),
            "c": Out(stream.Signature(CLayout(cfg))),
        })

    @property
    def latency(self):
        """Cycles from accepting a row to presenting its result, without stalls: the input
        register, one per row and column of PEs, the PE's product registers, and the result
        buffer."""
        return self._cfg.rows + self._cfg.cols + ProcessingElement.PSUM_DELAY + 1

    def elaborate(self, platform):
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        m = Module()

        advance = Signal(init=1)        # the result buffer has room this cycle

        # Input control ------------------------------------------------------------------------

        pend = Signal()                 # a weight tile has started loading, not switched to
        w_row = Signal(range(max(R, 2)))
        loading = w_row != 0            # the rows of that tile are still coming
        drain_left = Signal(range(R + 1))   # result rows of an OS tile still to drain
        drain_row = Signal(range(max(R, 2)))
        draining = Signal()                 # drain_left != 0, kept as a register of its own
        drain_last = Signal()               # drain_left == 1

        a, b = self.a.payload, self.b.payload
        a_ws = a.mode == Dataflow.WS
        a_os = a.mode == Dataflow.OS
        b_os = b.mode == Dataflow.OS

        a_ok = Signal()
        with m.If(a_ws):
            # WS rows take the partial-sum column, which a drain slot also needs.
            m.d.comb += a_ok.eq(~draining & (~a.first | pend))
        with m.Else():
            # An OS beat needs its B row; an OS tile may end once the previous drain ends
            # in this slot, so that drain slots never overlap.
            m.d.comb += a_ok.eq(self.b.valid & b_os & (~a.last | ~draining | drain_last))
        m.d.comb += self.a.ready.eq(advance & a_ok)
        a_fire = self.a.valid & self.a.ready
        switch = Signal()
        m.d.comb += switch.eq(a_fire & a_ws & a.first)

        with m.If(b_os):
            m.d.comb += self.b.ready.eq(advance & self.a.valid & a_os & a_ok)
        with m.Else():
            # the rest of a tile, or a new tile once the one before is switched to
            m.d.comb += self.b.ready.eq(advance & (loading | ~pend))
        b_fire = self.b.valid & self.b.ready
        w_fire = b_fire & ~b_os
        w_last = b.last | (w_row == R - 1)

        # The slot that enters the array this cycle (a bubble when nothing fires).
        west = [Signal(WestLane(cfg), name=f"west{i}") for i in range(R)]
        north = [Signal(WeightBus(cfg), name=f"north{j}") for j in range(C)]
        out_valid = Signal()
        out_last = Signal()
        for i in range(R):
            m.d.comb += [
                west[i].data.eq(a.data[i]),     # the flags tell operands from bubbles
                west[i].ws.eq(a_fire & a_ws),
                west[i].os.eq(a_fire & a_os),
                west[i].first.eq(a_fire & a.first),
                west[i].last.eq(a_fire & a.last),
                west[i].drain.eq(draining & (drain_row == i)),
            ]
        for j in range(C):
            m.d.comb += [
                north[j].data.eq(b.data[j]),
                north[j].load.eq(w_fire),
                north[j].row.eq(w_row),
            ]
        m.d.comb += [
            out_valid.eq((a_fire & a_ws) | draining),
            out_last.eq((a_fire & a_ws & a.last) | drain_last),
        ]

        with m.If(advance):
            with m.If(w_fire):
                m.d.sync += w_row.eq(Mux(w_last, 0, w_row + 1))
            with m.If(w_fire & ~loading):       # the first row of a tile (no tile pending)
                m.d.sync += pend.eq(1)
            with m.Elif(switch):
                m.d.sync += pend.eq(0)
            with m.If(draining):
                m.d.sync += [drain_left.eq(drain_left - 1), drain_row.eq(drain_row + 1),
                             draining.eq(~drain_last), drain_last.eq(drain_left == 2)]
            with m.If(a_fire & a_os & a.last):
                rows = Mux(a.rows_m1 >= R, R - 1, a.rows_m1) + 1
                m.d.sync += [drain_left.eq(rows), drain_row.eq(0), draining.eq(1),
                             drain_last.eq(rows == 1)]

        # Skew: lane i enters i + 1 cycles late, column j enters j + 1 cycles late (a register
        # after the input control, so that no PE loads straight from a.ready or b.ready); the
        # column's weight bus is its skewed input, and its B operands move south PE by PE ----

        def delayed(sig, n, name):
            for k in range(n):
                reg = Signal.like(sig, name=f"{name}_d{k}")
                with m.If(advance):
                    m.d.sync += reg.eq(sig)
                sig = reg
            return sig

        # The grid -----------------------------------------------------------------------------

        pes = [[ProcessingElement(cfg, row=i) for j in range(C)] for i in range(R)]
        columns = [delayed(north[j], j + 1, f"skew_b{j}") for j in range(C)]
        for i in range(R):
            for j in range(C):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                west_in = delayed(west[i], i + 1, f"skew_a{i}") if j == 0 else pes[i][j - 1].a_o
                m.d.comb += [
                    pe.en.eq(advance),
                    pe.a_i.eq(west_in),
                    pe.b_i.eq(columns[j].data if i == 0 else pes[i - 1][j].b_o),
                    pe.w_i.eq(columns[j]),
                    pe.psum_i.eq(0 if i == 0 else pes[i - 1][j].psum_o),
                ]

        # De-skew and the valid/last pipeline --------------------------------------------------

        result = Signal(CLayout(cfg))
        for j in range(C):
            m.d.comb += result.data[j].eq(delayed(pes[R - 1][j].psum_o, C - 1 - j, f"deskew{j}"))
        m.d.comb += result.last.eq(delayed(out_last, self.latency - 1, "last"))

        # Result buffer: a row enters when the pipeline advances with one at its end, and
        # ``advance`` for the next cycle is whether the buffer will then have a free entry.
        m.submodules.results = results = fifo.SyncFIFO(width=len(result.as_value()), depth=2)
        m.d.comb += [
            results.w_data.eq(result),
            results.w_en.eq(advance & delayed(out_valid, self.latency - 1, "valid")),
            self.c.payload.eq(results.r_data),
            self.c.valid.eq(results.r_rdy),
            results.r_en.eq(self.c.ready),
        ]
        level = results.level + results.w_en - (results.r_en & results.r_rdy)
        m.d.sync += advance.eq(level < 2)
        return m
