"""Byte realigner: stripes of a 2-D transfer at one alignment to stripes at another."""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .transfer import Beat, BeatPlanner, _log2

__all__ = ["CopyDescriptor", "Realigner"]


class CopyDescriptor(data.StructLayout):
    """A 2-D copy: ``rows`` rows of ``row_bytes`` bytes from ``src + r * src_stride`` to
    ``dst + r * dst_stride``."""

    def __init__(self, cfg):
        super().__init__({
            "src": cfg.addr_width, "dst": cfg.addr_width,
            "rows": 16, "row_bytes": 24,
            "src_stride": cfg.addr_width, "dst_stride": cfg.addr_width,
        })

    @staticmethod
    def side(target, desc, side):
        """Statements that set ``target`` (a ``Descriptor``) to the ``"src"`` or ``"dst"``
        side of copy ``desc``."""
        return [target.addr.eq(desc[side]), target.rows.eq(desc.rows),
                target.row_bytes.eq(desc.row_bytes), target.stride.eq(desc[f"{side}_stride"])]


class Realigner(wiring.Component):
    """Moves the bytes of each row from their source offset to their destination offset.

    With ``sh = (dst - src) mod stripe_bytes`` for a row, every source stripe is rotated by
    ``sh`` bytes; an output stripe takes its bytes below ``sh`` from the previous rotated stripe
    and the rest from the current one. A row then has at most one output stripe more or less
    than input stripes; one stripe per cycle in steady state, across descriptors too: one
    offered when the previous one's last stripe goes out starts in the next cycle.

    Members
    -------
    desc : In(stream.Signature(CopyDescriptor))
    i : In(stream.Signature(Beat))
        Source stripes (as the read engine delivers them). ``i.ready`` does not depend on
        ``i.valid``.
    o : Out(stream.Signature(Beat))
        Destination stripes, masks, ``last`` and ``end`` from the destination.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "desc": In(stream.Signature(CopyDescriptor(cfg))),
            "i": In(stream.Signature(Beat(cfg))),
            "o": Out(stream.Signature(Beat(cfg))),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        S, ls = cfg.stripe_bytes, _log2(cfg.stripe_bytes)
        m = Module()

        m.submodules.plan = planner = BeatPlanner(cfg)
        plan = planner.plan

        desc = Signal(CopyDescriptor(cfg))
        # the next row's source and destination offsets within a stripe, kept a row ahead so
        # that starting a row takes no adder before the shift's subtraction
        next_src = Signal(ls)
        next_dst = Signal(ls)
        rows_left = Signal(16)
        prev = Signal(8 * S)

        # Of the row's shift sh, what the rotation and the merge below need is kept in
        # registers that change with the offsets, so no carry chain comes before them:
        # S - sh, and which bytes lie below sh.
        back = Signal(range(S + 1))
        low_bytes = Signal(S)
        behind = Signal()           # an output stripe needs the next input stripe too

        def start_row(src, dst, src_stride, dst_stride):
            so, do = src[:ls], dst[:ls]
            sh = (do - so)[:ls]
            m.d.sync += [next_src.eq(so + src_stride[:ls]), next_dst.eq(do + dst_stride[:ls]),
                         back.eq(S - sh), behind.eq(do < so),
                         low_bytes.eq(Cat(sh > j for j in range(S)))]

        # Rotation left by sh bytes, and the merge below, as whole-word shifts and masks: the
        # same barrel shifter in synthesis, and far less code for a simulator than a mux per
        # byte and stage.
        data = self.i.payload.data
        rot = Signal(8 * S)
        m.d.comb += rot.eq((Cat(data, data) >> Cat(C(0, 3), back))[:8 * S])
        low = Signal(8 * S)         # ones in the bytes below sh
        m.d.comb += low.eq(Cat(bit.replicate(8) for bit in low_bytes))

        def merged(cur):
            return (prev & low) | (cur & ~low)

        out_ready = ~self.o.valid | self.o.ready
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def emit(cur):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.data.eq(merged(cur)),
                self.o.payload.mask.eq(plan.payload.mask),
                self.o.payload.last.eq(plan.payload.last),
                self.o.payload.end.eq(plan.payload.end),
            ]
            m.d.comb += plan.ready.eq(1)

        def take():
            # the next descriptor, if one is offered (its planner takes it in the same cycle)
            m.d.comb += [planner.desc.valid.eq(self.desc.valid),
                         self.desc.ready.eq(planner.desc.ready)]
            with m.If(self.desc.valid & planner.desc.ready):
                d = self.desc.payload
                m.d.sync += [desc.eq(d), rows_left.eq(d.rows)]
                start_row(d.src, d.dst, d.src_stride, d.dst_stride)
                m.next = "FIRST"
            with m.Else():
                m.next = "IDLE"

        def next_row():
            m.d.sync += rows_left.eq(rows_left - 1)
            start_row(next_src, next_dst, desc.src_stride, desc.dst_stride)
            with m.If(rows_left == 1):
                take()          # the planner is at its last stripe: back to back
            with m.Else():
                m.next = "FIRST"

        def after_input():
            with m.If(self.i.payload.last):
                with m.If(plan.payload.last):
                    next_row()
                with m.Else():
                    m.next = "TAIL"
            with m.Else():
                m.next = "RUN"

        def stripe():
            # one input stripe in, one output stripe out; ready does not depend on valid, so
            # the producer's valid does not come back to it as ready in the same cycle
            with m.If(plan.valid & out_ready):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += prev.eq(rot)
                    emit(rot)
                    after_input()

        m.d.comb += CopyDescriptor.side(planner.desc.payload, self.desc.payload, "dst")
        with m.FSM():
            with m.State("IDLE"):
                take()
            with m.State("FIRST"):
                with m.If(behind):
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        m.d.sync += prev.eq(rot)
                        with m.If(self.i.payload.last):
                            m.next = "TAIL"
                        with m.Else():
                            m.next = "RUN"
                with m.Else():
                    stripe()
            with m.State("RUN"):
                stripe()
            with m.State("TAIL"):
                with m.If(plan.valid & out_ready):
                    emit(C(0, 8 * S))
                    next_row()
        return m
