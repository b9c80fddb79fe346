"""STORE post-processing: bias, ReLU, scale, rounding shift and saturation, then byte packing."""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .isa import SCALE_WIDTH, OutType, out_bytes, post_op_fields

__all__ = [
    "RESULT_WIDTH", "PostOpLayout", "AccRowLayout", "ResultRowLayout", "PackedRowLayout",
    "PostProcessor", "Packer",
]

RESULT_WIDTH = 32           # the widest OutType; narrower ones are sign-extended into it

_RANGE = {t: (-(1 << (8 * out_bytes(t) - 1)), (1 << (8 * out_bytes(t) - 1)) - 1)
          for t in OutType}


def _saturated(y, t):
    """``y`` clamped to the range of ``t``. It fits when its bits from the type's sign bit up
    all equal: a wide AND and OR, no compare's carry chain."""
    lo, hi = _RANGE[t]
    top = y[8 * out_bytes(t) - 1:]
    if len(top) <= 1:
        return y
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    return Mux(fits, y, Mux(y[-1], lo, hi))


class PostOpLayout(data.StructLayout):
    """The settings of one STORE that post-processing needs.

    The fields have the names, shapes and order of the first fields of
    :class:`hw.isa.StoreLayout`, so the leading ``PostOpLayout().size`` bits of a STORE body
    are a valid value of this layout.
    """

    def __init__(self):
        super().__init__(post_op_fields())


class AccRowLayout(data.StructLayout):
    """Payload of the post-processor's input: one accumulator row and its operands.

    ``bias`` is the STORE's bias row (used if the op sets ``bias``), ``scale`` the low
    ``SCALE_WIDTH`` bits of each entry of its scale row (used if the op sets ``per_column``);
    ``last`` marks the STORE's last row.
    """

    def __init__(self, cfg):
        super().__init__({
            "data": data.ArrayLayout(signed(cfg.acc_width), cfg.cols),
            "bias": data.ArrayLayout(signed(cfg.acc_width), cfg.cols),
            "scale": data.ArrayLayout(unsigned(SCALE_WIDTH), cfg.cols),
            "last": 1,
        })


class ResultRowLayout(data.StructLayout):
    """Payload of the post-processor's output: one row of saturated results.

    Each value lies in the range of ``out_type``, sign-extended to ``RESULT_WIDTH`` bits.
    ``out_type`` is the one the row was processed with, so that the :class:`Packer` needs no
    setting of its own and rows of consecutive STOREs may share the pipeline.
    """

    def __init__(self, cfg):
        super().__init__({
            "data": data.ArrayLayout(signed(RESULT_WIDTH), cfg.cols),
            "out_type": OutType,
            "last": 1,
        })


class PackedRowLayout(data.StructLayout):
    """Payload of the packer's output: one row as it lies in memory.

    ``data`` holds the row's elements little-endian and back to back from byte 0, as numpy's
    ``astype(int8/int16/int32).tobytes()`` lays them out; ``bytes`` (``cols`` times 1, 2 or 4)
    counts the valid bytes, and the bytes above them are zero.
    """

    def __init__(self, cfg):
        super().__init__({
            "data": 8 * 4 * cfg.cols,
            "bytes": range(4 * cfg.cols + 1),
            "last": 1,
        })


