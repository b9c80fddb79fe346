"""Skid buffer: a stream register slice that registers ``valid``, ``payload`` and ``ready``."""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Two-entry register slice between a stream producer and consumer.

    ``o.valid`` and ``o.payload`` come from a register, and ``i.ready`` from another, so no
    combinational path crosses the slice in either direction: the consumer's ``ready``
    reaches the producer a cycle later, and the entry that arrives meanwhile waits in the
    skid register. One transfer per cycle; a payload leaves one cycle after it entered when
    nothing stalls.

    Parameters
    ----------
    shape : shape-like
        Payload shape.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape):
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.i.payload)
        m.d.comb += self.i.ready.eq(~skid_valid)

        with m.If(self.o.ready | ~self.o.valid):
            # the output register is free: refill it, the waiting entry first
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
