"""Skid buffer: a stream register slice that registers ``ready`` (and, by default, ``valid``
and ``payload``)."""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "fall_through"]


class SkidBuffer(wiring.Component):
    """Two-entry register slice between a stream producer and consumer.

    ``o.valid`` and ``o.payload`` come from a register, and ``i.ready`` from another, so no
    combinational path crosses the slice in either direction: the consumer's ``ready``
    reaches the producer a cycle later, and the entry that arrives meanwhile waits in the
    skid register. One transfer per cycle; a payload leaves one cycle after it entered when
    nothing stalls.

    With ``latency=0`` the slice falls through: a payload offered while the slice is empty is
    offered on ``o`` in the same cycle, and it keeps (in order) at most two payloads that the
    consumer has not taken yet. ``i.ready`` still comes from a register (the number kept), so
    the consumer's ``ready`` never reaches the producer; only ``valid`` and ``payload`` pass
    through, behind a multiplexer. Still one transfer per cycle.

    Parameters
    ----------
    shape : shape-like
        Payload shape.
    latency : 0 or 1
        Cycles from ``i`` to ``o`` when nothing stalls.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape, *, latency=1):
        if latency not in (0, 1):
            self._MustUse__silence = True
            raise ValueError(f"latency must be 0 or 1, not {latency!r}")
        self._latency = latency
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        if self._latency == 0:
            return self._fall_through()
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

    def _fall_through(self):
        m = Module()
        kept = Signal(range(3))
        head = Signal.like(self.i.payload)
        second = Signal.like(self.i.payload)
        m.d.comb += [
            self.i.ready.eq(kept != 2),
            self.o.valid.eq((kept != 0) | self.i.valid),
            self.o.payload.eq(Mux(kept != 0, head, self.i.payload)),
        ]
        took_in = self.i.valid & self.i.ready
        took_out = self.o.valid & self.o.ready
        with m.Switch(kept):
            with m.Case(0):
                with m.If(took_in & ~self.o.ready):
                    m.d.sync += [head.eq(self.i.payload), kept.eq(1)]
            with m.Case(1):
                with m.If(took_out & took_in):
                    m.d.sync += head.eq(self.i.payload)
                with m.Elif(took_out):
                    m.d.sync += kept.eq(0)
                with m.Elif(took_in):
                    m.d.sync += [second.eq(self.i.payload), kept.eq(2)]
            with m.Case(2):
                with m.If(took_out):
                    m.d.sync += [head.eq(second), kept.eq(1)]
        return m


def fall_through(m, queue, want, taken):
    """The head of a queue that a payload written while it is empty falls through.

    ``queue`` is a ``SyncFIFO`` (asynchronous read) whose ``w_data`` the caller drives. A
    payload offered (``want``) while the queue is empty is the head in the same cycle, and
    is only written if it is not ``taken`` then; ``taken`` is the consumer taking the head,
    and implies that it is valid. The caller makes sure ``want`` finds room.
    Returns the head (a value of ``w_data``'s width) and its valid.
    """
    m.d.comb += [
        queue.r_en.eq(taken & queue.r_rdy),
        queue.w_en.eq(want & (queue.r_rdy | ~taken)),
    ]
    return Mux(queue.r_rdy, queue.r_data, queue.w_data), queue.r_rdy | want
