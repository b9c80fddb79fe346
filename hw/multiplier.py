"""Registered multiplier of the processing element, mapped onto the FPGA's multiplier block."""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisteredMultiplier", "product_shape"]


def product_shape(shape):
    """The shape of the product of two operands of ``shape``."""
    shape = Shape.cast(shape)
    return Shape(2 * shape.width, shape.signed)


class RegisteredMultiplier(wiring.Component):
    """``p = a * b`` through two register stages: in a cycle with ``en`` high, the operand
    registers take ``a`` and ``b`` and the product register takes the product of the operand
    registers. So with ``en`` high in every cycle, ``p`` is the product of the operands
    presented two cycles earlier; ``en`` low holds all three registers.

    The registers have no reset (their content before the first two enabled cycles is
    unspecified; the PE's lane flags, which do reset, tell valid products apart).

    On an ECP5 (``platform.family == "ecp5"``, for example an amaranth-boards platform or
    :class:`Ecp5Target`), the multiplier is a ``MULT18X18D`` whose own input registers
    (``REG_INPUTA``, ``REG_INPUTB``) and output register (``REG_OUTPUT``) are the three
    registers, clock-enabled by ``en``: the paths into and out of the multiplier array stay
    inside the DSP block, and only register-to-register routing is left outside it. The
    cascade inputs (``SRIA``, ``SRIB``) and the spare clocks, enables and resets are left
    unconnected, as Yosys's own DSP mapping leaves them: the router cannot tie cascade inputs
    to a constant. Elsewhere (simulation, other devices) the registers are ordinary
    flip-flops around ``*``, which Yosys maps to the device's multiplier blocks as it sees
    fit.

    Parameters
    ----------
    shape : Shape
        Operand shape, at most 18 bits (the width of one ECP5 multiplier input).

    Members
    -------
    en : In(1)
    a, b : In(shape)
    p : Out(product_shape(shape))
    """

    def __init__(self, shape):
        shape = Shape.cast(shape)
        if not 1 <= shape.width <= 18:
            self._MustUse__silence = True
            raise ValueError(f"operand width must be 1 to 18 bits (one ECP5 MULT18X18D "
                             f"input), not {shape.width}")
        self._shape = shape
        super().__init__({"en": In(1), "a": In(shape), "b": In(shape),
                          "p": Out(product_shape(shape))})

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "family", None) == "ecp5":
            self._ecp5(m)
            return m
        a = Signal(self._shape, reset_less=True)
        b = Signal(self._shape, reset_less=True)
        p = Signal(product_shape(self._shape), reset_less=True)
        with m.If(self.en):
            m.d.sync += [a.eq(self.a), b.eq(self.b), p.eq(a * b)]
        m.d.comb += self.p.eq(p)
        return m

    def _ecp5(self, m):
        signed = self._shape.signed
        a = Signal(18)
        b = Signal(18)
        p = Signal(36)
        # operands extended to the 18-bit inputs as their signedness says
        m.d.comb += [a.eq(self.a.as_signed() if signed else self.a),
                     b.eq(self.b.as_signed() if signed else self.b)]
        ports = {f"i_A{i}": a[i] for i in range(18)}
        ports.update({f"i_B{i}": b[i] for i in range(18)})
        ports.update({f"i_C{i}": C(0, 1) for i in range(18)})
        ports.update({f"o_P{i}": p[i] for i in range(36)})
        registers = {}
        for reg in ("INPUTA", "INPUTB", "OUTPUT"):
            registers.update({f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": "CE0",
                              f"p_REG_{reg}_RST": "RST0"})
        m.submodules.dsp = self._primitive(
            **registers,
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
            p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
            i_SIGNEDA=C(int(signed), 1), i_SIGNEDB=C(int(signed), 1),
            i_SOURCEA=C(0, 1), i_SOURCEB=C(0, 1),
            i_CLK0=ClockSignal("sync"), i_CE0=self.en, i_RST0=C(0, 1),
            **ports)
        m.d.comb += self.p.eq(p[:len(self.p)])

    def _primitive(self, **params):
        return Instance("MULT18X18D", **params)


class Ecp5Target:
    """What :class:`RegisteredMultiplier` looks at to map onto ECP5 blocks, for an
    out-of-context build that has no board platform (``rtlil.convert(..., platform=...)``)."""

    family = "ecp5"