class PostProcessor(wiring.Component):
    """Requantizes accumulator rows as STORE specifies (see :mod:`hw.isa`), bit-exact with
    :func:`sim.assembler.postprocess`.

    Per column ``j``: ``x = wrap(data[j] + bias[j])`` if ``op.bias``; ``x = max(x, 0)`` if
    ``op.relu``; ``p = x * s`` with ``s = scale[j]`` if ``op.per_column``, else
    ``op.scale``; ``y = p / 2**op.shift`` rounded half away from zero; ``y`` saturated to
    ``op.out_type`` (an ``out_type`` of 3, which the ISA does not define, acts as INT32).

    Six register stages, all advancing together when the output can move (a stall holds
    every row in place, so none is lost or repeated):

    1. bias and ReLU, and the choice of the scale;
    2. the two partial products of the ``acc_width`` x ``SCALE_WIDTH`` product (the low 16
       bits and the rest of the accumulator, each a multiplier block of its own), and the
       rounding constant of the shift;
    3. their sum, the product;
    4. the rounding add;
    5. the arithmetic shift;
    6. the saturation.

    The stages are ``cfg.post_lane_count`` columns wide. With fewer lanes than columns a row
    passes through them in ``cfg.post_passes`` consecutive cycles, lanes ``0 ..`` taking
    columns ``k * lanes ..`` in pass ``k``, and is accepted in its last pass; the result row is
    assembled in the output register and presented after the last pass.

    ``op`` is sampled together with each row ``i`` accepts and travels down the pipeline
    with it; the store engine holds it constant while a STORE's rows enter, and may change it
    for the next STORE while earlier rows are still inside.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    op : In(PostOpLayout)
        The running STORE's settings.
    i : In(stream.Signature(AccRowLayout))
        Accumulator rows.
    o : Out(stream.Signature(ResultRowLayout))
        Result rows, ``latency`` cycles after their input row is accepted when nothing
        stalls; one row per ``cfg.post_passes`` cycles.
    """

    LATENCY = 6

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "op": In(PostOpLayout()),
            "i": In(stream.Signature(AccRowLayout(cfg))),
            "o": Out(stream.Signature(ResultRowLayout(cfg))),
        })

    @property
    def latency(self):
        """Cycles from accepting a row to presenting its result, without stalls."""
        return self.LATENCY

    @property
    def product_width(self):
        """Signed width that holds every product: ``|x * s| < 2**(acc_width - 1) * 2**16``."""
        return self._cfg.acc_width + SCALE_WIDTH

    def elaborate(self, platform):
        cfg = self._cfg
        aw, P = cfg.acc_width, self.product_width
        m = Module()

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        # Pass of the row on the input: a row is read lane-wide in consecutive cycles, which the
        # stream rules allow (the payload holds until the row is accepted).
        L, passes = cfg.post_lane_count, cfg.post_passes
        final0 = Signal()
        pass0 = Signal(range(passes))
        m.d.comb += final0.eq(pass0 == passes - 1)
        m.d.comb += self.i.ready.eq(advance & final0)
        if passes > 1:
            with m.If(advance & self.i.valid):
                m.d.sync += pass0.eq(Mux(final0, 0, pass0 + 1))

        def lane_input(array, lane, shape):
            """Element ``pass0 * L + lane`` of ``array`` (0 past the last column)."""
            if passes == 1:
                return array[lane]
            value = Signal(shape, name=f"in{lane}")
            with m.Switch(pass0):
                for k in range(passes):
                    if k * L + lane < cfg.cols:
                        with m.Case(k):
                            m.d.comb += value.eq(array[k * L + lane])
            return value

        # Stage 1: bias, ReLU, scale choice ----------------------------------------------------

        i, op = self.i.payload, self.op
        v1, last1 = Signal(), Signal()
        pass1 = Signal.like(pass0)
        x1 = [Signal(signed(aw), name=f"x1_{j}") for j in range(L)]
        s1 = [Signal(SCALE_WIDTH, name=f"s1_{j}") for j in range(L)]
        # A shift of P or more rounds every product (|p| < 2**(P - 1)) to 0 without a tie,
        # as P does, so clamping to P bounds the rounding adder and shifter at P + 1 bits.
        sh1 = Signal(range(P + 1))
        type1 = Signal(OutType)
        with m.If(advance):
            m.d.sync += [
                v1.eq(self.i.valid),
                last1.eq(i.last),
                pass1.eq(pass0),
                sh1.eq(Mux(op.shift > P, P, op.shift)),
                type1.eq(op.out_type),
            ]
            for j in range(L):
                data_j = lane_input(i.data, j, signed(aw))
                bias_j = lane_input(i.bias, j, signed(aw))
                scale_j = lane_input(i.scale, j, unsigned(SCALE_WIDTH))
                x = Mux(op.bias, (data_j + bias_j)[:aw].as_signed(), data_j)
                m.d.sync += [
                    x1[j].eq(Mux(op.relu & x[-1], 0, x)),
                    s1[j].eq(Mux(op.per_column, scale_j, op.scale)),
                ]

        # Stage 2: partial products; the rounding constant 2**(shift - 1) - 1 in parallel ----

        # x = hi * 2**16 + lo with lo unsigned; an accumulator of 16 bits or fewer is not split
        split = 16 if aw > 16 else None
        vm, lastm = Signal(), Signal()
        passm = Signal.like(pass0)
        if split:
            lo_m = [Signal(split + SCALE_WIDTH, name=f"lo_m{j}") for j in range(L)]
            hi_m = [Signal(signed(aw - split + SCALE_WIDTH + 1), name=f"hi_m{j}")
                    for j in range(L)]
        else:
            lo_m = [Signal(signed(aw + SCALE_WIDTH + 1), name=f"lo_m{j}") for j in range(L)]
        shm = Signal.like(sh1)
        typem = Signal(OutType)
        half_m1_m = Signal(P)
        with m.If(advance):
            m.d.sync += [
                vm.eq(v1),
                lastm.eq(last1),
                passm.eq(pass1),
                shm.eq(sh1),
                typem.eq(type1),
                half_m1_m.eq(Cat(sh1 > k + 1 for k in range(P))),
            ]
            for j in range(L):
                if split:
                    m.d.sync += [lo_m[j].eq(x1[j][:split] * s1[j]),
                                 hi_m[j].eq(x1[j][split:].as_signed() * s1[j])]
                else:
                    m.d.sync += lo_m[j].eq(x1[j] * s1[j])

        # Stage 3: the product ----------------------------------------------------------------

        v2, last2 = Signal(), Signal()
        pass2 = Signal.like(pass0)
        p2 = [Signal(signed(P), name=f"p2_{j}") for j in range(L)]
        sh2 = Signal.like(sh1)
        type2 = Signal(OutType)
        half_m1 = Signal(P)
        with m.If(advance):
            m.d.sync += [
                v2.eq(vm),
                last2.eq(lastm),
                pass2.eq(passm),
                sh2.eq(shm),
                type2.eq(typem),
                half_m1.eq(half_m1_m),
            ]
            for j in range(L):
                product = (hi_m[j] << split) + lo_m[j] if split else lo_m[j]
                m.d.sync += p2[j].eq(product[:P].as_signed())

        # Stage 4: round half away from zero -------------------------------------------------

        v3, last3, pass3 = Signal(), Signal(), Signal.like(pass0)
        r3 = [Signal(signed(P + 1), name=f"r3_{j}") for j in range(L)]
        sh3 = Signal.like(sh2)
        type3 = Signal(OutType)
        with m.If(advance):
            m.d.sync += [v3.eq(v2), last3.eq(last2), pass3.eq(pass2), sh3.eq(sh2),
                         type3.eq(type2)]
            for j in range(L):
                # p + 2**(shift-1) - (p < 0) is p + (2**(shift-1) - 1) with carry-in ~sign.
                carry = (sh2 != 0) & ~p2[j][-1]
                m.d.sync += r3[j].eq(p2[j] + half_m1 + carry)

        # Stage 5: arithmetic shift -----------------------------------------------------------

        v4, last4, pass4 = Signal(), Signal(), Signal.like(pass0)
        y4 = [Signal(signed(P + 1), name=f"y4_{j}") for j in range(L)]
        type4 = Signal(OutType)
        with m.If(advance):
            m.d.sync += [v4.eq(v3), last4.eq(last3), pass4.eq(pass3), type4.eq(type3)]
            for j in range(L):
                m.d.sync += y4[j].eq(r3[j] >> sh3)

        # Stage 6: saturate ---------------------------------------------------------------------

        v5, last5 = Signal(), Signal()
        y5 = [Signal(signed(RESULT_WIDTH), name=f"y5_{j}") for j in range(cfg.cols)]
        type5 = Signal(OutType)
        with m.If(advance):
            m.d.sync += [v5.eq(v4 & (pass4 == passes - 1)), last5.eq(last4), type5.eq(type4)]
            for j in range(L):
                y = y4[j]
                sat = Signal(signed(RESULT_WIDTH), name=f"sat{j}")
                with m.Switch(type4):
                    for t in OutType:
                        with m.Case(t):
                            m.d.comb += sat.eq(_saturated(y, t))
                    with m.Default():
                        m.d.comb += sat.eq(_saturated(y, OutType.INT32))
                if passes == 1:
                    m.d.sync += y5[j].eq(sat)
                else:
                    # the result row is assembled in place: o.valid is low until its last pass
                    for k in range(passes):
                        if k * L + j < cfg.cols:
                            with m.If(v4 & (pass4 == k)):
                                m.d.sync += y5[k * L + j].eq(sat)

        m.d.comb += [
            self.o.valid.eq(v5),
            self.o.payload.last.eq(last5),
            self.o.payload.out_type.eq(type5),
        ]
        for j in range(cfg.cols):
            m.d.comb += self.o.payload.data[j].eq(y5[j])
        return m


