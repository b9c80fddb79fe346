"""Processing element of the systolic array."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .multiplier import RegisteredMultiplier

__all__ = ["operand_shape", "WestLane", "WeightBus", "ProcessingElement"]


def operand_shape(cfg):
    return signed(cfg.in_width) if cfg.in_signed else unsigned(cfg.in_width)


class WestLane(data.StructLayout):
    """What moves east through one PE row each cycle: an A operand and the slot's flags.

    ``ws`` marks a weight-stationary row (``first`` switches to the preloaded weights);
    ``os`` marks an output-stationary step (``first`` restarts, ``last`` captures the
    accumulator); ``drain`` moves this row's captured result into the partial-sum column.
    """

    def __init__(self, cfg):
        super().__init__({
            "data": operand_shape(cfg),
            "ws": 1, "os": 1, "first": 1, "last": 1, "drain": 1,
        })


class WeightBus(data.StructLayout):
    """A PE column's weight bus (weight-stationary), seen by every PE of the column in the same
    cycle: the PE of row ``row`` captures ``data`` when ``load`` is set."""

    def __init__(self, cfg):
        super().__init__({
            "data": operand_shape(cfg),
            "load": 1,
            "row": range(max(cfg.rows, 2)),
        })


class ProcessingElement(wiring.Component):

    """One multiply-accumulate cell, for both dataflows.

    Weight-stationary: ``psum_o = psum_i + a * w``; ``w`` is the active weight, and two weight
    registers (active and preloaded) let the next tile's weights arrive while this tile runs.
    The preloaded one is captured from the column's weight bus ``w_i`` at the end of the
    cycle it is offered. The row that carries ``first`` multiplies by the preloaded weight and
    makes it active, so switching tiles costs no cycle: a weight offered on ``w_i`` in the
    cycle that ``first`` arrives on ``a_i`` (or before) is the one it switches to.

    Output-stationary: the PE keeps ``acc += a * b``; ``last`` copies the final sum into a
    result register, which a later ``drain`` slot inserts into the partial-sum column.

    Sums wrap modulo ``2**acc_width`` (two's complement). The PE is pipelined: the lanes are
    registered (``a_o``, ``b_o``), then the operands chosen from them and the weight registers
    (the multiplier's input registers), then the product (its output register) and once more,
    then the sum; so ``psum_i`` meets the operands that entered on ``a_i``/``b_i`` four cycles
    earlier (``PSUM_DELAY``). The multiplier block (:class:`~hw.multiplier.RegisteredMultiplier`)
    thus only has register-to-register paths outside it: its inputs come from this PE's
    registers, and it drives a register that the placer can put beside it, whatever the
    distance to the adder.

    Parameters
    ----------
    cfg : AccelConfig
    row : int
        Row of this PE in the array; selects which weights it captures.

    Members
    -------
    en : In(1)
        Global advance; every register holds while it is low.
    a_i, a_o : In/Out(WestLane)
        From the west neighbour; registered copy to the east neighbour.
    b_i, b_o : In/Out(operand_shape(cfg))
        Output-stationary B operand from the north neighbour; registered copy to the south
        neighbour.
    w_i : In(WeightBus)
        The column's weight bus.
    psum_i, psum_o : In/Out(signed(acc_width))
        Partial sum from the north; registered partial sum to the south.
    """

    PSUM_DELAY = 4

    def __init__(self, cfg, *, row):
        self._cfg = cfg
        self._row = row
        acc = signed(cfg.acc_width)
        super().__init__({
            "en": In(1),
            "a_i": In(WestLane(cfg)), "a_o": Out(WestLane(cfg)),
            "b_i": In(operand_shape(cfg)), "b_o": Out(operand_shape(cfg)),
            "w_i": In(WeightBus(cfg)),
            "psum_i": In(acc), "psum_o": Out(acc),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        acc_shape = signed(cfg.acc_width)
        w_active = Signal(operand_shape(cfg))
        w_next = Signal(operand_shape(cfg))
        acc = Signal(acc_shape)
        res = Signal(acc_shape)

        # Operand stage: the lanes registered from the neighbours (a_o, b_o) and this PE's
        # weight registers choose the multiplier's operands; the multiplier registers them
        # (the DSP block's input registers) and its product (its output register). So the
        # choice reads only this PE's registers, and the neighbours' lanes never reach the
        # multiplier block in the same cycle.
        a, b = self.a_o, self.b_o
        switch = a.ws & a.first
        capture = self.w_i.load & (self.w_i.row == self._row)
        m.submodules.mult = mult = RegisteredMultiplier(operand_shape(cfg))
        m.d.comb += [
            mult.en.eq(self.en),
            mult.a.eq(a.data),
            mult.b.eq(Mux(a.os, b, Mux(switch, w_next, w_active))),
        ]
        ex0 = Signal(WestLane(cfg))     # the flags of the row in the multiplier's input regs
        ex = Signal(WestLane(cfg))      # the flags of the row whose product is in mult.p
        product2 = Signal.like(mult.p)
        ex2 = Signal(WestLane(cfg))

        # Accumulate stage, two cycles later; the partial sum from the north arrives then too.
        acc_next = Signal(acc_shape)
        m.d.comb += acc_next.eq(Mux(ex2.first, 0, acc) + product2)

        with m.If(self.en):
            m.d.sync += [self.a_o.eq(self.a_i), self.b_o.eq(self.b_i),
                         ex0.eq(a), ex.eq(ex0), product2.eq(mult.p), ex2.eq(ex)]
            with m.If(switch):
                m.d.sync += w_active.eq(w_next)
            with m.If(capture):
                m.d.sync += w_next.eq(self.w_i.data)
            with m.If(ex2.os):
                m.d.sync += acc.eq(acc_next)
                with m.If(ex2.last):
                    m.d.sync += res.eq(acc_next)
            with m.If(ex2.drain):
                m.d.sync += self.psum_o.eq(res)
            with m.Elif(ex2.ws):
                m.d.sync += self.psum_o.eq(self.psum_i + product2)
            with m.Else():
                m.d.sync += self.psum_o.eq(self.psum_i)
        return m
