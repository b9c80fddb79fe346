"""A pin-limited harness for placing and routing a block on a small package.

nextpnr-ice40 has no out-of-context mode: every top-level port becomes a pin, and a block
with hundreds of port bits does not fit a 48-pin package. The harness keeps the block's ports
inside the FPGA: its inputs come from a shift register loaded one bit per cycle, its outputs
are captured into another one and shifted out. Timing of the block itself is unchanged (its
ports are registered on both sides), so the report of the block stands.
"""

from amaranth import *
from amaranth.hdl import ValueCastable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SerialHarness"]


class SerialHarness(wiring.Component):
    """Wraps ``block`` behind five pins.

    Members
    -------
    sin : In(1)
        Serial input, shifted into the input register while ``shift`` is high.
    shift : In(1)
        Shift both registers by one bit.
    apply : In(1)
        Copy the input register to the block's inputs and capture its outputs.
    sout : Out(1)
        Serial output, the low bit of the output register.
    """

    sin: In(1)
    shift: In(1)
    apply: In(1)
    sout: Out(1)

    def __init__(self, block):
        self._block = block
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = block = self._block
        inputs, outputs = [], []
        for _, member, value in block.signature.flatten(block):
            if isinstance(value, ValueCastable):
                value = value.as_value()
            if isinstance(value, Const):
                continue            # a port fixed by the signature (an always-ready stream)
            (inputs if member.flow == In else outputs).append(value)
        i_bits, o_bits = Cat(*inputs), Cat(*outputs)
        shift_in = Signal(len(i_bits))
        held_in = Signal(len(i_bits))
        shift_out = Signal(len(o_bits))
        m.d.comb += i_bits.eq(held_in)
        with m.If(self.shift):
            m.d.sync += [shift_in.eq(Cat(shift_in[1:], self.sin)),
                         shift_out.eq(shift_out[1:])]
        with m.If(self.apply):
            m.d.sync += [held_in.eq(shift_in), shift_out.eq(o_bits)]
        m.d.comb += self.sout.eq(shift_out[0])
        return m