class Packer(wiring.Component):
    """Packs result rows into the bytes a STORE writes: element ``j`` of a row of
    ``out_type`` takes bytes ``j * n`` to ``j * n + n - 1`` (``n`` = 1, 2 or 4), low byte
    first. One register stage; one row per cycle.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    i : In(stream.Signature(ResultRowLayout))
        Saturated result rows, each carrying its ``out_type`` (3 acts as INT32).
    o : Out(stream.Signature(PackedRowLayout))
        Packed rows, one cycle after their input row when nothing stalls.
    """

    LATENCY = 1

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(ResultRowLayout(cfg))),
            "o": Out(stream.Signature(PackedRowLayout(cfg))),
        })

    @property
    def latency(self):
        """Cycles from accepting a row to presenting its bytes, without stalls."""
        return self.LATENCY

    def elaborate(self, platform):
        cols = self._cfg.cols
        m = Module()

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        i, o = self.i.payload, self.o.payload
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(self.i.valid), o.last.eq(i.last)]
            with m.Switch(i.out_type):
                for t in (OutType.INT8, OutType.INT16):
                    n = 8 * out_bytes(t)
                    with m.Case(t):
                        m.d.sync += [
                            o.data.eq(Cat(i.data[j][:n] for j in range(cols))),
                            o.bytes.eq(cols * out_bytes(t)),
                        ]
                with m.Default():
                    m.d.sync += [
                        o.data.eq(Cat(i.data[j] for j in range(cols))),
                        o.bytes.eq(cols * out_bytes(OutType.INT32)),
                    ]
        return m
